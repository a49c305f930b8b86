"""TNT's published checkpoints (timm >= 1.0.16 layout, which matches the official weights)
and what `weights="imagenet"` means. Inputs are normalized with mean = std = 0.5.
"""

from keras_vit.layers.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from keras_vit.weights.published import timm_entry

# How timm evaluates these checkpoints (their pretrained_cfg in timm 1.0.31): bicubic resize of the shorter
# side to size / crop_pct, then a centre crop; crop_pct 0.9 at 224 and 1.0 at 384.
_EVAL_RECIPE = {224: {"crop_pct": 0.9, "interpolation": "bicubic"}, 384: {"crop_pct": 1.0, "interpolation": "bicubic"}}

PRESETS = [
    timm_entry("tnt_s_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD, **_EVAL_RECIPE[224]),
    timm_entry("tnt_b_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD, **_EVAL_RECIPE[224]),
]

# What `weights="imagenet"` means for each builder, per input size.
DEFAULT_WEIGHTS = {
    ("TNTS16", 224): "tnt_s_patch16_224.in1k",
    ("TNTB16", 224): "tnt_b_patch16_224.in1k",
}
