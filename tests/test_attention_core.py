"""The attention core every family calls: fused and explicit paths, biases, boolean masks, dtypes."""

import warnings

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from keras_vit.layers.attention import _fused_path_applies, scaled_dot_product_attention
from keras_vit.models.detr import DETRAttention
from keras_vit.models.swin import WindowAttention

RNG = np.random.default_rng(0)
Q = RNG.normal(size=(2, 7, 3, 8)).astype("float32")
K = RNG.normal(size=(2, 9, 3, 8)).astype("float32")
V = RNG.normal(size=(2, 9, 3, 8)).astype("float32")
BIAS = RNG.normal(size=(2, 3, 7, 9)).astype("float32")
# Image 0 has keys 2, 5 and 8 padded; image 1 has every key padded.
KEY_MASK = np.ones((2, 1, 1, 9), bool)
KEY_MASK[0, ..., [2, 5, 8]] = False
KEY_MASK[1] = False


def reference(q, k, v, scale, bias=None, mask=None):
    """softmax(scale q k^T + bias) v in float64, masked keys left out, all-masked rows zero."""
    logits = np.einsum("bqhd,bkhd->bhqk", q.astype("float64"), k.astype("float64")) * scale
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        mask = np.broadcast_to(mask, logits.shape)
        logits = np.where(mask, logits, -np.inf)
    peak = np.max(logits, axis=-1, keepdims=True)
    weights = np.exp(logits - np.where(np.isfinite(peak), peak, 0.0))
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-300)
    return np.einsum("bhqk,bkhd->bqhd", weights, v.astype("float64")), weights


@pytest.mark.parametrize("case", ["plain", "bias", "mask"])
def test_fused_and_explicit_paths_agree_with_reference(case):
    kwargs = {"bias": BIAS} if case == "bias" else {"mask": KEY_MASK} if case == "mask" else {}
    fused = to_numpy(scaled_dot_product_attention(Q, K, V, 0.35, **kwargs))
    explicit, scores = scaled_dot_product_attention(Q, K, V, 0.35, return_scores=True, **kwargs)
    expected, expected_scores = reference(Q, K, V, 0.35, **kwargs)
    # The fused path runs here except for masks on torch (see _fused_path_applies).
    mask = keras.ops.convert_to_tensor(KEY_MASK) if case == "mask" else None
    assert _fused_path_applies(keras.ops.convert_to_tensor(Q), mask, False, False) == (
        case != "mask" or BACKEND != "torch"
    )
    np.testing.assert_allclose(fused, to_numpy(explicit), atol=1e-5)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), expected_scores, atol=1e-6)


def test_scores_sum_to_one_and_all_masked_rows_give_zeros():
    out, scores = scaled_dot_product_attention(Q, K, V, 0.35, bias=BIAS, mask=KEY_MASK, return_scores=True)
    scores, out = to_numpy(scores), to_numpy(out)
    np.testing.assert_allclose(scores[0].sum(-1), 1.0, atol=1e-6)
    assert np.all(scores[0][..., [2, 5, 8]] == 0.0)
    # No key to attend to: zero weights and a zero output (transformers' DETR with torch SDPA), not NaN.
    assert np.all(scores[1] == 0.0) and np.all(out[1] == 0.0)
    assert np.all(to_numpy(scaled_dot_product_attention(Q, K, V, 0.35, mask=KEY_MASK))[1] == 0.0)


@pytest.mark.parametrize("path", ["fused", "explicit"])
def test_masked_keys_get_zero_weight_however_large_the_logits(path):
    """Masked keys whose logits exceed the real keys' by 1e10: an additive -1e9 mask would let them win."""
    q = np.zeros((1, 2, 1, 4), "float32")
    q[..., 0] = 1e5
    k = RNG.normal(size=(1, 6, 1, 4)).astype("float32")
    k[0, :, 0, 0] = [1e5, 0.0, 2e5, -1e5, 3e5, 1.0]  # logits up to 3e10
    v = RNG.normal(size=(1, 6, 1, 4)).astype("float32")
    mask = np.array([True, True, False, True, False, True]).reshape(1, 1, 1, 6)  # the largest logits masked
    expected, _ = reference(q, k, v, 1.0, mask=mask)
    if path == "explicit":
        out, scores = scaled_dot_product_attention(q, k, v, 1.0, mask=mask, return_scores=True)
        scores = to_numpy(scores)
        assert np.all(scores[..., [2, 4]] == 0.0)
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)
    else:
        out = scaled_dot_product_attention(q, k, v, 1.0, mask=mask)
    np.testing.assert_allclose(to_numpy(out), expected, atol=1e-5)


