"""BatchNorm with frozen statistics and affine terms, as DETR's ResNet backbones use."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class FrozenBatchNormalization(keras.layers.Layer):
    """Batch normalization whose statistics and affine terms never change.

    `y = x * w * rsqrt(var + eps) + (b - mean * w * rsqrt(var + eps))`, the form of
    torchvision's / transformers' `FrozenBatchNorm2d` (eps 1e-5), so a ResNet with
    detection batch sizes of 1-4 images keeps its ImageNet statistics. All four
    weights (`gamma`, `beta`, `moving_mean`, `moving_variance`) are non-trainable
    and the layer behaves the same in training and inference. Variables stay
    float32 under mixed precision; the per-channel scale and shift are computed in
    float32 and then cast to the input's dtype.

    Example:
    >>> import numpy as np
    >>> bn = FrozenBatchNormalization()
    >>> y = bn(np.ones((1, 2, 2, 3), "float32"))
    >>> round(float(y[0, 0, 0, 0]), 4)  # (1 - 0) / sqrt(1 + 1e-5)
    1.0
    >>> len(bn.trainable_weights), len(bn.non_trainable_weights)
    (0, 4)
    """

    def __init__(self, epsilon=1e-5, axis=-1, **kwargs):
        kwargs.setdefault("autocast", False)  # read the statistics in float32
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.axis = int(axis)

    def build(self, input_shape):
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(f"FrozenBatchNormalization needs a known channel count, got input shape {input_shape}.")
        shape = (int(channels),)
        self.gamma = self.add_weight(shape=shape, initializer="ones", trainable=False, name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="beta")
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", trainable=False, name="moving_variance")
        self.built = True

    def call(self, inputs):
        gamma = ops.cast(self.gamma, "float32")
        scale = gamma * ops.rsqrt(ops.cast(self.moving_variance, "float32") + self.epsilon)
        shift = ops.cast(self.beta, "float32") - ops.cast(self.moving_mean, "float32") * scale
        rank = len(inputs.shape)
        axis = self.axis % rank
        if axis != rank - 1:  # broadcast the per-channel terms along `axis`
            broadcast = [1] * rank
            broadcast[axis] = -1
            scale, shift = ops.reshape(scale, broadcast), ops.reshape(shift, broadcast)
        return inputs * ops.cast(scale, inputs.dtype) + ops.cast(shift, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs):
        # autocast is off, so the output keeps the input's dtype, not the policy's compute dtype.
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "axis": self.axis})
        return config
