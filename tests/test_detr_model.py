"""DETR model: parity with transformers and the original repository, padding, backbones, fit, errors."""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_vit
from conftest import BACKEND, fixture_path, load_fixture, to_numpy
from keras_vit.models.resnet.resnet_model import ResNet
from keras_vit.weights import WeightsMismatchError, read_checkpoint
from keras_vit.models.detr.convert_detr import convert_detr

# The detr_tiny fixture: transformers DETR with a small HF ResNet (bottleneck, widths 16-32-64-128).
TINY = dict(num_classes=5, num_queries=8, hidden_dim=32, num_encoder_layers=2, num_decoder_layers=2,
            num_heads=4, mlp_dim=64, dropout=0.0)
SMALL = dict(num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1, num_decoder_layers=2,
             num_heads=4, mlp_dim=64, dropout=0.0)


def tiny_resnet():
    return ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, name="tiny_resnet")


def patchify_cnn(channels=16):
    """A backbone whose kernels equal their strides: real pixels never see the padding."""
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 4, strides=4, activation="relu"),
            keras.layers.Conv2D(channels, 2, strides=2),
        ],
        name="patchify_cnn",
    )


def predict(model, inputs):
    """The model's outputs as NumPy. JAX runs the model compiled (predict_on_batch): op-by-op
    eager JAX compiles every op for every new shape, which costs minutes on a 2-core machine."""
    if BACKEND == "jax":
        return model.predict_on_batch(inputs)
    return {k: to_numpy(v) for k, v in model(inputs).items()}


def fixture_inputs(ref):
    return {"images": ref["input_nhwc"], "pixel_mask": ref["pixel_mask"]}


def assert_matches_reference(model, ref):
    out = predict(model, fixture_inputs(ref))
    np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-4)
    np.testing.assert_allclose(out["pred_boxes"], ref["pred_boxes"], atol=1e-4)


@pytest.mark.parametrize("checkpoint", ["detr_tiny.safetensors", "detr_tiny_hubnames.safetensors"])
def test_transformers_checkpoints_match_reference_with_padding(checkpoint):
    # Image 2 of the fixture is 48x64 padded to 64x96 (pixel_mask).
    ref = load_fixture("detr_tiny")
    model = keras_vit.DETR(tiny_resnet(), **TINY, weights=fixture_path(checkpoint))
    assert_matches_reference(model, ref)


def _to_detr_repository_names(tensors):
    """Renames the transformers-5 fixture to facebookresearch/detr's .pth names."""
    out = {}
    for key, value in tensors.items():
        if key.startswith("model.backbone.model."):
            k = key[len("model.backbone.model."):]
            k = k.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
            m = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)", k)
            if m:
                stage, block, rest = m.groups()
                rest = re.sub(r"layer\.(\d)\.convolution", lambda g: f"conv{int(g.group(1)) + 1}", rest)
                rest = re.sub(r"layer\.(\d)\.normalization", lambda g: f"bn{int(g.group(1)) + 1}", rest)
                rest = rest.replace("shortcut.convolution", "downsample.0").replace("shortcut.normalization", "downsample.1")
                k = f"layer{int(stage) + 1}.{block}.{rest}"
            out["backbone.0.body." + k] = value
            continue
        k = key.replace("model.encoder.", "transformer.encoder.").replace("model.decoder.", "transformer.decoder.")
        k = k.replace("transformer.decoder.layernorm", "transformer.decoder.norm")
        k = k.replace("model.input_projection", "input_proj").replace("model.query_position_embeddings", "query_embed")
        k = k.replace("class_labels_classifier", "class_embed").replace("bbox_predictor", "bbox_embed")
        k = k.replace("encoder_attn_layer_norm", "norm2").replace("self_attn_layer_norm", "norm1")
        k = k.replace("final_layer_norm", "norm3" if ".decoder." in k else "norm2")
        k = k.replace("encoder_attn", "multihead_attn").replace("o_proj", "out_proj")
        k = k.replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2")
        out[k] = value
    stacked = {}
    for key in list(out):
        m = re.match(r"(.*)\.([qkv])_proj\.(weight|bias)$", key)
        if m:
            stacked.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = out.pop(key)
    for (prefix, kind), parts in stacked.items():
        out[f"{prefix}.in_proj_{kind}"] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    out["backbone.0.body.bn1.num_batches_tracked"] = np.array(7)  # torchvision BatchNorm counters are ignored
    return out


