"""Attention maps of ViT-family models, and attention rollout."""

import keras
import numpy as np


def _encoder_blocks(model):
    blocks, i = [], 0
    while True:
        try:
            blocks.append(model.get_layer(f"block_{i}"))
        except ValueError:
            break
        i += 1
    if not blocks:
        raise ValueError(
            f"Model {model.name!r} has no layers named block_0, block_1, ...: attention maps work on "
            "ViT and DeiT models built by keras_vit."
        )
    return blocks


def attention_maps(model, images):
    """The softmax attention of every encoder block, as NumPy arrays.

    Returns a list with one (batch, heads, tokens, tokens) array per block,
    for a ViT or DeiT model built by keras_vit (any backend).

    Example:
    >>> import numpy as np, keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> maps = attention_maps(model, np.zeros((1, 32, 32, 3), "float32"))
    >>> len(maps), maps[0].shape
    (2, (1, 3, 17, 17))
    """
    blocks = _encoder_blocks(model)
    tokens_model = keras.Model(model.inputs, blocks[0].input)
    x = tokens_model(images, training=False)
    maps = []
    for block in blocks:
        x, scores = block(x, training=False, return_attention_scores=True)
        maps.append(keras.ops.convert_to_numpy(scores))
    return maps


def attention_rollout(maps, num_prefix_tokens=1, grid_size=None, discard_ratio=0.0):
    """Attention rollout (Abnar and Zuidema, 2020): how much each patch feeds the class token.

    Averages heads, adds the residual path (0.5 A + 0.5 I), renormalizes and
    multiplies through the blocks. Returns (batch, patches), or
    (batch, grid_h, grid_w) when `grid_size` is given, scaled to [0, 1].

    Example:
    >>> import numpy as np
    >>> maps = [np.full((1, 2, 5, 5), 0.2, "float32")]
    >>> attention_rollout(maps, grid_size=(2, 2)).shape
    (1, 2, 2)
    """
    rollout = None
    for scores in maps:
        attention = scores.mean(axis=1)
        if discard_ratio > 0:
            flat = attention.reshape(attention.shape[0], -1)
            cutoff = np.quantile(flat, discard_ratio, axis=1)[:, None, None]
            attention = np.where(attention < cutoff, 0.0, attention)
        identity = np.eye(attention.shape[-1], dtype=attention.dtype)
        attention = 0.5 * attention + 0.5 * identity
        attention = attention / attention.sum(axis=-1, keepdims=True)
        rollout = attention if rollout is None else attention @ rollout
    relevance = rollout[:, 0, num_prefix_tokens:]
    relevance = relevance / np.maximum(relevance.max(axis=-1, keepdims=True), 1e-12)
    if grid_size is not None:
        relevance = relevance.reshape(relevance.shape[0], grid_size[0], grid_size[1])
    return relevance
