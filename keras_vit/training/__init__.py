"""Training: DeiT distillation and recipe (and DETR's matcher and set loss)."""

from keras_vit.training.distillation import DistillationModel, distillation_loss
from keras_vit.training.recipe import (
    DEIT_RECIPE,
    AugmentedBatches,
    DeiTAugmentation,
    deit_loss,
    deit_optimizer,
    no_weight_decay_variables,
    scaled_learning_rate,
    warmup_cosine_schedule,
)
