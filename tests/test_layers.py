"""Foundation layers: serialization, symbolic and eager use, mixed precision, numerics."""

import keras
import numpy as np
import pytest

from conftest import to_numpy, torch
from keras_vit import layers
from keras_vit.layers.resampling import resize_grid

LAYER_CASES = [
    (layers.PatchEmbedding, dict(patch_size=8, hidden_dim=16), (2, 32, 24, 3)),
    (layers.ClassToken, dict(), (2, 12, 16)),
    (layers.PositionEmbedding, dict(grid_size=(4, 3), num_prefix_tokens=1), (2, 13, 16)),
    (layers.MultiHeadSelfAttention, dict(hidden_dim=16, num_heads=2), (2, 13, 16)),
    (layers.MLP, dict(hidden_dim=32, output_dim=16), (2, 13, 16)),
    (layers.DropPath, dict(rate=0.2, seed=1), (2, 13, 16)),
    (layers.TransformerEncoderBlock, dict(hidden_dim=16, num_heads=2, mlp_dim=32, drop_path_rate=0.1, seed=3), (2, 13, 16)),
    (layers.ImageNormalization, dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), (2, 8, 8, 3)),
]


@pytest.mark.parametrize("cls, kwargs, shape", LAYER_CASES, ids=[c[0].__name__ for c in LAYER_CASES])
def test_layer_symbolic_eager_and_config_round_trip(cls, kwargs, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = cls(**kwargs)
    eager = to_numpy(layer(x))
    symbolic = layer(keras.Input(shape[1:]))
    assert tuple(symbolic.shape[1:]) == eager.shape[1:]
    clone = cls.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), eager, atol=1e-6)
    # Registered for .keras loading under the package name.
    assert keras.saving.get_registered_object(f"keras_vit>{cls.__name__}") is cls


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls, kwargs, shape", LAYER_CASES, ids=[c[0].__name__ for c in LAYER_CASES])
def test_layer_keeps_float32_variables_under_mixed_precision(cls, kwargs, shape, policy):
    layer = cls(dtype=policy, **kwargs)
    y = layer(np.ones(shape, "float32"))
    assert all(v.dtype == "float32" for v in layer.weights), [(v.path, v.dtype) for v in layer.weights]
    expected = "float32" if cls is layers.ImageNormalization else policy.split("_")[1]
    if cls is not layers.ImageNormalization:
        assert keras.backend.standardize_dtype(y.dtype) == expected


def test_drop_path_is_identity_at_inference_and_seeded_in_training():
    x = np.ones((64, 4, 8), "float32")
    a = layers.DropPath(0.5, seed=7)
    b = layers.DropPath(0.5, seed=7)
    np.testing.assert_array_equal(to_numpy(a(x, training=False)), x)
    ya, yb = to_numpy(a(x, training=True)), to_numpy(b(x, training=True))
    np.testing.assert_array_equal(ya, yb)
    kept = ya[:, 0, 0] != 0
    assert 0 < kept.sum() < 64  # some samples dropped, some kept
    np.testing.assert_allclose(ya[kept], 2.0)  # survivors scaled by 1 / (1 - rate)


def test_fused_attention_equals_explicit_path():
    attn = layers.MultiHeadSelfAttention(hidden_dim=24, num_heads=3)
    x = np.random.default_rng(0).normal(size=(2, 10, 24)).astype("float32")
    fused = to_numpy(attn(x))
    explicit, scores = attn(x, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(explicit), fused, atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=1e-5)


def test_patch_embedding_rejects_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        layers.PatchEmbedding(8, 16)(np.zeros((1, 30, 32, 3), "float32"))


@pytest.mark.parametrize(
    "method, mode, antialias",
    [("bicubic_antialias", "bicubic", True), ("bilinear", "bilinear", False), ("bicubic", "bicubic", False)],
)
@pytest.mark.parametrize("new_size", [(6, 6), (3, 5), (7, 2)])
def test_grid_resize_equals_torch_interpolate(method, mode, antialias, new_size):
    if torch is None:
        pytest.skip("torch is the reference for this resize and is not installed")
    grid = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(grid.transpose(2, 0, 1)[None]), size=new_size, mode=mode,
        align_corners=False, antialias=antialias,
    )[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(resize_grid(grid, new_size, method), expected, atol=1e-5)
