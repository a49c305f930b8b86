"""tf.data / tensorflow-datasets input pipelines."""

from keras_vit.data.detection import (
    coco_detection_dataset,
    detection_dataset_from_arrays,
    load_coco_folder,
    prepare_detection_dataset,
)
from keras_vit.data.shapes import SHAPES_CLASS_NAMES, make_shapes_dataset, make_shapes_image
