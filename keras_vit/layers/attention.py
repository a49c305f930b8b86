"""The attention core every family calls, and ViT's multi-head self-attention.

Heads attend in one of two entry points: `scaled_dot_product_attention` on
tokens-first (batch, tokens, heads, head_dim) tensors (ViT, DeiT, TNT, DETR), with
the fused `keras.ops.dot_product_attention` where it applies, and
`heads_first_attention` on heads-first tensors (Swin's many small windows, as
batched matmuls). Both share one explicit path (`_explicit_attention`), which also
returns the softmax weights and holds the one softmax dtype rule, additive biases
and boolean masks. Each family's attention layer keeps only its projections and
its bias or mask (ViT: none; Swin: relative position bias and shifted-window mask;
DETR: key padding mask; TNT: none, with separate qk and v projections)."""

import contextlib
import threading

import keras
import numpy as np
from keras import ops

from keras_vit.layers.drop_path import dropped

# Stands in for the logits of masked keys in the explicit path (selected with `where`, never added):
# softmax gives such a key exactly 0 weight as long as one key of the row is real, whatever the logits.
_MASKED_LOGIT = float(np.finfo("float32").min)


_RECORDING = threading.local()


@contextlib.contextmanager
def recorded_attention():
    """Within the block, every attention layer that runs appends `(layer, weights)` to the
    list this yields: its softmax weights (batch, heads, queries, keys), before dropout.

    For pictures of attention (`keras_vit.viz`). Call the model directly (`model(x)`,
    not `predict`) so the layers run eagerly and the weights are concrete arrays.
    Outside the block nothing is recorded and every layer takes its usual (fused) path.

    Example:
    >>> import numpy as np
    >>> attn = MultiHeadSelfAttention(hidden_dim=8, num_heads=2)
    >>> with recorded_attention() as records:
    ...     _ = attn(np.zeros((1, 5, 8), "float32"))
    >>> records[0][0] is attn, tuple(records[0][1].shape)
    (True, (1, 2, 5, 5))
    """
    previous = getattr(_RECORDING, "records", None)
    records = []
    _RECORDING.records = records
    try:
        yield records
    finally:
        _RECORDING.records = previous


def attention_record():
    """The list `recorded_attention()` is filling in this thread, or None outside it.

    Attention layers ask for the weights when it is not None and append `(self, weights)`.

    Example:
    >>> attention_record() is None
    True
    """
    return getattr(_RECORDING, "records", None)


def _active_dropout(dropout, training):
    """`dropout` where it changes the weights (training, rate > 0), else None: where None, both entry points
    skip the layer call and may take a fused kernel."""
    return dropout if training and dropout is not None and getattr(dropout, "rate", 0.0) > 0 else None


def _fused_path_applies(query, mask, dropout_active, return_scores):
    """Whether `keras.ops.dot_product_attention` can run this call and give what the explicit path gives."""
    if return_scores or dropout_active:
        return False  # the fused kernels return no weights and apply no dropout to them
    backend = keras.backend.backend()
    dtype = keras.backend.standardize_dtype(query.dtype)
    if backend == "jax" and dtype == "float16":
        import jax  # only to ask the platform; nothing runs through it

        if jax.default_backend() == "cpu":
            # XLA:CPU has no float16 x float16 -> float32 dot_general, which the backward pass of JAX's fused
            # attention needs ("F16_F16_F32 not supported by dot_general on CPU"): mixed_float16 training
            # on JAX CPU would fail. The explicit path computes the same thing with supported dots.
            return False
    if mask is not None and backend == "torch":
        # Keras' torch implementation turns a boolean mask into an added finite -0.7 * max(dtype), which
        # large float16 logits can outweigh, and ignores the mask when a bias is given; JAX's and
        # TensorFlow's select with `where`, as the explicit path does.
        return False
    return True


def _torch_attention(query, key, value, bias, scale):
    """torch's fused attention on (B, N, heads, head_dim) views, as `keras.ops.dot_product_attention` runs it.

    An exception to "only keras.ops inside call()", for speed only: Keras' PyTorch implementation
    makes q, k and v contiguous in (B, heads, N, head_dim) before the kernel on CPU, three full
    copies per layer (36 of a ViT-B/16 forward), although the kernel reads strided inputs; and the
    kernel's output, transposed back, is already (B, N, heads, head_dim) in memory, so the reshape
    that merges the heads copies nothing. Same kernel, same arguments: same results.
    """
    import torch

    swapped = [torch.transpose(tensor, 1, 2) for tensor in (query, key, value)]
    return torch.transpose(
        torch.nn.functional.scaled_dot_product_attention(*swapped, attn_mask=bias, scale=scale), 1, 2
    )


