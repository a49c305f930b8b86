"""Training: DeiT distillation and recipe (and DETR's matcher and set loss)."""

from keras_vit.training.distillation import DistillationModel, distillation_loss
