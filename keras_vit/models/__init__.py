"""Model families, one package each: `keras_vit/models/<family>/` holds the family's
layers, model and builders, checkpoint converters and presets, and registers them.

Example:
>>> import keras_vit
>>> keras_vit.models.model_names(family="swin")
['SwinT', 'SwinS', 'SwinB', 'SwinL']
"""

from keras_vit.models.registry import ModelSpec, get_model_spec, model_names, register_model
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
from keras_vit.models.conditional_detr import (
    ConditionalDETR,
    ConditionalDETRModel,
    ConditionalDETRResNet50,
    ConditionalDETRResNet101,
)
from keras_vit.models.mae import MAEViTB16, MAEViTH14, MAEViTL16, MaskedAutoencoder
from keras_vit.models.vit import add_prompts
from keras_vit.models.loading import load_weights, model_family
