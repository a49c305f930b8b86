"""Layers only ViT and DeiT use: Visual Prompt Tuning's prompt tokens (Jia et al., 2022)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class PromptTokens(keras.layers.Layer):
    """Learned prompt tokens placed right after the class (and distillation) tokens.

    Shallow VPT inserts `num_prompts` tokens once, before the first block:
    `[cls, (dist,) prompts, patches]`. Deep VPT gives every later block its own
    prompts: with `replace=True` the layer overwrites the previous block's outputs
    at the prompt places instead of inserting. Prompts get no position embedding.
    The tokens start uniform in +-sqrt(6 / (3 * patch_area + D)), VPT's Xavier
    initialization; `dropout` is VPT's prompt dropout.

    Example:
    >>> import numpy as np
    >>> layer = PromptTokens(num_prompts=5, num_prefix_tokens=1)
    >>> tuple(layer(np.zeros((2, 17, 48), "float32")).shape)
    (2, 22, 48)
    >>> tuple(PromptTokens(5, 1, replace=True)(np.zeros((2, 22, 48), "float32")).shape)
    (2, 22, 48)
    """

    def __init__(self, num_prompts, num_prefix_tokens=1, replace=False, patch_area=256, dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
            raise ValueError(f"num_prompts must be a positive int, got {num_prompts!r}.")
        self.num_prompts = num_prompts
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.replace = bool(replace)
        self.patch_area = int(patch_area)
        self.dropout = float(dropout)
        self.seed = seed
        self.drop = keras.layers.Dropout(self.dropout, seed=seed, dtype=self.dtype_policy)

    def build(self, input_shape):
        limit = math.sqrt(6.0 / (3 * self.patch_area + input_shape[-1]))
        self.tokens = self.add_weight(
            shape=(1, self.num_prompts, input_shape[-1]),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            name="tokens",
        )
        self.built = True

    def call(self, inputs, training=None):
        batch = ops.shape(inputs)[0]
        prompts = ops.broadcast_to(ops.cast(self.tokens, inputs.dtype), (batch, self.num_prompts, inputs.shape[-1]))
        prompts = self.drop(prompts, training=training)
        start = self.num_prefix_tokens + (self.num_prompts if self.replace else 0)
        return ops.concatenate([inputs[:, : self.num_prefix_tokens], prompts, inputs[:, start:]], axis=1)

    def compute_output_shape(self, input_shape):
        if self.replace or input_shape[1] is None:
            return tuple(input_shape)
        return (input_shape[0], input_shape[1] + self.num_prompts, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_prompts": self.num_prompts,
                "num_prefix_tokens": self.num_prefix_tokens,
                "replace": self.replace,
                "patch_area": self.patch_area,
                "dropout": self.dropout,
                "seed": self.seed,
            }
        )
        return config
