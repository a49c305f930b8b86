"""FusedBiasDense (the bias add inside the matmul on PyTorch) equals keras.layers.Dense on every
backend, and `dropped` (the skipped identity Dropout/DropPath calls) changes no result."""

import os
import tempfile

import keras
import numpy as np
import pytest

from conftest import to_numpy
from keras_vit.layers import FusedBiasDense, MLP, TransformerEncoderBlock
from keras_vit.layers.drop_path import DropPath, dropped

X = np.random.default_rng(0).normal(size=(2, 5, 12)).astype("float32")


def _pair(use_bias=True, activation=None, dtype=None):
    fused = FusedBiasDense(7, use_bias=use_bias, activation=activation, dtype=dtype, name="fc")
    plain = keras.layers.Dense(7, use_bias=use_bias, activation=activation, dtype=dtype, name="fc")
    fused.build(X.shape)
    plain.build(X.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype("float32") for w in plain.get_weights()]
    fused.set_weights(weights)
    plain.set_weights(weights)
    return fused, plain


@pytest.mark.parametrize("use_bias, activation", [(True, None), (False, None), (True, "relu")])
def test_equals_keras_dense_in_float32(use_bias, activation):
    fused, plain = _pair(use_bias, activation)
    np.testing.assert_allclose(to_numpy(fused(X)), to_numpy(plain(X)), rtol=1e-6, atol=1e-6)
    assert [v.path for v in fused.weights] == [v.path for v in plain.weights]
    assert fused.get_config() == plain.get_config()


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_other_dtypes_compute_exactly_as_keras_dense(policy):
    fused, plain = _pair(dtype=policy)
    np.testing.assert_array_equal(to_numpy(fused(X)).astype("float32"), to_numpy(plain(X)).astype("float32"))


def test_lora_takes_keras_dense_path():
    fused, plain = _pair()
    for layer in (fused, plain):
        layer.enable_lora(2, b_initializer="ones")  # nonzero B: the LoRA term shows in the output
    fused.set_weights(plain.get_weights())
    np.testing.assert_allclose(to_numpy(fused(X)), to_numpy(plain(X)), rtol=1e-6, atol=1e-6)


def test_symbolic_use_and_keras_file_round_trip():
    inputs = keras.Input((5, 12))
    model = keras.Model(inputs, FusedBiasDense(3, name="fc")(inputs))
    expected = to_numpy(model(X))
    path = os.path.join(tempfile.mkdtemp(), "fused.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("fc"), FusedBiasDense)
    np.testing.assert_allclose(to_numpy(loaded(X)), expected, atol=1e-6)


def test_dropped_is_the_layer_call_where_it_is_not_the_identity():
    drop = DropPath(0.5, seed=0)
    assert drop.built
    assert dropped(drop, X, training=False) is X
    assert dropped(DropPath(0.0), X, training=True) is X
    assert dropped(keras.layers.Dropout(0.0), X, training=True) is X
    trained = to_numpy(dropped(DropPath(0.5, seed=0), X, training=True))
    np.testing.assert_array_equal(trained, to_numpy(DropPath(0.5, seed=0)(X, training=True)))


def test_block_and_mlp_in_training_still_drop():
    block = TransformerEncoderBlock(hidden_dim=12, num_heads=2, mlp_dim=24, dropout=0.5, drop_path_rate=0.5, seed=0)
    inference = to_numpy(block(X, training=False))
    assert not np.allclose(to_numpy(block(X, training=True)), inference)
    mlp = MLP(hidden_dim=24, output_dim=12, dropout=0.5)
    assert not np.allclose(to_numpy(mlp(X, training=True)), to_numpy(mlp(X, training=False)))


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the fused call exists on the PyTorch backend only")
def test_torch_float32_call_does_not_take_the_keras_dense_path(monkeypatch):
    fused, plain = _pair()
    expected = to_numpy(plain(X))
    monkeypatch.setattr(keras.layers.Dense, "call", lambda *args, **kwargs: pytest.fail("took Dense.call"))
    np.testing.assert_allclose(to_numpy(fused(X)), expected, rtol=1e-6, atol=1e-6)