def test_detr_attention_ignores_padded_keys_and_values():
    attn = DETRAttention(hidden_dim=16, num_heads=4)
    query = RNG.normal(size=(2, 3, 16)).astype("float32")
    memory = RNG.normal(size=(2, 5, 16)).astype("float32")
    key_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]], "float32")
    out = to_numpy(attn(query, memory, memory, key_mask))
    # Padded positions replaced by huge values change nothing.
    noisy = np.where(key_mask[..., None] > 0, memory, 1e6).astype("float32")
    np.testing.assert_allclose(to_numpy(attn(query, noisy, noisy, key_mask)), out, atol=1e-5)


def test_mask_of_wrong_rank_is_refused_with_the_shape_to_use():
    with pytest.raises(ValueError, match=r"\(batch, 1, 1, keys\)"):
        scaled_dot_product_attention(Q, K, V, 0.35, mask=np.ones((2, 9), bool))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_follows_the_float32_softmax_rule(dtype):
    q, k, v = (keras.ops.cast(t, dtype) for t in (Q, K, V))
    out, scores = scaled_dot_product_attention(q, k, v, 0.35, bias=BIAS, return_scores=True)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    assert keras.backend.standardize_dtype(scores.dtype) == dtype
    fused = scaled_dot_product_attention(q, k, v, 0.35, bias=BIAS)
    assert keras.backend.standardize_dtype(fused.dtype) == dtype
    expected, _ = reference(*(to_numpy(keras.ops.cast(t, "float32")) for t in (q, k, v)), 0.35, bias=BIAS)
    tolerance = 2e-2 if dtype == "bfloat16" else 5e-3
    np.testing.assert_allclose(to_numpy(keras.ops.cast(out, "float32")), expected, atol=tolerance)
    np.testing.assert_allclose(to_numpy(keras.ops.cast(fused, "float32")), expected, atol=tolerance)


def test_jax_float16_gradient():
    if BACKEND != "jax":
        pytest.skip("JAX-only: XLA:CPU has no float16 -> float32 dot for the fused path's backward pass")
    import jax
    import jax.numpy as jnp

    q, k, v = (jnp.asarray(t, jnp.float16) for t in (Q, K, V))

    def loss(q, k, v):
        return jnp.sum(scaled_dot_product_attention(q, k, v, 0.35).astype(jnp.float32) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    expected = jax.grad(lambda *t: jnp.sum(scaled_dot_product_attention(*t, 0.35) ** 2), argnums=(0, 1, 2))(
        jnp.asarray(Q), jnp.asarray(K), jnp.asarray(V)
    )
    for g, e in zip(grads, expected):
        assert g.dtype == jnp.float16
        np.testing.assert_allclose(np.asarray(g, "float32"), np.asarray(e), atol=5e-2, rtol=2e-2)


def test_window_attention_hidden_dim_and_the_deprecated_dim():
    x = RNG.normal(size=(4, 16, 32)).astype("float32")
    attn = WindowAttention(hidden_dim=32, num_heads=2, window_size=4)
    out = to_numpy(attn(x))
    config = attn.get_config()
    assert config["hidden_dim"] == 32 and "dim" not in config and attn.dim == 32
    with pytest.warns(DeprecationWarning, match="hidden_dim"):
        old_call = WindowAttention(dim=32, num_heads=2, window_size=4)
    old_call.build(x.shape)
    old_call.set_weights(attn.get_weights())
    np.testing.assert_allclose(to_numpy(old_call(x)), out, atol=1e-6)
    # A config saved before the rename loads without warning the user.
    old_config = {k: v for k, v in config.items() if k != "hidden_dim"} | {"dim": 32}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        restored = WindowAttention.from_config(old_config)
    assert restored.hidden_dim == 32
    with pytest.raises(ValueError, match="not both"):
        WindowAttention(hidden_dim=32, dim=32, num_heads=2, window_size=4)
