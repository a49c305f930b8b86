"""The pre-norm transformer encoder block of ViT and DeiT."""

import keras

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.drop_path import DropPath, dropped
from keras_vit.layers.gradient_boundary import residual_gradient_boundary
from keras_vit.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerEncoderBlock(keras.layers.Layer):
    """`x + attn(norm1(x))`, then `x + mlp(norm2(x))`, each branch with drop path.

    LayerNorm epsilon defaults to 1e-6 as in ViT/DeiT (Keras' default is 1e-3).

    Example:
    >>> import numpy as np
    >>> block = TransformerEncoderBlock(hidden_dim=48, num_heads=3, mlp_dim=192)
    >>> tuple(block(np.zeros((2, 17, 48), "float32")).shape)
    (2, 17, 48)
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        qkv_bias=True,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.qkv_bias = qkv_bias
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm1")
        self.attn = MultiHeadSelfAttention(
            hidden_dim, num_heads, qkv_bias=qkv_bias, attention_dropout=attention_dropout,
            dropout=dropout, dtype=policy, name="attn",
        )
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm2")
        self.mlp = MLP(mlp_dim, hidden_dim, dropout=dropout, dtype=policy, name="mlp")
        self.drop_path = DropPath(drop_path_rate, seed=seed, dtype=policy, name="drop_path")

    def build(self, input_shape):
        # The drop path too, although `dropped` may never call it (inference, rate 0): while any layer is
        # unbuilt, Keras' JAX predict_on_batch runs the whole model eagerly before every compiled call
        # (ViT-B/16 batch 8: 7 s per call instead of 1.5), and train_on_batch rebuilds it symbolically.
        for layer in (self.norm1, self.attn, self.norm2, self.mlp, self.drop_path):
            layer.build(input_shape)
        self.built = True

    def call(self, inputs, training=None, return_attention_scores=False):
        attended = self.attn(self.norm1(inputs), training=training, return_attention_scores=return_attention_scores)
        if return_attention_scores:
            attended, scores = attended
        # `dropped` skips the drop-path layer call where it is the identity (inference, rate 0).
        x = inputs + dropped(self.drop_path, attended, training)
        x = x + dropped(self.drop_path, self.mlp(self.norm2(x), training=training), training)
        x = residual_gradient_boundary(x)  # XLA:CPU would recompute the residual gradient chain otherwise
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "qkv_bias": self.qkv_bias,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "seed": self.seed,
            }
        )
        return config
