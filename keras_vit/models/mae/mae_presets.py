"""Published whole-MAE checkpoints (encoder and decoder), registered by `keras_vit.models.mae`.

- transformers' `facebook/vit-mae-{base,large,huge}` (`ViTMAEForPreTraining`, pixel targets);
- the official repository's `mae_visualize_vit_{base,large}.pth` (the checkpoints of the
  paper's reconstruction figures, pixel targets).
The official `mae_pretrain_vit_*.pth` files hold the encoder only: they load into a
`VisionTransformer(include_top=False)`, not into a `MaskedAutoencoder`.
All take ImageNet-normalized pixels.
"""

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.weights.published import hub_entry

_OFFICIAL_URL = "https://dl.fbaipublicfiles.com/mae/visualize/{filename}"


def _official_entry(filename, builder):
    name = filename[: -len(".pth")]
    return {
        "name": name,
        "family": "mae",
        "url": _OFFICIAL_URL.format(filename=filename),
        "filename": filename,
        "num_classes": 0,
        "image_size": 224,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "builder": builder,
    }


PRESETS = [
    hub_entry("facebook/vit-mae-base", "mae", "pytorch_model.bin", 0, 224, IMAGENET_MEAN, IMAGENET_STD,
              builder="MAEViTB16"),
    hub_entry("facebook/vit-mae-large", "mae", "pytorch_model.bin", 0, 224, IMAGENET_MEAN, IMAGENET_STD,
              builder="MAEViTL16"),
    hub_entry("facebook/vit-mae-huge", "mae", "pytorch_model.bin", 0, 224, IMAGENET_MEAN, IMAGENET_STD,
              builder="MAEViTH14"),
    _official_entry("mae_visualize_vit_base.pth", "MAEViTB16"),
    _official_entry("mae_visualize_vit_large.pth", "MAEViTL16"),
]
