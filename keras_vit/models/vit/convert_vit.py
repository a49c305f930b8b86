"""Key maps for ViT and DeiT checkpoints: timm, transformers, Google's .npz.

Each `_from_*` function says which checkpoint key fills which layer of a model
built by `keras_vit.models.vit.vit_model.VisionTransformer`; `convert_vit` picks the
source from the keys and applies the plan strictly (see `assignment`).
"""

import re


from keras_vit.weights.assignment import (
    WeightAssignment, linear_kernel, numbered_layers, optional_layer,
)
from keras_vit.layers.resampling import square_grid


def _position_embedding(plan, model, key, method):
    """Fills `pos_embed`, resampling from the checkpoint's (square) grid if needed."""
    array = plan.take(key)
    if array is None:
        return
    layer = model.get_layer("pos_embed")
    prefix = layer.num_prefix_tokens
    grid_positions = array.shape[1] - prefix
    # Not a square grid after this model's prefix tokens: the checkpoint has another number of
    # prefix tokens (DeiT's dist token); left as is, the strict plan reports the shape mismatch.
    if array.shape[1] != layer.num_positions and grid_positions > 0 and round(grid_positions ** 0.5) ** 2 == grid_positions:
        array = layer.resampled(array, square_grid(grid_positions), method)
    plan.assign_array(layer.embedding, array, key)


def _heads(plan, model, head_key, dist_key, transform):
    for layer_name, key in (("head", head_key), ("head_dist", dist_key)):
        layer = optional_layer(model, layer_name)
        if layer is not None:
            plan.assign(layer.kernel, key + ".weight" if transform else key + "/kernel", transform, head=True)
            plan.assign(layer.bias, key + ".bias" if transform else key + "/bias", head=True)
        elif key is not None:
            plan.skip_prefix(key + ".")
            plan.skip_prefix(key + "/")


def _from_timm(plan, model):
    plan.conv(model.get_layer("patch_embed").proj, "patch_embed.proj")
    plan.assign(model.get_layer("cls_token").token, "cls_token")
    if optional_layer(model, "dist_token") is not None:
        plan.assign(model.get_layer("dist_token").token, "dist_token")
    _position_embedding(plan, model, "pos_embed", "bicubic_antialias")
    for i, block in enumerate(numbered_layers(model, "block_{}")):
        p = f"blocks.{i}."
        plan.norm(block.norm1, p + "norm1")
        plan.dense(block.attn.qkv, p + "attn.qkv")
        plan.dense(block.attn.proj, p + "attn.proj")
        plan.norm(block.norm2, p + "norm2")
        plan.dense(block.mlp.fc1, p + "mlp.fc1")
        plan.dense(block.mlp.fc2, p + "mlp.fc2")
    for norm_name in ("norm", "fc_norm"):
        if optional_layer(model, norm_name) is not None:
            plan.norm(model.get_layer(norm_name), norm_name)
    _heads(plan, model, "head", "head_dist", linear_kernel)


def _hf_prefix(tensors):
    for prefix in ("vit.", "deit.", ""):
        if prefix + "embeddings.patch_embeddings.projection.weight" in tensors:
            return prefix
    return ""


# transformers 5 renamed the encoder's modules in memory (`model.state_dict()`); `save_pretrained`
# and the published checkpoints keep the transformers 4 names, which the map below uses.
_TRANSFORMERS5_NAMES = [
    (re.compile(r"(^|\.)layers\.(\d+)\.attention\.q_proj\."), r"\1encoder.layer.\2.attention.attention.query."),
    (re.compile(r"(^|\.)layers\.(\d+)\.attention\.k_proj\."), r"\1encoder.layer.\2.attention.attention.key."),
    (re.compile(r"(^|\.)layers\.(\d+)\.attention\.v_proj\."), r"\1encoder.layer.\2.attention.attention.value."),
    (re.compile(r"(^|\.)layers\.(\d+)\.attention\.o_proj\."), r"\1encoder.layer.\2.attention.output.dense."),
    (re.compile(r"(^|\.)layers\.(\d+)\.mlp\.fc1\."), r"\1encoder.layer.\2.intermediate.dense."),
    (re.compile(r"(^|\.)layers\.(\d+)\.mlp\.fc2\."), r"\1encoder.layer.\2.output.dense."),
    (re.compile(r"(^|\.)layers\.(\d+)\.(layernorm_before|layernorm_after)\."), r"\1encoder.layer.\2.\3."),
]