def test_original_repository_pth_matches_reference(tmp_path):
    torch = pytest.importorskip("torch", reason="writing a .pth checkpoint needs torch")
    ref = load_fixture("detr_tiny")
    _, tensors = read_checkpoint(fixture_path("detr_tiny.safetensors"))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _to_detr_repository_names(tensors).items()}
    assert "transformer.encoder.layers.0.self_attn.in_proj_weight" in state
    path = os.path.join(tmp_path, "detr_tiny.pth")
    torch.save({"model": state}, path)
    model = keras_vit.DETR(tiny_resnet(), **TINY, weights=path)
    assert_matches_reference(model, ref)


def test_failed_load_names_keys_and_leaves_model_unchanged():
    _, tensors = read_checkpoint(fixture_path("detr_tiny.safetensors"))
    model = keras_vit.DETR(tiny_resnet(), **{**TINY, "num_decoder_layers": 1})
    before = [to_numpy(v) for v in model.weights]
    with pytest.raises(WeightsMismatchError, match="model.decoder.layers.1"):
        convert_detr(model, tensors)
    for value, variable in zip(before, model.weights):
        np.testing.assert_array_equal(value, to_numpy(variable))


def test_published_resnet50_keys_fully_consumed_and_parameter_count():
    with open(fixture_path("detr_resnet50_hub_keys.json")) as f:
        shapes = json.load(f)
    rng = np.random.default_rng(0)
    tensors = {k: rng.standard_normal(s).astype("float32") for k, s in shapes.items()}
    model = keras_vit.DETRResNet50(num_classes=91)
    convert_detr(model, tensors)  # strict: raises on any unused key, unfilled weight or shape mismatch
    np.testing.assert_array_equal(
        to_numpy(model.query_embed.embeddings), tensors["model.query_position_embeddings.weight"]
    )
    frozen_bn = {id(v) for layer in model.backbone.feature_extractor._flatten_layers()
                 if isinstance(layer, keras_vit.layers.FrozenBatchNormalization) for v in layer.weights}
    count = sum(int(np.prod(v.shape)) for v in model.weights if id(v) not in frozen_bn)
    assert count == 41_524_768
    # DETR trains layer2-4 of the ResNet; the stem and layer1 are frozen.
    resnet = model.backbone.feature_extractor
    assert not resnet.get_layer("conv1").trainable and not resnet.get_layer("layer1_0").trainable
    assert resnet.get_layer("layer2_0").trainable


def test_dilation_gives_stride_16_with_dilated_last_stage():
    resnet = ResNet(depths=(1, 1, 1, 2), widths=(16, 32, 64, 128), stem_width=16, dilation=True)
    assert resnet.compute_output_shape((None, 64, 96, 3)) == (None, 4, 6, 128)
    assert [resnet.get_layer(n).dilation for n in ("layer4_0", "layer4_1")] == [1, 2]
    assert resnet.get_layer("layer4_0").stride == 1
    images = np.zeros((1, 64, 96, 3), "float32")
    out = resnet.predict_on_batch(images) if BACKEND == "jax" else resnet(images)
    assert tuple(out.shape) == (1, 4, 6, 128)


def test_padding_changes_no_prediction():
    rng = np.random.default_rng(1)
    model = keras_vit.DETR(patchify_cnn(), **SMALL)
    image = rng.uniform(-1, 1, (1, 32, 48, 3)).astype("float32")
    alone = predict(model, image)
    batch = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    mask = np.ones((2, 64, 64), "float32")
    batch[1] = 0.0
    batch[1, :32, :48] = image[0]
    mask[1] = 0.0
    mask[1, :32, :48] = 1.0
    padded = predict(model, {"images": batch, "pixel_mask": mask})
    for key in ("logits", "pred_boxes", "aux_logits", "aux_pred_boxes"):
        np.testing.assert_allclose(padded[key][1], alone[key][0], atol=1e-4)


