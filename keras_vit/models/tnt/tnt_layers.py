"""Layers of TNT, Transformer in Transformer (Han et al., 2021).

TNT keeps two sets of tokens: "pixels", a few `inner_dim` vectors per 16x16
patch (4x4 of them with the canonical stride 4), and patches, one `hidden_dim`
vector per patch plus a class token. Each `TNTBlock` runs an inner
transformer over the pixels of each patch, adds a projection of the pixels to
their patch token, and runs an outer transformer over the patches.

Tensors between layers keep the batch first: pixels are (B, N, P, C) with N
patches of P pixels, patches are (B, 1 + N, D). The layers follow timm's
`tnt.py` (>= 1.0.16), which matches the official weights.
"""

import keras
from keras import ops

from keras_vit.layers.attention import attention_record, scaled_dot_product_attention
from keras_vit.layers.drop_path import DropPath, dropped
from keras_vit.layers.gradient_boundary import residual_gradient_boundary
from keras_vit.layers.mlp import MLP
from keras_vit.layers.patch_embedding import check_batch_not_empty
from keras_vit.layers.renamed_arguments import take_renamed_arguments


def renamed_tnt_arguments(arguments, owner, warn=True, stacklevel=4):
    """TNT's old argument names moved to the package's vocabulary, in place.

    `num_heads_inner`/`num_heads_outer` became `inner_num_heads`/`num_heads`, and the
    MLP ratios `mlp_ratio`/`inner_mlp_ratio` the widths `mlp_dim`/`inner_mlp_dim`.

    Example:
    >>> renamed_tnt_arguments({"hidden_dim": 64, "inner_dim": 16, "mlp_ratio": 4.0}, "TNT", warn=False)
    {'hidden_dim': 64, 'inner_dim': 16, 'mlp_dim': 256}
    """
    hidden_dim, inner_dim = arguments.get("hidden_dim"), arguments.get("inner_dim")
    return take_renamed_arguments(
        arguments,
        {
            "num_heads_inner": ("inner_num_heads", None),
            "num_heads_outer": ("num_heads", None),
            "mlp_ratio": ("mlp_dim", lambda ratio: int(hidden_dim * ratio)),
            "inner_mlp_ratio": ("inner_mlp_dim", lambda ratio: int(inner_dim * ratio)),
        },
        owner,
        warn=warn,
        stacklevel=stacklevel,
    )


