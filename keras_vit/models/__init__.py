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
from keras_vit.models.tnt import TNT, TNTB16, TNTS16
from keras_vit.models.swin import SwinB, SwinL, SwinS, SwinT, SwinTransformer
from keras_vit.models.resnet import ResNet, ResNet50, ResNet101
from keras_vit.models.detr import DETR, DETRModel, DETRResNet50, DETRResNet101
