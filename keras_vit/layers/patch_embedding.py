"""Patch embedding: cut the image into patches and project each one."""

import keras
from keras import ops


def check_batch_not_empty(images, owner):
    """Raises a ValueError when `images` is statically known to hold 0 images.

    The backends fail on an empty batch deep inside a reshape (JAX: ZeroDivisionError, PyTorch: a
    reshape error, TensorFlow: a graph error), so models check where the images come in. A batch
    size unknown while tracing (None) passes.

    Example:
    >>> import numpy as np
    >>> check_batch_not_empty(np.zeros((2, 8, 8, 3)), "ViT")
    >>> check_batch_not_empty(np.zeros((0, 8, 8, 3)), "ViT")
    Traceback (most recent call last):
    ...
    ValueError: ViT got a batch of 0 images (input shape (0, 8, 8, 3)); pass at least one image.
    """
    if images.shape[0] == 0:
        raise ValueError(
            f"{owner} got a batch of 0 images (input shape {tuple(images.shape)}); pass at least one image."
        )


def _pair(value):
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """A convolution with kernel = stride = patch size, flattened to tokens.

    Takes images (B, H, W, C) and returns (B, (H / p) * (W / p), hidden_dim),
    tokens in row-major order as timm and the original ViT produce them. H and W
    must be divisible by the patch size (they need not be equal).

    Example:
    >>> import numpy as np
    >>> embed = PatchEmbedding(patch_size=8, hidden_dim=48)
    >>> tuple(embed(np.zeros((2, 32, 48, 3), "float32")).shape)
    (2, 24, 48)
    """

    def __init__(self, patch_size, hidden_dim, flatten=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _pair(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.flatten = flatten
        self.use_bias = use_bias
        self.proj = keras.layers.Conv2D(
            hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            use_bias=use_bias,
            dtype=self.dtype_policy,
            name="proj",
        )

    def _check_size(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        ph, pw = self.patch_size
        for size, patch, axis in ((height, ph, "height"), (width, pw, "width")):
            if size is not None and size % patch != 0:
                raise ValueError(
                    f"Image {axis} {size} is not divisible by the patch size {patch}. "
                    f"Resize or crop the images to a multiple of {patch} "
                    f"(for example {max(patch, size // patch * patch)})."
                )

    def build(self, input_shape):
        self._check_size(input_shape)
        self.proj.build(input_shape)
        self.built = True

    def call(self, inputs):
        check_batch_not_empty(inputs, f"{type(self).__name__} {self.name!r}")
        x = self.proj(inputs)
        if not self.flatten:
            return x
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            shape = ops.shape(x)
            height, width = shape[1], shape[2]
        return ops.reshape(x, (-1, height * width, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        self._check_size(input_shape)
        h, w = input_shape[1], input_shape[2]
        gh = None if h is None else h // self.patch_size[0]
        gw = None if w is None else w // self.patch_size[1]
        if not self.flatten:
            return (input_shape[0], gh, gw, self.hidden_dim)
        n = None if gh is None or gw is None else gh * gw
        return (input_shape[0], n, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": list(self.patch_size),
                "hidden_dim": self.hidden_dim,
                "flatten": self.flatten,
                "use_bias": self.use_bias,
            }
        )
        return config
