"""ViT's published checkpoints (timm's hub names) and what `weights="imagenet"` means.

`PRESETS` is registered by `keras_vit.models.vit`'s `__init__`; the augreg and original
ViT checkpoints take inputs normalized with mean = std = 0.5.
"""

from keras_vit.layers.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from keras_vit.weights.published import timm_entry

# How timm evaluates these checkpoints (their pretrained_cfg in timm 1.0.31): bicubic resize of the shorter
# side to size / crop_pct, then a centre crop; crop_pct 0.9 at 224 and 1.0 at 384.
_EVAL_RECIPE = {224: {"crop_pct": 0.9, "interpolation": "bicubic"}, 384: {"crop_pct": 1.0, "interpolation": "bicubic"}}

# (timm name, classes, input size); 0 classes: the checkpoint has no classifier head.
_CHECKPOINTS = [
    ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_tiny_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_small_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_small_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_small_patch32_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_small_patch32_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_224.orig_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch16_384.orig_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch32_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch32_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_large_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_large_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_large_patch32_384.orig_in21k_ft_in1k", 1000, 384),
    ("vit_huge_patch14_224.orig_in21k", 0, 224),
]
PRESETS = [timm_entry(name, "vit", classes, size, INCEPTION_MEAN, INCEPTION_STD, **_EVAL_RECIPE[size]) for name, classes, size in _CHECKPOINTS]

# What `weights="imagenet"` means for each builder, per input size.
DEFAULT_WEIGHTS = {
    ("ViTTi16", 224): "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
    ("ViTTi16", 384): "vit_tiny_patch16_384.augreg_in21k_ft_in1k",
    ("ViTS16", 224): "vit_small_patch16_224.augreg_in21k_ft_in1k",
    ("ViTS16", 384): "vit_small_patch16_384.augreg_in21k_ft_in1k",
    ("ViTS32", 224): "vit_small_patch32_224.augreg_in21k_ft_in1k",
    ("ViTS32", 384): "vit_small_patch32_384.augreg_in21k_ft_in1k",
    ("ViTB16", 224): "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    ("ViTB16", 384): "vit_base_patch16_384.augreg_in21k_ft_in1k",
    ("ViTB32", 224): "vit_base_patch32_224.augreg_in21k_ft_in1k",
    ("ViTB32", 384): "vit_base_patch32_384.augreg_in21k_ft_in1k",
    ("ViTL16", 224): "vit_large_patch16_224.augreg_in21k_ft_in1k",
    ("ViTL16", 384): "vit_large_patch16_384.augreg_in21k_ft_in1k",
    ("ViTL32", 384): "vit_large_patch32_384.orig_in21k_ft_in1k",
    ("ViTH14", 224): "vit_huge_patch14_224.orig_in21k",
}
