"""Training utilities: losses, optimizers, callbacks and recipes."""

from keras_vit.training.detr_loss import DETRLoss, HungarianMatcher, pad_detection_targets, validate_detection_targets
from keras_vit.training.detr_optimizer import BackboneAdamW, detr_optimizer
