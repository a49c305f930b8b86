"""Input pipelines on tf.data / tensorflow-datasets, for every Keras backend.

Example:
>>> from keras_vit.data import load_classification_data
>>> data = load_classification_data("digits", image_size=16)
>>> data.num_classes
10
"""

# Batches that split over devices (keras_vit/data/batching.py).
from keras_vit.data.batching import check_batch_size, data_parallel_replicas, pad_last_batch

# Classification (keras_vit/data/classification.py).
from keras_vit.data.classification import (
    ClassificationData,
    ShuffleEpoch,
    arrays_dataset,
    classification_pipeline,
    digits_dataset,
    image_folder_dataset,
    load_classification_data,
    load_digits,
    tfds_dataset,
)

# Any image in (keras_vit/data/images.py).
from keras_vit.data.images import image_recipe, load_image, resize_and_center_crop, with_image_resizing

# Detection (keras_vit/data/detection.py, keras_vit/data/shapes.py).
from keras_vit.data.detection import (
    check_detection_targets,
    coco_detection_dataset,
    detection_dataset_from_arrays,
    load_coco_folder,
    pad_detection_targets,
    prepare_detection_dataset,
    validate_detection_targets,
)
from keras_vit.data.shapes import SHAPES_CLASS_NAMES, make_shapes_dataset, make_shapes_image
