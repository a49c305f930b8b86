"""Key maps for Swin checkpoints: timm, the official repository, transformers.

- timm (>= 0.9, and the hub's `timm/swin_*` files): `layers.{i}.downsample` at
  the START of stages 1..n-1, head `head.fc.`.
- official microsoft/Swin-Transformer (and timm before 0.9): `layers.{i}.downsample`
  at the END of stages 0..n-2, head `head.`; the buffers `relative_position_index`
  and `attn_mask` are saved too. The index is checked against ours and the masks
  are dropped (they are rebuilt from the model's own resolution).
- transformers `SwinForImageClassification` / `SwinModel`: the names of
  transformers 5 (`attention.q_proj`, `mlp.fc1`, ...) and of the hub's
  transformers-4 files (`attention.self.query`, `intermediate.dense`, ...).

The model computes what timm computes. transformers pads a map before its
cyclic shift where timm pads after it; the two agree wherever no shifted stage
needs padding (every canonical size: 224 with window 7, 384 with window 12).

A bias table made for another window size (a checkpoint of another resolution,
or a last stage clamped to a smaller map) is resampled with timm's
`resize_rel_pos_bias_table` (see `resample_relative_position_bias_table`).
"""

import numpy as np

from keras_vit.models.swin.swin_layers import relative_position_index
from keras_vit.weights.assignment import (
    WeightAssignment, WeightsMismatchError, linear_kernel, numbered_layers, optional_layer,
)


def _stages(model):
    """[(downsample layer or None, [blocks])] for each stage of a `SwinTransformer`."""
    stages = []
    while blocks := numbered_layers(model, f"stage_{len(stages)}_block_{{}}"):
        stages.append((optional_layer(model, f"stage_{len(stages)}_downsample"), blocks))
    return stages


