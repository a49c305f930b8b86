"""Stochastic depth: drop a residual branch per sample."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al., 2016), as timm's `DropPath`.

    In training, each sample's input is zeroed with probability `rate` and the
    survivors are scaled by `1 / (1 - rate)`; at inference it is the identity.
    The randomness comes from a `keras.random.SeedGenerator`, so the layer is
    deterministic for a given seed and works inside jit-compiled train steps.

    Example:
    >>> import numpy as np
    >>> layer = DropPath(rate=0.5, seed=0)
    >>> y = layer(np.ones((4, 3, 8), "float32"), training=True)
    >>> tuple(y.shape)
    (4, 3, 8)
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        mask = ops.floor(noise + ops.cast(keep, inputs.dtype))
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


def dropped(layer, inputs, training):
    """`layer(inputs, training=training)` for a `keras.layers.Dropout` or `DropPath`, without
    calling the layer where it is the identity: outside training, or at rate 0.

    Same result either way (both layers return their input unchanged in those cases and draw
    no random numbers); what it saves is the Python of a Keras layer call, which on the eager
    PyTorch backend costs about as much as a small kernel: a ViT block calls five such
    layers, 60 of the 176 layer calls of a ViT-B/16 forward. Call it from inside a layer's
    `call()`, where Keras has already resolved `training` from the call context.

    Example:
    >>> import numpy as np
    >>> drop = keras.layers.Dropout(0.5)
    >>> x = np.ones((2, 3), "float32")
    >>> dropped(drop, x, training=False) is x
    True
    >>> tuple(dropped(drop, x, training=True).shape)
    (2, 3)
    """
    if not training or getattr(layer, "rate", 0.0) == 0:
        return inputs
    return layer(inputs, training=training)
