"""Shared test setup. Each pytest run uses one backend, chosen by KERAS_BACKEND."""

import os

# torch must be imported before TensorFlow in one process (both bundle native libraries).
try:
    import torch  # noqa: F401
except ImportError:
    torch = None

import keras
import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
BACKEND = keras.backend.backend()


def fixture_path(name):
    return os.path.join(FIXTURES, name)


def load_fixture(name):
    with np.load(fixture_path(name + ".npz")) as data:
        return {k: data[k] for k in data.files}


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(autouse=True)
def _clean_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"
