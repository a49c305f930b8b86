"""DETR (Carion et al., 2020): its layers, the model and builders, converters
(transformers and the original repository) and the COCO presets.

Example:
>>> import numpy as np
>>> from keras_vit.models.detr import DETR
>>> from keras_vit.models.resnet import ResNet
>>> backbone = ResNet(depths=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8)
>>> model = DETR(backbone, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
...              num_decoder_layers=1, num_heads=2)
>>> outputs = model(np.zeros((1, 64, 64, 3), "float32"))
>>> tuple(outputs["logits"].shape), tuple(outputs["pred_boxes"].shape)
((1, 4, 4), (1, 4, 4))
"""

from keras_vit.models.detr.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
)
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
from keras_vit.models.detr.detr_postprocess import image_sizes_from_pixel_mask, post_process_detections
from keras_vit.models.detr.detr_presets import PRESETS
from keras_vit.models.registry import register_model
from keras_vit.weights.published import register_published

register_published(*PRESETS)
register_model("DETRResNet50", DETRResNet50, "detr", task="detection", default_input_size=800)
register_model("DETRResNet101", DETRResNet101, "detr", task="detection", default_input_size=800)
