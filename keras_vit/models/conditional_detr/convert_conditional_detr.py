"""Key maps for Conditional DETR checkpoints: transformers (the published transformers-4 names and
the transformers-5 names) and the original Atten4Vis/ConditionalDETR `.pth`.

The backbone, input projection, queries and encoder are named as in DETR and mapped by
`keras_vit.models.detr.convert_detr`'s helpers (ResNet in the timm/torchvision or transformers
layout; the original encoder's stacked `in_proj_weight`). The decoder's projections:

| keras_vit (`decoder_{i}.`)     | transformers 5 (`model.decoder.layers.{i}.`) | transformers 4 / original           |
|--------------------------------|-----------------------------------------------|-------------------------------------|
| self_attn.q_content_proj ...   | self_attn.q_content_proj ...                  | sa_qcontent_proj ...                |
| self_attn.out_proj             | self_attn.o_proj                              | self_attn.out_proj                  |
| cross_attn.q_pos_sine_proj ... | encoder_attn.q_pos_sine_proj ...              | ca_qpos_sine_proj ...               |
| cross_attn.out_proj            | encoder_attn.o_proj                           | encoder_attn.out_proj / cross_attn.out_proj |
| norm1, norm2, norm3            | self_attn_layer_norm, encoder_attn_layer_norm, final_layer_norm | (same) / norm1..3 |

Only the first decoder layer has a cross-attention `q_pos_proj` (`ca_qpos_proj`), in every layout.
"""

from keras_vit.models.detr.convert_detr import _attention_separate, _attention_stacked, _backbone
from keras_vit.weights.assignment import WeightAssignment

_SELF_ATTENTION = ("q_content_proj", "q_pos_proj", "k_content_proj", "k_pos_proj", "v_proj")
_CROSS_ATTENTION = ("q_content_proj", "q_pos_proj", "k_content_proj", "k_pos_proj", "v_proj", "q_pos_sine_proj")


# keras_vit's projection names -> the flat names of transformers 4 and the original, after "sa_"/"ca_".
_FLAT_NAMES = {
    "q_content_proj": "qcontent_proj",
    "q_pos_proj": "qpos_proj",
    "k_content_proj": "kcontent_proj",
    "k_pos_proj": "kpos_proj",
    "v_proj": "v_proj",
    "q_pos_sine_proj": "qpos_sine_proj",
}


def _flat_name(prefix, name):
    """q_content_proj -> sa_qcontent_proj (with prefix "sa_")."""
    return prefix + _FLAT_NAMES[name]


def _decoder_projections(plan, layer, p, nested):
    """The decoder attentions' projections, nested (transformers 5) or flat (transformers 4, original)."""
    for name in _SELF_ATTENTION:
        key = f"{p}self_attn.{name}" if nested else p + _flat_name("sa_", name)
        plan.dense(getattr(layer.self_attn, name), key)
    for name in _CROSS_ATTENTION:
        if name == "q_pos_proj" and not layer.cross_attn.is_first:
            continue
        key = f"{p}encoder_attn.{name}" if nested else p + _flat_name("ca_", name)
        plan.dense(getattr(layer.cross_attn, name), key)


def _mlp(plan, head, prefix):
    for i, layer in enumerate(head.dense_layers):
        plan.dense(layer, f"{prefix}.layers.{i}")


def _from_transformers(plan, model):
    tensors = plan.tensors
    published = any(k.startswith("model.backbone.conv_encoder.") for k in tensors)  # transformers-4 names
    _backbone(plan, model, "model.backbone.conv_encoder.model." if published else "model.backbone.model.")
    plan.conv(model.input_proj, "model.input_projection")
    plan.assign(model.query_embed.embeddings, "model.query_position_embeddings.weight")
    out_name = "out_proj" if published else "o_proj"
    fc = "" if published else "mlp."
    for i, layer in enumerate(model.encoder_layers):
        p = f"model.encoder.layers.{i}."
        _attention_separate(plan, layer.self_attn, p + "self_attn", out_name)
        plan.norm(layer.norm1, p + "self_attn_layer_norm")
        plan.dense(layer.linear1, p + fc + "fc1")
        plan.dense(layer.linear2, p + fc + "fc2")
        plan.norm(layer.norm2, p + "final_layer_norm")
    for i, layer in enumerate(model.decoder_layers):
        p = f"model.decoder.layers.{i}."
        _decoder_projections(plan, layer, p, nested=not published)
        plan.dense(layer.self_attn.out_proj, f"{p}self_attn.{out_name}")
        plan.norm(layer.norm1, p + "self_attn_layer_norm")
        plan.dense(layer.cross_attn.out_proj, f"{p}encoder_attn.{out_name}")
        plan.norm(layer.norm2, p + "encoder_attn_layer_norm")
        plan.dense(layer.linear1, p + fc + "fc1")
        plan.dense(layer.linear2, p + fc + "fc2")
        plan.norm(layer.norm3, p + "final_layer_norm")
    plan.norm(model.decoder_norm, "model.decoder.layernorm")
    _mlp(plan, model.query_scale, "model.decoder.query_scale")
    _mlp(plan, model.ref_point_head, "model.decoder.ref_point_head")
    plan.dense(model.class_embed, "class_labels_classifier", head=True)
    _mlp(plan, model.bbox_embed, "bbox_predictor")


