"""Learned tokens prepended to the patch sequence (class, distillation)."""

import keras
from keras import ops


def token_features(sequence, index):
    """The features of token `index` of a (B, N, D) sequence, as (B, D): the class or distillation token.

    Slices one token and reshapes it away (`sequence[:, index:index + 1]`, then a reshape) rather
    than indexing (`sequence[:, index]`): the same numbers, but indexing exports as a STRIDED_SLICE
    that drops an axis, which XNNPACK (the LiteRT CPU delegate) does not run, so the op stayed on
    TFLite's own kernels and cut the .tflite graph into a second delegate partition.

    Example:
    >>> import numpy as np
    >>> sequence = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    >>> keras.ops.convert_to_numpy(token_features(sequence, 1)).tolist()
    [[4.0, 5.0, 6.0, 7.0], [16.0, 17.0, 18.0, 19.0]]
    """
    return ops.reshape(sequence[:, index : index + 1], (-1, sequence.shape[-1]))


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
