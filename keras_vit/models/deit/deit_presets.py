"""DeiT's published checkpoints (timm's hub names) and what `weights="imagenet"` means.

A DeiT checkpoint fills a `VisionTransformer` through ViT's converter, so its entries
belong to the family "vit"; `distilled` says whether it has the distillation token.
Inputs are normalized with ImageNet's mean and std.
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import timm_entry

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
    timm_entry(name, "vit", 1000, size, IMAGENET_MEAN, IMAGENET_STD, distilled=distilled)
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
