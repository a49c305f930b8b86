"""`residual_gradient_boundary`: an identity whose gradient XLA:CPU computes once (see its module).

The speed-up it exists for is measured by benchmarks/throughput.py, not here; these tests check
that every family's block output passes through it, that it changes no value and no gradient,
and that inf/NaN gradients pass unchanged.
"""

import re

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.layers import gradient_boundary
from keras_vit.layers.gradient_boundary import residual_gradient_boundary
from keras_vit.models.swin import swin_layers
from keras_vit.models.tnt import tnt_layers
from keras_vit.layers import encoder_block


def _jax_cpu():
    if keras.backend.backend() != "jax":
        pytest.skip("the boundary acts on the JAX backend only (XLA:CPU's fusion); elsewhere it returns its "
                    "input, which test_identity_on_every_backend checks")
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("the boundary applies on JAX's CPU platform only")
    return jax


def test_identity_on_every_backend():
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(residual_gradient_boundary(x)), x)


def assert_traced(seen, expected):
    # A backend may trace the model more than once (JAX: shape inference, then the compiled call).
    assert seen and len(seen) % len(expected) == 0, seen
    assert seen == expected * (len(seen) // len(expected)), seen


def test_every_family_block_output_passes_through_it(monkeypatch):
    seen = []

    def counting(x):
        seen.append(tuple(x.shape[1:]))
        return x

    for module in (encoder_block, swin_layers, tnt_layers):
        monkeypatch.setattr(module, "residual_gradient_boundary", counting)
    images = np.zeros((1, 16, 16, 3), "float32")
    # Run (compiled on JAX): building alone uses the blocks' compute_output_shape, not call().
    keras_vit.VisionTransformer(image_size=16, patch_size=4, hidden_dim=16, depth=3, num_heads=2,
                                mlp_dim=32).predict_on_batch(images)
    assert_traced(seen, [(17, 16)] * 3)
    seen.clear()
    keras_vit.SwinTransformer(image_size=16, patch_size=2, window_size=2, hidden_dim=8, depths=(2, 1),
                              num_heads=(1, 2)).predict_on_batch(images)
    assert_traced(seen, [(8, 8, 8)] * 2 + [(4, 4, 16)])
    seen.clear()
    keras_vit.TNT(image_size=16, patch_size=8, hidden_dim=16, inner_dim=8, depth=2, num_heads=2,
                  inner_num_heads=1).predict_on_batch(images)
    assert_traced(seen, [(4, 4, 8), (5, 16)] * 2)  # pixels and patches of each of the 2 blocks


def _conditionals(hlo):
    return len(re.findall(r"= [^=\n]* conditional\(", hlo))


def test_gradients_unchanged_and_conditional_in_compiled_backward(monkeypatch):
    jax = _jax_cpu()
    model = keras_vit.VisionTransformer(image_size=16, patch_size=4, hidden_dim=16, depth=3, num_heads=2, mlp_dim=32,
                                        num_classes=3)
    images = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype("float32")
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_and_grads():
        def loss(trainable):
            logits, _ = model.stateless_call(trainable, non_trainable, images)
            return keras.ops.sum(keras.ops.square(logits))

        grad = jax.jit(jax.value_and_grad(loss))
        value, grads = grad(trainable)
        return float(value), [np.asarray(g) for g in grads], grad.lower(trainable).compile().as_text()

    value, grads, hlo = loss_and_grads()
    with monkeypatch.context() as patch:
        patch.setattr(gradient_boundary, "_applies", lambda: False)
        plain_value, plain_grads, plain_hlo = loss_and_grads()
    # XLA may drop the last block's (its gradient comes straight from the head), never the others.
    assert _conditionals(hlo) - _conditionals(plain_hlo) >= 2
    assert value == plain_value  # the forward is untouched
    for got, expected in zip(grads, plain_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_inf_and_nan_gradients_pass_unchanged():
    jax = _jax_cpu()
    import jax.numpy as jnp

    upstream = jnp.array([[np.nan, 1.0, -0.0], [np.inf, -np.inf, 2.0]], "float32")
    for cotangent in (upstream, upstream[::-1], jnp.abs(upstream[:, 1:])):
        _, pullback = jax.vjp(residual_gradient_boundary, jnp.ones(cotangent.shape, "float32"))
        (got,) = pullback(cotangent)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(cotangent))
