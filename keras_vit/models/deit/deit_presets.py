"""DeiT's published checkpoints (timm's hub names) and what `weights="imagenet"` means.

A DeiT checkpoint fills a `VisionTransformer` through ViT's converter, so its entries
belong to the family "vit"; `distilled` says whether it has the distillation token.
Inputs are normalized with ImageNet's mean and std.
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import timm_entry

# How timm evaluates these checkpoints (their pretrained_cfg in timm 1.0.31): bicubic resize of the shorter
# side to size / crop_pct, then a centre crop; crop_pct 0.9 at 224 and 1.0 at 384.
_EVAL_RECIPE = {224: {"crop_pct": 0.9, "interpolation": "bicubic"}, 384: {"crop_pct": 1.0, "interpolation": "bicubic"}}

# (timm name, distilled, input size); every one has the 1000 ImageNet-1k classes.
_CHECKPOINTS = [
    ("deit_tiny_patch16_224.fb_in1k", False, 224),
    ("deit_small_patch16_224.fb_in1k", False, 224),
    ("deit_base_patch16_224.fb_in1k", False, 224),
    ("deit_base_patch16_384.fb_in1k", False, 384),
    ("deit_tiny_distilled_patch16_224.fb_in1k", True, 224),
    ("deit_small_distilled_patch16_224.fb_in1k", True, 224),
    ("deit_base_distilled_patch16_224.fb_in1k", True, 224),
    ("deit_base_distilled_patch16_384.fb_in1k", True, 384),
]
PRESETS = [
    timm_entry(name, "vit", 1000, size, IMAGENET_MEAN, IMAGENET_STD, distilled=distilled, **_EVAL_RECIPE[size])
    for name, distilled, size in _CHECKPOINTS
]

# What `weights="imagenet"` means for each builder: (builder, input size, distilled) -> name.
DEFAULT_WEIGHTS = {
    ("DeiTTi16", 224, False): "deit_tiny_patch16_224.fb_in1k",
    ("DeiTS16", 224, False): "deit_small_patch16_224.fb_in1k",
    ("DeiTB16", 224, False): "deit_base_patch16_224.fb_in1k",
    ("DeiTB16", 384, False): "deit_base_patch16_384.fb_in1k",
    ("DeiTTi16", 224, True): "deit_tiny_distilled_patch16_224.fb_in1k",
    ("DeiTS16", 224, True): "deit_small_distilled_patch16_224.fb_in1k",
    ("DeiTB16", 224, True): "deit_base_distilled_patch16_224.fb_in1k",
    ("DeiTB16", 384, True): "deit_base_distilled_patch16_384.fb_in1k",
}
