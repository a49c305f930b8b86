"""tf.data / tensorflow-datasets input pipelines."""

from keras_vit.data.detection import (
    coco_detection_dataset,
    detection_dataset_from_arrays,
    load_coco_folder,
    prepare_detection_dataset,
)
from keras_vit.data.shapes import SHAPES_CLASS_NAMES, make_shapes_dataset, make_shapes_image
"""Input pipelines on tf.data / tensorflow-datasets, for every Keras backend.

Example:
>>> from keras_vit.data import load_classification_data
>>> data = load_classification_data("digits", image_size=16)
>>> data.num_classes
10
"""

# Classification (keras_vit/data/classification.py).
from keras_vit.data.classification import (
    ClassificationData,
    arrays_dataset,
    classification_pipeline,
    digits_dataset,
    image_folder_dataset,
    load_classification_data,
    load_digits,
    tfds_dataset,
)
