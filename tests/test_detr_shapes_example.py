"""examples/detr_shapes: compare.py's table, plot and options, and train.py's learning-rate drop.

The trainings themselves are the example's (minutes each); DETR's and Conditional DETR's `fit()` are
tested in their own modules. Here three short runs' results are written as train.py writes them and
compare.py turns them into comparison.md and comparison.png (matplotlib only, every backend); the
step schedule of `--lr-drop-epoch` is checked on the optimizer train.py builds, at the iteration
counts around the drop (the count is what `--resume` restores).
"""

import importlib.util
import json
import os
import sys

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"detr_shapes_{name}", os.path.join(REPO, "examples", "detr_shapes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_compare():
    return load_example("compare")


def write_run(path, map50_per_epoch, minutes, args=None):
    history = [{"epoch": i + 1, "mAP50": v, "mAP": v / 2} for i, v in enumerate(map50_per_epoch)]
    epochs = [{"epoch": i + 1, "loss": 1.0, "train_minutes": minutes * (i + 1) / len(history)}
              for i in range(len(history))]
    run = {"metrics": {"mAP50": map50_per_epoch[-1], "mAP": map50_per_epoch[-1] / 2},
           "train_minutes": minutes, "history": history, "epochs": epochs}
    if args is not None:
        run["args"] = args
    with open(path, "w") as f:
        json.dump(run, f)


def test_table_and_plot_say_which_detector_reaches_the_target_first(tmp_path):
    pytest.importorskip("matplotlib")
    compare = load_compare()
    write_run(tmp_path / "detr.json", [0.1, 0.2, 0.3], 3.0)
    write_run(tmp_path / "conditional_detr.json", [0.2, 0.5, 0.6], 3.5)
    write_run(tmp_path / "conditional_detr_dn.json", [0.3, 0.6, 0.7], 4.0)
    compare.write_table_and_plot(str(tmp_path), 0.55, "a test target")

    table = (tmp_path / "comparison.md").read_text()
    assert "Target: held-out mAP@0.5 0.550 (a test target)" in table
    assert "| DETR | 3 | 0.300 | 0.150 | not reached | 3.0 |" in table
    assert "| Conditional DETR | 3 | 0.600 | 0.300 | 3 | 3.5 |" in table
    assert "| Conditional DETR + denoising | 3 | 0.700 | 0.350 | 2 | 4.0 |" in table
    assert "| 2 | 0.200 / 0.100 | 0.500 / 0.250 | 0.600 / 0.300 |" in table

    from PIL import Image

    with Image.open(tmp_path / "comparison.png") as image:
        assert image.size == (1100, 400)
        pixels = np.asarray(image.convert("RGB"))
    # Three coloured curves (matplotlib's first three colours) on a white figure.
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert np.sum(np.all(np.abs(pixels.astype(int) - colour) < 30, axis=-1)) > 200, colour
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


def test_compare_passes_the_recipe_options_to_all_three_detectors_and_names_the_recipe(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    compare = load_compare()
    commands = []

    def fake_train(command, check):  # writes what train.py would, from the flags it was given
        commands.append(command)
        flag = {name: value for name, value in zip(command, command[1:]) if name.startswith("--")}
        args = {"learning_rate": float(flag["--learning-rate"]), "backbone_learning_rate": 1e-4,
                "lr_drop_epoch": int(flag["--lr-drop-epoch"]), "lr_drop_factor": 0.1,
                "epochs": int(flag["--epochs"]), "seed": 0}
        write_run(flag["--output"], [0.2, 0.4], 1.0, args=args)

    monkeypatch.setattr(compare.subprocess, "run", fake_train)
    monkeypatch.setattr(sys, "argv", ["compare.py", "--output-dir", str(tmp_path), "--epochs", "2",
                                      "--learning-rate", "1e-3", "--lr-drop-epoch", "8"])
    compare.main()
    assert len(commands) == 3
    for command in commands:
        assert command[command.index("--learning-rate") + 1] == "1e-3"
        assert command[command.index("--lr-drop-epoch") + 1] == "8"
    table = (tmp_path / "comparison.md").read_text()
    assert ("Recipe: learning rate 0.001 (backbone 0.0001), x0.1 after epoch 8, 2 epochs, seed 0 "
            "(the same for every detector).") in table
    warmup_cosine = {"learning_rate": 2e-3, "backbone_learning_rate": 2e-4, "warmup_epochs": 1, "cosine": True,
                     "epochs": 10, "seed": 1}  # fmt: skip
    assert compare.describe_recipe(warmup_cosine) == ("learning rate 0.002 (backbone 0.0002), 1-epoch linear warmup, "
                                                      "cosine decay, 10 epochs, seed 1")  # fmt: skip


def test_lr_drop_epoch_multiplies_both_rates_once_that_many_epochs_are_done():
    train = load_example("train")
    assert train.step_learning_rate(1e-3, steps_per_epoch=128) == 1e-3  # no --lr-drop-epoch: constant
    assert train.describe_schedule(1e-3) == {"constant": 1e-3}
    schedule = train.step_learning_rate(1e-3, steps_per_epoch=128, drop_epoch=8, drop_factor=0.1)
    assert train.describe_schedule(schedule) == {"boundaries": [8 * 128 - 1], "values": [1e-3, pytest.approx(1e-4)]}

    inputs = keras.Input((8, 8, 3))
    features = keras.Sequential([keras.layers.Conv2D(4, 3)], name="backbone")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(features))
    optimizer = train.detr_optimizer(model, learning_rate=schedule, backbone_learning_rate=1e-4)
    # The optimizer reads the schedule at its iteration count: the steps of epochs 1-8 are 0..1023.
    for step, expected in ((0, 1e-3), (8 * 128 - 1, 1e-3), (8 * 128, 1e-4), (10 * 128 - 1, 1e-4)):
        optimizer.iterations.assign(step)
        assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(expected, rel=1e-6), step
    assert optimizer.backbone_learning_rate_multiplier == pytest.approx(0.1)  # the backbone drops alike

    with pytest.raises(ValueError, match="--lr-drop-epoch must be at least 1"):
        train.step_learning_rate(1e-3, steps_per_epoch=128, drop_epoch=0)




def recipe_args(**flags):
    import argparse

    defaults = {"learning_rate": 1e-3, "backbone_learning_rate": 1e-4, "epochs": 10, "lr_drop_epoch": None,
                "lr_drop_factor": 0.1, "warmup_epochs": 0.0, "cosine": False, "seed": 0, "image_size": 16,
                "train_images": 2, "val_images": 2, "tune_images": 2}  # fmt: skip
    return argparse.Namespace(**{**defaults, **flags})


def test_warmup_and_cosine_shape_both_rates_and_the_json_records_them():
    train = load_example("train")
    rate = lambda schedule, step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    warmup = train.recipe_learning_rate(recipe_args(warmup_epochs=1), steps_per_epoch=4)
    assert [rate(warmup, s) for s in (0, 1, 3, 39)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3])
    cosine = train.recipe_learning_rate(recipe_args(warmup_epochs=1, cosine=True), steps_per_epoch=4)
    assert [rate(cosine, s) for s in (3, 4 + 18, 40)] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-9)
    assert train.describe_schedule(cosine) == {"learning_rate": 1e-3, "warmup_steps": 4, "total_steps": 40,
                                               "cosine": True}  # fmt: skip
    assert train.recipe_learning_rate(recipe_args(), steps_per_epoch=4) == 1e-3  # no flags: constant

    # The backbone keeps its 1/10 through the warmup: the multiplier is given, not read from schedule(0).
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Dense(3, name="backbone")(inputs)))
    optimizer = train.detr_optimizer(model, learning_rate=warmup, backbone_learning_rate_multiplier=1e-4 / 1e-3)
    assert optimizer.backbone_learning_rate_multiplier == 0.1

    with pytest.raises(ValueError, match="--lr-drop-epoch is a step schedule of its own"):
        train.recipe_learning_rate(recipe_args(lr_drop_epoch=8, cosine=True), steps_per_epoch=4)
    with pytest.raises(ValueError, match="--warmup-epochs must be >= 0"):
        train.recipe_learning_rate(recipe_args(warmup_epochs=-1), steps_per_epoch=4)
    with pytest.raises(ValueError, match="more steps"):
        train.recipe_learning_rate(recipe_args(epochs=1, warmup_epochs=1, cosine=True), steps_per_epoch=4)


def test_tuning_images_are_their_own_split_and_val_images_0_leaves_the_held_out_set_out():
    train = load_example("train")
    shapes = train.make_shapes_dataset
    training, held_out, tuning = train.shapes_splits(recipe_args())
    np.testing.assert_array_equal(tuning["images"], shapes(2, 16, 3, seed=0, start=2 * 10**6)["images"])
    np.testing.assert_array_equal(held_out["images"], shapes(2, 16, 3, seed=0, start=10**6)["images"])
    assert not np.array_equal(tuning["images"], held_out["images"])
    assert not np.array_equal(tuning["images"], training["images"])
    # Disjoint ranges: training 0.., held-out 1,000,000.., tuning 2,000,000..
    assert 4096 <= train.HELD_OUT_START and train.HELD_OUT_START + 10**6 <= train.TUNE_START
    assert train.shapes_splits(recipe_args(val_images=0, tune_images=0))[1:] == (None, None)