def _geometric_positions(src, dst):
    """Source sample positions of timm's table resize (BEiT's geometric progression)."""

    def progression(ratio, count):
        return (1.0 - ratio**count) / (1.0 - ratio)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        ratio = (left + right) / 2.0
        if progression(ratio, src // 2) > dst // 2:
            right = ratio
        else:
            left = ratio
    distances, current = [], 1.0
    for i in range(src // 2):
        distances.append(current)
        current += ratio ** (i + 1)
    return np.array([-d for d in reversed(distances)] + [0.0] + distances)


def _linear_weights(points, targets):
    """(len(targets), len(points)) weights of piecewise-linear interpolation, clamped at the ends."""
    matrix = np.zeros((len(targets), len(points)))
    for row, t in enumerate(targets):
        right = int(np.searchsorted(points, t, side="left"))
        if right >= len(points):
            matrix[row, -1] = 1.0
        elif right == 0:
            matrix[row, 0] = 1.0
        else:
            left = right - 1
            span = points[right] - points[left]
            matrix[row, left] = (points[right] - t) / span
            matrix[row, right] = (t - points[left]) / span
    return matrix


def resample_relative_position_bias_table(table, new_window_size):
    """Resizes a ((2w - 1)^2, heads) bias table to `new_window_size` (wh, ww), as timm does.

    timm's Swin `checkpoint_filter_fn` calls `resize_rel_pos_bias_table`: the
    source offsets are placed on a geometric progression that spans the target
    range (BEiT's scheme), and each head is interpolated linearly onto the
    integer target offsets (timm's default `RegularGridInterpolator`; values
    beyond the ends are clamped). The source table must be square.

    Example:
    >>> import numpy as np
    >>> resample_relative_position_bias_table(np.zeros((169, 4), "float32"), (12, 12)).shape
    (529, 4)
    """
    table = np.asarray(table)
    num_positions, num_heads = table.shape
    side = int(round(num_positions**0.5))
    if side * side != num_positions:
        raise ValueError(f"A bias table of {num_positions} rows is not a square (2w - 1)^2 grid.")
    dst = (2 * new_window_size[0] - 1, 2 * new_window_size[1] - 1)
    if (side, side) == dst:
        return table
    grid = table.astype(np.float64).reshape(side, side, num_heads)
    row_weights = _linear_weights(_geometric_positions(side, dst[0]), np.arange(dst[0]) - dst[0] // 2)
    col_weights = _linear_weights(_geometric_positions(side, dst[1]), np.arange(dst[1]) - dst[1] // 2)
    resized = np.einsum("ih,jw,hwc->ijc", row_weights, col_weights, grid)
    return resized.reshape(dst[0] * dst[1], num_heads).astype(table.dtype)


def _bias_table(plan, attention, key):
    """Fills a block's bias table, resampling it if the checkpoint's window differs."""
    array = plan.take(key)
    if array is None:
        return
    target = tuple(attention.relative_position_bias_table.shape)
    if array.shape != target and array.ndim == 2 and array.shape[1] == target[1]:
        array = resample_relative_position_bias_table(array, attention.window_size)
    plan.assign_array(attention.relative_position_bias_table, array, key)


def _check_index_buffer(plan, attention, key):
    """Official and transformers-4 files carry the constant index: use it up, checking it if the window matches."""
    if not plan.has(key):
        return
    index = plan.take(key)
    ours = relative_position_index(attention.window_size)
    if index.shape == ours.shape and not np.array_equal(index.astype(np.int64), ours):
        raise WeightsMismatchError(
            f"The checkpoint's {key} is not Swin's relative position index for a "
            f"{attention.window_size} window, so its bias tables cannot be used as they are. "
            "The model's weights are unchanged."
        )


def _top(plan, model, norm_prefix, head_prefix):
    """The final norm and the head, or the keys skipped when the model has none."""
    norm = optional_layer(model, "norm")
    if norm is not None:
        plan.norm(norm, norm_prefix)
    else:
        plan.skip(norm_prefix + ".weight", norm_prefix + ".bias")
    head = optional_layer(model, "head")
    if head is not None:
        plan.dense(head, head_prefix, head=True)
    else:
        plan.skip(head_prefix + ".weight", head_prefix + ".bias")


def _from_timm_or_official(plan, model, official):
    embed = model.get_layer("patch_embed").proj
    plan.conv(embed, "patch_embed.proj")
    plan.norm(model.get_layer("patch_embed_norm"), "patch_embed.norm")
    for i, (downsample, blocks) in enumerate(_stages(model)):
        if downsample is not None:
            p = f"layers.{i - 1}.downsample." if official else f"layers.{i}.downsample."
            plan.norm(downsample.norm, p + "norm")
            plan.assign(downsample.reduction.kernel, p + "reduction.weight", linear_kernel)
        for j, block in enumerate(blocks):
            p = f"layers.{i}.blocks.{j}."
            plan.norm(block.norm1, p + "norm1")
            _bias_table(plan, block.attn, p + "attn.relative_position_bias_table")
            _check_index_buffer(plan, block.attn, p + "attn.relative_position_index")
            # The saved mask is for the checkpoint's resolution; the block builds its own.
            plan.skip(p + "attn_mask")
            plan.dense(block.attn.qkv, p + "attn.qkv")
            plan.dense(block.attn.proj, p + "attn.proj")
            plan.norm(block.norm2, p + "norm2")
            plan.dense(block.mlp.fc1, p + "mlp.fc1")
            plan.dense(block.mlp.fc2, p + "mlp.fc2")
    _top(plan, model, "norm", "head.fc" if plan.has("head.fc.weight") or not plan.has("head.weight") else "head")


def _from_timm(plan, model):
    _from_timm_or_official(plan, model, official=False)


def _from_official(plan, model):
    _from_timm_or_official(plan, model, official=True)


def _from_transformers(plan, model):
    tensors = plan.tensors
    p0 = "swin." if any(k.startswith("swin.") for k in tensors) else ""
    embed = model.get_layer("patch_embed").proj
    plan.conv(embed, p0 + "embeddings.patch_embeddings.projection")
    plan.norm(model.get_layer("patch_embed_norm"), p0 + "embeddings.norm")
    plan.skip(p0 + "embeddings.mask_token")  # masked-image-modeling only
    v4 = any(".attention.self.query.weight" in k for k in tensors)
    for i, (downsample, blocks) in enumerate(_stages(model)):
        if downsample is not None:  # transformers, like the official code, downsamples at the end of a stage
            p = f"{p0}encoder.layers.{i - 1}.downsample."
            plan.norm(downsample.norm, p + "norm")
            plan.assign(downsample.reduction.kernel, p + "reduction.weight", linear_kernel)
        for j, block in enumerate(blocks):
            p = f"{p0}encoder.layers.{i}.blocks.{j}."
            a = p + ("attention.self." if v4 else "attention.")
            names = ("query", "key", "value") if v4 else ("q_proj", "k_proj", "v_proj")
            plan.norm(block.norm1, p + "layernorm_before")
            table_key = a + "relative_position_bias_table" if v4 else a + "relative_position_bias.relative_position_bias_table"
            _bias_table(plan, block.attn, table_key)
            _check_index_buffer(plan, block.attn, a + "relative_position_index")
            weights = [plan.take(f"{a}{n}.weight") for n in names]
            if all(w is not None for w in weights):
                plan.assign_array(block.attn.qkv.kernel, np.concatenate(weights, axis=0).T, f"{a}{{{','.join(names)}}}.weight")
            if block.attn.qkv.bias is not None:
                biases = [plan.take(f"{a}{n}.bias") for n in names]
                if all(b is not None for b in biases):
                    plan.assign_array(block.attn.qkv.bias, np.concatenate(biases), f"{a}{{{','.join(names)}}}.bias")
            plan.dense(block.attn.proj, p + ("attention.output.dense" if v4 else "attention.o_proj"))
            plan.norm(block.norm2, p + "layernorm_after")
            plan.dense(block.mlp.fc1, p + ("intermediate.dense" if v4 else "mlp.fc1"))
            plan.dense(block.mlp.fc2, p + ("output.dense" if v4 else "mlp.fc2"))
    _top(plan, model, p0 + "layernorm", "classifier")


def detect_swin_source(tensors):
    """'timm', 'official' or 'transformers', from the checkpoint's keys.

    Example:
    >>> detect_swin_source({"patch_embed.proj.weight": 0, "layers.0.blocks.0.norm1.weight": 0,
    ...                     "layers.0.downsample.reduction.weight": 0})
    'official'
    """
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in tensors):
        return "transformers"
    if "patch_embed.proj.weight" in tensors and any(k.startswith("layers.0.blocks.") for k in tensors):
        if "layers.0.downsample.reduction.weight" in tensors:
            return "official"
        if any(k.startswith("layers.") and ".downsample." in k for k in tensors):
            return "timm"
        # A single-stage model has no downsampling: only the head's name tells.
        return "official" if "head.weight" in tensors else "timm"
    sample = ", ".join(sorted(tensors)[:5])
    raise ValueError(
        "This checkpoint is not a Swin checkpoint of timm, the official repository or transformers "
        f"(its first keys: {sample}). Pass a Swin checkpoint, or build the model family the checkpoint is for."
    )


_SOURCES = {"timm": _from_timm, "official": _from_official, "transformers": _from_transformers}


def convert_swin(model, tensors, allow_head_reset=False):
    """Fills a `SwinTransformer` from a timm, official or transformers state dict, strictly.

    Example:
    >>> import keras_vit
    >>> from keras_vit.weights import read_checkpoint
    >>> model = keras_vit.SwinTransformer(64, 4, 4, 32, (2, 2, 2), (2, 4, 8), num_classes=10)
    >>> _, tensors = read_checkpoint(fixture_path("swin_tiny.safetensors"))
    >>> convert_swin(model, tensors)
    """
    source = detect_swin_source(tensors)
    plan = WeightAssignment(model, tensors, source=source, allow_head_reset=allow_head_reset)
    _SOURCES[source](plan, model)
    plan.apply()
