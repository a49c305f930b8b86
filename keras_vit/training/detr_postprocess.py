"""Moved: DETR's post-processing is `keras_vit.models.detr.detr_postprocess` (also `keras_vit.training`)."""

import warnings

from keras_vit.models.detr.detr_postprocess import (  # noqa: F401
    image_sizes_from_pixel_mask,
    post_process_detections,
    targets_to_pixel_boxes,
)

warnings.warn(
    "keras_vit.training.detr_postprocess moved to keras_vit.models.detr.detr_postprocess; the old module "
    "will be removed.",
    DeprecationWarning,
    stacklevel=2,
)
