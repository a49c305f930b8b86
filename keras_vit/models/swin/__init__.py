"""Swin Transformer (Liu et al., 2021): shifted-window layers, the model and its builders,
converters (timm, the official repository, transformers) and presets.

Example:
>>> from keras_vit.models.swin import SwinTransformer
>>> SwinTransformer(image_size=64, patch_size=4, window_size=4, hidden_dim=32, depths=(2, 2),
...                 num_heads=(2, 4), num_classes=10).output_shape
(None, 10)
"""

from keras_vit.models.registry import register_model
from keras_vit.models.swin.swin_layers import (
    PatchMerging,
    SwinBlock,
    WindowAttention,
    cyclic_shift,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)
from keras_vit.models.swin.swin_model import SWIN_CONFIGS, SwinB, SwinL, SwinS, SwinT, SwinTransformer
from keras_vit.models.swin.swin_presets import PRESETS
from keras_vit.weights.published import register_published

register_published(*PRESETS)
for _name, _builder in (("SwinT", SwinT), ("SwinS", SwinS), ("SwinB", SwinB), ("SwinL", SwinL)):
    register_model(_name, _builder, "swin")
