"""Layers every family shares: patch embedding, tokens, position embedding and its
resampling, the attention core, MLP, DropPath, the encoder block, frozen BatchNorm and
preprocessing. A family's own layers live in its package (`keras_vit.models.swin`, ...).

Example:
>>> import numpy as np
>>> from keras_vit.layers import PatchEmbedding
>>> tuple(PatchEmbedding(patch_size=8, hidden_dim=48)(np.zeros((1, 32, 32, 3), "float32")).shape)
(1, 16, 48)
"""

import importlib
import warnings

from keras_vit.layers.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from keras_vit.layers.class_names import ClassNames
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.encoder_block import TransformerEncoderBlock
from keras_vit.layers.frozen_batch_norm import FrozenBatchNormalization
from keras_vit.layers.mlp import MLP
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.preprocessing import ImageNormalization, ResizeAndCenterCrop
from keras_vit.layers.tokens import ClassToken, token_features

# Family layers that `keras_vit.layers` exported before each family got its own package.
_MOVED = {
    **dict.fromkeys(
        ("PixelEmbedding", "PixelPositionEmbedding", "PixelToPatchProjection", "TNTAttention", "TNTBlock"),
        "keras_vit.models.tnt",
    ),
    **dict.fromkeys(
        ("PatchMerging", "SwinBlock", "WindowAttention", "cyclic_shift", "relative_position_index",
         "shifted_window_mask", "window_merge", "window_partition"),
        "keras_vit.models.swin",
    ),
    **dict.fromkeys(
        ("BoxHead", "DETRAttention", "DETRDecoderLayer", "DETREncoderLayer", "ObjectQueries",
         "PaddingMaskResize", "SinePositionEmbedding"),
        "keras_vit.models.detr",
    ),
}


def __getattr__(name):
    # Resolved on first use only, so that this package imports no family (dependencies point down).
    if name in _MOVED:
        warnings.warn(
            f"keras_vit.layers.{name} moved to {_MOVED[name]}.{name}; the old name will be removed.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'keras_vit.layers' has no attribute {name!r}")
