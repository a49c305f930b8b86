"""Key maps for TNT checkpoints: timm (>= 1.0.16 layout) and the official repository.

The official PyTorch code (huawei-noah/Efficient-AI-Backbones, `tnt_pytorch`)
and timm hold the same tensors under other names (`outer_pos` = `patch_pos`,
`inner_pos` = `pixel_pos`, `patch_embed` = `pixel_embed`, `inner_attn` =
`attn_in`, `proj_norm1` = `norm1_proj`, ...), and the official `inner_pos` is
(1, P, C) where timm's `pixel_pos` is (1, C, h, w). `convert_tnt` reads either.
"""

import numpy as np

from keras_vit.weights.assignment import (
    WeightAssignment, WeightsMismatchError, numbered_layers, optional_layer,
)
from keras_vit.layers.resampling import square_grid

# timm name component -> the official repository's, key by key ("blocks.3.mlp_in.fc1.weight"
# -> "blocks.3.inner_mlp.fc1.weight"); components not listed are the same in both.
_OFFICIAL_NAMES = {
    "patch_pos": "outer_pos",
    "pixel_pos": "inner_pos",
    "pixel_embed": "patch_embed",
    "norm1_proj": "proj_norm1",
    "norm2_proj": "proj_norm2",
    "norm_in": "inner_norm1",
    "attn_in": "inner_attn",
    "norm_mlp_in": "inner_norm2",
    "mlp_in": "inner_mlp",
    "norm_out": "outer_norm1",
    "attn_out": "outer_attn",
    "norm_mlp": "outer_norm2",
    "mlp": "outer_mlp",
}


def timm_to_official_key(key):
    """The official repository's name of timm TNT key `key`.

    Example:
    >>> timm_to_official_key("blocks.0.norm_mlp_in.weight")
    'blocks.0.inner_norm2.weight'
    """
    return ".".join(_OFFICIAL_NAMES.get(part, part) for part in key.split("."))


def _pixel_position(plan, model, source):
    array = plan.take("pixel_pos")
    if array is None:
        return
    if source == "timm":  # (1, C, h, w) -> (h * w, C), pixels row-major as the model flattens them
        array = np.transpose(array, (0, 2, 3, 1)).reshape(-1, array.shape[1])
    else:  # official (1, P, C)
        array = array.reshape(array.shape[-2], array.shape[-1])
    plan.assign_array(model.get_layer("pixel_pos").embedding, array, plan.key("pixel_pos"))


def _patch_position(plan, model):
    """Fills `patch_pos`, resampling from the checkpoint's (square) grid if needed (as timm)."""
    array = plan.take("patch_pos")
    if array is None:
        return
    layer = model.get_layer("patch_pos")
    if array.shape[1] != layer.num_positions and array.shape[1] > 1:
        array = layer.resampled(array, square_grid(array.shape[1] - 1), "bicubic_antialias")
    plan.assign_array(layer.embedding, array, plan.key("patch_pos"))


def _projection(plan, layer, prefix):
    plan.norm(layer.norm1_proj, prefix + "norm1_proj")
    plan.dense(layer.proj, prefix + "proj")
    plan.norm(layer.norm2_proj, prefix + "norm2_proj")


def _fill(plan, model, source):
    plan.conv(model.get_layer("pixel_embed").proj, "pixel_embed.proj")
    _pixel_position(plan, model, source)
    _projection(plan, model.get_layer("pixel_to_patch"), "")
    plan.assign(model.get_layer("cls_token").token, "cls_token")
    _patch_position(plan, model)
    for i, block in enumerate(numbered_layers(model, "block_{}")):
        p = f"blocks.{i}."
        plan.norm(block.norm_in, p + "norm_in")
        for name in ("qk", "v", "proj"):
            plan.dense(getattr(block.attn_in, name), p + "attn_in." + name)
        plan.norm(block.norm_mlp_in, p + "norm_mlp_in")
        plan.dense(block.mlp_in.fc1, p + "mlp_in.fc1")
        plan.dense(block.mlp_in.fc2, p + "mlp_in.fc2")
        _projection(plan, block.pixel_to_patch, p)
        plan.norm(block.norm_out, p + "norm_out")
        for name in ("qk", "v", "proj"):
            plan.dense(getattr(block.attn_out, name), p + "attn_out." + name)
        plan.norm(block.norm_mlp, p + "norm_mlp")
        plan.dense(block.mlp.fc1, p + "mlp.fc1")
        plan.dense(block.mlp.fc2, p + "mlp.fc2")
    plan.norm(model.get_layer("norm"), "norm")
    head = optional_layer(model, "head")
    if head is not None:
        plan.dense(head, "head", head=True)
    else:
        plan.skip_prefix("head.")


def detect_tnt_source(tensors):
    """'timm' or 'official', from the checkpoint's keys; a clear error otherwise."""
    if "pixel_embed.proj.weight" in tensors:
        if "blocks.0.norm_in.weight" in tensors and "blocks.0.norm2_proj.weight" not in tensors:
            raise WeightsMismatchError(
                "This is a checkpoint of timm's legacy TNT layout (`tnt_s_legacy_patch16_224`: the "
                "convolution runs over the whole image, blocks have no `norm2_proj`), which keras_vit "
                "does not implement. Use the current timm checkpoints (`tnt_s_patch16_224.in1k`, "
                "`tnt_b_patch16_224.in1k`) or the official repository's."
            )
        return "timm"
    if "patch_embed.proj.weight" in tensors and "outer_pos" in tensors:
        return "official"
    sample = ", ".join(sorted(tensors)[:5])
    raise ValueError(
        "This checkpoint is not a TNT checkpoint of timm or of the official repository "
        f"(its first keys: {sample}). Pass a TNT checkpoint, or build the model family the "
        "checkpoint is for."
    )


def convert_tnt(model, tensors, allow_head_reset=False):
    """Fills a `TNT` model from a timm or official TNT state dict, strictly.

    Every checkpoint key must be used and every weight filled (the official
    `outer_tokens` buffer, always zeros, is skipped), or `WeightsMismatchError`
    names the problems and the model is left unchanged. A `patch_pos` made for
    another image size is resampled as timm does (bicubic, antialias).

    Example:
    >>> import keras_vit
    >>> from keras_vit.weights import read_checkpoint
    >>> model = keras_vit.TNT(image_size=32, patch_size=16, hidden_dim=64, inner_dim=16, depth=2,
    ...                       inner_num_heads=2, num_heads=4, num_classes=10)
    >>> _, tensors = read_checkpoint(fixture_path("tnt_tiny.safetensors"))
    >>> convert_tnt(model, tensors)
    """
    # Checkpoints saved from DataParallel / DistributedDataParallel prefix every key.
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    source = detect_tnt_source(tensors)
    # The map below is written in timm's key names; the official layout differs by renaming only.
    rename = timm_to_official_key if source == "official" else None
    plan = WeightAssignment(model, tensors, source=source, allow_head_reset=allow_head_reset, rename=rename)
    if source == "official":
        plan.skip("outer_tokens")  # a zero buffer (requires_grad=False) the forward pass never reads
    _fill(plan, model, source)
    plan.apply()
