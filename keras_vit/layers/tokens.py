"""Learned tokens prepended to the patch sequence (class, distillation)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends one learned token of shape (1, 1, D) to every sequence.

    ViT prepends a class token; distilled DeiT applies a second `ClassToken`
    for the distillation token first, then the class token, which gives the
    reference order [cls, dist, patches].

    Example:
    >>> import numpy as np
    >>> tuple(ClassToken()(np.zeros((2, 16, 48), "float32")).shape)
    (2, 17, 48)
    """

    def __init__(self, initializer="truncated_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = initializer

    def build(self, input_shape):
        initializer = self.initializer
        if initializer == "truncated_normal":
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer=initializer, name="token")
        self.built = True

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (batch, 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[2])

    def get_config(self):
        config = super().get_config()
        initializer = self.initializer
        if not isinstance(initializer, str):
            initializer = keras.initializers.serialize(initializer)
        config.update({"initializer": initializer})
        return config
