"""Key maps for DETR checkpoints: transformers (published transformers-4 names and
transformers-5 names) and the original facebookresearch/detr `.pth`.

Each source's transformer and heads map onto the layers of a
`keras_vit.models.detr.detr_model.DETRModel`; the ResNet backbone comes in three layouts
(timm/torchvision as in the published checkpoints and the original repository,
and transformers' own `ResNetConfig` layout), each mapped onto
`keras_vit.models.resnet.resnet_model`. `convert_detr` picks them from the keys and applies
the plan strictly (see `assignment`): every key used, every weight filled.
"""


from keras_vit.weights.assignment import WeightAssignment


def _resnet_blocks(resnet):
    """{(stage, block): ResNetBottleneck} of a keras_vit ResNet (stages from 0)."""
    blocks = {}
    for layer in resnet.layers:
        name = layer.name
        if name.startswith("layer") and "_" in name:
            stage, block = name[len("layer"):].split("_", 1)
            if stage.isdigit() and block.isdigit():
                blocks[(int(stage) - 1, int(block))] = layer
    return blocks


def _resnet_model(model):
    resnet = model.backbone.feature_extractor
    names = {layer.name for layer in getattr(resnet, "layers", [])}
    if "conv1" not in names or "bn1" not in names:
        raise ValueError(
            "This checkpoint holds a ResNet backbone, but the model's backbone is not a keras_vit ResNet "
            f"({type(resnet).__name__} {resnet.name!r}). Build the model with backbone='resnet50' or "
            "'resnet101' to load it."
        )
    return resnet


def _backbone_torchvision(plan, resnet, prefix):
    """timm / torchvision names: conv1, bn1, layer{1-4}.{b}.conv{1-3}, bn{1-3}, downsample.{0,1}."""
    plan.conv(resnet.get_layer("conv1"), prefix + "conv1")
    plan.batch_norm(resnet.get_layer("bn1"), prefix + "bn1")
    for (stage, index), block in sorted(_resnet_blocks(resnet).items()):
        p = f"{prefix}layer{stage + 1}.{index}."
        for i in (1, 2, 3):
            plan.conv(getattr(block, f"conv{i}"), f"{p}conv{i}")
            plan.batch_norm(getattr(block, f"bn{i}"), f"{p}bn{i}")
        if block.use_downsample:
            plan.conv(block.downsample_conv, p + "downsample.0")
            plan.batch_norm(block.downsample_bn, p + "downsample.1")


def _backbone_transformers_resnet(plan, resnet, prefix):
    """transformers' ResNetModel names: embedder.embedder.*, encoder.stages.{s}.layers.{b}.layer.{i}, shortcut."""
    stem = prefix + "embedder.embedder."
    plan.conv(resnet.get_layer("conv1"), stem + "convolution")
    plan.batch_norm(resnet.get_layer("bn1"), stem + "normalization")
    for (stage, index), block in sorted(_resnet_blocks(resnet).items()):
        p = f"{prefix}encoder.stages.{stage}.layers.{index}."
        for i in (1, 2, 3):
            plan.conv(getattr(block, f"conv{i}"), f"{p}layer.{i - 1}.convolution")
            plan.batch_norm(getattr(block, f"bn{i}"), f"{p}layer.{i - 1}.normalization")
        if block.use_downsample:
            plan.conv(block.downsample_conv, p + "shortcut.convolution")
            plan.batch_norm(block.downsample_bn, p + "shortcut.normalization")


def _backbone(plan, model, prefix):
    resnet = _resnet_model(model)
    if plan.has(prefix + "embedder.embedder.convolution.weight"):
        _backbone_transformers_resnet(plan, resnet, prefix)
    else:
        _backbone_torchvision(plan, resnet, prefix)


def _attention_separate(plan, attention, prefix, out_name):
    for name in ("q_proj", "k_proj", "v_proj"):
        plan.dense(getattr(attention, name), f"{prefix}.{name}")
    plan.dense(attention.out_proj, f"{prefix}.{out_name}")


