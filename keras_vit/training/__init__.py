"""Training: DeiT distillation and recipe; DETR's and Conditional DETR's matchers, set losses,
optimizer and COCO metrics.

DETR's target padding (`pad_detection_targets`, `validate_detection_targets`) lives with the
detection data (`keras_vit.data.detection`) and its post-processing with the model
(`keras_vit.models.detr.detr_postprocess`); both are re-exported here, where they were first.
"""

# DeiT (keras_vit/training/distillation.py, keras_vit/training/recipe.py).
from keras_vit.training.distillation import DistillationLoss, DistillationModel, distillation_loss
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

# Fine-tuning (keras_vit/training/finetune.py).
from keras_vit.training.finetune import (
    ScaledAdamW,
    enable_lora,
    freeze_backbone,
    layer_decay_multipliers,
    layer_decay_optimizer,
    unfreeze,
)

# Resuming a killed fit() (keras_vit/training/resume.py).
from keras_vit.training.resume import AtomicBackupAndRestore, read_backup_epoch

# DETR (keras_vit/training/detr_*.py, keras_vit/training/coco_callback.py).
from keras_vit.data.detection import pad_detection_targets, validate_detection_targets
from keras_vit.models.detr.detr_postprocess import image_sizes_from_pixel_mask, post_process_detections
from keras_vit.training.detr_loss import DETRLoss
from keras_vit.training.denoising import Denoising, denoising_loss
from keras_vit.training.detr_matcher import HungarianMatcher
from keras_vit.training.conditional_detr_loss import ConditionalDETRLoss, FocalHungarianMatcher, sigmoid_focal_loss
from keras_vit.training.detr_optimizer import BackboneAdamW, detr_optimizer
from keras_vit.training.coco_callback import COCOMetricsCallback, coco_map, evaluate_coco
from keras_vit.training.hungarian import linear_sum_assignment