def test_auxiliary_outputs_are_earlier_decoder_layers():
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    deep = keras_vit.DETR(patchify_cnn(), **SMALL)
    out = predict(deep, images)
    assert tuple(out["aux_logits"].shape) == (2, 1, 5, 4) and tuple(out["aux_pred_boxes"].shape) == (2, 1, 5, 4)
    # A one-layer decoder with the same weights predicts what the first layer's auxiliary head does.
    shallow = keras_vit.DETR(patchify_cnn(), **{**SMALL, "num_decoder_layers": 1})
    for name in ("backbone", "input_proj", "encoder_0", "query_embed", "decoder_0", "decoder_norm", "class_embed", "bbox_embed"):
        shallow.get_layer(name).set_weights(deep.get_layer(name).get_weights())
    first = predict(shallow, images)
    assert "aux_logits" not in first
    np.testing.assert_allclose(first["logits"], out["aux_logits"][:, 0], atol=1e-5)
    np.testing.assert_allclose(first["pred_boxes"], out["aux_pred_boxes"][:, 0], atol=1e-5)


def test_dict_backbone_uses_largest_stride_and_round_trips_through_keras_file(tmp_path):
    inputs = keras.Input((None, None, 3))
    stride4 = keras.layers.Conv2D(8, 4, strides=4)(inputs)
    stride8 = keras.layers.Conv2D(12, 2, strides=2)(stride4)
    backbone = keras.Model(inputs, {"stride_4": stride4, "stride_8": stride8}, name="pyramid")
    model = keras_vit.DETR(backbone, **SMALL)
    assert model.input_proj.kernel.shape == (1, 1, 12, 32)
    images = np.random.default_rng(3).uniform(-1, 1, (1, 32, 40, 3)).astype("float32")
    out = predict(model, images)
    assert out["logits"].shape == (1, 5, 4)
    path = os.path.join(tmp_path, "detr.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_vit.DETRModel)
    np.testing.assert_allclose(predict(loaded, images)["logits"], out["logits"], atol=1e-6)


def test_swin_backbone_pairs_the_two_transformers():
    """A Swin model of this package as DETR's backbone: its last (largest-stride) stage feeds the encoder."""
    swin = keras_vit.SwinTransformer(
        image_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4), features_only=True
    )
    model = keras_vit.DETR(swin, **SMALL, input_shape=(64, 64, 3))
    assert model.input_proj.kernel.shape == (1, 1, 32, 32)  # the last stage's 2 * embed_dim channels
    images = np.random.default_rng(5).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    out = predict(model, images)
    assert out["logits"].shape == (2, 5, 4) and out["pred_boxes"].shape == (2, 5, 4)
    assert np.all((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1))


def _detection_data(num_images=4, size=32, max_boxes=3, seed=4):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num_images, size, size, 3)).astype("float32")
    centers = rng.uniform(0.3, 0.7, (num_images, max_boxes, 2))
    sizes = rng.uniform(0.1, 0.3, (num_images, max_boxes, 2))
    y = {
        "boxes": np.concatenate([centers, sizes], -1).astype("float32"),
        "labels": rng.integers(0, SMALL["num_classes"], (num_images, max_boxes)).astype("int32"),
        "valid": (np.arange(max_boxes)[None] < rng.integers(1, max_boxes + 1, (num_images, 1))).astype("float32"),
    }
    return {"images": images, "pixel_mask": np.ones((num_images, size, size), "float32")}, y