def _explicit_attention(query, key, value, scale, bias=None, bias_groups=None, mask=None, dropout=None,
                        training=None):
    """softmax(scale * q k^T + bias, masked) v on (B, heads, N, head_dim): the explicit path of both entry points.

    The softmax dtype rule, for every family and policy: q k^T, the bias, the mask and the
    softmax are computed in float32 (float16 logits overflow, and bfloat16 loses the small
    differences that a softmax amplifies); the weights are cast back to the compute dtype of
    `query` for weights @ v. Keras' fused implementations on JAX and TensorFlow also take the
    softmax in float32. `key` and `value` come in the compute dtype; `bias`, `bias_groups` and
    `mask` as in the public functions; `dropout` (active, or None) goes on the weights.
    Returns (x, the weights before dropout).
    """
    compute_dtype = query.dtype
    q = ops.cast(query, "float32") * scale  # on q rather than on the larger logits
    logits = ops.matmul(q, ops.swapaxes(ops.cast(key, "float32"), -1, -2))  # (B, heads, Nq, Nk)
    if bias is not None:
        bias = ops.cast(bias, "float32")
        if bias_groups is not None:
            # (images, G, heads, Nq, Nk) + (G, heads, Nq, Nk): one broadcast add, no per-row copy of the bias.
            heads, num_queries, num_keys = query.shape[1], query.shape[2], key.shape[2]
            logits = ops.reshape(logits, (-1, bias_groups, heads, num_queries, num_keys)) + bias
            logits = ops.reshape(logits, (-1, heads, num_queries, num_keys))
        else:
            logits = logits + bias
    if mask is not None:
        logits = ops.where(mask, logits, _MASKED_LOGIT)
    scores = ops.cast(ops.softmax(logits, axis=-1), compute_dtype)
    weights = dropout(scores, training=training) if dropout is not None else scores
    return ops.matmul(weights, value), scores


def scaled_dot_product_attention(
    query, key, value, scale, bias=None, mask=None, dropout=None, training=None, return_scores=False
):
    """softmax(scale * q k^T + bias, masked) v, on (batch, tokens, heads, head_dim) tensors.

    Args:
        query: (B, Nq, heads, head_dim).
        key, value: (B, Nk, heads, head_dim).
        scale: the factor of the logits, usually head_dim ** -0.5.
        bias: optional additive bias broadcastable to (B, heads, Nq, Nk) (Swin's relative
            position bias and shifted-window mask).
        mask: optional boolean tensor of rank 4 broadcastable to (B, heads, Nq, Nk), True where
            a query may attend to a key (DETR's key padding: (B, 1, 1, Nk)). Masked keys get
            exactly zero weight, whatever the size of the logits. A query whose keys are all
            masked gets zero weights and a zero output, never NaN; this is what the reference
            DETR computes in transformers with torch's SDPA (the original DETR gives NaN there).
        dropout: optional `keras.layers.Dropout` applied to the attention weights.
        training: whether dropout is active.
        return_scores: also return the softmax weights (B, heads, Nq, Nk), before dropout.

    Returns:
        (B, Nq, heads, head_dim) in the dtype of `query`; with `return_scores`, also the weights.

    The fused path (`keras.ops.dot_product_attention`) runs unless scores are asked for,
    dropout is active in training, or the backend cannot run this case (see
    `_fused_path_applies`); the explicit path computes the same to about 1e-6 in float32.
    On PyTorch without a mask the fused path calls torch's kernel itself (`_torch_attention`:
    the same kernel, without the copies Keras makes of q, k and v).

    Example:
    >>> import numpy as np
    >>> q = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype("float32")
    >>> out, scores = scaled_dot_product_attention(q, q, q, scale=0.5, return_scores=True)
    >>> tuple(out.shape), tuple(scores.shape)
    ((2, 5, 3, 4), (2, 3, 5, 5))
    >>> bool(np.allclose(keras.ops.convert_to_numpy(scores).sum(-1), 1.0, atol=1e-6))
    True
    """
    query = ops.convert_to_tensor(query)
    compute_dtype = query.dtype
    key = ops.cast(key, compute_dtype)
    value = ops.cast(value, compute_dtype)
    has_key = None
    if mask is not None:
        mask = ops.cast(mask, "bool")
        if len(mask.shape) != 4:
            raise ValueError(
                f"The attention mask must have rank 4, broadcastable to (batch, heads, queries, keys); got shape "
                f"{tuple(mask.shape)}. Expand a (batch, keys) padding mask to (batch, 1, 1, keys)."
            )
        # Rows with no real key attend to every key here and are zeroed below: no NaN on any path.
        has_key = ops.any(mask, axis=-1, keepdims=True)
        mask = ops.logical_or(mask, ops.logical_not(has_key))
    dropout = _active_dropout(dropout, training)
    if _fused_path_applies(query, mask, dropout is not None, return_scores):
        if bias is not None:
            bias = ops.cast(bias, compute_dtype)
        if mask is None and keras.backend.backend() == "torch":
            x = _torch_attention(query, key, value, bias, scale)
        else:
            x = ops.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale)
        scores = None
    else:
        # Heads-first for the batched matmuls of the explicit core, and back.
        x, scores = _explicit_attention(
            *(ops.transpose(tensor, (0, 2, 1, 3)) for tensor in (query, key, value)), scale,
            bias=bias, mask=mask, dropout=dropout, training=training,
        )
        x = ops.transpose(x, (0, 2, 1, 3))
        if has_key is not None:
            scores = scores * ops.cast(has_key, compute_dtype)
    if has_key is not None:
        x = x * ops.cast(ops.transpose(has_key, (0, 2, 1, 3)), compute_dtype)
    if return_scores:
        return x, scores
    return x


