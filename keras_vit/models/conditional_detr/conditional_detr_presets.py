"""Conditional DETR's published COCO checkpoints and what `weights="coco"` means.

- transformers' `microsoft/conditional-detr-resnet-50` (transformers-4 key names, timm
  ResNet-50 backbone);
- the original repository's (Atten4Vis/ConditionalDETR, files on DeppMeng/ConditionalDETR's
  v1.0 release page, as its hubconf.py loads them) `ConditionalDETR_r50_epoch50`,
  `ConditionalDETR_r50dc5_epoch50`, `ConditionalDETR_r101_epoch50` and
  `ConditionalDETR_r101dc5_epoch50`: torch files `{"model": state_dict, ...}`, downloaded once
  into `keras_vit.weights.cache_dir()`. The `dc5` ones are for `dilation=True` models.

All are 6 + 6 layers, hidden 256, 8 heads, feed-forward 2048, 300 queries and 91 classes.
Inputs are normalized with ImageNet's mean and std; the references resize the shorter side to
800, so any input size works.

Example:
>>> DEFAULT_WEIGHTS[("resnet101", True)]
'ConditionalDETR_r101dc5_epoch50'
>>> [entry["url"] for entry in PRESETS if entry["name"] == DEFAULT_WEIGHTS[("resnet101", True)]]
['https://github.com/DeppMeng/ConditionalDETR/releases/download/v1.0/ConditionalDETR_r101dc5_epoch50.pth']
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import hub_entry

# The release files the original repository's hubconf.py downloads.
_ORIGINAL_URL = "https://github.com/DeppMeng/ConditionalDETR/releases/download/v1.0/{filename}"


def _original_entry(filename):
    return {
        "name": filename[: -len(".pth")],
        "family": "conditional_detr",
        "url": _ORIGINAL_URL.format(filename=filename),
        "filename": filename,
        "num_classes": 91,
        "image_size": None,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }


PRESETS = [
    hub_entry("microsoft/conditional-detr-resnet-50", "conditional_detr", "pytorch_model.bin", 91, None,
              IMAGENET_MEAN, IMAGENET_STD),
    *(_original_entry(f"ConditionalDETR_{variant}_epoch50.pth") for variant in ("r50", "r50dc5", "r101", "r101dc5")),
]

# What `weights="coco"` means for each builder: (backbone, dilation) -> name. ResNet-50 without
# dilation keeps transformers' hub checkpoint, as before the original files were listed.
DEFAULT_WEIGHTS = {
    ("resnet50", False): "microsoft/conditional-detr-resnet-50",
    ("resnet50", True): "ConditionalDETR_r50dc5_epoch50",
    ("resnet101", False): "ConditionalDETR_r101_epoch50",
    ("resnet101", True): "ConditionalDETR_r101dc5_epoch50",
}
