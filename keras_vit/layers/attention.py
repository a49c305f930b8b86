"""Multi-head self-attention with a fused qkv projection."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """timm-style attention: one `qkv` Dense (D -> 3D), heads, `proj` Dense.

    The qkv output is laid out [q of all heads | k | v], each head-major, as in
    timm and the original ViT. The fast path uses `keras.ops.dot_product_attention`
    (fused kernels on every backend); `return_attention_scores=True` takes the
    explicit path and also returns the softmax weights (B, heads, N, N), for
    attention maps.

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
        qkv = ops.reshape(self.qkv(inputs), (-1, num_tokens, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, heads, head_dim)
        use_dropout = training and self.attention_dropout > 0
        if return_attention_scores or use_dropout:
            q = ops.transpose(q, (0, 2, 1, 3))
            k = ops.transpose(k, (0, 2, 3, 1))
            v = ops.transpose(v, (0, 2, 1, 3))
            logits = ops.matmul(q * ops.cast(self.scale, q.dtype), k)
            scores = ops.softmax(logits, axis=-1)
            x = ops.matmul(self.attention_drop(scores, training=training), v)
            x = ops.transpose(x, (0, 2, 1, 3))
        else:
            scores = None
            x = ops.dot_product_attention(q, k, v, scale=self.scale)
        x = ops.reshape(x, (-1, num_tokens, self.hidden_dim))
        x = self.proj_drop(self.proj(x), training=training)
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
