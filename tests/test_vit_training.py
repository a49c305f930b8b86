"""ViT builders, training with fit(), saving, cross-backend weights, and bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vit
from conftest import BACKEND, fixture_path, to_numpy
from keras_vit.weights import CheckpointFormatError, WeightsMismatchError

TINY = dict(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=192, num_classes=10)

PARAMETER_COUNTS = {
    "ViTTi16": 5_717_416, "ViTS16": 22_050_664, "ViTS32": 22_878_952, "ViTB16": 86_567_656,
    "ViTB32": 88_224_232, "ViTL16": 304_326_632, "ViTL32": 306_535_400, "ViTH14": 632_045_800,
}


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_builder_parameter_count_equals_timm(name):
    # A stateless scope defers the random initialization of the weights: only their shapes are made.
    with keras.StatelessScope(initialize_variables=False):
        model = getattr(keras_vit, name)()
        assert model.count_params() == PARAMETER_COUNTS[name]
    assert model.output_shape == (None, 1000)


def _digits(n=256, size=32):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[:n, :, :, None] / 16.0
    images = np.repeat(np.kron(images, np.ones((1, size // 8, size // 8, 1))), 3, axis=-1)
    return images.astype("float32"), digits.target[:n].astype("int32")


def test_fit_lowers_the_loss():
    x, y = _digits()
    model = keras_vit.VisionTransformer(**TINY, drop_path_rate=0.1, dropout=0.1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)[0]
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    after = model.evaluate(x, y, verbose=0)[0]
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.8 * before, (before, after)
    assert to_numpy(model.predict(x[:4], verbose=0)).shape == (4, 10)


def test_mixed_precision_model_trains_with_float32_variables():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras_vit.VisionTransformer(**TINY)
    assert all(v.dtype == "float32" for v in model.weights)
    x, y = _digits(64)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = keras_vit.VisionTransformer(**TINY, include_preprocessing=True, pooling="gap", drop_path_rate=0.1, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "vit.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))
    # The same file fills a freshly built model through weights=.
    again = keras_vit.VisionTransformer(**TINY, include_preprocessing=True, pooling="gap", weights=path)
    np.testing.assert_array_equal(to_numpy(again(x)), to_numpy(model(x)))


_NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}

_LOAD_SCRIPT = """
import sys, numpy as np, keras, keras_vit
model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10, weights=sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x)))
"""


def test_weights_saved_here_load_under_another_backend(tmp_path):
    other = _NEXT_BACKEND[BACKEND]
    model = keras_vit.VisionTransformer(**TINY)
    weights = str(tmp_path / "vit.weights.h5")
    model.save_weights(weights)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND=other)
    subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, weights, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=env, check=True, capture_output=True, timeout=900,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), to_numpy(model(x)), atol=1e-5)


def test_head_with_other_class_count_is_left_for_fine_tuning():
    model = keras_vit.VisionTransformer(**{**TINY, "num_classes": 5}, weights=fixture_path("vit_tiny.safetensors"))
    reference = keras_vit.VisionTransformer(**TINY, weights=fixture_path("vit_tiny.safetensors"))
    np.testing.assert_array_equal(
        to_numpy(model.get_layer("block_1").attn.qkv.kernel), to_numpy(reference.get_layer("block_1").attn.qkv.kernel)
    )
    assert model.output_shape == (None, 5)


# Bad input: one clear error, and nothing lost.

def test_image_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        keras_vit.ViTB16(input_shape=(200, 224, 3))


def test_wrong_number_of_channels():
    model = keras_vit.VisionTransformer(**TINY)
    with pytest.raises(ValueError, match="(?i)expected|incompatible"):
        model(np.zeros((1, 32, 32, 1), "float32"))
    with pytest.raises(WeightsMismatchError, match="patch_embed"):
        keras_vit.VisionTransformer(**TINY, num_channels=1, weights=fixture_path("vit_tiny.safetensors"))


def test_unknown_weights_name_lists_published_ones():
    with pytest.raises(ValueError, match="vit_base_patch16_224.augreg2_in21k_ft_in1k"):
        keras_vit.VisionTransformer(**TINY, weights="vit_gigantic_imagenet")


def test_checkpoint_of_another_architecture_fails_and_changes_nothing():
    model = keras_vit.VisionTransformer(**{**TINY, "depth": 3})
    before = [to_numpy(v).copy() for v in model.weights]
    from keras_vit.weights.loader import load_weights
    from keras_vit.models.vit.convert_vit import convert_vit

    with pytest.raises(WeightsMismatchError) as error:
        load_weights(model, fixture_path("vit_tiny.safetensors"), convert_vit, "vit")
    assert "blocks.2.attn.qkv.weight" in str(error.value)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(to_numpy(variable), value)


def test_checkpoint_of_another_family_is_named():
    with pytest.raises(ValueError, match="not a ViT/DeiT checkpoint"):
        keras_vit.VisionTransformer(**TINY, weights=fixture_path("swin_tiny.safetensors"))


def test_corrupt_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(CheckpointFormatError, match="Cannot tell the format"):
        keras_vit.VisionTransformer(**TINY, weights=str(garbage))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(fixture_path("vit_tiny.safetensors"), "rb").read()[:5000])
    with pytest.raises(CheckpointFormatError):
        keras_vit.VisionTransformer(**TINY, weights=str(truncated))


def test_no_network_names_the_file_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_VIT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub never asks the network
    with pytest.raises(ConnectionError) as error:
        keras_vit.ViTTi16(weights="imagenet")
    message = str(error.value)
    assert "vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/model.safetensors" in message
    assert "weights=" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one short error, no chain
    assert os.listdir(tmp_path) in ([], ["hf"])  # no partial file left behind
    assert not list((tmp_path / "hf").glob("**/*.safetensors"))
