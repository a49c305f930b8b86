"""Conditional DETR: parity with transformers (a tiny random model built here), the original
repository's and transformers-4 key layouts, the focal set loss, fit(), TFLite export, errors."""

import os
import re

import keras
import numpy as np
import pytest

import keras_vit
from conftest import BACKEND, to_numpy
from keras_vit.data.detection import pad_detection_targets
from keras_vit.models.conditional_detr.convert_conditional_detr import convert_conditional_detr
from keras_vit.models.resnet.resnet_model import ResNet
from keras_vit.training import ConditionalDETRLoss
from keras_vit.weights import WeightsMismatchError

# A tiny transformers ConditionalDetrForObjectDetection: HF ResNet (bottleneck, widths 16-32-64-128),
# d_model 32, 2 + 2 layers, 4 heads, 8 queries, 5 classes.
TINY = dict(num_classes=5, num_queries=8, hidden_dim=32, num_encoder_layers=2, num_decoder_layers=2,
            num_heads=4, mlp_dim=64, dropout=0.0)
# Targets of the two images (normalized cx, cy, w, h): two boxes, then one.
TARGET_BOXES = [[[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]], [[0.5, 0.5, 0.4, 0.5]]]
TARGET_LABELS = [[1, 4], [2]]
# What transformers reports for ConditionalDetrForObjectDetection(ConditionalDetrConfig(
#     use_timm_backbone=False, backbone_config=ResNetConfig(out_features=["stage4"]), num_labels=91)):
# sum(p.numel() for p in model.parameters()) with transformers 5.24 (frozen BatchNorm statistics and
# affine terms are buffers, not counted). The ResNet-50 is the same as the published checkpoint's timm one.
TRANSFORMERS_R50_PARAMETERS = 43_418_401


def tiny_resnet():
    return ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, name="tiny_resnet")


def patchify_cnn(channels=16):
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 4, strides=4, activation="relu"),
            keras.layers.Conv2D(channels, 2, strides=2),
        ],
        name="patchify_cnn",
    )


def predict(model, inputs):
    """NumPy outputs; JAX runs the model compiled (eager JAX compiles op by op)."""
    if BACKEND == "jax":
        return model.predict_on_batch(inputs)
    return {k: to_numpy(v) for k, v in model(inputs).items()}


