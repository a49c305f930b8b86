"""examples/quickstart.ipynb runs end to end (small setting) on the current backend, so it never rots."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import BACKEND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "quickstart.ipynb")


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    # The kernel inherits this environment: this checkout's package, this test run's backend.
    paths = [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    monkeypatch.setenv("KERAS_VIT_QUICKSTART_SMALL", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "stream"
    )
    assert f"on the {BACKEND} backend; small setting: True" in text
    assert "TFLite test accuracy" in text
    assert "images: True)" in text  # the .tflite file scores as the Keras model does (within 2 test images)
    pictures = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
                if "image/png" in output.get("data", {})]
    assert len(pictures) == 6  # samples, curves, confusion matrix, photo, attention, position embeddings
    keras_accuracy = float(text.split("Keras test accuracy: ")[1].split()[0])
    assert keras_accuracy > 0.5, text  # it learned the digits
    assert os.path.exists(tmp_path / "saved_models" / "quickstart_vit.tflite")
