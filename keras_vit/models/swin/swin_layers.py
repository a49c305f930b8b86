"""Swin Transformer layers: windows, shifted-window attention, blocks, patch merging.

Everything works on channels-last feature maps (B, H, W, C) with static H and W,
so that the relative-position index and the shifted-window mask are NumPy
constants built once. The cyclic shift is written as slices and a concatenation
(no `roll`), and windows are cut with reshapes and 4-D transposes, so an exported
model needs only TFLite builtin ops.

The layout and numerics follow timm's `swin_transformer.py` (see
/work/shared/PARITY.md): LayerNorm epsilon 1e-5, exact GELU, mask value -100.0,
windows ordered batch-major, a stage whose resolution is not larger than the
window attends over the whole map without shift, and maps that are not a
multiple of the window are shifted, then padded at the bottom/right, then
cropped back.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_vit.layers.attention import attention_record, heads_first_attention, split_qkv_heads_first
from keras_vit.layers.drop_path import DropPath, dropped
from keras_vit.layers.gradient_boundary import residual_gradient_boundary
from keras_vit.layers.mlp import MLP
from keras_vit.layers.renamed_arguments import take_renamed_arguments

# Argument names before the package's one vocabulary, still read from saved configurations.
_RENAMED = {"dim": ("hidden_dim", None), "out_dim": ("output_dim", None)}
MASK_VALUE = -100.0  # what the reference adds between tokens of different shifted regions (not -inf)


def _constant_tensor(layer, name, array):
    """`array` (a NumPy constant of `layer`) as a backend tensor; on PyTorch converted once and kept.

    On JAX and TensorFlow the conversion happens while tracing, once per compiled function. On
    PyTorch it would happen at every call, and under `torch.compile` (`jit_compile=True`) the
    NumPy array breaks the graph (dynamo does not trace `ndarray.dtype`), cutting a Swin forward
    into dozens of graphs; a tensor kept on the layer is one constant of the graph. Same values.
    The layers call this in `build()` too, so that the first compiled call finds the tensors made.

    Example:
    >>> import numpy as np
    >>> layer = keras.layers.Identity()
    >>> keras.ops.convert_to_numpy(_constant_tensor(layer, "index", np.arange(3))).tolist()
    [0, 1, 2]
    """
    if keras.backend.backend() != "torch":
        return ops.convert_to_tensor(array)
    cache = layer.__dict__.setdefault("_constant_tensors", {})
    if name not in cache:
        cache[name] = ops.convert_to_tensor(array)
    return cache[name]


def _pair(value):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"Expected an int or a (height, width) pair, got {value!r}.")
    return value


def window_partition(x, window_size):
    """Cuts (B, H, W, C) maps into windows: (B * num_windows, wh * ww, C).

    H and W must be static multiples of the window. Windows are ordered
    batch-major, then row-major over the window grid, and tokens row-major in
    each window, as in the reference. Only reshapes and a 4-D transpose are used.

    Example:
    >>> import numpy as np
    >>> tuple(window_partition(np.zeros((2, 8, 12, 3), "float32"), (4, 4)).shape)
    (12, 16, 3)
    """
    wh, ww = _pair(window_size)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    grid_w = width // ww
    # (B * rows of windows, wh, windows per row, ww * C): every axis is a plain split.
    x = ops.reshape(x, (-1, wh, grid_w, ww * channels))
    x = ops.transpose(x, (0, 2, 1, 3))
    return ops.reshape(x, (-1, wh * ww, channels))


def window_merge(windows, window_size, height, width):
    """Inverse of `window_partition`: (B * num_windows, wh * ww, C) -> (B, H, W, C).

    Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 8 * 12 * 3, dtype="float32").reshape(2, 8, 12, 3)
    >>> y = window_merge(window_partition(x, (4, 4)), (4, 4), 8, 12)
    >>> bool(np.array_equal(np.asarray(y), x))
    True
    """
    wh, ww = _pair(window_size)
    channels = windows.shape[-1]
    grid_w = width // ww
    x = ops.reshape(windows, (-1, grid_w, wh, ww * channels))
    x = ops.transpose(x, (0, 2, 1, 3))
    return ops.reshape(x, (-1, height, width, channels))


def cyclic_shift(x, shift):
    """`roll(x, shift, axis=(1, 2))` as slices and concatenations.

    `shift` is a (rows, columns) pair; negative values move content up/left,
    as `torch.roll(x, (-s, -s), (1, 2))` does in the reference. Written without a
    roll op so TFLite needs no Flex kernel.

    Example:
    >>> import numpy as np
    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> y = np.asarray(cyclic_shift(x, (-1, -1)))
    >>> bool(np.array_equal(y, np.roll(x, (-1, -1), axis=(1, 2))))
    True
    """
    for axis, amount in zip((1, 2), _pair(shift)):
        size = x.shape[axis]
        amount = amount % size
        if amount == 0:
            continue
        # roll by +a: the last a entries come first. `ops.slice`, not `x[:, a:]`: on TensorFlow the gradient
        # of a Slice is one Pad, that of a StridedSlice a StridedSliceGrad that took 9% of a Swin-T training
        # step; TFLite gets SLICE either way, which XNNPACK runs.
        sizes = [ops.shape(x)[0]] + list(x.shape[1:])
        starts = [0, 0, 0, 0]
        sizes[axis], starts[axis] = amount, size - amount
        last = ops.slice(x, list(starts), list(sizes))
        sizes[axis], starts[axis] = size - amount, 0
        rest = ops.slice(x, list(starts), list(sizes))
        x = ops.concatenate([last, rest], axis=axis)
    return x


def relative_position_index(window_size):
    """The (N, N) int32 index into a ((2wh - 1)(2ww - 1), heads) bias table.

    Coordinates from an 'ij' meshgrid; relative offsets shifted to start at 0;
    the row offset multiplied by (2ww - 1); summed. N = wh * ww.

    Example:
    >>> relative_position_index((2, 2)).tolist()
    [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    """
    wh, ww = _pair(window_size)
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    relative = coords[:, :, None] - coords[:, None, :]
    rows = (relative[0] + wh - 1) * (2 * ww - 1)
    cols = relative[1] + ww - 1
    return (rows + cols).astype("int32")


def shifted_window_mask(padded_size, window_size, shift_size):
    """The additive (num_windows, N, N) float32 mask of shifted-window attention.

    After the cyclic shift, windows at the bottom/right edges hold tokens of up to
    three regions per axis (slices (0, -window), (-window, -shift), (-shift, end)
    of the padded map); token pairs from different regions get -100.0. None when
    there is no shift.

    Example:
    >>> shifted_window_mask((8, 8), (4, 4), (2, 2)).shape
    (4, 16, 16)
    """
    height, width = _pair(padded_size)
    wh, ww = _pair(window_size)
    sh, sw = _pair(shift_size)
    if sh == 0 and sw == 0:
        return None
    regions = np.zeros((height, width), dtype="float32")
    label = 0
    # A zero shift on one axis gives slices (-w, 0) (empty) and (0, None) (everything), as in the reference.
    for h0, h1 in ((0, -wh), (-wh, -sh), (-sh, None)):
        for w0, w1 in ((0, -ww), (-ww, -sw), (-sw, None)):
            regions[h0:h1, w0:w1] = label
            label += 1
    windows = regions.reshape(height // wh, wh, width // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
    different = windows[:, None, :] != windows[:, :, None]
    return np.where(different, MASK_VALUE, 0.0).astype("float32")


def stage_window_and_shift(resolution, window_size, shift_size):
    """Per-axis window and shift of a block at `resolution` (timm's rule).

    An axis whose resolution is not larger than the window uses the whole axis as
    the window and no shift.

    Example:
    >>> stage_window_and_shift((7, 7), (7, 7), (3, 3))
    ((7, 7), (0, 0))
    >>> stage_window_and_shift((14, 5), (7, 7), (3, 3))
    ((7, 5), (3, 0))
    """
    window = tuple(r if r <= w else w for r, w in zip(_pair(resolution), _pair(window_size)))
    shift = tuple(0 if r <= w else s for r, w, s in zip(_pair(resolution), window, _pair(shift_size)))
    return window, shift


@keras.saving.register_keras_serializable(package="keras_vit")
class WindowAttention(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Takes windows (B * num_windows, wh * ww, C) and an optional additive
    `attention_mask` (num_windows, N, N) (see `shifted_window_mask`). The bias table
    `relative_position_bias_table` has ((2wh - 1)(2ww - 1), heads) entries and is
    gathered with the constant `relative_position_index`. One fused `qkv` Dense
    laid out [q | k | v], each head-major, as in timm. Heads attend through
    `keras_vit.layers.attention.heads_first_attention` (q, k and v split heads-first
    from the fused projection), with the bias and the mask added to the logits, the
    mask per window position by broadcasting. `dim=` is the old name of `hidden_dim`.

    Example:
    >>> import numpy as np
    >>> attn = WindowAttention(hidden_dim=32, num_heads=2, window_size=4)
    >>> tuple(attn(np.zeros((8, 16, 32), "float32")).shape)
    (8, 16, 32)
    """

    def __init__(
        self, hidden_dim=None, num_heads=None, window_size=None, qkv_bias=True, attention_dropout=0.0, dropout=0.0,
        dim=None, **kwargs,
    ):
        if dim is not None:
            if hidden_dim is not None:
                raise ValueError("WindowAttention: pass the width as hidden_dim only (dim is its old name), not both.")
            warnings.warn(
                "WindowAttention(dim=...) is deprecated: use hidden_dim=..., the width's name in every family.",
                DeprecationWarning,
                stacklevel=2,
            )
            hidden_dim = dim
        if hidden_dim is None or num_heads is None or window_size is None:
            raise ValueError("WindowAttention needs hidden_dim, num_heads and window_size.")
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"WindowAttention: hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
                "choose a number of heads that divides the width."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.window_size = _pair(window_size)
        self.qkv_bias = bool(qkv_bias)
        self.attention_dropout = float(attention_dropout)
        self.dropout = float(dropout)
        self.head_dim = self.hidden_dim // self.num_heads
        self.scale = self.head_dim ** -0.5
        self.window_area = self.window_size[0] * self.window_size[1]
        self.num_relative_positions = (2 * self.window_size[0] - 1) * (2 * self.window_size[1] - 1)
        self.relative_position_index = relative_position_index(self.window_size).reshape(-1)
        policy = self.dtype_policy
        self.qkv = keras.layers.Dense(3 * self.hidden_dim, use_bias=qkv_bias, dtype=policy, name="qkv")
        self.proj = keras.layers.Dense(self.hidden_dim, dtype=policy, name="proj")
        self.attention_drop = keras.layers.Dropout(attention_dropout, dtype=policy)
        self.proj_drop = keras.layers.Dropout(dropout, dtype=policy)

    @property
    def dim(self):
        """The old name of `hidden_dim`."""
        return self.hidden_dim

    def build(self, input_shape):
        self.relative_position_bias_table = self.add_weight(
            shape=(self.num_relative_positions, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="relative_position_bias_table",
        )
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        _constant_tensor(self, "relative_position_index", self.relative_position_index)
        self.built = True

    def resample_weight(self, variable, array):
        """`array`, a saved bias table of another window size, resampled to this layer's window
        (timm's `resize_rel_pos_bias_table`); what loading a Keras file of another resolution calls.

        Example:
        >>> import numpy as np
        >>> attn = WindowAttention(hidden_dim=32, num_heads=2, window_size=4)
        >>> attn.build((None, 16, 32))
        >>> attn.resample_weight(attn.relative_position_bias_table, np.zeros((9, 2), "float32")).shape
        (49, 2)
        """
        from keras_vit.models.swin.convert_swin import resample_relative_position_bias_table

        if variable is not self.relative_position_bias_table or array.ndim != 2 or array.shape[1] != self.num_heads:
            return array  # not a bias table of this layer: left for the strict check to report
        return resample_relative_position_bias_table(array, self.window_size)

    def relative_position_bias(self):
        """The (heads, N, N) bias added to the attention logits."""
        n = self.window_area
        table = ops.cast(self.relative_position_bias_table, self.compute_dtype)
        index = _constant_tensor(self, "relative_position_index", self.relative_position_index)
        bias = ops.take(table, index, axis=0)  # (N*N, heads)
        return ops.transpose(ops.reshape(bias, (n, n, self.num_heads)), (2, 0, 1))

    def call(self, inputs, attention_mask=None, training=None):
        n, heads = self.window_area, self.num_heads
        # Heads-first q, k, v (one transpose of the fused projection) straight into batched matmuls; the
        # (num_windows, heads, N, N) bias is added per window position by broadcasting, not copied per window.
        # The Dense layers see 2-D rows (free reshapes), as the block's MLP: fused matmul + bias on TensorFlow.
        qkv = self.qkv(ops.reshape(inputs, (-1, inputs.shape[-1])))
        q, k, v = split_qkv_heads_first(qkv, n, heads, self.head_dim)  # (B * num_windows, heads, N, head_dim)
        bias = ops.expand_dims(self.relative_position_bias(), 0)  # (1, heads, N, N)
        groups = None
        if attention_mask is not None:
            # Windows are batch-major, so window w of image b is row b * num_windows + w.
            mask = ops.cast(ops.convert_to_tensor(attention_mask), bias.dtype)
            groups = mask.shape[0]
            bias = bias + ops.expand_dims(mask, 1)  # (num_windows, heads, N, N)
        record = attention_record()
        x = heads_first_attention(
            q, k, v, self.scale, bias=bias, bias_groups=groups, dropout=self.attention_drop, training=training,
            return_scores=record is not None,
        )
        if record is not None:
            x, scores = x
            record.append((self, scores))  # (B * num_windows, heads, N, N), windows batch-major
        x = self.proj(ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, self.hidden_dim)))
        return ops.reshape(dropped(self.proj_drop, x, training), (-1, n, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "window_size": list(self.window_size),
                "qkv_bias": self.qkv_bias,
                "attention_dropout": self.attention_dropout,
                "dropout": self.dropout,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the rename say `dim`: they load without a warning to the user.
        config = dict(config)
        if "dim" in config and "hidden_dim" not in config:
            config["hidden_dim"] = config.pop("dim")
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinBlock(keras.layers.Layer):
    """One Swin Transformer block on a (B, H, W, C) map of static size `input_resolution`.

    `x + drop_path(window_attention(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`.
    With `shift_size > 0` the map is cyclically shifted by -shift before the
    windows are cut and shifted back after, and the attention is masked between
    regions that the shift brought together. An axis whose resolution is not
    larger than the window uses the whole axis as the window and no shift; maps
    that are not a multiple of the window are padded (after the shift) and
    cropped back, as timm does.

    Example:
    >>> import numpy as np
    >>> block = SwinBlock(hidden_dim=32, num_heads=2, input_resolution=(8, 8), window_size=4, shift_size=2)
    >>> tuple(block(np.zeros((2, 8, 8, 32), "float32")).shape)
    (2, 8, 8, 32)
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        input_resolution,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.input_resolution = _pair(input_resolution)
        self.target_window_size = _pair(window_size)
        self.target_shift_size = _pair(shift_size)
        for s, w in zip(self.target_shift_size, self.target_window_size):
            if not 0 <= s < w:
                raise ValueError(f"SwinBlock: shift_size {shift_size} must be in [0, window_size {window_size}).")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed
        self.window_size, self.shift_size = stage_window_and_shift(
            self.input_resolution, self.target_window_size, self.target_shift_size
        )
        height, width = self.input_resolution
        wh, ww = self.window_size
        self.padding = ((wh - height % wh) % wh, (ww - width % ww) % ww)
        self.padded_resolution = (height + self.padding[0], width + self.padding[1])
        # Built once here, from the padded size, as the reference does; a constant in the graph.
        self.attention_mask = shifted_window_mask(self.padded_resolution, self.window_size, self.shift_size)

        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm1")
        self.attn = WindowAttention(
            hidden_dim=self.hidden_dim, num_heads=num_heads, window_size=self.window_size, qkv_bias=qkv_bias,
            attention_dropout=attention_dropout, dropout=dropout, dtype=policy, name="attn",
        )
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="norm2")
        self.mlp = MLP(int(self.hidden_dim * mlp_ratio), self.hidden_dim, dropout=dropout, dtype=policy, name="mlp")
        self.drop_path = DropPath(drop_path_rate, seed=seed, dtype=policy, name="drop_path")

    def build(self, input_shape):
        self._check_shape(input_shape)
        self.norm1.build(input_shape)
        self.attn.build((None, self.window_size[0] * self.window_size[1], self.hidden_dim))
        self.norm2.build(input_shape)  # called on 2-D rows too (see call): same weights
        self.mlp.build(input_shape)
        # Built here because `dropped` may never call it (rate 0): an unbuilt layer makes Keras' train_on_batch
        # rebuild the whole model symbolically at every step (10% of a Swin-T training step on PyTorch).
        self.drop_path.build(input_shape)
        if self.attention_mask is not None:
            _constant_tensor(self, "attention_mask", self.attention_mask)
        self.built = True

    def _check_shape(self, input_shape):
        if tuple(input_shape[1:3]) != self.input_resolution or input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"SwinBlock {self.name} was made for maps of {self.input_resolution + (self.hidden_dim,)} "
                f"(height, width, channels), got {tuple(input_shape[1:])}: are the images the size the model "
                "was built for? Resize them (keras_vit.load_image, keras_vit.with_image_resizing)."
            )

    def _window_attention(self, x, training):
        height, width = self.input_resolution
        sh, sw = self.shift_size
        if sh or sw:
            x = cyclic_shift(x, (-sh, -sw))
        if self.padding != (0, 0):
            x = ops.pad(x, ((0, 0), (0, self.padding[0]), (0, self.padding[1]), (0, 0)))
        windows = window_partition(x, self.window_size)
        mask = None if self.attention_mask is None else _constant_tensor(self, "attention_mask", self.attention_mask)
        windows = self.attn(windows, attention_mask=mask, training=training)
        x = window_merge(windows, self.window_size, *self.padded_resolution)
        if self.padding != (0, 0):
            x = x[:, :height, :width, :]
        if sh or sw:
            x = cyclic_shift(x, (sh, sw))
        return x

    def call(self, inputs, training=None):
        # Checked here too: a built model's compiled predict on JAX skips the symbolic build's checks.
        self._check_shape(inputs.shape)
        # `dropped`: no layer call where the drop path is the identity (PyTorch eager pays each call's Python).
        x = inputs + dropped(self.drop_path, self._window_attention(self.norm1(inputs), training), training)
        if training:
            x = x + dropped(self.drop_path, self.mlp(self.norm2(x), training=training), training)
        else:
            # Inference runs the MLP on 2-D rows (free reshapes): TensorFlow then fuses each Dense's matmul with
            # its bias and fc1's GELU into one oneDNN kernel (a 4-D input goes through Tensordot with separate
            # BiasAdd and GELU ops: 13% of a Swin-T forward). Not in training, where the fused matmul (without
            # the GELU, whose input the gradient needs) measured slower than Tensordot's. Same values either way.
            rows = self.mlp(self.norm2(ops.reshape(x, (-1, self.hidden_dim))))
            x = x + ops.reshape(rows, (-1, *self.input_resolution, self.hidden_dim))
        return residual_gradient_boundary(x)  # XLA:CPU would recompute the residual gradient chain otherwise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "input_resolution": list(self.input_resolution),
                "window_size": list(self.target_window_size),
                "shift_size": list(self.target_shift_size),
                "mlp_ratio": self.mlp_ratio,
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
        # Configurations saved before the rename (`dim`, `out_dim`) load as they are.
        return cls(**take_renamed_arguments(dict(config), _RENAMED, cls.__name__, warn=False))


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchMerging(keras.layers.Layer):
    """Halves the resolution and doubles the width: (B, H, W, C) -> (B, H/2, W/2, output_dim).

    Concatenates the four 2x2 neighbours in the reference's order
    x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2], then
    LayerNorm(4C) and a Dense (4C -> output_dim, default 2C) without bias.
    H and W must be even.

    Example:
    >>> import numpy as np
    >>> tuple(PatchMerging(hidden_dim=32)(np.zeros((2, 8, 8, 32), "float32")).shape)
    (2, 4, 4, 64)
    """

    def __init__(self, hidden_dim, output_dim=None, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim) if output_dim is not None else 2 * self.hidden_dim
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="norm")
        self.reduction = keras.layers.Dense(self.output_dim, use_bias=False, dtype=self.dtype_policy, name="reduction")

    def _check_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if (height is not None and height % 2) or (width is not None and width % 2):
            raise ValueError(
                f"PatchMerging needs an even height and width, got {height}x{width}. "
                "Use an image size divisible by patch_size * 2 ** (number of stages - 1)."
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        merged = tuple(input_shape[:-1]) + (4 * self.hidden_dim,)
        self.norm.build(merged)
        self.reduction.build(merged)
        self.built = True

    def call(self, inputs):
        # The 2x2 neighbours by a reshape and a transpose, not four stride-2 slices: the same numbers,
        # but XNNPACK (the LiteRT CPU delegate) runs no strided STRIDED_SLICE, so each slice stayed on
        # TFLite's own kernels and cut an exported Swin into 4 delegate partitions.
        height, width = (inputs.shape[i] if inputs.shape[i] is not None else ops.shape(inputs)[i] for i in (1, 2))
        channels = inputs.shape[-1]
        x = ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels))  # (B, i, row in 2x2, j, column, C)
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))  # the reference's order: column-major over the 2x2 block
        x = ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        half = [None if s is None else s // 2 for s in input_shape[1:3]]
        return (input_shape[0], half[0], half[1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "output_dim": self.output_dim, "layer_norm_epsilon": self.layer_norm_epsilon})
        return config

    @classmethod
    def from_config(cls, config):
        # Configurations saved before the rename (`dim`, `out_dim`) load as they are.
        return cls(**take_renamed_arguments(dict(config), _RENAMED, cls.__name__, warn=False))