@pytest.fixture(scope="module")
def reference():
    """A random tiny transformers model, its outputs on a padded batch, and its loss with auxiliary layers."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.ConditionalDetrConfig(
        backbone_config=transformers.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="bottleneck",
            out_features=["stage4"],
        ),
        use_timm_backbone=False, use_pretrained_backbone=False, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        num_queries=8, num_labels=5, auxiliary_loss=False, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0,
    )
    torch.manual_seed(0)
    model = transformers.ConditionalDetrForObjectDetection(config).eval()
    generator = torch.Generator().manual_seed(0)
    state = model.state_dict()
    with torch.no_grad():  # random everything: no zero bias or unit scale hides a wrong mapping
        for key, value in state.items():
            if value.dtype.is_floating_point:
                if key.endswith("running_var"):
                    value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
                else:
                    value.copy_(torch.randn(value.shape, generator=generator) * 0.5)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 64, 96, 3)).astype("float32")
    pixel_mask = np.ones((2, 64, 96), "float32")
    pixel_mask[1, 48:] = 0  # image 2 is 48x64, padded at the bottom and right
    pixel_mask[1, :, 64:] = 0
    pixel_values = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch_mask = torch.from_numpy(pixel_mask).long()
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values, pixel_mask=torch_mask)
        # transformers' loss (focal matching and loss, class weight 1) with every decoder layer.
        for module in model.modules():
            if hasattr(module, "config"):
                module.config.auxiliary_loss = True
        labels = [{"class_labels": torch.tensor(c), "boxes": torch.tensor(b)} for b, c in zip(TARGET_BOXES, TARGET_LABELS)]
        with_loss = model(pixel_values=pixel_values, pixel_mask=torch_mask, labels=labels)
    return {
        "tensors": {k: v.numpy() for k, v in state.items()},
        "inputs": {"images": images, "pixel_mask": pixel_mask},
        "logits": outputs.logits.numpy(),
        "pred_boxes": outputs.pred_boxes.numpy(),
        "loss_outputs": {
            "logits": with_loss.logits.numpy(),
            "pred_boxes": with_loss.pred_boxes.numpy(),
            "aux_logits": np.stack([o["logits"].numpy() for o in with_loss.auxiliary_outputs], axis=1),
            "aux_pred_boxes": np.stack([o["pred_boxes"].numpy() for o in with_loss.auxiliary_outputs], axis=1),
        },
        "loss": float(with_loss.loss),
        "loss_dict": {k: float(v) for k, v in with_loss.loss_dict.items()},
    }


@pytest.fixture(scope="module")
def model(reference):
    model = keras_vit.ConditionalDETR(tiny_resnet(), **TINY, name="tiny_conditional_detr")
    convert_conditional_detr(model, reference["tensors"])
    return model


def test_transformers_weights_give_the_same_logits_and_boxes_with_padding(model, reference):
    out = predict(model, reference["inputs"])
    np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-4)
    np.testing.assert_allclose(out["pred_boxes"], reference["pred_boxes"], atol=1e-4)
    assert out["logits"].shape == (2, 8, 5)  # sigmoid logits: no "no object" column


def _resnet_to_torchvision(key):
    """transformers' ResNetModel names -> timm/torchvision names (conv1, bn1, layer{s}.{b}.conv{i}, ...)."""
    key = key.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
    match = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)", key)
    if match:
        stage, block, rest = match.groups()
        rest = re.sub(r"layer\.(\d)\.convolution", lambda g: f"conv{int(g.group(1)) + 1}", rest)
        rest = re.sub(r"layer\.(\d)\.normalization", lambda g: f"bn{int(g.group(1)) + 1}", rest)
        rest = rest.replace("shortcut.convolution", "downsample.0").replace("shortcut.normalization", "downsample.1")
        key = f"layer{int(stage) + 1}.{block}.{rest}"
    return key


def _flat_decoder_names(key, cross_attention_name):
    """Decoder projections nested in transformers 5 -> sa_*/ca_* (transformers 4 and the original)."""
    key = re.sub(r"self_attn\.([qk])_(content|pos)_proj", r"sa_\1\2_proj", key)
    key = key.replace("self_attn.v_proj", "sa_v_proj")
    key = re.sub(r"encoder_attn\.q_pos_sine_proj", "ca_qpos_sine_proj", key)
    key = re.sub(r"encoder_attn\.([qk])_(content|pos)_proj", r"ca_\1\2_proj", key)
    key = key.replace("encoder_attn.v_proj", "ca_v_proj")
    return key.replace("encoder_attn.o_proj", f"{cross_attention_name}.out_proj").replace("o_proj", "out_proj")


def to_original_layout(tensors):
    """transformers 5 names -> Atten4Vis/ConditionalDETR's .pth names (stacked encoder in_proj)."""
    out = {}
    for key, value in tensors.items():
        if key.startswith("model.backbone.model."):
            out["backbone.0.body." + _resnet_to_torchvision(key[len("model.backbone.model."):])] = value
            continue
        k = key.replace("model.encoder.", "transformer.encoder.").replace("model.decoder.", "transformer.decoder.")
        k = k.replace("transformer.decoder.layernorm", "transformer.decoder.norm")
        k = k.replace("model.input_projection", "input_proj").replace("model.query_position_embeddings", "query_embed")
        k = k.replace("class_labels_classifier", "class_embed").replace("bbox_predictor", "bbox_embed")
        k = k.replace("encoder_attn_layer_norm", "norm2").replace("self_attn_layer_norm", "norm1")
        k = k.replace("final_layer_norm", "norm3" if ".decoder." in k else "norm2")
        k = k.replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2")
        if ".decoder.layers." in k:
            k = _flat_decoder_names(k, "cross_attn")
        out[k.replace("o_proj", "out_proj")] = value
    stacked = {}
    for key in list(out):
        match = re.match(r"(transformer\.encoder\..*)\.([qkv])_proj\.(weight|bias)$", key)
        if match:
            stacked.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = out.pop(key)
    for (prefix, kind), parts in stacked.items():
        out[f"{prefix}.in_proj_{kind}"] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    out["backbone.0.body.bn1.num_batches_tracked"] = np.array(7)  # BatchNorm counters are ignored
    return out


