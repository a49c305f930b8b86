"""Every model a builder returns has every layer built, weightless ones included.

While any layer is unbuilt, Keras' JAX `predict`/`predict_on_batch` first runs the whole model eagerly
(ViT-B/16, batch 8: 7 s per predict_on_batch instead of 1.5) and every backend's `train_on_batch`
rebuilds it symbolically. A weightless layer that a fast path never calls (a DropPath at inference) or
that the model's own `build` skips (DETR's mask resize and position embedding) is enough.
"""

import keras
import pytest

import keras_vit
from keras_vit.models.resnet.resnet_model import ResNet

TINY_VIT = dict(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2, mlp_dim=16)


def _detector(cls):
    backbone = ResNet(depths=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8)
    return cls(backbone, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1, num_decoder_layers=1,
               num_heads=2, mlp_dim=16)


BUILDERS = {
    "vit": lambda: keras_vit.VisionTransformer(**TINY_VIT, num_classes=3, drop_path_rate=0.1),
    "deit": lambda: keras_vit.VisionTransformer(**TINY_VIT, num_classes=3, distilled=True),
    "vpt": lambda: keras_vit.add_prompts(keras_vit.VisionTransformer(**TINY_VIT, num_classes=3), num_prompts=2,
                                         verbose=False),
    "mae": lambda: keras_vit.MaskedAutoencoder(
        keras_vit.VisionTransformer(**TINY_VIT, include_top=False, pooling=None), 8, 1, 2),
    "swin": lambda: keras_vit.SwinTransformer(image_size=16, patch_size=4, hidden_dim=8, depths=(1,), num_heads=(2,),
                                              window_size=2, num_classes=3, drop_path_rate=0.1),
    "tnt": lambda: keras_vit.TNT(image_size=16, patch_size=8, hidden_dim=8, inner_dim=4, depth=1, num_heads=2,
                                 inner_num_heads=2, num_classes=3, drop_path_rate=0.1),
    "detr": lambda: _detector(keras_vit.DETR),
    "conditional_detr": lambda: _detector(keras_vit.ConditionalDETR),
}


@pytest.mark.parametrize("family", list(BUILDERS))
def test_every_layer_is_built(family):
    model = BUILDERS[family]()
    unbuilt = [f"{type(layer).__name__} {layer.name!r}" for layer in model._flatten_layers() if not layer.built]
    assert not unbuilt, f"{family}: unbuilt layers {unbuilt}"
    # The same after a round trip through the layers' configs (a loaded model).
    if isinstance(model, keras.Model) and type(model) is keras.Model:
        again = keras.Model.from_config(model.get_config())
        assert all(layer.built for layer in again._flatten_layers())
