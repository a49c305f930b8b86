"""Swin's published checkpoints (timm's hub names) and what `weights="imagenet"` means.

Inputs are normalized with ImageNet's mean and std; the ImageNet-22k-only checkpoints
have 21841 classes.
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import timm_entry

# How timm evaluates these checkpoints (their pretrained_cfg in timm 1.0.31): bicubic resize of the shorter
# side to size / crop_pct, then a centre crop; crop_pct 0.9 at 224 and 1.0 at 384.
_EVAL_RECIPE = {224: {"crop_pct": 0.9, "interpolation": "bicubic"}, 384: {"crop_pct": 1.0, "interpolation": "bicubic"}}

# (timm name, classes, input size).
_CHECKPOINTS = [
    ("swin_tiny_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_tiny_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_tiny_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_small_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_small_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_small_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_base_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_base_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_base_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_base_patch4_window12_384.ms_in1k", 1000, 384),
    ("swin_base_patch4_window12_384.ms_in22k_ft_in1k", 1000, 384),
    ("swin_base_patch4_window12_384.ms_in22k", 21841, 384),
    ("swin_large_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_large_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_large_patch4_window12_384.ms_in22k_ft_in1k", 1000, 384),
    ("swin_large_patch4_window12_384.ms_in22k", 21841, 384),
]
PRESETS = [timm_entry(name, "swin", classes, size, IMAGENET_MEAN, IMAGENET_STD, **_EVAL_RECIPE[size]) for name, classes, size in _CHECKPOINTS]

# What `weights="imagenet"` means for each builder and input size (timm's default tags).
DEFAULT_WEIGHTS = {
    ("SwinT", 224): "swin_tiny_patch4_window7_224.ms_in1k",
    ("SwinS", 224): "swin_small_patch4_window7_224.ms_in22k_ft_in1k",
    ("SwinB", 224): "swin_base_patch4_window7_224.ms_in22k_ft_in1k",
    ("SwinB", 384): "swin_base_patch4_window12_384.ms_in22k_ft_in1k",
    ("SwinL", 224): "swin_large_patch4_window7_224.ms_in22k_ft_in1k",
    ("SwinL", 384): "swin_large_patch4_window12_384.ms_in22k_ft_in1k",
}