def to_transformers4_layout(tensors):
    """transformers 5 names -> the published checkpoints' transformers-4 names (timm backbone)."""
    out = {}
    for key, value in tensors.items():
        if key.startswith("model.backbone.model."):
            key = "model.backbone.conv_encoder.model." + _resnet_to_torchvision(key[len("model.backbone.model."):])
        elif key.startswith("model.decoder.layers."):
            key = _flat_decoder_names(key, "encoder_attn")
        key = key.replace("o_proj", "out_proj").replace("mlp.fc", "fc")
        out[key] = value
    return out


def test_original_repository_and_transformers4_layouts_load_strictly(model, reference, tmp_path):
    torch = pytest.importorskip("torch", reason="writing a .pth checkpoint needs torch")
    variables = [v for v in model.weights if "seed_generator" not in v.path]
    loaded = [to_numpy(v).copy() for v in variables]
    original = to_original_layout(reference["tensors"])
    assert "transformer.decoder.layers.0.ca_qpos_proj.weight" in original
    assert "transformer.decoder.layers.1.ca_qpos_proj.weight" not in original  # only the first layer has it
    assert "transformer.encoder.layers.0.self_attn.in_proj_weight" in original
    path = os.path.join(tmp_path, "conditional_detr_tiny.pth")
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in original.items()}}, path)
    published = to_transformers4_layout(reference["tensors"])
    assert "model.decoder.layers.1.sa_qcontent_proj.weight" in published
    try:
        for load in (lambda: keras_vit.load_weights(model, path), lambda: convert_conditional_detr(model, published)):
            for variable in variables:  # every weight must come back from the file
                variable.assign(np.zeros(variable.shape, variable.dtype))
            load()
            for expected, variable in zip(loaded, variables):
                np.testing.assert_array_equal(to_numpy(variable), expected, err_msg=variable.path)
    finally:
        for expected, variable in zip(loaded, variables):
            variable.assign(expected)


def test_original_release_file_loads_into_a_dc5_model_through_weights(model, reference, tmp_path):
    """The release files are torch files `{"model": state_dict, ...}` (the original main.py also saves its
    argparse arguments beside the weights); DC5 (dilation) changes no weight."""
    import argparse

    torch = pytest.importorskip("torch", reason="writing a .pth checkpoint needs torch")
    original = to_original_layout(reference["tensors"])
    path = str(tmp_path / "ConditionalDETR_tiny_dc5_epoch50.pth")
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in original.items()}, "epoch": 49,
                "args": argparse.Namespace(backbone="resnet50", dilation=True, num_queries=300)}, path)
    dilated = ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, dilation=True, name="tiny_resnet")
    assert dilated.compute_output_shape((1, 64, 96, 3)) == (1, 4, 6, 128)  # stride 16: DC5
    dc5 = keras_vit.ConditionalDETR(dilated, **TINY, weights=path, name="tiny_conditional_detr_dc5")
    expected = [v for v in model.weights if "seed_generator" not in v.path]
    loaded = [v for v in dc5.weights if "seed_generator" not in v.path]
    assert len(loaded) == len(expected)
    for want, got in zip(expected, loaded):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want), err_msg=got.path)