def split_qkv(qkv, num_tokens, num_heads, head_dim):
    """q, k, v, each (B, N, heads, head_dim), from a fused (B, N, 3 * heads * head_dim) projection.

    The fused output is laid out [q of all heads | k | v], each head-major (timm's layout).
    Splitting the last axis of the 3-D tensor (rather than indexing a 5-D reshape, which
    becomes a STRIDED_SLICE that drops an axis) keeps the exported TFLite graph to ops that
    XNNPACK runs (SPLIT, RESHAPE), so a .tflite file is not cut into many delegate partitions.

    Example:
    >>> import numpy as np
    >>> qkv = np.arange(2 * 5 * 12, dtype="float32").reshape(2, 5, 12)
    >>> q, k, v = split_qkv(qkv, 5, num_heads=2, head_dim=2)
    >>> tuple(q.shape), float(keras.ops.convert_to_numpy(k)[0, 0, 0, 0])
    ((2, 5, 2, 2), 4.0)
    """
    return tuple(ops.reshape(part, (-1, num_tokens, num_heads, head_dim)) for part in ops.split(qkv, 3, axis=-1))


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """timm-style attention: one `qkv` Dense (D -> 3D), heads, `proj` Dense.

    The qkv output is laid out [q of all heads | k | v], each head-major, as in
    timm and the original ViT. Heads attend through `scaled_dot_product_attention`
    (fused where it applies); `return_attention_scores=True` also returns the
    softmax weights (B, heads, N, N), for attention maps.

    Example:
    >>> import numpy as np
    >>> attn = MultiHeadSelfAttention(hidden_dim=48, num_heads=3)
    >>> y, scores = attn(np.zeros((2, 17, 48), "float32"), return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((2, 17, 48), (2, 3, 17, 17))
    """

    def __init__(self, hidden_dim, num_heads, qkv_bias=True, attention_dropout=0.0, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
                "choose a number of heads that divides the width."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.hidden_dim // self.num_heads
        self.qkv_bias = qkv_bias
        self.attention_dropout = float(attention_dropout)
        self.dropout = float(dropout)
        self.scale = self.head_dim ** -0.5
        self.qkv = keras.layers.Dense(3 * hidden_dim, use_bias=qkv_bias, dtype=self.dtype_policy, name="qkv")
        self.proj = keras.layers.Dense(hidden_dim, dtype=self.dtype_policy, name="proj")
        self.attention_drop = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)
        self.proj_drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def call(self, inputs, training=None, return_attention_scores=False):
        num_tokens = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
        q, k, v = split_qkv(self.qkv(inputs), num_tokens, self.num_heads, self.head_dim)  # (B, N, heads, head_dim)
        record = attention_record()
        attended = scaled_dot_product_attention(
            q, k, v, self.scale, dropout=self.attention_drop, training=training,
            return_scores=return_attention_scores or record is not None,
        )
        x, scores = attended if return_attention_scores or record is not None else (attended, None)
        if record is not None:
            record.append((self, scores))
        x = ops.reshape(x, (-1, num_tokens, self.hidden_dim))
        x = dropped(self.proj_drop, self.proj(x), training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "qkv_bias": self.qkv_bias,
                "attention_dropout": self.attention_dropout,
                "dropout": self.dropout,
            }
        )
        return config


