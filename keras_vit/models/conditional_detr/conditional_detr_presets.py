"""Conditional DETR's published checkpoints and what `weights="coco"` means.

transformers' COCO model of Microsoft (transformers-4 key names, timm ResNet-50 backbone, 91
classes). Inputs are normalized with ImageNet's mean and std; the reference resizes the shorter
side to 800, so any input size works. The original repository's other checkpoints (R101,
DC5) are .pth files on its release page; they load from a local file (`weights=path`).
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import hub_entry

_CHECKPOINTS = ("microsoft/conditional-detr-resnet-50",)
PRESETS = [
    hub_entry(name, "conditional_detr", "pytorch_model.bin", 91, None, IMAGENET_MEAN, IMAGENET_STD)
    for name in _CHECKPOINTS
]

# What `weights="coco"` means for each builder: (backbone, dilation) -> name.
DEFAULT_WEIGHTS = {("resnet50", False): "microsoft/conditional-detr-resnet-50"}