ORIGINAL_RELEASE = "https://github.com/DeppMeng/ConditionalDETR/releases/download/v1.0/"


def test_original_repository_checkpoints_are_published_with_their_release_urls():
    names = keras_vit.weights.published_names("conditional_detr")
    assert "microsoft/conditional-detr-resnet-50" in names
    for variant in ("r50", "r50dc5", "r101", "r101dc5"):
        name = f"ConditionalDETR_{variant}_epoch50"
        assert name in names
        entry = keras_vit.weights.PUBLISHED_WEIGHTS[name]
        assert entry["url"] == f"{ORIGINAL_RELEASE}{name}.pth" and entry["filename"] == f"{name}.pth"
        assert "repo_id" not in entry  # a release file, downloaded from its URL into cache_dir()
        assert entry["num_classes"] == 91
        assert entry["mean"] == (0.485, 0.456, 0.406) and entry["std"] == (0.229, 0.224, 0.225)


def test_coco_names_the_checkpoint_of_the_backbone_and_dilation(monkeypatch):
    """Weights are resolved before anything is built: a stand-in download tells which file was asked for."""
    import keras_vit.weights.loader

    class Asked(Exception):
        pass

    def fetch(name):
        raise Asked(name)

    monkeypatch.setattr(keras_vit.weights.loader, "fetch_published", fetch)
    expected = {
        (keras_vit.ConditionalDETRResNet50, False): "microsoft/conditional-detr-resnet-50",
        (keras_vit.ConditionalDETRResNet50, True): "ConditionalDETR_r50dc5_epoch50",
        (keras_vit.ConditionalDETRResNet101, False): "ConditionalDETR_r101_epoch50",
        (keras_vit.ConditionalDETRResNet101, True): "ConditionalDETR_r101dc5_epoch50",
    }
    for (builder, dilation), name in expected.items():
        with pytest.raises(Asked) as asked:
            builder(weights="coco", dilation=dilation)
        assert asked.value.args == (name,), (builder.__name__, dilation)


def test_missing_or_extra_keys_name_them(model, reference):
    tensors = dict(reference["tensors"])
    del tensors["model.decoder.ref_point_head.layers.1.bias"]
    tensors["model.decoder.layers.1.encoder_attn.q_pos_proj.weight"] = np.zeros((32, 32), "float32")
    with pytest.raises(WeightsMismatchError, match=r"ref_point_head\.layers\.1\.bias(.|\n)*layers\.1\.encoder_attn"):
        convert_conditional_detr(model, tensors)