def _pair(value):
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package="keras_vit")
class PixelEmbedding(keras.layers.Layer):
    """Cuts images into patches and embeds each patch's "pixels" with a convolution.

    Each `patch_size` patch is convolved on its own (kernel 7, stride
    `pixel_stride`, zero padding 3 at the patch's borders, so nothing leaks
    between patches), giving `(patch / stride) ** 2` pixel vectors of
    `inner_dim` channels per patch. Images (B, H, W, C) become pixels
    (B, N, P, inner_dim), patches and pixels in row-major order.

    The patches are cut with a reshape and a transpose (no `extract_patches`),
    which every backend and TFLite's builtin ops support.

    Example:
    >>> import numpy as np
    >>> embed = PixelEmbedding(patch_size=16, inner_dim=24)
    >>> tuple(embed(np.zeros((2, 32, 48, 3), "float32")).shape)
    (2, 6, 16, 24)
    """

    def __init__(self, patch_size, inner_dim, pixel_stride=4, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _pair(patch_size)
        self.inner_dim = int(inner_dim)
        self.pixel_stride = int(pixel_stride)
        self.kernel_size = int(kernel_size)
        for size in self.patch_size:
            if size % self.pixel_stride != 0:
                raise ValueError(
                    f"patch size {size} is not divisible by the pixel stride {self.pixel_stride}; "
                    "use a patch size that is a multiple of the stride (16 with stride 4 in TNT)."
                )
        self.pixel_grid = (self.patch_size[0] // self.pixel_stride, self.patch_size[1] // self.pixel_stride)
        # Same as torch's Conv2d(padding=k // 2) on each patch: pad explicitly, then a valid convolution.
        self.pad = keras.layers.ZeroPadding2D(self.kernel_size // 2, dtype=self.dtype_policy, name="pad")
        self.proj = keras.layers.Conv2D(
            inner_dim, self.kernel_size, strides=self.pixel_stride, padding="valid",
            dtype=self.dtype_policy, name="proj",
        )

    @property
    def num_pixels(self):
        return self.pixel_grid[0] * self.pixel_grid[1]

    def _grid(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        ph, pw = self.patch_size
        for size, patch, axis in ((height, ph, "height"), (width, pw, "width")):
            if size is not None and (size % patch != 0 or size < patch):
                raise ValueError(
                    f"Image {axis} {size} is not a multiple of the patch size {patch}. Resize or crop "
                    f"the images to a multiple of {patch} (for example {max(patch, round(size / patch) * patch)})."
                )
        return (None if height is None else height // ph, None if width is None else width // pw)

    def build(self, input_shape):
        self._grid(input_shape)
        patch_shape = (None, self.patch_size[0], self.patch_size[1], input_shape[-1])
        self.pad.build(patch_shape)
        self.proj.build(self.pad.compute_output_shape(patch_shape))
        self.built = True

    def call(self, inputs):
        check_batch_not_empty(inputs, f"{type(self).__name__} {self.name!r}")
        ph, pw = self.patch_size
        channels = inputs.shape[-1]
        grid_h, grid_w = self._grid(inputs.shape)
        if grid_h is None or grid_w is None:
            shape = ops.shape(inputs)
            grid_h, grid_w = shape[1] // ph, shape[2] // pw
        # (B, H, W, C) -> (B * gh, ph, gw, pw * C) -> (B * gh, gw, ph, pw * C) -> (B * N, ph, pw, C):
        # a 4-D transpose only, which TFLite runs with builtin ops.
        x = ops.reshape(inputs, (-1, ph, grid_w, pw * channels))
        x = ops.transpose(x, (0, 2, 1, 3))
        x = ops.reshape(x, (-1, ph, pw, channels))
        x = self.proj(self.pad(x))
        return ops.reshape(x, (-1, grid_h * grid_w, self.num_pixels, self.inner_dim))

    def compute_output_shape(self, input_shape):
        grid_h, grid_w = self._grid(input_shape)
        n = None if grid_h is None or grid_w is None else grid_h * grid_w
        return (input_shape[0], n, self.num_pixels, self.inner_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": list(self.patch_size),
                "inner_dim": self.inner_dim,
                "pixel_stride": self.pixel_stride,
                "kernel_size": self.kernel_size,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class PixelPositionEmbedding(keras.layers.Layer):
    """Adds a learned (P, C) embedding to the pixels of every patch.

    The same embedding serves every patch: it says where a pixel sits inside
    its patch (timm's `pixel_pos`, the official `inner_pos`). Input and output
    are (B, N, P, C).

    Example:
    >>> import numpy as np
    >>> layer = PixelPositionEmbedding()
    >>> tuple(layer(np.zeros((2, 4, 16, 24), "float32")).shape)
    (2, 4, 16, 24)
    >>> tuple(layer.embedding.shape)
    (16, 24)
    """

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(input_shape[-2], input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )
        self.built = True

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_vit")
class PixelToPatchProjection(keras.layers.Layer):
    """Maps the pixels of each patch to one patch vector: LayerNorm, Dense, LayerNorm.

    The P pixel vectors of a patch are flattened (pixel-major, channel fastest,
    as timm) to P * C values, normalized (`norm1_proj`), projected to
    `hidden_dim` (`proj`) and normalized again (`norm2_proj`). TNT uses it once
    as the stem (with a bias) and in every block (without one). Input
    (B, N, P, C), output (B, N, hidden_dim).

    Example:
    >>> import numpy as np
    >>> layer = PixelToPatchProjection(hidden_dim=64)
    >>> tuple(layer(np.zeros((2, 4, 16, 24), "float32")).shape)
    (2, 4, 64)
    """

    def __init__(self, hidden_dim, use_bias=True, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.use_bias = use_bias
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        self.norm1_proj = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm1_proj")
        self.proj = keras.layers.Dense(hidden_dim, use_bias=use_bias, dtype=policy, name="proj")
        self.norm2_proj = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm2_proj")

    def build(self, input_shape):
        flat = (input_shape[0], input_shape[1], input_shape[2] * input_shape[3])
        self.norm1_proj.build(flat)
        self.proj.build(flat)
        self.norm2_proj.build(flat[:2] + (self.hidden_dim,))
        self.built = True

    def call(self, inputs):
        num_patches = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
        x = ops.reshape(inputs, (-1, num_patches, inputs.shape[2] * inputs.shape[3]))
        return self.norm2_proj(self.proj(self.norm1_proj(x)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"hidden_dim": self.hidden_dim, "use_bias": self.use_bias, "layer_norm_epsilon": self.layer_norm_epsilon}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class TNTAttention(keras.layers.Layer):
    """TNT's multi-head self-attention: separate `qk` and `v` projections.

    `qk` (D -> 2D, laid out [q of all heads | k of all heads]) and `v` (D -> D)
    have no bias by default, `proj` has one; the scale 1/sqrt(head_dim)
    multiplies q @ k^T after the product, as the reference does (heads attend
    through `keras_vit.layers.attention.scaled_dot_product_attention`). The input is
    (..., T, D): every leading axis is a batch axis, so the inner transformer
    attends over the P pixels of each patch of (B, N, P, C) and the outer one
    over the tokens of (B, T, D). `return_attention_scores=True` also returns
    the softmax weights (..., heads, T, T).

    Example:
    >>> import numpy as np
    >>> attn = TNTAttention(hidden_dim=24, num_heads=4)
    >>> tuple(attn(np.zeros((2, 4, 16, 24), "float32")).shape)
    (2, 4, 16, 24)
    """

    def __init__(self, hidden_dim, num_heads, qkv_bias=False, attention_dropout=0.0, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"width {hidden_dim} is not divisible by the number of heads {num_heads}; "
                "choose a number of heads that divides the width."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.hidden_dim // self.num_heads
        self.qkv_bias = qkv_bias
        self.attention_dropout = float(attention_dropout)
        self.dropout = float(dropout)
        self.scale = self.head_dim ** -0.5
        policy = self.dtype_policy
        self.qk = keras.layers.Dense(2 * hidden_dim, use_bias=qkv_bias, dtype=policy, name="qk")
        self.v = keras.layers.Dense(hidden_dim, use_bias=qkv_bias, dtype=policy, name="v")
        self.proj = keras.layers.Dense(hidden_dim, dtype=policy, name="proj")
        self.attention_drop = keras.layers.Dropout(attention_dropout, dtype=policy)
        self.proj_drop = keras.layers.Dropout(dropout, dtype=policy)

    def build(self, input_shape):
        flat = (None, input_shape[-2], input_shape[-1])
        self.qk.build(flat)
        self.v.build(flat)
        self.proj.build(flat[:2] + (self.hidden_dim,))
        self.built = True

    def _heads(self, x, num_tokens):
        # (B', T, D) -> (B', T, heads, head_dim)
        return ops.reshape(x, (-1, num_tokens, self.num_heads, self.head_dim))

    def call(self, inputs, training=None, return_attention_scores=False):
        leading = inputs.shape[:-2]
        num_tokens, width = inputs.shape[-2], inputs.shape[-1]
        if any(d is None for d in leading[1:]) or num_tokens is None:
            leading = tuple(ops.shape(inputs)[:-2])
            num_tokens = ops.shape(inputs)[-2]
        x = ops.reshape(inputs, (-1, num_tokens, width))  # fold the leading axes into one batch axis
        qk = self.qk(x)
        q = self._heads(qk[..., : self.hidden_dim], num_tokens)
        k = self._heads(qk[..., self.hidden_dim :], num_tokens)
        v = self._heads(self.v(x), num_tokens)
        record = attention_record()
        attended = scaled_dot_product_attention(
            q, k, v, self.scale, dropout=self.attention_drop, training=training,
            return_scores=return_attention_scores or record is not None,
        )
        x, scores = attended if return_attention_scores or record is not None else (attended, None)
        if record is not None:
            # Folded as computed: (B * leading..., heads, T, T).
            record.append((self, scores))
        x = ops.reshape(x, (-1, num_tokens, self.hidden_dim))
        x = dropped(self.proj_drop, self.proj(x), training)
        x = ops.reshape(x, (-1,) + tuple(leading[1:]) + (num_tokens, self.hidden_dim))
        if return_attention_scores:
            scores = ops.reshape(scores, (-1,) + tuple(leading[1:]) + (self.num_heads, num_tokens, num_tokens))
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "qkv_bias": self.qkv_bias,
                "attention_dropout": self.attention_dropout,
                "dropout": self.dropout,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class TNTBlock(keras.layers.Layer):
    """One TNT block: inner transformer on pixels, pixel-to-patch, outer transformer.

    Called on `[pixels, patches]` ((B, N, P, C) and (B, 1 + N, D)), returns
    `(pixels, patches)`:
    pixels += attn_in(norm_in(pixels)); pixels += mlp_in(norm_mlp_in(pixels));
    patch tokens (not the class token) += norm2_proj(proj(norm1_proj(flat pixels)));
    patches += attn_out(norm_out(patches)); patches += mlp(norm_mlp(patches)).
    Every residual branch goes through one drop path; on the pixel branches a
    (sample, patch) pair is dropped together, as the reference does.
    LayerNorm epsilon 1e-5.

    Example:
    >>> import numpy as np
    >>> block = TNTBlock(hidden_dim=64, inner_dim=16, inner_num_heads=2, num_heads=4)
    >>> pixels, patches = block([np.zeros((2, 4, 16, 16), "float32"), np.zeros((2, 5, 64), "float32")])
    >>> tuple(pixels.shape), tuple(patches.shape)
    ((2, 4, 16, 16), (2, 5, 64))
    """

    def __init__(
        self,
        hidden_dim,
        inner_dim,
        inner_num_heads=4,
        num_heads=12,
        mlp_dim=None,
        inner_mlp_dim=None,
        qkv_bias=False,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.inner_dim = int(inner_dim)
        self.inner_num_heads = int(inner_num_heads)
        self.num_heads = int(num_heads)
        # MLP widths default to 4x the token width, as in every published TNT.
        self.mlp_dim = int(mlp_dim) if mlp_dim is not None else 4 * self.hidden_dim
        self.inner_mlp_dim = int(inner_mlp_dim) if inner_mlp_dim is not None else 4 * self.inner_dim
        self.qkv_bias = qkv_bias
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed
        policy = self.dtype_policy
        eps = self.layer_norm_epsilon

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name=name)

        # Inner transformer, on the pixels of each patch.
        self.norm_in = norm("norm_in")
        self.attn_in = TNTAttention(
            inner_dim, inner_num_heads, qkv_bias=qkv_bias, attention_dropout=attention_dropout,
            dropout=dropout, dtype=policy, name="attn_in",
        )
        self.norm_mlp_in = norm("norm_mlp_in")
        self.mlp_in = MLP(self.inner_mlp_dim, inner_dim, dropout=dropout, dtype=policy, name="mlp_in")
        # Pixels to their patch token.
        self.pixel_to_patch = PixelToPatchProjection(
            hidden_dim, use_bias=False, layer_norm_epsilon=eps, dtype=policy, name="pixel_to_patch"
        )
        # Outer transformer, on the patch tokens.
        self.norm_out = norm("norm_out")
        self.attn_out = TNTAttention(
            hidden_dim, num_heads, qkv_bias=qkv_bias, attention_dropout=attention_dropout,
            dropout=dropout, dtype=policy, name="attn_out",
        )
        self.norm_mlp = norm("norm_mlp")
        self.mlp = MLP(self.mlp_dim, hidden_dim, dropout=dropout, dtype=policy, name="mlp")
        self.drop_path = DropPath(drop_path_rate, seed=seed, dtype=policy, name="drop_path")

    def build(self, input_shape):
        pixel_shape, patch_shape = input_shape
        for layer in (self.norm_in, self.attn_in, self.norm_mlp_in, self.mlp_in):
            layer.build(pixel_shape)
        self.pixel_to_patch.build(pixel_shape)
        for layer in (self.norm_out, self.attn_out, self.norm_mlp, self.mlp):
            layer.build(patch_shape)
        # Built here because `dropped` may never call it (rate 0): an unbuilt layer makes Keras' train_on_batch
        # rebuild the whole model symbolically at every step.
        self.drop_path.build(patch_shape)
        self.built = True

    def _drop_pixel_branch(self, branch, training):
        # The reference holds pixels as (B * N, P, C): drop path picks (sample, patch) pairs.
        if not training or self.drop_path_rate == 0.0:
            return branch
        dropped = self.drop_path(ops.reshape(branch, (-1,) + tuple(branch.shape[2:])), training=training)
        return ops.reshape(dropped, (-1,) + tuple(branch.shape[1:]))

    def call(self, inputs, training=None):
        pixels, patches = inputs
        pixels = pixels + self._drop_pixel_branch(self.attn_in(self.norm_in(pixels), training=training), training)
        pixels = pixels + self._drop_pixel_branch(
            self.mlp_in(self.norm_mlp_in(pixels), training=training), training
        )
        update = self.pixel_to_patch(pixels)
        patches = ops.concatenate([patches[:, :1], patches[:, 1:] + update], axis=1)
        # `dropped`: no layer call where the drop path is the identity (PyTorch eager pays each call's Python).
        patches = patches + dropped(self.drop_path, self.attn_out(self.norm_out(patches), training=training), training)
        patches = patches + dropped(self.drop_path, self.mlp(self.norm_mlp(patches), training=training), training)
        # XLA:CPU would recompute both residual gradient chains otherwise.
        return residual_gradient_boundary(pixels), residual_gradient_boundary(patches)

    def compute_output_shape(self, input_shape):
        pixel_shape, patch_shape = input_shape
        return tuple(pixel_shape), tuple(patch_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "inner_dim": self.inner_dim,
                "inner_num_heads": self.inner_num_heads,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "inner_mlp_dim": self.inner_mlp_dim,
                "qkv_bias": self.qkv_bias,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Configurations saved before the package's one vocabulary load as they are.
        return cls(**renamed_tnt_arguments(dict(config), cls.__name__, warn=False))
