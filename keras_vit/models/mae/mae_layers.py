"""The parts of a masked autoencoder (He et al., 2022) that a ViT does not have.

- `sincos_position_embedding`: MAE's fixed 2-D sine-cosine position embedding;
- `patchify` / `unpatchify`: images <-> per-patch pixel vectors (the reconstruction target);
- `RandomPatchMasking`: per-image random masking by sorting noise, seeded and jit-friendly;
- `MAEDecoder`: the light decoder (its own width, depth, heads, mask token and fixed
  position embedding) that predicts every patch's pixels from the visible tokens.

Facts from the reference code (facebookresearch/mae `models_mae.py`, transformers
`modeling_vit_mae.py`): tokens keep their row-major patch order; the `len_keep =
int(N * (1 - mask_ratio))` patches with the smallest noise stay visible; the mask is 1
for a removed patch; a patch's pixels are ordered (row, column, channel).
"""

import keras
import numpy as np
from keras import ops

from keras_vit.layers import TransformerEncoderBlock


def sincos_position_embedding(grid_size, dim, num_prefix_tokens=1):
    """MAE's fixed position embedding, (1, num_prefix_tokens + H * W, dim) float32 NumPy.

    Each position gets `[sin(w * f), cos(w * f), sin(h * f), cos(h * f)]` with the
    frequencies `f = 10000 ** (-k / (dim / 4))`, `w` the patch column and `h` its row:
    the official code's layout (its first half encodes the column), which the published
    checkpoints hold. Prefix tokens (the class token) get zeros. Computed in float64.

    Example:
    >>> sincos_position_embedding((2, 2), 8).shape
    (1, 5, 8)
    >>> [round(float(v), 4) for v in sincos_position_embedding((2, 2), 8)[0, 2, :4]]  # row 0, column 1
    [0.8415, 0.01, 0.5403, 0.9999]
    """
    if isinstance(grid_size, int):
        grid_size = (grid_size, grid_size)
    if dim % 4 != 0:
        raise ValueError(f"The sine-cosine position embedding needs a width divisible by 4, got {dim}.")
    height, width = grid_size
    frequencies = 1.0 / 10000.0 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    rows, columns = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    column_angles = np.outer(columns.reshape(-1), frequencies)
    row_angles = np.outer(rows.reshape(-1), frequencies)
    embedding = np.concatenate(
        [np.sin(column_angles), np.cos(column_angles), np.sin(row_angles), np.cos(row_angles)], axis=1
    )
    embedding = np.concatenate([np.zeros((num_prefix_tokens, dim)), embedding], axis=0)
    return embedding[None].astype("float32")


def patchify(images, patch_size):
    """Images (B, H, W, C) -> patches (B, (H / p) * (W / p), p * p * C), row-major patches.

    Each patch vector is ordered (row in patch, column in patch, channel), as the
    reference's `patchify` orders it.

    Example:
    >>> import numpy as np
    >>> tuple(patchify(np.zeros((2, 8, 12, 3), "float32"), 4).shape)
    (2, 6, 48)
    """
    _, height, width, channels = images.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = ops.reshape(images, (-1, grid_h, patch_size, grid_w, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, grid_h * grid_w, patch_size * patch_size * channels))


def unpatchify(patches, patch_size, grid_size, channels=3):
    """Patches (B, H * W, p * p * C) -> images (B, H * p, W * p, C); the inverse of `patchify`.

    Example:
    >>> import numpy as np
    >>> images = np.random.rand(2, 8, 12, 3).astype("float32")
    >>> back = unpatchify(patchify(images, 4), 4, (2, 3))
    >>> bool(np.array_equal(keras.ops.convert_to_numpy(back), images))
    True
    """
    grid_h, grid_w = grid_size
    x = ops.reshape(patches, (-1, grid_h, grid_w, patch_size, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, grid_h * patch_size, grid_w * patch_size, channels))


def _gather_tokens(tokens, indices):
    """tokens (B, N, D) gathered along the token axis at indices (B, K) -> (B, K, D)."""
    indices = ops.expand_dims(indices, -1)
    indices = ops.broadcast_to(indices, (ops.shape(indices)[0], indices.shape[1], tokens.shape[-1]))
    return ops.take_along_axis(tokens, indices, axis=1)


