"""DETR (Carion et al., 2020): its layers, the model and builders, converters
(transformers and the original repository) and the COCO presets.

Example:
>>> from keras_vit.models.detr import DETRResNet50
>>> sorted(DETRResNet50(input_shape=(64, 64, 3), num_classes=3).output_shape)
['logits', 'pred_boxes']
"""

from keras_vit.models.detr.detr_layers import (
    BoxHead,
    DETRAttention,
    DETRDecoderLayer,
    DETREncoderLayer,
    ObjectQueries,
    PaddingMaskResize,
    SinePositionEmbedding,
)
from keras_vit.models.detr.detr_model import DETR, DETRModel, DETRResNet50, DETRResNet101
from keras_vit.models.detr.detr_presets import PRESETS
from keras_vit.models.registry import register_model
from keras_vit.weights.published import register_published

register_published(*PRESETS)
register_model("DETRResNet50", DETRResNet50, "detr", task="detection", default_input_size=800)
register_model("DETRResNet101", DETRResNet101, "detr", task="detection", default_input_size=800)