def _attention_stacked(plan, attention, prefix):
    """torch nn.MultiheadAttention: in_proj_weight (3D, D) = [q; k; v]."""
    weight = plan.take(prefix + ".in_proj_weight")
    bias = plan.take(prefix + ".in_proj_bias")
    if weight is not None and bias is not None:
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(i * weight.shape[0] // 3, (i + 1) * weight.shape[0] // 3)
            layer = getattr(attention, name)
            plan.assign_array(layer.kernel, weight[rows].T, f"{prefix}.in_proj_weight[{name}]")
            plan.assign_array(layer.bias, bias[rows], f"{prefix}.in_proj_bias[{name}]")
    plan.dense(attention.out_proj, prefix + ".out_proj")


def _heads(plan, model, class_key, box_key):
    plan.dense(model.class_embed, class_key, head=True)
    for i, layer in enumerate(model.bbox_embed.dense_layers):
        plan.dense(layer, f"{box_key}.layers.{i}")


def _from_transformers(plan, model):
    tensors = plan.tensors
    if any(k.startswith("model.backbone.conv_encoder.model.") for k in tensors):
        backbone_prefix = "model.backbone.conv_encoder.model."  # transformers 4 (published)
    else:
        backbone_prefix = "model.backbone.model."  # transformers 5
    _backbone(plan, model, backbone_prefix)
    plan.conv(model.input_proj, "model.input_projection")
    plan.assign(model.query_embed.embeddings, "model.query_position_embeddings.weight")
    published = any(".out_proj." in k for k in tensors)
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
        _attention_separate(plan, layer.self_attn, p + "self_attn", out_name)
        plan.norm(layer.norm1, p + "self_attn_layer_norm")
        _attention_separate(plan, layer.cross_attn, p + "encoder_attn", out_name)
        plan.norm(layer.norm2, p + "encoder_attn_layer_norm")
        plan.dense(layer.linear1, p + fc + "fc1")
        plan.dense(layer.linear2, p + fc + "fc2")
        plan.norm(layer.norm3, p + "final_layer_norm")
    plan.norm(model.decoder_norm, "model.decoder.layernorm")
    _heads(plan, model, "class_labels_classifier", "bbox_predictor")


def _from_detr_repository(plan, model):
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
        _attention_stacked(plan, layer.self_attn, p + "self_attn")
        _attention_stacked(plan, layer.cross_attn, p + "multihead_attn")
        plan.dense(layer.linear1, p + "linear1")
        plan.dense(layer.linear2, p + "linear2")
        for n in (1, 2, 3):
            plan.norm(getattr(layer, f"norm{n}"), f"{p}norm{n}")
    plan.norm(model.decoder_norm, "transformer.decoder.norm")
    _heads(plan, model, "class_embed", "bbox_embed")


def detect_detr_source(tensors):
    """'transformers' or 'detr' (the original repository), from the checkpoint's keys."""
    if "class_labels_classifier.weight" in tensors or any(k.startswith("model.backbone.") for k in tensors):
        return "transformers"
    if any(k.startswith("transformer.decoder.") for k in tensors) or "query_embed.weight" in tensors:
        return "detr"
    sample = ", ".join(sorted(tensors)[:5])
    raise ValueError(
        "This checkpoint is not a DETR checkpoint of transformers or facebookresearch/detr "
        f"(its first keys: {sample}). Pass a DETR checkpoint, or build the model family it is for."
    )


_SOURCES = {"transformers": _from_transformers, "detr": _from_detr_repository}


def convert_detr(model, tensors, allow_head_reset=False):
    """Fills a `DETRModel` from a transformers or facebookresearch/detr state dict.

    `num_batches_tracked` counters of BatchNorm are ignored (frozen BatchNorm has
    none). With `allow_head_reset`, a class head of another size is left at its
    initial values (fine-tuning on other classes).

    Example:
    >>> import keras_vit
    >>> from keras_vit.weights import read_checkpoint
    >>> from keras_vit.models.resnet.resnet_model import ResNet
    >>> backbone = ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16)
    >>> model = keras_vit.DETR(backbone, num_classes=5, num_queries=8, hidden_dim=32, num_encoder_layers=2,
    ...                        num_decoder_layers=2, num_heads=4, mlp_dim=64, dropout=0.0)
    >>> _, tensors = read_checkpoint("tests/fixtures/detr_tiny.safetensors")
    >>> convert_detr(model, tensors)
    """
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    source = detect_detr_source(tensors)
    plan = WeightAssignment(model, tensors, source=source, allow_head_reset=allow_head_reset)
    _SOURCES[source](plan, model)
    plan.apply()
