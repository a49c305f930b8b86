"""TNT's published checkpoints (timm >= 1.0.16 layout, which matches the official weights)
and what `weights="imagenet"` means. Inputs are normalized with mean = std = 0.5.
"""

from keras_vit.layers.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from keras_vit.weights.published import timm_entry

PRESETS = [
    timm_entry("tnt_s_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD),
    timm_entry("tnt_b_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD),
]

# What `weights="imagenet"` means for each builder, per input size.
DEFAULT_WEIGHTS = {
    ("TNTS16", 224): "tnt_s_patch16_224.in1k",
    ("TNTB16", 224): "tnt_b_patch16_224.in1k",
}
