"""In-model preprocessing, so an exported model takes raw RGB pixels."""

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@keras.saving.register_keras_serializable(package="keras_vit")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to `(x / 255 - mean) / std`.

    Put in front of a model (`include_preprocessing=True`) so that the model, and
    any SavedModel or .tflite file exported from it, takes raw camera pixels and
    applies the normalization its weights were trained with.

    Example:
    >>> import numpy as np
    >>> norm = ImageNormalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> float(norm(np.full((1, 2, 2, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=1.0 / 255.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.scale = float(scale)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} must have the same length.")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        inv_std = ops.convert_to_tensor([1.0 / s for s in self.std], dtype=self.compute_dtype)
        return (x * self.scale - mean) * inv_std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std), "scale": self.scale})
        return config
