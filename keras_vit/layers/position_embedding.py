"""Learned absolute position embedding, resampled when the grid changes (when weights load, or at
run time for images of any size)."""

import keras
from keras import ops

from keras_vit.layers.resampling import resize_matrix, resample_position_embedding


def _cubic(x, a=-0.5):
    """The cubic convolution kernel of torch's antialiased bicubic (a = -0.5), in `keras.ops`."""
    x = ops.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return ops.where(x < 1.0, near, ops.where(x < 2.0, far, ops.zeros_like(x)))


def bicubic_antialias_matrix(in_size, out_size):
    """The (out_size, in_size) float32 weights of torch's `F.interpolate(mode="bicubic",
    antialias=True, align_corners=False)` along one axis, for an `out_size` that may be a
    tensor known only at run time (a `tf.function` with unknown image sizes).

    With an int `out_size` it is `keras_vit.layers.resampling`'s NumPy matrix (float64, then
    float32); otherwise the same formula in `keras.ops`, float32.

    Example:
    >>> from keras import ops
    >>> tuple(ops.shape(bicubic_antialias_matrix(4, 6)))
    (6, 4)
    """
    if isinstance(out_size, int):
        return ops.convert_to_tensor(resize_matrix(int(in_size), out_size, "bicubic_antialias"), "float32")
    in_float = float(in_size)
    out_float = ops.cast(out_size, "float32")
    scale = in_float / out_float
    downsampling = scale >= 1.0
    support = ops.where(downsampling, 2.0 * scale, 2.0)
    inverse_scale = ops.where(downsampling, 1.0 / scale, 1.0)
    centers = scale * (ops.cast(ops.arange(out_size), "float32")[:, None] + 0.5)
    sources = ops.cast(ops.arange(in_size), "float32")[None, :]
    # torch's window [xmin, xmax) of each output (the first bound truncated, so floor above 0).
    first = ops.maximum(ops.floor(centers - support + 0.5), 0.0)
    last = ops.minimum(ops.floor(centers + support + 0.5), in_float)
    inside = ops.logical_and(sources >= first, sources < last)
    weights = ops.where(inside, _cubic((sources - centers + 0.5) * inverse_scale), ops.zeros_like(sources - centers))
    total = ops.sum(weights, axis=1, keepdims=True)
    return weights / ops.where(ops.equal(total, 0.0), ops.ones_like(total), total)


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned (1, num_prefix_tokens + H * W, D) embedding to the tokens.

    `grid_size` is the (H, W) patch grid the layer is built for. `set_embedding`
    fills it from an embedding made for another grid, resampled exactly as timm
    does (bicubic, antialias, float32, prefix tokens untouched), which is how a
    checkpoint trained at 224 runs at 384.

    Images of any size (timm's `dynamic_img_size`): with `patch_size` (an int) the
    layer is called as `layer(tokens, images)` (only the images' height and width are
    used) and the stored embedding is resampled at run time, the same way, to the
    images' patch grid; on the stored grid it is added as it is. An image side that is
    not a multiple of `patch_size` raises a `ValueError` when the size is known while
    tracing (eager, JAX, PyTorch, a `tf.function` traced for the size); in a
    `tf.function` traced with unknown sizes TensorFlow raises an `InvalidArgumentError`
    with the same message when it runs. The weights are the same as without
    `patch_size`, so files load from one into the other.

    Example:
    >>> import numpy as np
    >>> layer = PositionEmbedding(grid_size=(4, 4), num_prefix_tokens=1)
    >>> tuple(layer(np.zeros((2, 17, 48), "float32")).shape)
    (2, 17, 48)
    >>> layer.set_embedding(np.zeros((1, 37, 48), "float32"), source_grid=(6, 6))
    >>> any_size = PositionEmbedding(grid_size=(4, 4), num_prefix_tokens=1, patch_size=8)
    >>> tuple(any_size(np.zeros((1, 1 + 6 * 5, 48), "float32"), np.zeros((1, 48, 40, 3), "float32")).shape)
    (1, 31, 48)
    """

    def __init__(self, grid_size, num_prefix_tokens=1, patch_size=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(grid_size, int):
            grid_size = (grid_size, grid_size)
        self.grid_size = tuple(int(g) for g in grid_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.patch_size = None if patch_size is None else int(patch_size)

    @property
    def num_positions(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, inputs_shape, images_shape=None):
        input_shape = inputs_shape
        if self.patch_size is None:
            self._check_token_count(input_shape[1])
        self.embedding = self.add_weight(
            shape=(1, self.num_positions, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )
        self.built = True

    def _check_token_count(self, num_tokens):
        """A fixed table fits one token count: anything else is images of another size (checked in `call`
        too, since a built model's compiled predict on JAX calls layers without Keras' input check)."""
        if num_tokens is not None and num_tokens != self.num_positions:
            raise ValueError(
                f"PositionEmbedding built for a {self.grid_size[0]}x{self.grid_size[1]} grid plus "
                f"{self.num_prefix_tokens} prefix tokens ({self.num_positions} positions) got "
                f"{num_tokens} tokens: the images are not the size the model was built for. Resize them to "
                "it (keras_vit.load_image(image, model) does), wrap the model with keras_vit.with_image_resizing, "
                "or build it with dynamic_image_size=True."
            )

    def _patch_grid(self, images):
        """The (rows, columns) of patches of `images`: ints when known now, else tensors."""
        static = tuple(images.shape[1:3])
        dynamic = ops.shape(images)
        grid = []
        for index, (size, axis) in enumerate(zip(static, ("height", "width"))):
            if isinstance(size, int):
                if size % self.patch_size or size < self.patch_size:
                    fixed = max(self.patch_size, size // self.patch_size * self.patch_size)
                    raise ValueError(
                        f"{self.name}: image {axis} {size} is not a multiple of the patch size {self.patch_size}. "
                        f"Resize or crop the images to a multiple of {self.patch_size} (for example {fixed})."
                    )
                grid.append(size // self.patch_size)
            else:
                self._assert_whole_patches(dynamic[index + 1], axis)
                grid.append(dynamic[index + 1] // self.patch_size)
        return tuple(grid)

    def _assert_whole_patches(self, size, axis):
        """The same check at run time, for a size unknown while tracing: only a `tf.function` traced
        with unknown image sizes gets here (JAX and PyTorch always know the sizes). keras.ops has no
        assertion, hence TensorFlow's own; its error carries the message below."""
        import tensorflow as tf

        tf.debugging.assert_equal(
            size % self.patch_size, tf.zeros_like(size),
            message=f"{self.name}: an image {axis} is not a multiple of the patch size {self.patch_size}. "
                    f"Resize or crop the images to a multiple of {self.patch_size}.",
        )
        tf.debugging.assert_greater_equal(
            size, tf.cast(self.patch_size, size.dtype),
            message=f"{self.name}: an image {axis} is smaller than the patch size {self.patch_size}.",
        )

    def call(self, inputs, images=None):
        if self.patch_size is None:
            self._check_token_count(inputs.shape[1])
            return inputs + ops.cast(self.embedding, inputs.dtype)
        if images is None:
            raise ValueError(f"{self.name}: a PositionEmbedding with patch_size is called as layer(tokens, images).")
        grid = self._patch_grid(images)
        known = all(isinstance(size, int) for size in grid)
        if known and grid == self.grid_size:  # the stored grid (known while tracing): no resampling at all
            return inputs + ops.cast(self.embedding, inputs.dtype)
        prefix = self.num_prefix_tokens
        width = self.embedding.shape[-1]
        embedding = ops.cast(self.embedding, "float32")  # timm resamples in float32
        stored = ops.reshape(embedding[0, prefix:], (self.grid_size[0], self.grid_size[1], width))
        rows = bicubic_antialias_matrix(self.grid_size[0], grid[0])
        columns = bicubic_antialias_matrix(self.grid_size[1], grid[1])
        resized = ops.einsum("ih,hwd->iwd", rows, stored)
        resized = ops.einsum("jw,iwd->ijd", columns, resized)
        embedding = ops.concatenate([embedding[:, :prefix], ops.reshape(resized, (1, -1, width))], axis=1)
        return inputs + ops.cast(embedding, inputs.dtype)

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

    def compute_output_shape(self, inputs_shape, images_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": list(self.grid_size), "num_prefix_tokens": self.num_prefix_tokens})
        if self.patch_size is not None:  # configurations of fixed-size layers stay as they were
            config["patch_size"] = self.patch_size
        return config