def test_focal_set_loss_equals_transformers_with_auxiliary_layers(reference):
    y_true = pad_detection_targets(TARGET_BOXES, TARGET_LABELS, max_boxes=3)
    y_pred = reference["loss_outputs"]
    expected = reference["loss_dict"]
    # transformers weighs the focal term 1 where the original repository weighs it 2.
    got = ConditionalDETRLoss(num_classes=5, ce_weight=1.0)(y_true, y_pred)
    for name in ("loss_ce", "loss_bbox", "loss_giou"):
        np.testing.assert_allclose(float(to_numpy(got[name])), expected[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(to_numpy(got["loss"])), reference["loss"], rtol=1e-5)
    default = ConditionalDETRLoss(num_classes=5)(y_true, y_pred)
    focal_terms = sum(v for k, v in expected.items() if k.startswith("loss_ce"))
    np.testing.assert_allclose(float(to_numpy(default["loss"])), reference["loss"] + focal_terms, rtol=1e-5)


@pytest.mark.skipif(BACKEND == "jax", reason="a count of weights, the same on every backend: building the R50 "
                    "eagerly on JAX costs a minute of CI on 2 cores; TensorFlow and torch check it")
def test_parameter_count_of_resnet50_equals_transformers():
    model = keras_vit.ConditionalDETRResNet50(num_classes=91)
    frozen_bn = {id(v) for layer in model.backbone.feature_extractor._flatten_layers()
                 if isinstance(layer, keras_vit.layers.FrozenBatchNormalization) for v in layer.weights}
    count = sum(int(np.prod(v.shape)) for v in model.weights if id(v) not in frozen_bn)
    assert count == TRANSFORMERS_R50_PARAMETERS
    assert model.num_queries == 300 and model.compute_output_shape((None, 64, 64, 3))["logits"] == (None, 300, 91)


def _detection_data(num_images=4, size=32, max_boxes=3, num_classes=3, seed=4):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num_images, size, size, 3)).astype("float32")
    centers = rng.uniform(0.3, 0.7, (num_images, max_boxes, 2))
    sizes = rng.uniform(0.1, 0.3, (num_images, max_boxes, 2))
    y = {
        "boxes": np.concatenate([centers, sizes], -1).astype("float32"),
        "labels": rng.integers(0, num_classes, (num_images, max_boxes)).astype("int32"),
        "valid": (np.arange(max_boxes)[None] < rng.integers(1, max_boxes + 1, (num_images, 1))).astype("float32"),
    }
    return {"images": images, "pixel_mask": np.ones((num_images, size, size), "float32")}, y


SMALL = dict(num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1, num_decoder_layers=2,
             num_heads=4, mlp_dim=64, dropout=0.0)


def test_fit_lowers_the_focal_set_loss():
    x, y = _detection_data()
    model = keras_vit.ConditionalDETR(patchify_cnn(), **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # no loss: the focal set loss
    assert isinstance(model._set_loss, ConditionalDETRLoss) and model._set_loss.auxiliary_loss
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0)
    assert {"loss", "loss_ce", "loss_bbox", "loss_giou"} <= set(history.history)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    # COCO evaluation reads the sigmoid scores through the model's own post-processing.
    pytest.importorskip("pycocotools")
    metrics = keras_vit.training.evaluate_coco(model, [(x, y)])
    assert 0.0 <= metrics["mAP50"] <= 1.0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="one export check, on TensorFlow (export from every backend is DETR's)")
def test_exports_to_tflite_with_builtin_ops(model, tmp_path):
    report = keras_vit.export_tflite(model, str(tmp_path / "conditional_detr.tflite"), input_shape=(64, 64, 3))
    assert report.max_abs_diff <= 1e-4, report.per_output
    assert not [op for op in report.ops if op.startswith("Flex") or op == "CUSTOM"], report.ops


def test_bad_inputs_raise_clear_errors(model, reference):
    with pytest.raises(ValueError, match="num_queries >= 1"):
        keras_vit.ConditionalDETR(patchify_cnn(), **{**SMALL, "num_queries": 0})
    with pytest.raises(ValueError, match="multiple of 4"):
        keras_vit.ConditionalDETR(patchify_cnn(), **{**SMALL, "hidden_dim": 30, "num_heads": 3})
    with pytest.raises(ValueError, match="pixel_mask has shape"):
        model({"images": np.zeros((1, 32, 32, 3), "float32"), "pixel_mask": np.ones((1, 32, 16), "float32")})
    with pytest.raises(ValueError, match="for a detr model, not conditional_detr"):  # before anything is built
        keras_vit.ConditionalDETRResNet101(weights="facebook/detr-resnet-50")
    with pytest.raises(ValueError, match="not a Conditional DETR checkpoint"):
        convert_conditional_detr(model, {"query_embed.weight": np.zeros((8, 32), "float32"),
                                         "transformer.decoder.layers.0.linear1.weight": np.zeros((64, 32))})
    with pytest.raises(ValueError, match="no 'no object' class"):
        ConditionalDETRLoss(num_classes=5)(
            pad_detection_targets(TARGET_BOXES, TARGET_LABELS, max_boxes=3),
            {"logits": np.zeros((2, 8, 6), "float32"), "pred_boxes": np.full((2, 8, 4), 0.5, "float32")},
        )
    x, y = _detection_data(num_images=2)
    y["labels"][0, 0], y["valid"][0, 0] = 7, 1.0  # beyond the 3 classes
    small = keras_vit.ConditionalDETR(patchify_cnn(), **SMALL)
    small.compile(optimizer="adam")
    with pytest.raises(ValueError, match="label"):
        small.fit(x, y, epochs=1, verbose=0)


