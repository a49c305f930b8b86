"""Learned absolute position embedding, resampled when the grid changes."""

import keras
from keras import ops

from keras_vit.layers.resampling import resample_position_embedding


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned (1, num_prefix_tokens + H * W, D) embedding to the tokens.

    `grid_size` is the (H, W) patch grid the layer is built for. `set_embedding`
    fills it from an embedding made for another grid, resampled exactly as timm
    does (bicubic, antialias, float32, prefix tokens untouched), which is how a
    checkpoint trained at 224 runs at 384.

    Example:
    >>> import numpy as np
    >>> layer = PositionEmbedding(grid_size=(4, 4), num_prefix_tokens=1)
    >>> tuple(layer(np.zeros((2, 17, 48), "float32")).shape)
    (2, 17, 48)
    >>> layer.set_embedding(np.zeros((1, 37, 48), "float32"), source_grid=(6, 6))
    """

    def __init__(self, grid_size, num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(grid_size, int):
            grid_size = (grid_size, grid_size)
        self.grid_size = tuple(int(g) for g in grid_size)
        self.num_prefix_tokens = int(num_prefix_tokens)

    @property
    def num_positions(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, input_shape):
        if input_shape[1] is not None and input_shape[1] != self.num_positions:
            raise ValueError(
                f"PositionEmbedding built for a {self.grid_size[0]}x{self.grid_size[1]} grid plus "
                f"{self.num_prefix_tokens} prefix tokens ({self.num_positions} positions) got "
                f"{input_shape[1]} tokens."
            )
        self.embedding = self.add_weight(
            shape=(1, self.num_positions, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )
        self.built = True

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def resampled(self, embedding, source_grid, method="bicubic_antialias"):
        """`embedding` (for `source_grid`) resampled to this layer's grid, as NumPy."""
        return resample_position_embedding(
            embedding, source_grid, self.grid_size, self.num_prefix_tokens, method
        )

    def set_embedding(self, embedding, source_grid=None, method="bicubic_antialias"):
        """Fills the layer from an embedding made for `source_grid` (default: same grid)."""
        if source_grid is not None:
            embedding = self.resampled(embedding, source_grid, method)
        self.embedding.assign(embedding)

    def resample_weight(self, variable, array):
        """`array`, a saved `embedding` of another square grid, resampled to this layer's grid
        (timm's bicubic with antialias); what loading a Keras file of another resolution calls.

        Example:
        >>> import numpy as np
        >>> layer = PositionEmbedding(grid_size=(6, 6))
        >>> layer.build((None, 37, 8))
        >>> layer.resample_weight(layer.embedding, np.zeros((1, 17, 8), "float32")).shape
        (1, 37, 8)
        """
        positions = array.shape[1] - self.num_prefix_tokens
        side = int(round(max(positions, 0) ** 0.5))
        if array.ndim != 3 or side * side != positions or array.shape[-1] != variable.shape[-1]:
            raise ValueError(
                f"{self.name}: cannot resample a saved position embedding of shape {tuple(array.shape)} to "
                f"{tuple(variable.shape)}: only a square grid of the same width can be resampled (a file saved "
                "at a non-square size loads into a model of that size only)."
            )
        return self.resampled(array, (side, side))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": list(self.grid_size), "num_prefix_tokens": self.num_prefix_tokens})
        return config