def split_qkv_heads_first(qkv, num_tokens, num_heads, head_dim):
    """q, k, v, each (B, heads, N, head_dim), from a fused (B, N, 3 * heads * head_dim) projection.

    The same [q | k | v], head-major layout as `split_qkv`, with the heads moved in front of
    the tokens by one transpose of the fused tensor (rather than one per q, k and v), which is
    the layout `heads_first_attention`'s batched matmuls take without further copies. The
    parts are split off axis 0 (SPLIT and RESHAPE in TFLite, no axis-dropping STRIDED_SLICE).

    Example:
    >>> import numpy as np
    >>> qkv = np.arange(2 * 5 * 12, dtype="float32").reshape(2, 5, 12)
    >>> q, k, v = split_qkv_heads_first(qkv, 5, num_heads=2, head_dim=2)
    >>> tuple(q.shape), float(keras.ops.convert_to_numpy(k)[0, 0, 0, 0])
    ((2, 2, 5, 2), 4.0)
    """
    qkv = ops.reshape(qkv, (-1, num_tokens, 3, num_heads, head_dim))
    qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, heads, N, head_dim)
    return tuple(ops.reshape(part, (-1, num_heads, num_tokens, head_dim)) for part in ops.split(qkv, 3, axis=0))


def heads_first_attention(
    query, key, value, scale, bias=None, bias_groups=None, dropout=None, training=None, return_scores=False
):
    """softmax(scale * q k^T + bias) v, on (batch, heads, tokens, head_dim) tensors, as batched matmuls.

    For attention over many small windows (Swin), where the tokens-first layout of
    `scaled_dot_product_attention` costs a transpose of q, k and v per layer and a per-row copy
    of the bias: here q, k and v come heads-first (`split_qkv_heads_first`) and go straight into
    the matmuls, and a bias shared by groups of rows is added by broadcasting.

    Args:
        query, key, value: (B, heads, N, head_dim).
        scale: the factor of the logits, usually head_dim ** -0.5.
        bias: optional additive bias. Without `bias_groups`: broadcastable to (B, heads, Nq, Nk).
            With `bias_groups=G`: (G, heads, Nq, Nk), where B = images * G and row b takes
            bias b % G (Swin's windows are batch-major: one mask per window position).
        bias_groups: see `bias`.
        dropout: optional `keras.layers.Dropout` applied to the attention weights.
        training: whether dropout is active.
        return_scores: also return the softmax weights (B, heads, Nq, Nk), before dropout.

    Returns:
        (B, heads, Nq, head_dim) in the dtype of `query`; with `return_scores`, also the weights.

    The same explicit core and dtype rule as `scaled_dot_product_attention`: logits, bias and
    softmax in float32, the weights cast back to the compute dtype for weights @ v. On PyTorch
    (no dropout, no scores) torch's fused kernel runs, on the heads-first views as they are.

    Example:
    >>> import numpy as np
    >>> q = np.random.default_rng(0).normal(size=(4, 2, 5, 3)).astype("float32")
    >>> mask = np.zeros((2, 1, 5, 5), "float32")
    >>> out, scores = heads_first_attention(q, q, q, 0.5, bias=mask, bias_groups=2, return_scores=True)
    >>> tuple(out.shape), tuple(scores.shape)
    ((4, 2, 5, 3), (4, 2, 5, 5))
    """
    query = ops.convert_to_tensor(query)
    compute_dtype = query.dtype
    key = ops.cast(key, compute_dtype)
    value = ops.cast(value, compute_dtype)
    dropout = _active_dropout(dropout, training)
    if keras.backend.backend() == "torch" and dropout is None and not return_scores:
        import torch

        if bias is not None:
            bias = ops.cast(bias, compute_dtype)
            if bias_groups is not None:
                # torch's kernel takes one bias per row: the per-group bias repeated over the images.
                bias = bias.unsqueeze(0).expand(query.shape[0] // bias_groups, *bias.shape)
                bias = bias.reshape(-1, query.shape[1], query.shape[2], key.shape[2])
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)
    x, scores = _explicit_attention(query, key, value, scale, bias=bias, bias_groups=bias_groups, dropout=dropout,
                                    training=training)
    if return_scores:
        return x, scores
    return x
