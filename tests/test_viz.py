"""Attention maps equal a hand computation from the block's weights; rollout shapes."""

import numpy as np

import keras_vit
from conftest import fixture_path, to_numpy
from keras_vit.viz import attention_maps, attention_rollout


def test_attention_maps_equal_softmax_of_scaled_qk():
    model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10, weights=fixture_path("vit_tiny.safetensors"))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    maps = attention_maps(model, images)
    assert [m.shape for m in maps] == [(2, 3, 17, 17)] * 2
    # Recompute block 0 by hand from its input tokens and its qkv weights.
    import keras

    tokens = to_numpy(keras.Model(model.inputs, model.get_layer("block_0").input)(images))
    block = model.get_layer("block_0")
    mean, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    normed = (tokens - mean) / np.sqrt(var + 1e-6) * to_numpy(block.norm1.gamma) + to_numpy(block.norm1.beta)
    qkv = normed @ to_numpy(block.attn.qkv.kernel) + to_numpy(block.attn.qkv.bias)
    q, k, _ = np.split(qkv.reshape(2, 17, 3, 3, 16), 3, axis=2)
    logits = np.einsum("bnhd,bmhd->bhnm", q[:, :, 0], k[:, :, 0]) / 4.0
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(maps[0], expected, atol=1e-5)
    rollout = attention_rollout(maps, grid_size=(4, 4))
    assert rollout.shape == (2, 4, 4) and np.isclose(rollout.max(), 1.0)
