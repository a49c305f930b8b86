"""Layers of DETR (Carion et al., 2020): padding masks, sine positions, the
post-norm encoder and decoder layers, object queries and the box head.

Numerics follow facebookresearch/detr and transformers' `modeling_detr.py`
(see PARITY.md): LayerNorm eps 1e-5, ReLU feed-forward, positions added to
queries and keys but never to values, padded keys masked out of every attention.
Masks are float tensors, 1 for a real pixel or token and 0 for padding.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.attention import attention_record, scaled_dot_product_attention
from keras_vit.layers.renamed_arguments import take_renamed_arguments

# Old argument names -> the package's vocabulary (the feed-forward width is `mlp_dim` in every family).
RENAMED_ARGUMENTS = {"ffn_dim": ("mlp_dim", None)}


def _static_dim(tensor, axis):
    dim = tensor.shape[axis]
    return None if dim is None else int(dim)


def nearest_indices(input_size, output_size):
    """torch's `interpolate(mode="nearest")` source indices, as a NumPy int32 array.

    `min(floor(i * (input_size / output_size)), input_size - 1)`, the scale in float32.

    Example:
    >>> nearest_indices(100, 4).tolist()
    [0, 25, 50, 75]
    """
    if output_size == input_size:
        return np.arange(output_size, dtype=np.int32)
    scale = np.float32(input_size) / np.float32(output_size)
    index = np.floor(np.arange(output_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, input_size - 1).astype(np.int32)


def _nearest_indices_dynamic(input_size, output_size):
    scale = ops.cast(input_size, "float32") / ops.cast(output_size, "float32")
    index = ops.cast(ops.floor(ops.cast(ops.arange(output_size), "float32") * scale), "int32")
    return ops.minimum(index, ops.cast(input_size, "int32") - 1)


@keras.saving.register_keras_serializable(package="keras_vit")
class PaddingMaskResize(keras.layers.Layer):
    """Resizes a (B, H, W) pixel mask to a (B, h, w) feature map by nearest neighbour.

    Called as `layer(pixel_mask, feature_map)`; the result is float (1 real, 0
    padding), exactly torch's `interpolate(mask, size=(h, w))` (mode "nearest").
    With static sizes the row and column indices are NumPy constants.

    Example:
    >>> import numpy as np
    >>> mask = np.zeros((1, 64, 96), "float32"); mask[:, :48, :64] = 1
    >>> small = PaddingMaskResize()(mask, np.zeros((1, 2, 3, 8), "float32"))
    >>> np.asarray(small)[0].tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    """

    def build(self, pixel_mask_shape=None, feature_map_shape=None):
        # No weights; named shapes so that the layer can be built on its own, as Keras' harness does.
        self.built = True

    def call(self, pixel_mask, feature_map):
        mask = ops.cast(pixel_mask, self.compute_dtype)
        for axis in (1, 2):
            in_size, out_size = _static_dim(mask, axis), _static_dim(feature_map, axis)
            if in_size is not None and out_size is not None:
                if in_size == out_size:
                    continue
                index = nearest_indices(in_size, out_size)
            else:
                index = _nearest_indices_dynamic(ops.shape(mask)[axis], ops.shape(feature_map)[axis])
            mask = ops.take(mask, index, axis=axis)
        return mask

    def compute_output_shape(self, pixel_mask_shape, feature_map_shape):
        return (pixel_mask_shape[0], feature_map_shape[1], feature_map_shape[2])


@keras.saving.register_keras_serializable(package="keras_vit")
class SinePositionEmbedding(keras.layers.Layer):
    """DETR's 2-D sine position embedding of a padding mask: (B, h, w) -> (B, h, w, dim).

    `y = cumsum(mask, rows)`, `x = cumsum(mask, columns)` (so they start at 1),
    each normalized by its last value (+ 1e-6) and scaled by 2 pi, so that the
    real part of every image spans the same range whatever its padding. Channel
    `i` of each half divides by `temperature ** (2 * floor(i / 2) / (dim / 2))`;
    even channels take the sine, odd ones the cosine; the output is
    `concat(pos_y, pos_x)`.

    Example:
    >>> import numpy as np
    >>> pos = SinePositionEmbedding(32)(np.ones((1, 2, 3), "float32"))
    >>> tuple(pos.shape)
    (1, 2, 3, 32)
    """

    def __init__(self, hidden_dim, temperature=10000, normalize=True, scale=2 * math.pi, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % 2:
            raise ValueError(f"SinePositionEmbedding needs an even hidden_dim, got {hidden_dim}.")
        self.hidden_dim = int(hidden_dim)
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.scale = float(scale)
        features = self.hidden_dim // 2
        exponent = (2 * (np.arange(features) // 2)).astype(np.float32) / np.float32(features)
        self._dim_t = np.power(np.float32(self.temperature), exponent).astype(np.float32)
        self._is_even = (np.arange(features) % 2 == 0).astype(np.float32)

    def call(self, padding_mask):
        mask = ops.cast(padding_mask, "float32")
        y_embed = ops.cumsum(mask, axis=1)
        x_embed = ops.cumsum(mask, axis=2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = ops.convert_to_tensor(self._dim_t)
        is_even = ops.convert_to_tensor(self._is_even)

        def encode(embed):
            angle = ops.expand_dims(embed, -1) / dim_t
            return ops.where(is_even > 0, ops.sin(angle), ops.cos(angle))

        pos = ops.concatenate([encode(y_embed), encode(x_embed)], axis=-1)
        return ops.cast(pos, self.compute_dtype)

    def compute_output_shape(self, padding_mask_shape):
        return tuple(padding_mask_shape) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "temperature": self.temperature,
                "normalize": self.normalize,
                "scale": self.scale,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRAttention(keras.layers.Layer):
    """Multi-head attention with separate q, k, v projections and a key padding mask.

    `layer(query, key, value, key_mask)`: query (B, T, D), key and value (B, S, D),
    key_mask (B, S) float, 1 for real keys and 0 for padding (None: all real);
    optionally `attention_mask`, bool broadcastable to (B, 1, T, S), True where a query may
    attend (denoising training keeps query groups apart with it).
    DETR adds position embeddings to query and key before calling it. Heads
    attend through `keras_vit.layers.attention.scaled_dot_product_attention`
    (softmax in float32; a query whose keys are all padding gets a zero
    attention output, so `out_proj` gives its bias). Projections are `q_proj`, `k_proj`,
    `v_proj`, `out_proj` (torch's `nn.MultiheadAttention` stacks the first three
    as `in_proj_weight`).

    Example:
    >>> import numpy as np
    >>> attn = DETRAttention(hidden_dim=32, num_heads=4)
    >>> q = np.zeros((2, 5, 32), "float32"); kv = np.zeros((2, 7, 32), "float32")
    >>> tuple(attn(q, kv, kv, np.ones((2, 7), "float32")).shape)
    (2, 5, 32)
    """

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
        self.scale = self.head_dim**-0.5
        kw = dict(dtype=self.dtype_policy)
        self.q_proj = keras.layers.Dense(hidden_dim, name="q_proj", **kw)
        self.k_proj = keras.layers.Dense(hidden_dim, name="k_proj", **kw)
        self.v_proj = keras.layers.Dense(hidden_dim, name="v_proj", **kw)
        self.out_proj = keras.layers.Dense(hidden_dim, name="out_proj", **kw)
        self.attention_drop = keras.layers.Dropout(dropout, **kw)

    def build(self, query_shape, key_shape=None, value_shape=None, key_mask_shape=None, attention_mask_shape=None):
        key_shape = key_shape or query_shape
        value_shape = value_shape or key_shape
        self.q_proj.build(query_shape)
        self.k_proj.build(key_shape)
        self.v_proj.build(value_shape)
        self.out_proj.build(tuple(query_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def _split_heads(self, x):
        # (B, N, D) -> (B, N, heads, head_dim)
        return ops.reshape(x, (ops.shape(x)[0], -1, self.num_heads, self.head_dim))

    def call(self, query, key, value, key_mask=None, attention_mask=None, training=None):
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key))
        v = self._split_heads(self.v_proj(value))
        mask = None
        if key_mask is not None:
            # (B, S) -> (B, 1, 1, S), True for real keys: padded keys get exactly zero weight, as the
            # reference's boolean key_padding_mask gives them, however large the logits.
            mask = ops.expand_dims(ops.expand_dims(ops.greater(key_mask, 0.5), 1), 1)
        if attention_mask is not None:
            # (B or 1, 1, T, S) bool, True where a query may attend (denoising training's group mask).
            attention_mask = ops.cast(attention_mask, "bool")
            mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
        record = attention_record()
        x = scaled_dot_product_attention(
            q, k, v, self.scale, mask=mask, dropout=self.attention_drop, training=training,
            return_scores=record is not None,
        )
        if record is not None:
            x, scores = x
            record.append((self, scores))  # (B, heads, queries, keys)
        x = ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_dim))
        return self.out_proj(x)

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "num_heads": self.num_heads, "dropout": self.dropout})
        return config


class _PostNormLayer(keras.layers.Layer):
    """Shared parts of the encoder and decoder layers: the ReLU feed-forward."""

    def __init__(self, hidden_dim, num_heads, mlp_dim=None, dropout=0.1, activation_dropout=None, layer_norm_epsilon=1e-5, **kwargs):
        if "ffn_dim" in kwargs:  # the old name of mlp_dim
            mlp_dim = take_renamed_arguments(
                {"mlp_dim": mlp_dim, "ffn_dim": kwargs.pop("ffn_dim")}, RENAMED_ARGUMENTS, type(self).__name__
            )["mlp_dim"]
        if mlp_dim is None:
            raise TypeError(f"{type(self).__name__} needs mlp_dim, the width of its feed-forward layer.")
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.activation_dropout = float(dropout if activation_dropout is None else activation_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        kw = dict(dtype=self.dtype_policy)
        self.self_attn = DETRAttention(hidden_dim, num_heads, dropout, name="self_attn", **kw)
        self.linear1 = keras.layers.Dense(mlp_dim, name="linear1", **kw)
        self.linear2 = keras.layers.Dense(hidden_dim, name="linear2", **kw)
        self.activation_drop = keras.layers.Dropout(self.activation_dropout, **kw)
        self.residual_drop = keras.layers.Dropout(self.dropout, **kw)

    def _norm(self, name):
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)

    def _feed_forward(self, x, training):
        y = self.activation_drop(ops.relu(self.linear1(x)), training=training)
        return self.residual_drop(self.linear2(y), training=training)

    def _build_feed_forward(self, shape):
        self.linear1.build(shape)
        self.linear2.build(tuple(shape[:-1]) + (self.mlp_dim,))

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "activation_dropout": self.activation_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Configurations saved before the package's one vocabulary (ffn_dim) load silently.
        return cls(**take_renamed_arguments(dict(config), RENAMED_ARGUMENTS, cls.__name__, warn=False))


@keras.saving.register_keras_serializable(package="keras_vit")
class DETREncoderLayer(_PostNormLayer):
    """A post-norm encoder layer: `x = norm1(x + attn(x + pos, x + pos, x))`, `x = norm2(x + ffn(x))`.

    `layer(x, pos, padding_mask)`: x and pos (B, N, D), padding_mask (B, N) float
    (1 real, 0 padding).

    Example:
    >>> import numpy as np
    >>> layer = DETREncoderLayer(hidden_dim=32, num_heads=4, mlp_dim=64, dropout=0.0)
    >>> x = np.zeros((1, 6, 32), "float32")
    >>> tuple(layer(x, x, np.ones((1, 6), "float32")).shape)
    (1, 6, 32)
    """

    def __init__(self, hidden_dim, num_heads, mlp_dim=None, dropout=0.1, **kwargs):
        super().__init__(hidden_dim, num_heads, mlp_dim, dropout, **kwargs)
        self.norm1 = self._norm("norm1")
        self.norm2 = self._norm("norm2")

    def build(self, x_shape, pos_shape=None, padding_mask_shape=None):
        self.self_attn.build(x_shape, x_shape, x_shape)
        self.norm1.build(x_shape)
        self._build_feed_forward(x_shape)
        self.norm2.build(x_shape)
        self.built = True

    def call(self, x, pos, padding_mask=None, training=None):
        query_key = x + pos
        attended = self.self_attn(query_key, query_key, x, key_mask=padding_mask, training=training)
        x = self.norm1(x + self.residual_drop(attended, training=training))
        return self.norm2(x + self._feed_forward(x, training))


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRDecoderLayer(_PostNormLayer):
    """A post-norm decoder layer: self-attention over the queries, cross-attention
    to the encoder memory, feed-forward, each followed by its LayerNorm.

    `layer(tgt, memory, pos, query_pos, memory_mask)`: self-attention takes
    q = k = tgt + query_pos, v = tgt; cross-attention q = tgt + query_pos,
    k = memory + pos, v = memory, with padded memory positions masked out.
    `self_attention_mask` (optional, bool, broadcastable to (B, 1, T, T), True where a query may
    attend) restricts the self-attention: denoising training passes it, inference never does.

    Example:
    >>> import numpy as np
    >>> layer = DETRDecoderLayer(hidden_dim=32, num_heads=4, mlp_dim=64, dropout=0.0)
    >>> tgt = np.zeros((1, 8, 32), "float32"); memory = np.ones((1, 6, 32), "float32")
    >>> tuple(layer(tgt, memory, memory, tgt, np.ones((1, 6), "float32")).shape)
    (1, 8, 32)
    """

    def __init__(self, hidden_dim, num_heads, mlp_dim=None, dropout=0.1, **kwargs):
        super().__init__(hidden_dim, num_heads, mlp_dim, dropout, **kwargs)
        self.norm1 = self._norm("norm1")
        self.cross_attn = DETRAttention(hidden_dim, num_heads, dropout, name="cross_attn", dtype=self.dtype_policy)
        self.norm2 = self._norm("norm2")
        self.norm3 = self._norm("norm3")

    def build(
        self, tgt_shape, memory_shape=None, pos_shape=None, query_pos_shape=None, memory_mask_shape=None,
        self_attention_mask_shape=None,
    ):  # fmt: skip
        memory_shape = memory_shape or tgt_shape
        self.self_attn.build(tgt_shape, tgt_shape, tgt_shape)
        self.norm1.build(tgt_shape)
        self.cross_attn.build(tgt_shape, memory_shape, memory_shape)
        self.norm2.build(tgt_shape)
        self._build_feed_forward(tgt_shape)
        self.norm3.build(tgt_shape)
        self.built = True

    def call(self, tgt, memory, pos, query_pos, memory_mask=None, self_attention_mask=None, training=None):
        query_key = tgt + query_pos
        attended = self.self_attn(query_key, query_key, tgt, attention_mask=self_attention_mask, training=training)
        tgt = self.norm1(tgt + self.residual_drop(attended, training=training))
        attended = self.cross_attn(tgt + query_pos, memory + pos, memory, key_mask=memory_mask, training=training)
        tgt = self.norm2(tgt + self.residual_drop(attended, training=training))
        return self.norm3(tgt + self._feed_forward(tgt, training))


@keras.saving.register_keras_serializable(package="keras_vit")
class ObjectQueries(keras.layers.Layer):
    """DETR's learned object queries: a (num_queries, dim) table, broadcast to the batch.

    `layer(reference)` returns (B, num_queries, dim) where B is the batch size of
    `reference`. The decoder adds it to queries and keys as `query_pos`.

    Example:
    >>> import numpy as np
    >>> queries = ObjectQueries(num_queries=8, hidden_dim=32)
    >>> tuple(queries(np.zeros((3, 5, 32), "float32")).shape)
    (3, 8, 32)
    """

    def __init__(self, num_queries, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_queries = int(num_queries)
        self.hidden_dim = int(hidden_dim)

    def build(self, reference_shape=None):
        # torch's nn.Embedding initializes from N(0, 1).
        self.embeddings = self.add_weight(
            shape=(self.num_queries, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embeddings",
        )
        self.built = True

    def call(self, reference):
        batch = ops.shape(reference)[0]
        table = ops.expand_dims(ops.cast(self.embeddings, self.compute_dtype), 0)
        return ops.broadcast_to(table, (batch, self.num_queries, self.hidden_dim))

    def compute_output_shape(self, reference_shape):
        return (reference_shape[0], self.num_queries, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"num_queries": self.num_queries, "hidden_dim": self.hidden_dim})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class MLPHead(keras.layers.Layer):
    """A small MLP: `num_layers` Dense layers (`layers_{i}`), ReLU between them, none after the last.

    DETR's box head (`BoxHead`, with a sigmoid), Conditional DETR's `ref_point_head`
    (d -> d -> 2), `query_scale` (d -> d -> d) and box head (d -> d -> d -> 4, before the
    reference offset and the sigmoid). `zero_last_layer` starts the last layer at zero (that box
    head's initialization in the reference).

    Example:
    >>> import numpy as np
    >>> head = MLPHead(hidden_dim=16, output_dim=2, num_layers=2)
    >>> tuple(head(np.zeros((3, 5, 16), "float32")).shape)
    (3, 5, 2)
    """

    def __init__(self, hidden_dim, output_dim, num_layers, zero_last_layer=False, **kwargs):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"MLPHead needs at least one layer, got num_layers={num_layers}.")
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.num_layers = int(num_layers)
        self.zero_last_layer = bool(zero_last_layer)
        sizes = [self.hidden_dim] * (self.num_layers - 1) + [self.output_dim]
        self.dense_layers = [
            keras.layers.Dense(
                size,
                kernel_initializer="zeros" if self.zero_last_layer and i == self.num_layers - 1 else "glorot_uniform",
                dtype=self.dtype_policy,
                name=f"layers_{i}",
            )
            for i, size in enumerate(sizes)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.built = True

    def call(self, x):
        for i, layer in enumerate(self.dense_layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "num_layers": self.num_layers,
                "zero_last_layer": self.zero_last_layer,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class BoxHead(MLPHead):
    """DETR's box MLP: Dense(d) -> ReLU -> Dense(d) -> ReLU -> Dense(4) -> sigmoid.

    Gives normalized (cx, cy, w, h) boxes for each decoder output, of any rank.
    Sublayers `layers_0`, `layers_1`, `layers_2` (`bbox_embed.layers.{i}` in the
    checkpoints).

    Example:
    >>> import numpy as np
    >>> boxes = BoxHead(hidden_dim=32)(np.zeros((2, 8, 32), "float32"))
    >>> tuple(boxes.shape), float(boxes[0, 0, 0])
    ((2, 8, 4), 0.5)
    """

    def __init__(self, hidden_dim, num_layers=3, **kwargs):
        super().__init__(hidden_dim, 4, num_layers, **kwargs)

    def call(self, x):
        return ops.sigmoid(ops.cast(super().call(x), "float32"))

    def compute_output_spec(self, inputs):
        # The sigmoid runs in float32 under every policy (boxes feed the float32 losses).
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        del config["output_dim"], config["zero_last_layer"]  # always 4 and False: saved files keep their keys
        return config
