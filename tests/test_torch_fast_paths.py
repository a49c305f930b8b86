"""The inference fast paths change no result: torch's attention kernel called on strided views
(PyTorch backend) equals `keras.ops.dot_product_attention`, and `dropped` (no layer call for an
identity Dropout/DropPath) equals calling the layer."""

import keras
import numpy as np
import pytest

from conftest import to_numpy
from keras_vit.layers import MLP, TransformerEncoderBlock
from keras_vit.layers.attention import _torch_attention, scaled_dot_product_attention
from keras_vit.layers.drop_path import DropPath, dropped

X = np.random.default_rng(0).normal(size=(2, 5, 12)).astype("float32")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the direct kernel call exists on PyTorch only")
@pytest.mark.parametrize("bias_shape", [None, (1, 3, 7, 7), (2, 3, 7, 7)])
def test_torch_attention_on_views_equals_keras_dot_product_attention(bias_shape):
    rng = np.random.default_rng(2)
    qkv = keras.ops.convert_to_tensor(rng.normal(size=(2, 7, 3 * 3 * 4)).astype("float32"))
    # Strided views of one fused projection, as MultiHeadSelfAttention and Swin pass them.
    q, k, v = (keras.ops.reshape(part, (2, 7, 3, 4)) for part in keras.ops.split(qkv, 3, axis=-1))
    bias = None if bias_shape is None else keras.ops.convert_to_tensor(rng.normal(size=bias_shape).astype("float32"))
    expected = keras.ops.dot_product_attention(q, k, v, bias=bias, scale=0.5)
    direct = _torch_attention(q, k, v, bias, 0.5)
    np.testing.assert_array_equal(to_numpy(direct), to_numpy(expected))
    # Merging the heads of the kernel's output reads it in place: the output is already token-major.
    assert keras.ops.reshape(direct, (2, 7, 12)).data_ptr() == direct.data_ptr()


def test_scaled_dot_product_attention_fused_equals_explicit_on_views():
    rng = np.random.default_rng(3)
    qkv = rng.normal(size=(2, 6, 3 * 2 * 4)).astype("float32")
    q, k, v = (keras.ops.reshape(part, (2, 6, 2, 4)) for part in keras.ops.split(qkv, 3, axis=-1))
    fused = scaled_dot_product_attention(q, k, v, scale=0.5)
    explicit, _ = scaled_dot_product_attention(q, k, v, scale=0.5, return_scores=True)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), atol=1e-6)


def test_dropped_skips_only_identity_calls():
    drop = DropPath(0.5, seed=0)
    assert dropped(drop, X, training=False) is X
    assert dropped(DropPath(0.0), X, training=True) is X
    assert dropped(keras.layers.Dropout(0.0), X, training=True) is X
    trained = to_numpy(dropped(DropPath(0.5, seed=0), X, training=True))
    np.testing.assert_array_equal(trained, to_numpy(DropPath(0.5, seed=0)(X, training=True)))


def test_mlp_still_drops_in_training():
    mlp = MLP(hidden_dim=24, output_dim=12, dropout=0.5)
    assert not np.allclose(to_numpy(mlp(X, training=True)), to_numpy(mlp(X, training=False)))


def test_block_calls_its_drop_path_only_in_training():
    block = TransformerEncoderBlock(hidden_dim=12, num_heads=2, mlp_dim=24, drop_path_rate=0.5, seed=0)
    block.build(X.shape)
    calls = []
    block.drop_path.call = lambda inputs, training=None: calls.append(training) or inputs  # identity, counted
    block(X, training=False)
    assert calls == []
    block(X, training=True)
    assert calls == [True, True]
