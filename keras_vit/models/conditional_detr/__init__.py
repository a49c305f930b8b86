"""Conditional DETR (Meng et al., 2021): its layers, the model and builders, converters
(transformers and the original repository) and the COCO presets. DETR's backbone wrapper,
sine positions, encoder, train step and export are reused (keras_vit/models/detr).

Example:
>>> import keras
>>> from keras_vit.models.conditional_detr import ConditionalDETR
>>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
>>> model = ConditionalDETR(cnn, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
...                         num_decoder_layers=1, num_heads=2, mlp_dim=32)
>>> shapes = model.compute_output_shape((1, 64, 64, 3))
>>> shapes["logits"], shapes["pred_boxes"]
((1, 4, 3), (1, 4, 4))
"""

from keras_vit.models.conditional_detr.conditional_detr_layers import (
    ConditionalCrossAttention,
    ConditionalDETRDecoderLayer,
    ConditionalSelfAttention,
    MLPHead,
    PointSineEmbedding,
    inverse_sigmoid,
)
from keras_vit.models.conditional_detr.conditional_detr_model import (
    ConditionalDETR,
    ConditionalDETRModel,
    ConditionalDETRResNet50,
    ConditionalDETRResNet101,
)
from keras_vit.models.conditional_detr.conditional_detr_postprocess import post_process_conditional_detections
from keras_vit.models.conditional_detr.conditional_detr_presets import PRESETS
from keras_vit.models.conditional_detr.convert_conditional_detr import convert_conditional_detr
from keras_vit.models.registry import register_model
from keras_vit.weights.published import register_published

register_published(*PRESETS)
register_model("ConditionalDETRResNet50", ConditionalDETRResNet50, "conditional_detr", task="detection",
               default_input_size=800)
register_model("ConditionalDETRResNet101", ConditionalDETRResNet101, "conditional_detr", task="detection",
               default_input_size=800)
