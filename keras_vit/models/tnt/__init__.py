"""TNT, Transformer in Transformer (Han et al., 2021): its layers, model, builders,
converters (timm >= 1.0.16 and the official repository) and presets.

Example:
>>> from keras_vit.models.tnt import TNT
>>> TNT(image_size=32, patch_size=16, hidden_dim=64, inner_dim=16, depth=1,
...     inner_num_heads=2, num_heads=4, num_classes=10).output_shape
(None, 10)
"""

from keras_vit.models.registry import register_model
from keras_vit.models.tnt.tnt_layers import (
    PixelEmbedding,
    PixelPositionEmbedding,
    PixelToPatchProjection,
    TNTAttention,
    TNTBlock,
)
from keras_vit.models.tnt.tnt_model import TNT, TNT_CONFIGS, TNTB16, TNTS16
from keras_vit.models.tnt.tnt_presets import PRESETS
from keras_vit.weights.published import register_published

register_published(*PRESETS)
register_model("TNTS16", TNTS16, "tnt")
register_model("TNTB16", TNTB16, "tnt")