def stand_in_loss(y_true, y_pred):
    """Matches target j to query j: enough to check that compute_loss reaches fit()."""
    m = y_true["boxes"].shape[1]
    valid = keras.ops.cast(y_true["valid"], "float32")
    labels = keras.ops.where(valid > 0, keras.ops.cast(y_true["labels"], "int32"), SMALL["num_classes"])
    ce = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, y_pred["logits"][:, :m], from_logits=True))
    l1 = keras.ops.sum(keras.ops.abs(y_pred["pred_boxes"][:, :m] - y_true["boxes"]) * valid[..., None])
    l1 = l1 / keras.ops.maximum(keras.ops.sum(valid), 1.0)
    return {"loss": ce + 5.0 * l1, "loss_ce": ce, "loss_bbox": l1}


def test_compile_loss_argument_reaches_compute_loss_and_metrics():
    x, y = _detection_data(num_images=2)
    model = keras_vit.DETR(patchify_cnn(), **SMALL)
    model.compile(optimizer="adam", loss=stand_in_loss)
    y_pred = predict(model, x)
    total = model.compute_loss(x, y, y_pred)
    expected = stand_in_loss(y, y_pred)
    np.testing.assert_allclose(to_numpy(total), to_numpy(expected["loss"]), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(model.loss_ce_tracker.result()), to_numpy(expected["loss_ce"]), rtol=1e-6)
    assert {"loss_ce", "loss_bbox", "loss_giou"} <= {m.name for m in model.metrics}


def test_fit_with_detr_set_loss():
    x, y = _detection_data()
    model = keras_vit.DETR(patchify_cnn(), **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # no loss: DETR's own set loss
    before = to_numpy(model.class_embed.kernel).copy()
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0)
    assert {"loss", "loss_ce", "loss_bbox", "loss_giou"} <= set(history.history)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert not np.allclose(before, to_numpy(model.class_embed.kernel))


def test_bad_inputs_raise_clear_errors():
    model = keras_vit.DETR(patchify_cnn(), **SMALL)
    images = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match="pixel_mask has shape"):
        model({"images": images, "pixel_mask": np.ones((2, 32, 16), "float32")})
    with pytest.raises(ValueError, match="keys"):
        model({"pixels": images})
    with pytest.raises(ValueError, match="Unknown DETR backbone 'resnet18'"):
        keras_vit.DETR("resnet18", num_classes=3)
    with pytest.raises(ValueError, match="dilation"):
        keras_vit.DETR(patchify_cnn(), dilation=True, **SMALL)


def test_ffn_dim_is_now_mlp_dim_and_old_configs_load_silently():
    import warnings

    from keras_vit.models.detr import DETREncoderLayer

    with pytest.warns(DeprecationWarning, match="`ffn_dim` is now called `mlp_dim`"):
        old_name = {key: value for key, value in SMALL.items() if key != "mlp_dim"}
        model = keras_vit.DETR(patchify_cnn(), **old_name, ffn_dim=48)
    assert model.mlp_dim == 48 and model.get_layer("encoder_0").linear1.units == 48
    with pytest.warns(DeprecationWarning, match="`ffn_dim` is now called `mlp_dim`"):
        assert DETREncoderLayer(32, 4, ffn_dim=40).mlp_dim == 40
    with pytest.raises(TypeError, match="pass `mlp_dim` only"):
        keras_vit.DETR(patchify_cnn(), **{**SMALL, "ffn_dim": 48})  # SMALL has mlp_dim=64
    # A config saved before the rename loads without a warning.
    config = model.get_config()
    config["ffn_dim"] = config.pop("mlp_dim")
    layer_config = {**DETREncoderLayer(32, 4, 40).get_config()}
    layer_config["ffn_dim"] = layer_config.pop("mlp_dim")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert keras_vit.DETRModel.from_config(config).mlp_dim == 48
        assert DETREncoderLayer.from_config(layer_config).mlp_dim == 40


def test_models_never_import_training():
    # Dependencies point down (training -> models): the set loss reaches the model through Keras' registry.
    root = os.path.dirname(keras_vit.models.__file__)
    for folder, _, files in os.walk(root):
        for name in (n for n in files if n.endswith(".py")):
            with open(os.path.join(folder, name)) as f:
                source = f.read()
            assert not re.search(r"^\s*(from|import) keras_vit\.training", source, re.M), os.path.join(folder, name)