def _from_original_repository(plan, model):
    _backbone(plan, model, "backbone.0.body.")
    plan.conv(model.input_proj, "input_proj")
    plan.assign(model.query_embed.embeddings, "query_embed.weight")
    for i, layer in enumerate(model.encoder_layers):
        p = f"transformer.encoder.layers.{i}."
        _attention_stacked(plan, layer.self_attn, p + "self_attn")
        plan.dense(layer.linear1, p + "linear1")
        plan.dense(layer.linear2, p + "linear2")
        plan.norm(layer.norm1, p + "norm1")
        plan.norm(layer.norm2, p + "norm2")
    for i, layer in enumerate(model.decoder_layers):
        p = f"transformer.decoder.layers.{i}."
        _decoder_projections(plan, layer, p, nested=False)
        plan.dense(layer.self_attn.out_proj, p + "self_attn.out_proj")
        plan.dense(layer.cross_attn.out_proj, p + "cross_attn.out_proj")
        plan.dense(layer.linear1, p + "linear1")
        plan.dense(layer.linear2, p + "linear2")
        for n in (1, 2, 3):
            plan.norm(getattr(layer, f"norm{n}"), f"{p}norm{n}")
    plan.norm(model.decoder_norm, "transformer.decoder.norm")
    _mlp(plan, model.query_scale, "transformer.decoder.query_scale")
    _mlp(plan, model.ref_point_head, "transformer.decoder.ref_point_head")
    plan.dense(model.class_embed, "class_embed", head=True)
    _mlp(plan, model.bbox_embed, "bbox_embed")


def detect_conditional_detr_source(tensors):
    """'transformers' or 'original' (Atten4Vis/ConditionalDETR), from the checkpoint's keys.

    Example:
    >>> detect_conditional_detr_source({"transformer.decoder.ref_point_head.layers.0.weight": None})
    'original'
    """
    if any(k.startswith("model.decoder.ref_point_head.") for k in tensors):
        return "transformers"
    if any(k.startswith("transformer.decoder.ref_point_head.") for k in tensors):
        return "original"
    sample = ", ".join(sorted(tensors)[:5])
    raise ValueError(
        "This checkpoint is not a Conditional DETR checkpoint of transformers or Atten4Vis/ConditionalDETR "
        f"(no decoder ref_point_head; its first keys: {sample}). A plain DETR checkpoint loads into "
        "keras_vit.DETR; build the model family the checkpoint is for."
    )


_SOURCES = {"transformers": _from_transformers, "original": _from_original_repository}


def convert_conditional_detr(model, tensors, allow_head_reset=False):
    """Fills a `ConditionalDETRModel` from a transformers or Atten4Vis/ConditionalDETR state dict.

    Strict (see `keras_vit.weights.assignment`): every key used, every weight filled.
    `num_batches_tracked` counters of BatchNorm are ignored. With `allow_head_reset`, a class head
    of another size is left at its initial values (fine-tuning on other classes).

    Example:
    >>> import keras_vit, keras
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = keras_vit.ConditionalDETR(cnn, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
    ...                                   num_decoder_layers=1, num_heads=2, mlp_dim=32)
    >>> convert_conditional_detr(model, {"query_embed.weight": None})
    Traceback (most recent call last):
    ...
    ValueError: This checkpoint is not a Conditional DETR checkpoint of transformers or Atten4Vis/ConditionalDETR (no decoder ref_point_head; its first keys: query_embed.weight). A plain DETR checkpoint loads into keras_vit.DETR; build the model family the checkpoint is for.
    """
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    source = detect_conditional_detr_source(tensors)
    plan = WeightAssignment(model, tensors, source=source, allow_head_reset=allow_head_reset)
    _SOURCES[source](plan, model)
    plan.apply()
