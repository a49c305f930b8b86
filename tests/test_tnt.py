"""TNT: parity with timm and official checkpoints, parameter counts, training, saving, export, errors."""

import os

import keras
import numpy as np
import pytest

import keras_vit
from conftest import BACKEND, fixture_path, load_fixture, to_numpy
from keras_vit.weights import WeightsMismatchError, read_checkpoint
from keras_vit.layers.resampling import resample_position_embedding
from keras_vit.models.tnt.convert_tnt import timm_to_official_key

TINY = dict(
    image_size=32, patch_size=16, hidden_dim=64, inner_dim=16, depth=2,
    inner_num_heads=2, num_heads=4, num_classes=10,
)
CHECKPOINT = fixture_path("tnt_tiny.safetensors")


def _weights_snapshot(model):
    return [to_numpy(v).copy() for v in model.weights]


def test_timm_checkpoint_matches_reference():
    ref = load_fixture("tnt_tiny")
    model = keras_vit.TNT(**TINY, weights=CHECKPOINT)
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)


def test_official_checkpoint_names_match_reference(tmp_path):
    """The fixture's tensors under the official repository's names and layouts."""
    torch = pytest.importorskip("torch", reason="writing a .pth checkpoint needs torch")
    ref = load_fixture("tnt_tiny")
    _, tensors = read_checkpoint(CHECKPOINT)
    official = {timm_to_official_key(k): v for k, v in tensors.items()}
    pixel_pos = official.pop("inner_pos")  # timm (1, C, h, w) -> official (1, h * w, C)
    official["inner_pos"] = pixel_pos.reshape(1, pixel_pos.shape[1], -1).transpose(0, 2, 1)
    official["outer_tokens"] = np.zeros((1, 4, 64), "float32")
    assert {"outer_pos", "patch_embed.proj.weight", "blocks.1.inner_attn.qk.weight",
            "blocks.0.proj_norm2.bias", "blocks.0.outer_mlp.fc2.weight", "proj_norm1.weight"} <= set(official)
    path = os.path.join(tmp_path, "tnt_official.pth")
    # Official checkpoints wrap the state dict ({"model": ...}); DataParallel prefixes "module.".
    torch.save({"model": {"module." + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official.items()}}, path)
    model = keras_vit.TNT(**TINY, weights=path)
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)


def test_preprocessing_takes_raw_pixels():
    ref = load_fixture("tnt_tiny")
    model = keras_vit.TNT(**TINY, weights=CHECKPOINT, include_preprocessing=True)
    raw = (ref["input_nhwc"] * 0.5 + 0.5) * 255.0  # the fixture input is already normalized with 0.5 / 0.5
    np.testing.assert_allclose(to_numpy(model(raw)), ref["logits"], atol=1e-4)


def test_patch_positions_resampled_for_another_size():
    _, tensors = read_checkpoint(CHECKPOINT)
    model = keras_vit.TNT(**{**TINY, "image_size": 48}, weights=CHECKPOINT)
    expected = resample_position_embedding(tensors["patch_pos"], (2, 2), (3, 3), 1, "bicubic_antialias")
    np.testing.assert_allclose(to_numpy(model.get_layer("patch_pos").embedding), expected, atol=1e-6)
    assert to_numpy(model(np.zeros((1, 48, 48, 3), "float32"))).shape == (1, 10)


def test_features_and_pooling():
    ref = load_fixture("tnt_tiny")
    tokens = keras_vit.TNT(**TINY, include_top=False, pooling=None, weights=CHECKPOINT)
    pooled = keras_vit.TNT(**TINY, include_top=False, pooling="gap", weights=CHECKPOINT)
    all_tokens = to_numpy(tokens(ref["input_nhwc"]))
    assert all_tokens.shape == (2, 5, 64)
    np.testing.assert_allclose(to_numpy(pooled(ref["input_nhwc"])), all_tokens[:, 1:].mean(axis=1), atol=1e-5)


@pytest.mark.slow
def test_parameter_counts_match_timm():
    # Variables made in this scope get their shapes but are never initialized: counting is cheap.
    with keras.StatelessScope(initialize_variables=False):
        small = keras_vit.TNTS16().count_params()
        base = keras_vit.TNTB16().count_params()
    keras.utils.clear_session()  # drop the uninitialized variables
    assert small == 23_768_584
    assert base == 65_428_680


def test_fit_reduces_loss():
    model = keras_vit.TNT(**TINY, drop_path_rate=0.1, dropout=0.1, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(8,))
    history = model.fit(images, labels, batch_size=8, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] * 0.8, losses


def test_drop_path_is_seeded_and_active_only_in_training():
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    first = keras_vit.TNT(**TINY, drop_path_rate=0.5, seed=3)
    second = keras_vit.TNT(**TINY, drop_path_rate=0.5, seed=3)
    second.set_weights(first.get_weights())
    np.testing.assert_allclose(to_numpy(first(images)), to_numpy(second(images)), atol=1e-6)
    train_a = to_numpy(first(images, training=True))
    train_b = to_numpy(second(images, training=True))
    np.testing.assert_allclose(train_a, train_b, atol=1e-6)
    assert np.abs(train_a - to_numpy(first(images))).max() > 1e-4


