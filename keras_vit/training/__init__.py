"""Training utilities: losses, optimizers, callbacks and recipes."""

from keras_vit.training.detr_loss import DETRLoss, HungarianMatcher, pad_detection_targets, validate_detection_targets
from keras_vit.training.detr_optimizer import BackboneAdamW, detr_optimizer
from keras_vit.training.detr_postprocess import image_sizes_from_pixel_mask, post_process_detections
from keras_vit.training.coco_callback import COCOMetricsCallback, coco_map, evaluate_coco
