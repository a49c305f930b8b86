"""The `keras-vit` command line: `train` end to end in a subprocess, and its errors."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from keras_vit.cli import build_parser, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--depth", "1", "--hidden-dim", "16", "--num-heads", "2", "--mlp-dim", "32", "--image-size", "16", "--patch-size", "8"]


def run_cli(args, cwd):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "keras_vit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_train_end_to_end(tmp_path):
    # The real command in a fresh process, as a user runs it: `python -m keras_vit train`.
    # One thread per op: torch's OpenMP threads spin on a busy CPU (JAX takes its threads from XLA_FLAGS).
    threads = [] if BACKEND == "jax" else ["--threads", "1"]
    result = run_cli(
        ["train", "--epochs", "2", "--limit", "96", "--batch-size", "32", "--mixup", "0.2", "--cutmix", "1.0", *threads, *TINY],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"on the {BACKEND} backend" in out
    assert "Epoch 2/2" in out and "━" in out  # Keras' progress bars
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0
    path = re.search(r"Model saved to: (.+)", out).group(1).strip()
    # Saved under saved_models/ of the working directory by default.
    assert path == str(tmp_path / "saved_models" / "vit_custom_digits.keras")
    model = keras.saving.load_model(path)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 10)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    assert np.all(np.isfinite(to_numpy(model.predict(images, verbose=0))))


def test_train_in_process_to_a_chosen_path(tmp_path, capsys):
    output = tmp_path / "out" / "model.keras"
    status = main(["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--verbose", "0",
                   "--output", str(output), *TINY])
    assert status == 0 and output.exists()
    out = capsys.readouterr().out
    assert f"Model saved to: {output}" in out
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    model = keras.saving.load_model(str(output))
    # The printed accuracy is the saved model's accuracy on the test split.
    from keras_vit.data import digits_dataset

    test = digits_dataset("test", image_size=16, batch_size=32, limit=64, one_hot=True, label_smoothing=0.1)
    predictions = np.concatenate([np.argmax(to_numpy(model(x)), axis=-1) for x, _ in test])
    labels = np.concatenate([np.argmax(to_numpy(y), axis=-1) for _, y in test])
    assert abs(np.mean(predictions == labels) - accuracy) < 1e-3


def test_parser_names_and_defaults():
    args = build_parser().parse_args(["train"])
    assert (args.model, args.dataset, args.image_size) == ("custom", "digits", None)
    assert build_parser().parse_args(["train", "--model", "vit-b16"]).model == "ViTB16"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "imagenet"], "Unknown dataset source 'imagenet'"),
        (["train", "--dataset", "tfds:no_such_dataset_xyz"], "Unknown tensorflow-datasets dataset"),
        (["train", "--dataset", "folder:/no/such/folder"], "'/no/such/folder' does not exist"),
        (["train", "--image-size", "30"], "not a multiple of the patch size 4; use e.g. --image-size 32"),
        (["train", "--model", "ViTTi16", "--depth", "2"], "--depth set a custom architecture"),
        (["train", "--hidden-dim", "30", "--num-heads", "4"], "not divisible by --num-heads"),
        (["train", "--output", "model.h5"], "must end with .keras"),
        (["train", "--limit", "1"], "fewer than --batch-size 64; lower --batch-size"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert error.count("\n") == 1


def test_unknown_model_name_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "ViT-Q99"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown model 'ViT-Q99'" in error and "ViTB16" in error
