"""keras.applications conventions on the named builders: input_shape=None, input_tensor,
classes, one pooling vocabulary (None, "avg", "max", "token") with the old "gap" still working."""

import warnings

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy

SMALL_VIT = dict(input_shape=(32, 32, 3), hidden_dim=48, depth=1, num_heads=3, mlp_dim=96)


def test_input_shape_none_is_the_canonical_size():
    # compute_output_shape only: no 224x224 forward pass.
    assert keras_vit.ViTTi16(depth=1).input_shape == (None, 224, 224, 3)


@pytest.mark.parametrize("builder", [keras_vit.SwinT, keras_vit.TNTS16])  # ViT/DeiT: tests/test_dynamic_image_size.py
def test_any_size_input_is_one_clear_error(builder):
    with pytest.raises(ValueError, match=r"needs a fixed input size.*input_shape=\(height, width, 3\)"):
        builder(input_shape=(None, None, 3))


def test_classes_and_input_tensor():
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(inputs)
    model = keras_vit.DeiTTi16(input_tensor=scaled, classes=7, **{k: v for k, v in SMALL_VIT.items() if k != "input_shape"})
    assert model.inputs[0] is inputs and model.output_shape == (None, 7)
    with pytest.raises(TypeError, match="num_classes or classes"):
        keras_vit.ViTTi16(num_classes=5, classes=7, **SMALL_VIT)


def test_pooling_words_are_the_same_in_every_family():
    images = np.zeros((1, 32, 32, 3), "float32")
    for pooling in ("avg", "max", "token"):
        vit = keras_vit.ViTTi16(pooling=pooling, include_top=False, **SMALL_VIT)
        tnt = keras_vit.TNTS16(input_shape=(32, 32, 3), depth=1, pooling=pooling, include_top=False)
        assert vit.output_shape == (None, 48) and tnt.output_shape == (None, 384)
    for pooling in ("avg", "max"):
        swin = keras_vit.SwinT(input_shape=(64, 64, 3), depths=(1, 1, 1, 1), window_size=2, pooling=pooling,
                               include_top=False)
        assert swin.output_shape == (None, 768)
    with pytest.raises(ValueError, match="no class token"):
        keras_vit.SwinT(input_shape=(64, 64, 3), window_size=2, pooling="token")
    vit = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, pooling="max", include_top=False)
    tokens = keras.Model(vit.input, vit.get_layer("block_0").output)(images)
    expected = to_numpy(vit.get_layer("fc_norm")(keras.ops.max(tokens[:, 1:], axis=1)))
    np.testing.assert_allclose(to_numpy(vit(images)), expected, atol=1e-6)


def test_the_old_word_gap_warns_at_the_users_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras_vit.ViTTi16(pooling="gap", **SMALL_VIT)
        generic = keras_vit.TNT(image_size=32, hidden_dim=64, inner_dim=16, depth=1, num_heads=4, pooling="gap")
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning) and "'gap'" in str(w.message)]
    assert len(deprecations) == 2 and all(w.filename == __file__ for w in deprecations)
    assert model.get_layer("fc_norm") is not None and generic.get_layer("gap") is not None
