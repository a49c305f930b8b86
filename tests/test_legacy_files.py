"""`.keras` files saved before the package moved to one package per family still load.

`tests/fixtures/legacy/` holds a small model of each family saved by the keras_vit of
commit 23c2600 (TensorFlow backend, Keras 3.15) and the outputs it gave.
"""

import os

import keras
import numpy as np
import pytest

import keras_vit  # noqa: F401  (registers the package's classes with Keras)
from conftest import BACKEND, fixture_path

LEGACY = fixture_path("legacy")


@pytest.fixture(scope="module")
def outputs():
    with np.load(os.path.join(LEGACY, "outputs.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("family", ["vit", "tnt", "swin", "detr"])
def test_model_saved_by_the_old_layout_loads_and_computes_the_same(family, outputs):
    model = keras.saving.load_model(os.path.join(LEGACY, f"{family}.keras"))
    images = outputs[f"{family}_input"]
    # predict_on_batch runs compiled: eager JAX would compile every op of the model.
    result = model.predict_on_batch(images) if BACKEND == "jax" else model(images)
    if isinstance(result, dict):
        for key, value in result.items():
            np.testing.assert_allclose(keras.ops.convert_to_numpy(value), outputs[f"{family}_{key}"], atol=1e-4)
    else:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(result), outputs[f"{family}_output"], atol=1e-4)