def _transformers4_names(tensors):
    """The state dict under transformers 4 / hub key names (a no-op for those)."""
    renamed = {}
    for key, value in tensors.items():
        for pattern, replacement in _TRANSFORMERS5_NAMES:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def _from_transformers(plan, model):
    tensors = plan.tensors
    p0 = _hf_prefix(tensors)
    plan.conv(model.get_layer("patch_embed").proj, p0 + "embeddings.patch_embeddings.projection")
    plan.assign(model.get_layer("cls_token").token, p0 + "embeddings.cls_token")
    if optional_layer(model, "dist_token") is not None:
        plan.assign(model.get_layer("dist_token").token, p0 + "embeddings.distillation_token")
    _position_embedding(plan, model, p0 + "embeddings.position_embeddings", "bicubic_antialias")
    # A base model's pooler (dense + tanh) and a masked-image-modeling token are not part of the classifier.
    plan.skip_prefix(p0 + "pooler.")
    plan.skip(p0 + "embeddings.mask_token")
    for i, block in enumerate(numbered_layers(model, "block_{}")):
        p = f"{p0}encoder.layer.{i}."
        qkv = [p + f"attention.attention.{n}" for n in ("query", "key", "value")]
        proj, fc1, fc2 = p + "attention.output.dense", p + "intermediate.dense", p + "output.dense"
        plan.norm(block.norm1, p + "layernorm_before")
        plan.fused_dense(block.attn.qkv, qkv)
        plan.dense(block.attn.proj, proj)
        plan.norm(block.norm2, p + "layernorm_after")
        plan.dense(block.mlp.fc1, fc1)
        plan.dense(block.mlp.fc2, fc2)
    plan.norm(model.get_layer("norm"), p0 + "layernorm")
    if optional_layer(model, "dist_token") is not None:  # DeiTForImageClassificationWithTeacher
        _heads(plan, model, "cls_classifier", "distillation_classifier", linear_kernel)
    else:
        _heads(plan, model, "classifier", None, linear_kernel)


def _from_google_npz(plan, model):
    embed = model.get_layer("patch_embed").proj
    plan.assign(embed.kernel, "embedding/kernel")  # already HWIO
    plan.assign(embed.bias, "embedding/bias")
    plan.assign(model.get_layer("cls_token").token, "cls")
    # timm's .npz loader resamples bilinearly, without antialias.
    _position_embedding(plan, model, "Transformer/posembed_input/pos_embedding", "bilinear")
    plan.skip("pre_logits/kernel", "pre_logits/bias")  # representation layer, dropped by fine-tuned heads
    for i, block in enumerate(numbered_layers(model, "block_{}")):
        p = f"Transformer/encoderblock_{i}/"
        a = p + "MultiHeadDotProductAttention_1/"
        flax = dict(separator="/", weight="kernel")
        plan.norm(block.norm1, p + "LayerNorm_0", separator="/", weight="scale")
        # Flax keeps heads apart: q/k/v kernels (D, heads, head_dim), out kernel (heads, head_dim, D).
        plan.fused_dense(block.attn.qkv, [a + n for n in ("query", "key", "value")],
                         transform=lambda k: k.reshape(k.shape[0], -1), **flax)
        plan.dense(block.attn.proj, a + "out", transform=lambda k: k.reshape(-1, k.shape[-1]), **flax)
        plan.norm(block.norm2, p + "LayerNorm_2", separator="/", weight="scale")
        plan.dense(block.mlp.fc1, p + "MlpBlock_3/Dense_0", transform=None, **flax)
        plan.dense(block.mlp.fc2, p + "MlpBlock_3/Dense_1", transform=None, **flax)
    plan.norm(model.get_layer("norm"), "Transformer/encoder_norm", separator="/", weight="scale")
    _heads(plan, model, "head", None, None)


def detect_vit_source(tensors):
    """'timm', 'transformers' or 'google', from the checkpoint's keys."""
    if "Transformer/encoder_norm/scale" in tensors:
        return "google"
    # timm's names: any two of its characteristic keys (a checkpoint missing one key is still timm's,
    # and the strict assignment then names the key it lacks).
    timm_keys = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.norm1.weight", "cls_token")
    if sum(k in tensors for k in timm_keys) >= 2:
        return "timm"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in tensors):
        return "transformers"
    sample = ", ".join(sorted(tensors)[:5])
    raise ValueError(
        "This checkpoint is not a ViT/DeiT checkpoint of timm, transformers or Google's .npz "
        f"(its first keys: {sample}). Pass a checkpoint of this model family, or build the model "
        "family the checkpoint is for."
    )


_SOURCES = {"timm": _from_timm, "transformers": _from_transformers, "google": _from_google_npz}


def convert_vit(model, tensors, allow_head_reset=False):
    """Fills a `VisionTransformer` from a timm, transformers or Google state dict.

    Example:
    >>> import keras_vit
    >>> from keras_vit.weights import read_checkpoint
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> _, tensors = read_checkpoint(fixture_path("vit_tiny.safetensors"))
    >>> convert_vit(model, tensors)
    """
    source = detect_vit_source(tensors)
    if source == "transformers":
        tensors = _transformers4_names(tensors)
    plan = WeightAssignment(model, tensors, source=source, allow_head_reset=allow_head_reset)
    _SOURCES[source](plan, model)
    plan.apply()
