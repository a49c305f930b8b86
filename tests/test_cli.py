"""The `keras-vit` command line: `train` end to end in a subprocess, every model family in process, and errors."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from keras_vit._tensorflow_logs import is_tensorflow_log_line
import keras_vit
from keras_vit.cli import build_parser, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--depth", "1", "--hidden-dim", "16", "--num-heads", "2", "--mlp-dim", "32", "--image-size", "16", "--patch-size", "8"]


def run_cli(args, cwd):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command must be quiet without it
    return subprocess.run(
        [sys.executable, "-m", "keras_vit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
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
    assert not [line for line in result.stderr.splitlines() if is_tensorflow_log_line(line)], result.stderr[-3000:]
    out = result.stdout
    assert f"on the {BACKEND} backend" in out
    assert "Exporting to TFLite (float32 and int8)" in out and "Running the .tflite files on the" in out
    assert "Epoch 2/2" in out and "━" in out  # Keras' progress bars
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0
    path = re.search(r"Model saved to: (.+)", out).group(1).strip()
    # Saved under saved_models/ of the working directory by default.
    assert path == str(tmp_path / "saved_models" / "vit_custom_digits.keras")
    # The .tflite files sit next to the .keras file, with the dataset's class names in labels files.
    for stem in ("vit_custom_digits", "vit_custom_digits_int8"):
        assert (tmp_path / "saved_models" / f"{stem}.tflite").exists()
        assert (tmp_path / "saved_models" / f"{stem}.labels.txt").read_text().split() == [str(d) for d in range(10)]
    model = keras.saving.load_model(path)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 10)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    assert np.all(np.isfinite(to_numpy(model.predict(images, verbose=0))))


def test_train_in_process_to_a_chosen_path(tmp_path, capsys):
    output = tmp_path / "out" / "model.keras"
    # The export is checked by the subprocess test above; here the saved model and its accuracy.
    status = main(["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--progress", "none",
                   "--no-export", "--output", str(output), *TINY])
    assert status == 0 and output.exists()
    out = capsys.readouterr().out
    assert f"Model saved to: {output}" in out
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    model = keras.saving.load_model(str(output))
    # The model keeps the dataset's class names.
    assert keras_vit.get_class_names(model) == tuple(str(digit) for digit in range(10))
    assert not list(output.parent.glob("*.tflite"))  # --no-export
    # The printed accuracy is the saved model's accuracy on the test split.
    from keras_vit.data import digits_dataset

    test = digits_dataset("test", image_size=16, batch_size=32, limit=64, one_hot=True, label_smoothing=0.1)
    predictions = np.concatenate([np.argmax(to_numpy(model(x)), axis=-1) for x, _ in test])
    labels = np.concatenate([np.argmax(to_numpy(y), axis=-1) for _, y in test])
    assert abs(np.mean(predictions == labels) - accuracy) < 1e-3


def test_parser_names_and_defaults():
    args = build_parser().parse_args(["train"])
    # The dataset's default depends on the model's task: digits for classifiers, shapes for detectors.
    assert (args.model, args.dataset, args.image_size) == ("custom", None, None)
    from keras_vit.cli.train import TASK_DEFAULTS

    assert TASK_DEFAULTS["classification"]["dataset"] == "digits" and TASK_DEFAULTS["detection"]["dataset"] == "shapes"
    assert build_parser().parse_args(["train", "--model", "vit-b16"]).model == "ViTB16"
    assert build_parser().parse_args(["train", "--model", "SWINT"]).model == "SwinT"
    assert build_parser().parse_args(["train", "--model", "detr-resnet50"]).model == "DETRResNet50"
    assert build_parser().parse_args(["train", "--model", "Custom-TNT"]).model == "custom-tnt"


def test_warmup_scales_with_epochs():
    from keras_vit.cli.train import default_warmup_epochs

    assert default_warmup_epochs(20) == 3.0  # the quick start's 20 epochs keep their 3 warm-up epochs
    assert default_warmup_epochs(1) == pytest.approx(0.15) and default_warmup_epochs(10) == pytest.approx(1.5)


def test_one_epoch_schedule_spends_little_time_warming_up():
    # `--epochs 1` on the digits (1149 training images, batch 64: 18 steps): the peak rate comes
    # after 2 steps, and the run averages over half of it (3 fixed warm-up epochs gave 0.10-0.19 accuracy).
    from keras_vit.cli.train import learning_rate_schedule

    schedule = learning_rate_schedule(2e-3, epochs=1, steps_per_epoch=18)
    rates = np.array([float(to_numpy(schedule(step))) for step in range(18)])
    assert schedule.warmup_steps == 2 and rates.argmax() == 2 and rates.max() == pytest.approx(2e-3)
    assert rates.mean() > 0.5 * 2e-3
    # An explicit --warmup-epochs longer than the run still leaves its last step to the decay.
    assert learning_rate_schedule(2e-3, epochs=1, steps_per_epoch=18, warmup_epochs=3).warmup_steps == 17


def test_help_prints_no_tensorflow_logs(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0 and "train" in result.stdout and "export" in result.stdout
    assert result.stderr == ""


# One tiny model per family, one step of one epoch each: the command wires every family's model, data,
# loss and saving. (The custom ViT is trained by the two tests above.)
TINY_FAMILY = ["--depth", "1", "--hidden-dim", "16", "--num-heads", "2", "--mlp-dim", "32", "--image-size", "16",
               "--epochs", "1", "--limit", "32", "--batch-size", "32", "--progress", "none", "--no-export"]


@pytest.mark.parametrize("model, patch_size", [("custom-deit", 8), ("custom-tnt", 8), ("custom-swin", 4)])
def test_train_each_classifier_family(model, patch_size, tmp_path, capsys):
    output = tmp_path / f"{model}.keras"
    assert main(["train", "--model", model, "--patch-size", str(patch_size), "--output", str(output), *TINY_FAMILY]) == 0
    out = capsys.readouterr().out
    family = model.split("-")[1]
    assert f"Training {family}_custom (patch_size {patch_size}, hidden_dim 16, depth 1" in out
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0
    loaded = keras.saving.load_model(str(output))
    assert loaded.input_shape == (None, 16, 16, 3) and loaded.output_shape == (None, 10)
    if family == "deit":
        assert any("dist_token" in layer.name for layer in loaded.layers)


def test_train_any_registered_classifier(tiny_registered_vit, tmp_path, capsys):
    # A name added to the registry is a --model choice, built at its default input size by its builder.
    output = tmp_path / "tiny.keras"
    assert main(["train", "--model", "tiny-test-vit", "--weights", str(output.with_suffix(".none")), "--epochs", "1",
                 "--limit", "16", "--batch-size", "16", "--progress", "none", "--no-export",
                 "--output", str(output)]) == 1  # the builder got --weights (the file does not exist)
    assert tiny_registered_vit[-1]["weights"] == str(output.with_suffix(".none"))
    capsys.readouterr()
    assert main(["train", "--model", "tiny-test-vit", "--epochs", "1", "--limit", "16", "--batch-size", "16",
                 "--progress", "none", "--no-export", "--output", str(output)]) == 0
    call = tiny_registered_vit[-1]
    assert call["input_shape"] == (32, 32, 3) and call["num_classes"] == 10 and call["include_preprocessing"]
    out = capsys.readouterr().out
    assert "Training tinytestvit (canonical configuration, image 32x32" in out
    assert keras.saving.load_model(str(output)).output_shape == (None, 10)


def test_custom_conditional_detr_is_a_detector_with_the_shapes_names():
    # The training run itself is custom-detr's (below): the same pipeline, with the model's own loss and
    # post-processing (an end-to-end run of custom-conditional-detr costs as much again, so it is left out).
    from keras_vit.cli.train import architecture, model_family_and_task
    from keras_vit.cli.train_detr import build_detector
    from keras_vit.data import SHAPES_CLASS_NAMES

    assert model_family_and_task("custom-conditional-detr") == ("conditional_detr", "detection")
    assert model_family_and_task("ConditionalDETRResNet50") == ("conditional_detr", "detection")
    args = build_parser().parse_args(["train", "--model", "custom-conditional-detr", "--depth", "1", "--hidden-dim",
                                      "16", "--num-heads", "2", "--mlp-dim", "32", "--queries", "3"])
    args.weights, args.dropout = None, 0.0
    model = build_detector(args, architecture(args, "conditional_detr"), 32, SHAPES_CLASS_NAMES)
    assert isinstance(model, keras_vit.models.ConditionalDETRModel) and model.name == "conditional_detr_custom"
    assert model.class_names == SHAPES_CLASS_NAMES and model.SCORES == "sigmoid"


def test_train_detr_on_the_shapes(tmp_path, capsys):
    model, name = "custom-detr", "detr_custom"
    output = tmp_path / "detr.keras"
    status = main(["train", "--model", model, "--depth", "1", "--hidden-dim", "16", "--num-heads", "2",
                   "--mlp-dim", "32", "--image-size", "32", "--epochs", "1", "--limit", "16", "--batch-size", "16",
                   "--progress", "none", "--output", str(output)])
    assert status == 0
    out = capsys.readouterr().out
    assert "Drawing 16 training and 16 held-out shape images of 32x32..." in out
    assert f"Training {name} (width 16, 1 encoder and decoder layers" in out
    score = float(re.search(r"Held-out mAP@0.5: ([0-9.]+)", out).group(1))
    assert 0.0 <= score <= 1.0
    assert f"Model saved to: {output}" in out and output.exists()
    # The saved detector keeps the shapes' class names (keras-vit predict prints them).
    assert keras_vit.get_class_names(keras.saving.load_model(str(output), compile=False)) == (
        "circle", "rectangle", "triangle")


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
        (["train", "--model", "custom-detr", "--patch-size", "4"], "--patch-size does not apply to --model custom-detr"),
        (["train", "--model", "custom-detr", "--mixup", "0.2"], "--mixup apply to classifiers"),
        (["train", "--model", "custom-detr", "--dataset", "digits"], "detectors train on the bundled synthetic shapes"),
        (["train", "--model", "SwinT", "--pooling", "token"], "Swin has no class token"),
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
    # Every registered name is listed, and the small custom models.
    from keras_vit.models import model_names

    assert all(name in error for name in model_names()) and "custom-detr" in error
