"""The transformer feed-forward block."""

import keras

from keras_vit.layers.drop_path import dropped


@keras.saving.register_keras_serializable(package="keras_vit")
class MLP(keras.layers.Layer):
    """Two dense layers with an activation between them: `fc1 -> act -> fc2`.

    The activation defaults to the exact (erf) GELU that ViT, DeiT, TNT and Swin
    use; Keras' `gelu` default is the tanh approximation, which differs by ~1e-3.

    Example:
    >>> import numpy as np
    >>> mlp = MLP(hidden_dim=32, output_dim=8)
    >>> tuple(mlp(np.zeros((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(self, hidden_dim, output_dim, activation="gelu", dropout=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.activation = activation
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.fc1 = keras.layers.Dense(hidden_dim, use_bias=use_bias, dtype=self.dtype_policy, name="fc1")
        self.fc2 = keras.layers.Dense(output_dim, use_bias=use_bias, dtype=self.dtype_policy, name="fc2")
        self.drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def _activate(self, x):
        if self.activation == "gelu":
            return keras.activations.gelu(x, approximate=False)
        return keras.activations.get(self.activation)(x)

    def call(self, inputs, training=None):
        x = self._activate(self.fc1(inputs))
        x = dropped(self.drop, x, training)
        x = self.fc2(x)
        return dropped(self.drop, x, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "activation": self.activation,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
            }
        )
        return config
