"""Layers of Conditional DETR (Meng et al., 2021): reference points, their sine embedding,
and the decoder layer with conditional spatial queries.

What differs from DETR's decoder (keras_vit/models/detr/detr_layers.py, whose encoder layer,
sine positions, padding masks and object queries Conditional DETR reuses unchanged):
- self-attention projects content and positions separately: q = q_content(tgt) + q_pos(query_pos),
  k = k_content(tgt) + k_pos(query_pos), v = v(tgt);
- cross-attention concatenates, head by head, a content part and a spatial part: the query is
  [q_content(tgt) | q_pos_sine(s)] with s the sine embedding of the query's reference point
  (scaled by a transform of the decoder embedding), the key [k_content(memory) | k_pos(pos)], so
  each head's dot product is content-content plus spatial-spatial. Only the first layer also adds
  q_pos(query_pos) and k_pos(pos) to the content parts. The scale is (2 * head_dim) ** -0.5.
Numerics follow the Atten4Vis/ConditionalDETR repository and transformers'
`modeling_conditional_detr.py`: LayerNorm eps 1e-5, ReLU feed-forward, post-norm.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.attention import attention_record, scaled_dot_product_attention
from keras_vit.models.detr.detr_layers import MLPHead  # noqa: F401  (one MLP head for both detectors)


def inverse_sigmoid(x, eps=1e-5):
    """log(x / (1 - x)) with x clipped to [0, 1] and both terms kept >= eps, as the reference.

    Example:
    >>> import numpy as np
    >>> [round(float(v), 3) for v in keras.ops.convert_to_numpy(inverse_sigmoid(np.array([0.5, 0.0], "float32")))]
    [0.0, -11.513]
    """
    x = ops.clip(x, 0.0, 1.0)
    return ops.log(ops.maximum(x, eps) / ops.maximum(1.0 - x, eps))


@keras.saving.register_keras_serializable(package="keras_vit")
class PointSineEmbedding(keras.layers.Layer):
    """The sine embedding of normalized 2-D points: (..., 2) (x, y) in [0, 1] -> (..., hidden_dim).

    Each coordinate, times 2 pi, is divided by `temperature ** (2 * floor(i / 2) / (hidden_dim / 2))`
    for i < hidden_dim / 2; even channels take the sine, odd ones the cosine; the output is
    `concat(embed(y), embed(x))`, the layout of DETR's `SinePositionEmbedding`, so that a
    reference point and the image positions it should attend to embed alike. Computed in float32.

    Example:
    >>> import numpy as np
    >>> emb = keras.ops.convert_to_numpy(PointSineEmbedding(8)(np.array([[[0.25, 0.0]]], "float32")))[0, 0]
    >>> emb[:4].tolist(), round(float(emb[4]), 3)  # y = 0 first, then x = 0.25: sin(pi / 2)
    ([0.0, 1.0, 0.0, 1.0], 1.0)
    """

    def __init__(self, hidden_dim, temperature=10000, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % 2:
            raise ValueError(f"PointSineEmbedding needs an even hidden_dim, got {hidden_dim}.")
        self.hidden_dim = int(hidden_dim)
        self.temperature = float(temperature)
        features = self.hidden_dim // 2
        exponent = (2 * (np.arange(features) // 2)).astype(np.float32) / np.float32(features)
        self._dim_t = np.power(np.float32(self.temperature), exponent).astype(np.float32)
        self._is_even = (np.arange(features) % 2 == 0).astype(np.float32)

    def call(self, points):
        points = ops.cast(points, "float32")
        dim_t = ops.convert_to_tensor(self._dim_t)
        is_even = ops.convert_to_tensor(self._is_even)

        def encode(coordinate):
            angle = ops.expand_dims(coordinate * (2 * math.pi), -1) / dim_t
            return ops.where(is_even > 0, ops.sin(angle), ops.cos(angle))

        embedding = ops.concatenate([encode(points[..., 1]), encode(points[..., 0])], axis=-1)
        return ops.cast(embedding, self.compute_dtype)

    def compute_output_shape(self, points_shape):
        return tuple(points_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "temperature": self.temperature})
        return config


class _ProjectedAttention(keras.layers.Layer):
    """Shared parts of the two decoder attentions: the Dense projections and the attention core."""

    PROJECTIONS = ()

    def __init__(self, hidden_dim, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
                "choose a number of heads that divides the width."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.hidden_dim // self.num_heads
        self.dropout = float(dropout)
        kw = dict(dtype=self.dtype_policy)
        for name in self._projection_names():
            setattr(self, name, keras.layers.Dense(self.hidden_dim, name=name, **kw))
        self.out_proj = keras.layers.Dense(self.hidden_dim, name="out_proj", **kw)
        self.attention_drop = keras.layers.Dropout(self.dropout, **kw)

    def _projection_names(self):
        return self.PROJECTIONS

    def build(self, *shapes, **named_shapes):
        # Positional shapes, or Keras' `<argument>_shape=` keywords: only the width matters here.
        width = (None, None, self.hidden_dim)
        for name in self._projection_names():
            getattr(self, name).build(width)
        self.out_proj.build(width)
        self.built = True

    def _split_heads(self, x):
        # (B, N, D) -> (B, N, heads, head_dim)
        return ops.reshape(x, (ops.shape(x)[0], -1, self.num_heads, self.head_dim))

    def _attend(self, q, k, v, scale, key_mask, training, attention_mask=None):
        mask = None
        if key_mask is not None:
            # (B, S) -> (B, 1, 1, S): padded keys get exactly zero weight.
            mask = ops.expand_dims(ops.expand_dims(ops.greater(key_mask, 0.5), 1), 1)
        if attention_mask is not None:
            # (B or 1, 1, T, S) bool, True where a query may attend (denoising training's group mask).
            attention_mask = ops.cast(attention_mask, "bool")
            mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
        record = attention_record()
        # JAX's fused attention needs one head width for q, k and v; the cross-attention's q and k
        # are twice as wide as v, so it takes the explicit path there (same result to ~1e-6).
        explicit = record is not None or (keras.backend.backend() == "jax" and q.shape[-1] != v.shape[-1])
        x = scaled_dot_product_attention(
            q, k, v, scale, mask=mask, dropout=self.attention_drop, training=training, return_scores=explicit
        )
        if explicit:
            x, scores = x
            if record is not None:
                record.append((self, scores))  # (B, heads, queries, keys)
        x = ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_dim))
        return self.out_proj(x)

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "num_heads": self.num_heads, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ConditionalSelfAttention(_ProjectedAttention):
    """The decoder's self-attention over the queries, content and positions projected apart.

    `layer(tgt, query_pos)`: q = q_content_proj(tgt) + q_pos_proj(query_pos),
    k = k_content_proj(tgt) + k_pos_proj(query_pos), v = v_proj(tgt), scale head_dim ** -0.5,
    then `out_proj`. `attention_mask` (optional, bool, broadcastable to (B, 1, T, T), True where a
    query may attend) is denoising training's group mask.

    Example:
    >>> import numpy as np
    >>> attn = ConditionalSelfAttention(hidden_dim=32, num_heads=4)
    >>> x = np.zeros((2, 5, 32), "float32")
    >>> tuple(attn(x, x).shape)
    (2, 5, 32)
    """

    PROJECTIONS = ("q_content_proj", "q_pos_proj", "k_content_proj", "k_pos_proj", "v_proj")

    def call(self, tgt, query_pos, attention_mask=None, training=None):
        q = self._split_heads(self.q_content_proj(tgt) + self.q_pos_proj(query_pos))
        k = self._split_heads(self.k_content_proj(tgt) + self.k_pos_proj(query_pos))
        v = self._split_heads(self.v_proj(tgt))
        return self._attend(q, k, v, self.head_dim**-0.5, None, training, attention_mask=attention_mask)


@keras.saving.register_keras_serializable(package="keras_vit")
class ConditionalCrossAttention(_ProjectedAttention):
    """The decoder's cross-attention with the content and spatial parts concatenated per head.

    `layer(tgt, memory, pos, query_sine_embed, memory_mask, query_pos=None)`: per head,
    q = [q_content_proj(tgt) | q_pos_sine_proj(query_sine_embed)] and
    k = [k_content_proj(memory) | k_pos_proj(pos)] (2 * head_dim wide, scale
    (2 * head_dim) ** -0.5), v = v_proj(memory), padded memory masked out. With
    `is_first=True` (the first decoder layer) the layer has `q_pos_proj` too, and
    q_pos_proj(query_pos) and k_pos_proj(pos) are added to the content parts.

    Example:
    >>> import numpy as np
    >>> attn = ConditionalCrossAttention(hidden_dim=32, num_heads=4, is_first=True)
    >>> q = np.zeros((2, 5, 32), "float32"); memory = np.ones((2, 7, 32), "float32")
    >>> tuple(attn(q, memory, memory, q, np.ones((2, 7), "float32"), query_pos=q).shape)
    (2, 5, 32)
    """

    PROJECTIONS = ("q_content_proj", "k_content_proj", "k_pos_proj", "v_proj", "q_pos_sine_proj")

    def __init__(self, hidden_dim, num_heads, dropout=0.0, is_first=False, **kwargs):
        self.is_first = bool(is_first)
        super().__init__(hidden_dim, num_heads, dropout, **kwargs)

    def _projection_names(self):
        return self.PROJECTIONS + (("q_pos_proj",) if self.is_first else ())

    def call(self, tgt, memory, pos, query_sine_embed, memory_mask=None, query_pos=None, training=None):
        q = self.q_content_proj(tgt)
        k = self.k_content_proj(memory)
        k_pos = self.k_pos_proj(pos)
        if self.is_first:
            if query_pos is None:
                raise ValueError("The first decoder layer's cross-attention needs query_pos.")
            q = q + self.q_pos_proj(query_pos)
            k = k + k_pos
        q = ops.concatenate([self._split_heads(q), self._split_heads(self.q_pos_sine_proj(query_sine_embed))], axis=-1)
        k = ops.concatenate([self._split_heads(k), self._split_heads(k_pos)], axis=-1)
        v = self._split_heads(self.v_proj(memory))
        return self._attend(q, k, v, (2 * self.head_dim) ** -0.5, memory_mask, training)

    def get_config(self):
        config = super().get_config()
        config["is_first"] = self.is_first
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ConditionalDETRDecoderLayer(keras.layers.Layer):
    """A post-norm Conditional DETR decoder layer: conditional self-attention, conditional
    cross-attention, ReLU feed-forward, each followed by its LayerNorm (`norm1..3`).

    `layer(tgt, memory, pos, query_pos, query_sine_embed, memory_mask)`: tgt (B, Q, D) the
    decoder embeddings, memory and pos (B, S, D) the encoder output and its sine positions,
    query_pos (B, Q, D) the learned queries, query_sine_embed (B, Q, D) the transformed sine
    embedding of the reference points, memory_mask (B, S) 1 for real positions;
    `self_attention_mask` (optional, bool, broadcastable to (B, 1, Q, Q), True where a query may
    attend) restricts the self-attention (denoising training's group mask).

    Example:
    >>> import numpy as np
    >>> layer = ConditionalDETRDecoderLayer(hidden_dim=32, num_heads=4, mlp_dim=64, dropout=0.0, is_first=True)
    >>> tgt = np.zeros((1, 8, 32), "float32"); memory = np.ones((1, 6, 32), "float32")
    >>> tuple(layer(tgt, memory, memory, tgt, tgt, np.ones((1, 6), "float32")).shape)
    (1, 8, 32)
    """

    def __init__(
        self, hidden_dim, num_heads, mlp_dim, dropout=0.1, is_first=False, layer_norm_epsilon=1e-5, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.is_first = bool(is_first)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        kw = dict(dtype=self.dtype_policy)
        self.self_attn = ConditionalSelfAttention(hidden_dim, num_heads, dropout, name="self_attn", **kw)
        self.cross_attn = ConditionalCrossAttention(
            hidden_dim, num_heads, dropout, is_first=is_first, name="cross_attn", **kw
        )
        self.linear1 = keras.layers.Dense(self.mlp_dim, name="linear1", **kw)
        self.linear2 = keras.layers.Dense(self.hidden_dim, name="linear2", **kw)
        self.norm1, self.norm2, self.norm3 = (
            keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name=f"norm{i}", **kw) for i in (1, 2, 3)
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, **kw)

    def build(self, tgt_shape, *shapes, **named_shapes):
        self.self_attn.build(tgt_shape)
        self.cross_attn.build(tgt_shape)
        for norm in (self.norm1, self.norm2, self.norm3):
            norm.build(tgt_shape)
        self.linear1.build(tgt_shape)
        self.linear2.build(tuple(tgt_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(
        self, tgt, memory, pos, query_pos, query_sine_embed, memory_mask=None, self_attention_mask=None,
        training=None,
    ):  # fmt: skip
        drop = lambda x: self.dropout_layer(x, training=training)  # noqa: E731
        attended = self.self_attn(tgt, query_pos, attention_mask=self_attention_mask, training=training)
        tgt = self.norm1(tgt + drop(attended))
        attended = self.cross_attn(
            tgt, memory, pos, query_sine_embed, memory_mask, query_pos=query_pos, training=training
        )
        tgt = self.norm2(tgt + drop(attended))
        feed_forward = self.linear2(drop(ops.relu(self.linear1(tgt))))
        return self.norm3(tgt + drop(feed_forward))

    def compute_output_shape(self, tgt_shape, *args, **kwargs):
        return tuple(tgt_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "is_first": self.is_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
