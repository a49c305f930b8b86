"""Key maps for whole-MAE checkpoints: the official repository's and transformers'.

The encoder's keys are a ViT's (official: timm's names, `blocks.N.attn.qkv`;
transformers: `vit.embeddings...`, `vit.encoder.layer.N...` or transformers 5's
`vit.layers.N...`), filled by ViT's own converter; this module adds the decoder:
official `decoder_embed`, `mask_token`, `decoder_pos_embed`, `decoder_blocks.N.*`,
`decoder_norm`, `decoder_pred`; transformers `decoder.` + the same names with
`decoder_layers.N.` blocks in ViT layout. Both layouts store the fixed position
embeddings, which fill the (frozen) position embeddings of the model.
"""

import re

import numpy as np

from keras_vit.models.vit import convert_vit as vit_maps
from keras_vit.weights.assignment import WeightAssignment, linear_kernel


def _norm(plan, layer, prefix):
    plan.assign(layer.gamma, prefix + ".weight")
    plan.assign(layer.beta, prefix + ".bias")


def _dense(plan, layer, prefix):
    plan.assign(layer.kernel, prefix + ".weight", linear_kernel)
    plan.assign(layer.bias, prefix + ".bias")


def _official_block(plan, block, p):
    _norm(plan, block.norm1, p + "norm1")
    _dense(plan, block.attn.qkv, p + "attn.qkv")
    _dense(plan, block.attn.proj, p + "attn.proj")
    _norm(plan, block.norm2, p + "norm2")
    _dense(plan, block.mlp.fc1, p + "mlp.fc1")
    _dense(plan, block.mlp.fc2, p + "mlp.fc2")


# transformers 5 names of a decoder block -> the hub's (transformers 4) names.
_DECODER_TRANSFORMERS4 = [
    (".attention.q_proj.", ".attention.attention.query."),
    (".attention.k_proj.", ".attention.attention.key."),
    (".attention.v_proj.", ".attention.attention.value."),
    (".attention.o_proj.", ".attention.output.dense."),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
]
_DECODER_BLOCK = re.compile(r"^decoder\.decoder_layers\.\d+\.")


def _transformers4_names(tensors):
    renamed = {}
    for key, value in vit_maps._transformers4_names(tensors).items():
        if _DECODER_BLOCK.match(key):
            for new, old in _DECODER_TRANSFORMERS4:
                key = key.replace(new, old)
        renamed[key] = value
    return renamed


def _transformers_block(plan, block, p):
    qkv = [p + f"attention.attention.{n}" for n in ("query", "key", "value")]
    weights = [plan.take(k + ".weight") for k in qkv]
    biases = [plan.take(k + ".bias") for k in qkv]
    if all(w is not None for w in weights + biases):
        plan.assign_array(block.attn.qkv.kernel, np.concatenate(weights, axis=0).T, qkv[0] + "/k/v.weight")
        plan.assign_array(block.attn.qkv.bias, np.concatenate(biases), qkv[0] + "/k/v.bias")
    _dense(plan, block.attn.proj, p + "attention.output.dense")
    _norm(plan, block.norm1, p + "layernorm_before")
    _norm(plan, block.norm2, p + "layernorm_after")
    _dense(plan, block.mlp.fc1, p + "intermediate.dense")
    _dense(plan, block.mlp.fc2, p + "output.dense")


def _decoder(plan, decoder, prefix, blocks_name, block_map):
    _dense(plan, decoder.decoder_embed, prefix + "decoder_embed")
    plan.assign(decoder.mask_token, prefix + "mask_token")
    plan.assign(decoder.position_embedding, prefix + "decoder_pos_embed")
    for i, block in enumerate(decoder.blocks):
        block_map(plan, block, f"{prefix}{blocks_name}.{i}.")
    _norm(plan, decoder.decoder_norm, prefix + "decoder_norm")
    _dense(plan, decoder.decoder_pred, prefix + "decoder_pred")


def detect_mae_source(tensors):
    """'official' or 'transformers', from the checkpoint's keys."""
    if "decoder_embed.weight" in tensors:
        return "official"
    if "decoder.decoder_embed.weight" in tensors:
        return "transformers"
    sample = ", ".join(sorted(tensors)[:5])
    encoder_only = "patch_embed.proj.weight" in tensors or any(
        k.endswith("embeddings.patch_embeddings.projection.weight") for k in tensors
    )
    hint = (
        " It holds an encoder only (MAE's `mae_pretrain_*.pth` are): load it into a ViT with "
        "keras_vit.VisionTransformer(..., include_top=False, weights=PATH)."
        if encoder_only else ""
    )
    raise ValueError(
        f"This checkpoint is not a whole MAE (encoder and decoder) of the official repository or transformers "
        f"(its first keys: {sample}).{hint}"
    )


def convert_mae(model, tensors, allow_head_reset=False):
    """Fills a `MaskedAutoencoder`, encoder and decoder, from an official or transformers state dict.

    Strict: every key used, every weight filled (see `keras_vit.weights.assignment`).

    Example:
    >>> import numpy as np, keras_vit
    >>> encoder = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, include_top=False, pooling=None)
    >>> mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)
    >>> convert_mae(mae, {"decoder_embed.weight": np.zeros((32, 48))})
    Traceback (most recent call last):
    ...
    keras_vit.weights.assignment.WeightsMismatchError: The official checkpoint does not fit model 'masked_autoencoder':
    ...
    """
    del allow_head_reset  # an MAE has no classifier head
    source = detect_mae_source(tensors)
    if source == "transformers":
        tensors = _transformers4_names(tensors)
    plan = WeightAssignment(model, tensors, source=source)
    if source == "official":
        vit_maps._from_timm(plan, model.encoder)
        _decoder(plan, model.decoder, "", "decoder_blocks", _official_block)
    else:
        vit_maps._from_transformers(plan, model.encoder)
        _decoder(plan, model.decoder, "decoder.", "decoder_layers", _transformers_block)
    plan.apply()
