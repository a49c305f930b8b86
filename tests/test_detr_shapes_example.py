"""examples/detr_shapes/compare.py: its table and its plot, from the runs' json files.

The trainings themselves are the example's (minutes each); DETR's and Conditional DETR's `fit()` are
tested in their own modules. Here three short runs' results are written as train.py writes them and
compare.py turns them into comparison.md and comparison.png (matplotlib only, every backend).
"""

import importlib.util
import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_compare():
    spec = importlib.util.spec_from_file_location(
        "detr_shapes_compare", os.path.join(REPO, "examples", "detr_shapes", "compare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path, map50_per_epoch, minutes):
    history = [{"epoch": i + 1, "mAP50": v, "mAP": v / 2} for i, v in enumerate(map50_per_epoch)]
    epochs = [{"epoch": i + 1, "loss": 1.0, "train_minutes": minutes * (i + 1) / len(history)}
              for i in range(len(history))]
    with open(path, "w") as f:
        json.dump({"metrics": {"mAP50": map50_per_epoch[-1], "mAP": map50_per_epoch[-1] / 2},
                   "train_minutes": minutes, "history": history, "epochs": epochs}, f)


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
