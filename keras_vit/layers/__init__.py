"""Reusable Keras layers of keras_vit, shared by every model family."""

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.encoder_block import TransformerEncoderBlock
from keras_vit.layers.mlp import MLP
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.preprocessing import ImageNormalization
from keras_vit.layers.tokens import ClassToken
from keras_vit.layers.swin import (
    PatchMerging,
    SwinBlock,
    WindowAttention,
    cyclic_shift,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)
from keras_vit.layers.tnt import PixelEmbedding, PixelPositionEmbedding, PixelToPatchProjection, TNTAttention, TNTBlock
from keras_vit.layers.frozen_batch_norm import FrozenBatchNormalization
from keras_vit.layers.detr import (
    BoxHead,
    DETRAttention,
    DETRDecoderLayer,
    DETREncoderLayer,
    ObjectQueries,
    PaddingMaskResize,
    SinePositionEmbedding,
)
