"""Keras' own layer harness (`keras.src.testing.TestCase.run_layer_test`) over every public layer.

The harness builds each layer on its own, calls it symbolically and eagerly, round-trips its
config, fits it one step (`model.fit` on the backend's default compiled path) and, where the
backend supports it, checks that `compute_output_spec` under `mixed_float16` tells the dtype the
layer really returns and that its weights stay float32. A test also checks that the table below
lists every public layer class of `keras_vit.layers` and of each family's layer module, so a new
layer cannot escape the harness.
"""

import importlib
import inspect

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

LAYER_MODULES = (
    "keras_vit.layers",
    "keras_vit.models.vit.vit_layers",
    "keras_vit.models.tnt.tnt_layers",
    "keras_vit.models.swin.swin_layers",
    "keras_vit.models.detr.detr_layers",
    "keras_vit.models.conditional_detr.conditional_detr_layers",
    "keras_vit.models.mae.mae_layers",
    # DeiT has no layers of its own (it uses ViT's); ResNet's block lives in its model module.
    "keras_vit.models.resnet.resnet_model",
)

# Multi-input layers are called with keyword inputs (the harness passes a dict as **kwargs).
# The harness' training check wraps the layer as `layer(x)` with one positional input, so it
# cannot feed them; everything else (build, symbolic and eager calls, serialization,
# mixed-precision dtypes) still runs for them.
_KEYWORD_INPUTS = "keyword inputs: the harness' training model passes one positional input"