def test_keras_round_trip(tmp_path):
    ref = load_fixture("tnt_tiny")
    model = keras_vit.TNT(**TINY, weights=CHECKPOINT, drop_path_rate=0.1)
    path = os.path.join(tmp_path, "tnt.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(restored(ref["input_nhwc"])), to_numpy(model(ref["input_nhwc"])))
    assert restored.get_layer("block_1").get_config() == model.get_layer("block_1").get_config()
    # Keras weight files load through `weights=` too.
    weights_path = os.path.join(tmp_path, "tnt.weights.h5")
    model.save_weights(weights_path)
    again = keras_vit.TNT(**TINY, weights=weights_path, drop_path_rate=0.1)
    np.testing.assert_array_equal(to_numpy(again(ref["input_nhwc"])), to_numpy(model(ref["input_nhwc"])))


def test_mixed_precision_keeps_float32_variables():
    keras.config.set_dtype_policy("mixed_bfloat16")
    ref = load_fixture("tnt_tiny")
    model = keras_vit.TNT(**TINY, weights=CHECKPOINT)
    assert all(v.dtype == "float32" for v in model.weights)
    assert model.get_layer("block_0").attn_in.qk.compute_dtype == "bfloat16"
    logits = to_numpy(keras.ops.cast(model(ref["input_nhwc"]), "float32"))
    np.testing.assert_allclose(logits, ref["logits"], atol=0.1)


def test_tflite_export_uses_builtin_ops(tmp_path):
    if BACKEND != "tensorflow":
        pytest.skip("TFLiteConverter.from_keras_model converts TensorFlow-backend models only")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    ref = load_fixture("tnt_tiny")
    model = keras_vit.TNT(**TINY, weights=CHECKPOINT)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on any Flex op
    interpreter = Interpreter(model_content=converter.convert())
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], ref["input_nhwc"].shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], ref["input_nhwc"])
    interpreter.invoke()
    logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(inner_dim=15), "inner_dim 15 is not divisible by inner_num_heads 2"),
        (dict(hidden_dim=66), "hidden_dim 66 is not divisible by num_heads 4"),
        (dict(image_size=40), "not a multiple of the patch size 16"),
        (dict(patch_size=10, image_size=40), "not divisible by the pixel stride 4"),
    ],
)
def test_bad_configurations_are_explained(change, message):
    with pytest.raises(ValueError, match=message):
        keras_vit.TNT(**{**TINY, **change})


def test_mismatched_checkpoint_leaves_model_unchanged():
    model = keras_vit.TNT(**{**TINY, "depth": 1})
    before = _weights_snapshot(model)
    with pytest.raises(WeightsMismatchError, match="blocks.1.attn_in.qk.weight"):
        keras_vit.weights.load_weights(model, CHECKPOINT, keras_vit.models.tnt.convert_tnt.convert_tnt, "tnt")
    for old, new in zip(before, _weights_snapshot(model)):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match="not a TNT checkpoint"):
        keras_vit.TNT(**TINY, weights=fixture_path("vit_tiny.safetensors"))


def test_legacy_timm_layout_is_refused_clearly():
    from keras_vit.models.tnt.convert_tnt import convert_tnt

    _, tensors = read_checkpoint(CHECKPOINT)
    legacy = {k: v for k, v in tensors.items() if not k.startswith("blocks.0.norm2_proj")}
    model = keras_vit.TNT(**TINY)
    with pytest.raises(WeightsMismatchError, match="legacy TNT layout"):
        convert_tnt(model, legacy)


def test_published_checkpoints_are_registered():
    names = keras_vit.weights.published_names("tnt")
    assert names == ["tnt_b_patch16_224.in1k", "tnt_s_patch16_224.in1k"]
    entry = keras_vit.weights.PUBLISHED_WEIGHTS["tnt_s_patch16_224.in1k"]
    assert entry["mean"] == (0.5, 0.5, 0.5) and entry["std"] == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="square inputs of \\[224\\]"):
        keras_vit.TNTS16(input_shape=(256, 256, 3), weights="imagenet")


def test_attention_scores_over_pixels_of_each_patch():
    attention = keras_vit.layers.TNTAttention(hidden_dim=16, num_heads=2)
    pixels = np.random.default_rng(0).normal(size=(2, 4, 16, 16)).astype("float32")
    out, scores = attention(pixels, return_attention_scores=True)
    scores = to_numpy(scores)
    assert scores.shape == (2, 4, 2, 16, 16)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out), to_numpy(attention(pixels)), atol=1e-6)
    # Patches do not see each other: changing patch 0 leaves patch 1's output unchanged.
    changed = pixels.copy()
    changed[:, 0] += 1.0
    np.testing.assert_allclose(to_numpy(attention(changed))[:, 1], to_numpy(out)[:, 1], atol=1e-6)
