"""Damaged checkpoints: each gets one clear error that names what is wrong, and the model is unchanged."""

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import keras_vit
from conftest import fixture_path
from keras_vit.models.vit.convert_vit import convert_vit
from keras_vit.weights import CheckpointFormatError, WeightsMismatchError, load_weights

TINY = dict(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=192, num_classes=10)


@pytest.fixture(scope="module")
def state():
    return load_file(fixture_path("vit_tiny.safetensors"))


def _snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def test_a_timm_checkpoint_missing_one_key_names_the_key(tmp_path, state):
    path = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in state.items() if k != "blocks.0.attn.qkv.weight"}, str(path))
    model = keras_vit.VisionTransformer(**TINY)
    before = _snapshot(model)
    with pytest.raises(WeightsMismatchError, match=r"lacks: blocks\.0\.attn\.qkv\.weight"):
        load_weights(model, str(path), convert_vit, "vit")
    for old, new in zip(before, _snapshot(model)):
        np.testing.assert_array_equal(old, new)


def test_non_finite_tensors_are_refused_with_their_names(tmp_path, state):
    path = tmp_path / "nan.safetensors"
    broken = dict(state)
    broken["blocks.1.mlp.fc2.weight"] = np.full_like(state["blocks.1.mlp.fc2.weight"], np.nan)
    broken["pos_embed"] = state["pos_embed"].copy()
    broken["pos_embed"][0, 0, 0] = np.inf
    save_file(broken, str(path))
    model = keras_vit.VisionTransformer(**TINY)
    before = _snapshot(model)
    with pytest.raises(CheckpointFormatError, match=r"non-finite .* 2 tensors: blocks\.1\.mlp\.fc2\.weight, pos_embed"):
        load_weights(model, str(path), convert_vit, "vit")
    for old, new in zip(before, _snapshot(model)):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(CheckpointFormatError, match="non-finite"):
        keras_vit.VisionTransformer(**TINY, weights=str(path))
    # For debugging, on request: the values load as they are.
    load_weights(model, str(path), convert_vit, "vit", allow_non_finite=True)
    assert np.isnan(keras.ops.convert_to_numpy(model.get_layer("block_1").mlp.fc2.kernel)).all()