def test_ffn_dim_is_mlp_dim_as_in_detr():
    """One vocabulary with DETR: `ffn_dim` works with the same DeprecationWarning; both at once is DETR's error."""
    import warnings

    old_name = {key: value for key, value in SMALL.items() if key != "mlp_dim"}
    with pytest.warns(DeprecationWarning, match="ConditionalDETR: `ffn_dim` is now called `mlp_dim`"):
        model = keras_vit.ConditionalDETR(patchify_cnn(), **old_name, ffn_dim=48)
    assert model.mlp_dim == 48 and model.get_layer("decoder_0").linear1.units == 48
    with pytest.warns(DeprecationWarning, match="`ffn_dim` is now called `mlp_dim`"):
        assert keras_vit.ConditionalDETRModel(patchify_cnn(), **old_name, ffn_dim=40).mlp_dim == 40
    with pytest.raises(TypeError, match="ConditionalDETR: pass `mlp_dim` only; `ffn_dim` is its old name"):
        keras_vit.ConditionalDETR(patchify_cnn(), **{**SMALL, "ffn_dim": 48})
    with pytest.raises(TypeError, match="ConditionalDETR\\(\\) got an unexpected keyword argument 'mlp_width'"):
        keras_vit.ConditionalDETR(patchify_cnn(), **SMALL, mlp_width=48)
    # A configuration that names it ffn_dim loads without a warning, as DETRModel's do.
    config = model.get_config()
    config["ffn_dim"] = config.pop("mlp_dim")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert keras_vit.ConditionalDETRModel.from_config(config).mlp_dim == 48


def test_post_processing_ranks_query_class_pairs_as_transformers(reference):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from keras_vit.models.conditional_detr import post_process_conditional_detections

    outputs = {"logits": reference["logits"], "pred_boxes": reference["pred_boxes"]}
    sizes = [(48, 64), (64, 96)]
    ours = post_process_conditional_detections(outputs, sizes, threshold=0.3, top_k=10)
    processor = transformers.ConditionalDetrImageProcessor()
    wrapped = transformers.models.conditional_detr.modeling_conditional_detr.ConditionalDetrObjectDetectionOutput(
        logits=torch.from_numpy(outputs["logits"]), pred_boxes=torch.from_numpy(outputs["pred_boxes"]))
    theirs = processor.post_process_object_detection(wrapped, threshold=0.3, target_sizes=sizes, top_k=10)
    for got, expected in zip(ours, theirs):
        assert len(got["scores"]) > 0
        np.testing.assert_allclose(got["scores"], expected["scores"].numpy(), atol=1e-6)
        np.testing.assert_array_equal(got["labels"], expected["labels"].numpy())
        np.testing.assert_allclose(got["boxes"], expected["boxes"].numpy(), atol=1e-4)


def test_swin_backbone_feeds_its_last_stage():
    """A Swin model of this package as the backbone, as DETR allows (built, not run: DETR's tests run one)."""
    swin = keras_vit.SwinTransformer(
        image_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4), features_only=True
    )
    model = keras_vit.ConditionalDETR(swin, **SMALL, input_shape=(64, 64, 3))
    assert model.input_proj.kernel.shape == (1, 1, 32, 32)  # the last stage's 2 * embed_dim channels
    assert model.compute_output_shape((2, 64, 64, 3))["logits"] == (2, 5, 3)