def _f32(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def _case(module, name, init, input_shape=None, input_data=None, expected_shape=None, training=True,
          expected_dtype=None, input_dtype=None):
    # Multi-input layers take `input_shape={"<call argument>_shape": shape}`, Keras' convention:
    # the harness builds them with `build(<argument>_shape=...)` and calls them with `<argument>=...`.
    return pytest.param(
        dict(module=module, name=name, init=init, input_shape=input_shape, input_data=input_data,
             input_dtype=input_dtype,
             expected_shape=expected_shape, training=training, expected_dtype=expected_dtype),
        id=name,
    )


def _padding_mask():
    mask = np.ones((2, 8, 12), "float32")
    mask[1, :, 9:] = 0.0
    return mask


LAYERS = "keras_vit.layers"
VIT = "keras_vit.models.vit.vit_layers"
TNT = "keras_vit.models.tnt.tnt_layers"
SWIN = "keras_vit.models.swin.swin_layers"
DETR = "keras_vit.models.detr.detr_layers"
CDETR = "keras_vit.models.conditional_detr.conditional_detr_layers"
MAE = "keras_vit.models.mae.mae_layers"
RESNET = "keras_vit.models.resnet.resnet_model"

CASES = [
    _case(LAYERS, "MultiHeadSelfAttention", dict(hidden_dim=8, num_heads=2), (2, 5, 8), expected_shape=(2, 5, 8)),
    _case(LAYERS, "DropPath", dict(rate=0.5, seed=0), (2, 5, 8), expected_shape=(2, 5, 8)),
    _case(LAYERS, "TransformerEncoderBlock", dict(hidden_dim=8, num_heads=2, mlp_dim=16), (2, 5, 8),
          expected_shape=(2, 5, 8)),
    _case(LAYERS, "FrozenBatchNormalization", dict(), (2, 3, 3, 4), expected_shape=(2, 3, 3, 4)),
    _case(LAYERS, "MLP", dict(hidden_dim=16, output_dim=8), (2, 5, 8), expected_shape=(2, 5, 8)),
    _case(LAYERS, "PatchEmbedding", dict(patch_size=4, hidden_dim=8), (2, 8, 8, 3), expected_shape=(2, 4, 8)),
    _case(LAYERS, "PositionEmbedding", dict(grid_size=(2, 2), num_prefix_tokens=1), (2, 5, 8),
          expected_shape=(2, 5, 8)),
    _case(LAYERS, "ImageNormalization", dict(), (2, 4, 4, 3), expected_shape=(2, 4, 4, 3)),
    _case(LAYERS, "ClassToken", dict(), (2, 4, 8), expected_shape=(2, 5, 8)),
    _case(LAYERS, "ClassNames", dict(class_names=["cat", "dog", "bird"]), (2, 3), expected_shape=(2, 3)),
    _case(LAYERS, "ResizeAndCenterCrop", dict(image_size=8, crop_pct=0.875), (2, 12, 16, 3),
          expected_shape=(2, 8, 8, 3)),
    _case(VIT, "PromptTokens", dict(num_prompts=2, num_prefix_tokens=1, patch_area=16), (2, 5, 8),
          expected_shape=(2, 7, 8)),
    _case(TNT, "PixelEmbedding", dict(patch_size=8, inner_dim=4, pixel_stride=4, kernel_size=3), (2, 16, 16, 3),
          expected_shape=(2, 4, 4, 4)),
    _case(TNT, "PixelPositionEmbedding", dict(), (2, 4, 4, 4), expected_shape=(2, 4, 4, 4)),
    _case(TNT, "PixelToPatchProjection", dict(hidden_dim=8), (2, 4, 4, 4), expected_shape=(2, 4, 8)),
    _case(TNT, "TNTAttention", dict(hidden_dim=4, num_heads=2), (2, 4, 4, 4), expected_shape=(2, 4, 4, 4)),
    _case(TNT, "TNTBlock", dict(hidden_dim=8, inner_dim=4, inner_num_heads=2, num_heads=2),
          input_data=(_f32(2, 4, 4, 4), _f32(2, 5, 8)), expected_shape=((2, 4, 4, 4), (2, 5, 8))),
    _case(SWIN, "WindowAttention", dict(hidden_dim=8, num_heads=2, window_size=2), (4, 4, 8),
          expected_shape=(4, 4, 8)),
    _case(SWIN, "SwinBlock", dict(hidden_dim=8, num_heads=2, input_resolution=(4, 4), window_size=2, shift_size=1),
          (2, 4, 4, 8), expected_shape=(2, 4, 4, 8)),
    _case(SWIN, "PatchMerging", dict(hidden_dim=8), (2, 4, 4, 8), expected_shape=(2, 2, 2, 16)),
    _case(DETR, "PaddingMaskResize", dict(),
          input_shape={"pixel_mask_shape": (2, 8, 12), "feature_map_shape": (2, 2, 3, 4)},
          expected_shape=(2, 2, 3), training=_KEYWORD_INPUTS),
    _case(DETR, "SinePositionEmbedding", dict(hidden_dim=8), input_data=_padding_mask(),
          expected_shape=(2, 8, 12, 8)),
    _case(DETR, "DETRAttention", dict(hidden_dim=8, num_heads=2),
          input_shape={"query_shape": (2, 3, 8), "key_shape": (2, 5, 8), "value_shape": (2, 5, 8),
                       "key_mask_shape": (2, 5)},
          expected_shape=(2, 3, 8), training=_KEYWORD_INPUTS),
    _case(DETR, "DETREncoderLayer", dict(hidden_dim=8, num_heads=2, mlp_dim=16, dropout=0.0),
          input_shape={"x_shape": (2, 5, 8), "pos_shape": (2, 5, 8), "padding_mask_shape": (2, 5)},
          expected_shape=(2, 5, 8), training=_KEYWORD_INPUTS),
    _case(DETR, "DETRDecoderLayer", dict(hidden_dim=8, num_heads=2, mlp_dim=16, dropout=0.0),
          input_shape={"tgt_shape": (2, 3, 8), "memory_shape": (2, 5, 8), "pos_shape": (2, 5, 8),
                       "query_pos_shape": (2, 3, 8), "memory_mask_shape": (2, 5)},
          expected_shape=(2, 3, 8), training=_KEYWORD_INPUTS),
    _case(DETR, "ObjectQueries", dict(num_queries=3, hidden_dim=8), (2, 5, 8), expected_shape=(2, 3, 8)),
    _case(DETR, "BoxHead", dict(hidden_dim=8), (2, 3, 8), expected_shape=(2, 3, 4), expected_dtype="float32"),
    _case(DETR, "MLPHead", dict(hidden_dim=8, output_dim=2, num_layers=2), (2, 3, 8), expected_shape=(2, 3, 2)),
    _case(CDETR, "PointSineEmbedding", dict(hidden_dim=8), input_data=np.random.default_rng(0).uniform(
          size=(2, 3, 2)).astype("float32"), expected_shape=(2, 3, 8)),
    _case(CDETR, "ConditionalSelfAttention", dict(hidden_dim=8, num_heads=2),
          input_shape={"tgt_shape": (2, 3, 8), "query_pos_shape": (2, 3, 8)},
          expected_shape=(2, 3, 8), training=_KEYWORD_INPUTS),
    _case(CDETR, "ConditionalCrossAttention", dict(hidden_dim=8, num_heads=2, is_first=True),
          input_shape={"tgt_shape": (2, 3, 8), "memory_shape": (2, 5, 8), "pos_shape": (2, 5, 8),
                       "query_sine_embed_shape": (2, 3, 8), "memory_mask_shape": (2, 5),
                       "query_pos_shape": (2, 3, 8)},
          expected_shape=(2, 3, 8), training=_KEYWORD_INPUTS),
    _case(CDETR, "ConditionalDETRDecoderLayer", dict(hidden_dim=8, num_heads=2, mlp_dim=16, dropout=0.0),
          input_shape={"tgt_shape": (2, 3, 8), "memory_shape": (2, 5, 8), "pos_shape": (2, 5, 8),
                       "query_pos_shape": (2, 3, 8), "query_sine_embed_shape": (2, 3, 8),
                       "memory_mask_shape": (2, 5)},
          expected_shape=(2, 3, 8), training=_KEYWORD_INPUTS),
    _case(MAE, "RandomPatchMasking", dict(mask_ratio=0.5, seed=0), (2, 4, 8),
          expected_shape=((2, 2, 8), (2, 4), (2, 4))),
    _case(MAE, "MAEDecoder", dict(grid_size=(4, 4), patch_size=2, hidden_dim=8, depth=1, num_heads=2),
          input_shape={"latent_shape": (2, 5, 16), "ids_restore_shape": (2, 16)},
          input_dtype={"latent_shape": "float32", "ids_restore_shape": "int32"},
          expected_shape=(2, 16, 12), training=_KEYWORD_INPUTS),
    _case(RESNET, "ResNetBottleneck", dict(filters=8, bottleneck_filters=4, stride=2), (2, 6, 6, 4),
          expected_shape=(2, 3, 3, 8)),
]


def _public_layer_classes(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    found = set()
    for name in names:
        obj = getattr(module, name, None)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and obj.__module__.startswith("keras_vit"):
            if module_name == LAYERS or obj.__module__ == module_name:
                found.add((module_name, name))
    return found


def test_every_public_layer_goes_through_the_harness():
    listed = {(case.values[0]["module"], case.values[0]["name"]) for case in CASES}
    public = set().union(*(_public_layer_classes(m) for m in LAYER_MODULES))
    assert public - listed == set(), "public layers the harness does not run; add a case to CASES"
    assert listed - public == set(), "cases for layers that are not public (renamed or removed?)"


class _Harness(TestCase):
    def runTest(self):  # unittest needs one to build an instance
        pass


@pytest.mark.parametrize("case", CASES)
def test_layer_harness(case):
    layer_cls = getattr(importlib.import_module(case["module"]), case["name"])
    training = case["training"]
    # Keyword-input layers cannot go through the harness' training model; the reason is the string.
    run_training_check = training is True
    _Harness().run_layer_test(
        layer_cls,
        init_kwargs=case["init"],
        input_shape=case["input_shape"],
        input_data=case["input_data"],
        input_dtype=case["input_dtype"],
        expected_output_shape=case["expected_shape"],
        expected_output_dtype=case["expected_dtype"],
        run_training_check=run_training_check,
    )