@keras.saving.register_keras_serializable(package="keras_vit")
class RandomPatchMasking(keras.layers.Layer):
    """Keeps a random subset of each image's tokens, as MAE does.

    Per image, the patches are sorted by uniform noise; the `int(N * (1 - mask_ratio))`
    with the smallest noise stay visible, in that (noise) order. Returns
    `(visible (B, K, D), mask (B, N) with 1 = removed, ids_restore (B, N))`, where
    `ids_restore` puts the shuffled sequence back in patch order. The noise comes from a
    `keras.random.SeedGenerator` (so training under jit draws new masks every step), or
    is given (`noise`, (B, N)) to reproduce a reference exactly.

    Example:
    >>> import numpy as np
    >>> masking = RandomPatchMasking(mask_ratio=0.75, seed=0)
    >>> visible, mask, ids_restore = masking(np.zeros((2, 16, 8), "float32"))
    >>> tuple(visible.shape), float(keras.ops.sum(mask[0]))
    ((2, 4, 8), 12.0)
    """

    def __init__(self, mask_ratio=0.75, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_mask_ratio(mask_ratio)
        self.mask_ratio = float(mask_ratio)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def num_visible(self, num_patches):
        """How many of `num_patches` stay visible (the reference's `int(N * (1 - ratio))`)."""
        return int(num_patches * (1 - self.mask_ratio))

    def call(self, tokens, noise=None):
        num_patches = tokens.shape[1]
        num_keep = self.num_visible(num_patches)
        if noise is None:
            noise = keras.random.uniform((ops.shape(tokens)[0], num_patches), seed=self.seed_generator)
        ids_shuffle = ops.argsort(noise, axis=1)
        ids_restore = ops.argsort(ids_shuffle, axis=1)
        visible = _gather_tokens(tokens, ids_shuffle[:, :num_keep])
        # A patch is removed when its rank in the noise order is num_keep or more.
        mask = ops.cast(ids_restore >= num_keep, tokens.dtype)
        return visible, mask, ids_restore

    def get_config(self):
        config = super().get_config()
        config.update({"mask_ratio": self.mask_ratio, "seed": self.seed})
        return config


def check_mask_ratio(mask_ratio):
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
        raise ValueError(
            f"mask_ratio is the fraction of patches hidden from the encoder and must be in (0, 1) "
            f"(MAE uses 0.75), got {mask_ratio!r}."
        )


@keras.saving.register_keras_serializable(package="keras_vit")
class MAEDecoder(keras.layers.Layer):
    """MAE's decoder: visible tokens + mask tokens -> every patch's pixels.

    `decoder_embed` maps the encoder's tokens (class token first, then the visible
    patches) to the decoder width; mask tokens fill the removed places; `ids_restore`
    puts the patches back in order; a fixed sine-cosine position embedding is added
    (`position_embedding`, not trained, as in the reference); pre-norm blocks,
    `decoder_norm` and `decoder_pred` (to p * p * C values per patch) follow, and the
    class token is dropped. Call it as `decoder(latent, ids_restore)`.

    Example:
    >>> import numpy as np
    >>> decoder = MAEDecoder(grid_size=(4, 4), patch_size=4, hidden_dim=16, depth=1, num_heads=2)
    >>> latent = np.zeros((2, 5, 32), "float32")  # class token + 4 visible patches
    >>> ids_restore = np.tile(np.arange(16), (2, 1))
    >>> tuple(decoder(latent, ids_restore).shape)
    (2, 16, 48)
    """

    def __init__(self, grid_size, patch_size, hidden_dim=512, depth=8, num_heads=16, mlp_dim=None,
                 num_channels=3, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(grid_size, int):
            grid_size = (grid_size, grid_size)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"The decoder width {hidden_dim} is not divisible by its {num_heads} heads; "
                "choose a decoder_dim that is a multiple of decoder_num_heads (MAE: 512 and 16)."
            )
        self.grid_size = tuple(int(g) for g in grid_size)
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim) if mlp_dim is not None else 4 * self.hidden_dim
        self.num_channels = int(num_channels)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        self.decoder_embed = keras.layers.Dense(self.hidden_dim, dtype=policy, name="decoder_embed")
        self.blocks = [
            TransformerEncoderBlock(self.hidden_dim, self.num_heads, self.mlp_dim,
                                    layer_norm_epsilon=layer_norm_epsilon, dtype=policy, name=f"decoder_block_{i}")
            for i in range(self.depth)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy,
                                                            name="decoder_norm")
        self.decoder_pred = keras.layers.Dense(self.patch_size ** 2 * self.num_channels, dtype=policy,
                                               name="decoder_pred")

    @property
    def num_patches(self):
        return self.grid_size[0] * self.grid_size[1]

    def build(self, latent_shape, ids_restore_shape=None):
        self.decoder_embed.build(latent_shape)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.hidden_dim), initializer=keras.initializers.RandomNormal(stddev=0.02), name="mask_token"
        )
        self.position_embedding = self.add_weight(
            shape=(1, self.num_patches + 1, self.hidden_dim), initializer="zeros", trainable=False,
            name="position_embedding",
        )
        self.position_embedding.assign(sincos_position_embedding(self.grid_size, self.hidden_dim))
        token_shape = (latent_shape[0], self.num_patches + 1, self.hidden_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.decoder_norm.build(token_shape)
        self.decoder_pred.build(token_shape)
        self.built = True

    def call(self, latent, ids_restore, training=None):
        x = self.decoder_embed(latent)
        batch = ops.shape(x)[0]
        num_masked = self.num_patches + 1 - x.shape[1]
        mask_tokens = ops.broadcast_to(ops.cast(self.mask_token, x.dtype), (batch, num_masked, self.hidden_dim))
        patches = ops.concatenate([x[:, 1:], mask_tokens], axis=1)
        patches = _gather_tokens(patches, ids_restore)  # back to patch order
        x = ops.concatenate([x[:, :1], patches], axis=1) + ops.cast(self.position_embedding, x.dtype)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]

    def compute_output_shape(self, latent_shape, ids_restore_shape=None):
        return (latent_shape[0], self.num_patches, self.patch_size ** 2 * self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": list(self.grid_size),
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "depth": self.depth,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "num_channels": self.num_channels,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
