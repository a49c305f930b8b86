"""Model builders, one module per family."""

from keras_vit.models.vit import (
    VisionTransformer,
    ViTB16,
    ViTB32,
    ViTH14,
    ViTL16,
    ViTL32,
    ViTS16,
    ViTS32,
    ViTTi16,
)
from keras_vit.models.deit import DeiTB16, DeiTS16, DeiTTi16, distillation_heads
