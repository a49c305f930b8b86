"""DETR's published checkpoints (transformers' COCO models, transformers-4 key names, timm
ResNet backbones) and what `weights="coco"` means. Inputs are normalized with ImageNet's
mean and std; the reference resizes the shorter side to 800, so any input size works.
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import hub_entry

_CHECKPOINTS = ("facebook/detr-resnet-50", "facebook/detr-resnet-50-dc5", "facebook/detr-resnet-101", "facebook/detr-resnet-101-dc5")
# 91 classes: COCO's category ids 0-90 (some unused), then no-object.
PRESETS = [hub_entry(name, "detr", "pytorch_model.bin", 91, None, IMAGENET_MEAN, IMAGENET_STD) for name in _CHECKPOINTS]

# What `weights="coco"` means for each builder: (backbone, dilation) -> name.
DEFAULT_WEIGHTS = {
    ("resnet50", False): "facebook/detr-resnet-50",
    ("resnet50", True): "facebook/detr-resnet-50-dc5",
    ("resnet101", False): "facebook/detr-resnet-101",
    ("resnet101", True): "facebook/detr-resnet-101-dc5",
}
