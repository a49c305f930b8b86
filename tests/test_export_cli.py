"""`keras-vit export` and `keras-vit predict` (through keras_vit.cli.main)."""

import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import to_numpy

import keras_vit
from keras_vit.cli import main
from keras_vit.export.verification import digit_images


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A trained-looking tiny ViT saved as .keras, three digit PNGs, and the cwd set to tmp_path."""
    monkeypatch.chdir(tmp_path)
    model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1, num_heads=3, mlp_dim=96,
                                       num_classes=10, include_preprocessing=True, name="tiny_vit")
    model.save("tiny_vit.keras")
    images, _ = digit_images(3, 32, 32, offset=7)
    paths = []
    for i, image in enumerate(images):
        path = f"digit_{i}.png"
        Image.fromarray(image.astype("uint8")).save(path)
        paths.append(path)
    return model, paths


def _top_classes(text):
    return [int(m) for m in re.findall(r"1\. class (\d+)", text)]


def test_export_tflite_then_predict_with_every_format(workspace, capsys):
    model, images = workspace
    assert main(["export", "--model", "tiny_vit.keras", "--format", "tflite"]) == 0
    out = capsys.readouterr().out
    assert os.path.exists(os.path.join("saved_models", "tiny_vit.tflite"))  # the default location
    assert "max |diff| vs Keras" in out and "raw RGB in [0, 255]" in out

    assert main(["export", "--model", "tiny_vit.keras", "--format", "saved_model", "--output", "sm"]) == 0
    assert "cpu, gpu, tpu" in capsys.readouterr().out
    assert os.path.exists(os.path.join("sm", "saved_model.pb"))

    expected = to_numpy(model(np.stack([np.asarray(Image.open(p), "float32") for p in images]))).argmax(-1)
    for artifact in ("saved_models/tiny_vit.tflite", "sm", "tiny_vit.keras"):
        assert main(["predict", artifact, *images, "--top-k", "3"]) == 0
        out = capsys.readouterr().out
        assert out.count("digit_") == 3 and out.count("3. class") == 3
        assert _top_classes(out) == list(expected), artifact


def test_export_errors_are_one_line(workspace, capsys):
    assert main(["export", "--model", "tiny_vit.keras", "--format", "tflite", "--quantization", "int8"]) == 1
    assert "needs --representative-data" in capsys.readouterr().err
    assert main(["export", "--model", "NoSuchModel"]) == 1
    error = capsys.readouterr().err
    assert "neither a .keras file nor a keras_vit builder" in error
    from keras_vit.models import model_names

    assert all(name in error for name in model_names())  # the registry's names
    assert main(["predict", "tiny_vit.keras", "missing.png"]) == 1
    assert "missing.png: no such image file" in capsys.readouterr().err
    assert not os.path.exists("saved_models")


def test_export_a_registered_model_by_name(tiny_registered_vit, workspace, capsys):
    # Any case of a registry name; the builder gets --image-size and --num-classes.
    assert main(["export", "--model", "tiny-test-vit", "--image-size", "16", "--num-classes", "3",
                 "--format", "tflite", "--output", "tiny.tflite"]) == 0
    assert tiny_registered_vit[-1]["input_shape"] == (16, 16, 3) and tiny_registered_vit[-1]["num_classes"] == 3
    out = capsys.readouterr().out
    assert "Building TinyTestViT at 16x16..." in out and "Converting to TFLite with TensorFlow" in out
    assert "max |diff| vs Keras" in out
    assert main(["predict", "tiny.tflite", workspace[1][0], "--top-k", "3"]) == 0
    assert capsys.readouterr().out.count("class") == 3
