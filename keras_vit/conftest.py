"""pytest setup for the docstring examples (`pytest --doctest-modules keras_vit`).

Every example starts from a clean Keras state (layer names such as `conv2d` do not depend
on which examples ran before) and may use `fixture_path(name)`: the reference checkpoints
of the repository's `tests/fixtures/`, found from this file, so examples pass from any
working directory. Examples that need them are skipped where the package was installed
without its tests.
"""

import gc
import os

# torch must be imported before TensorFlow in one process (both bundle native libraries).
try:
    import torch  # noqa: F401
except ImportError:
    pass

import keras
import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")


def fixture_path(name):
    """The path of a reference fixture file in the repository's tests/fixtures/."""
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is a test fixture of the repository; this install has no tests/fixtures/")
    return path


def pytest_collection_finish(session):
    # Every test starts with keras.utils.clear_session(), which runs a full gc.collect(). With
    # TensorFlow, JAX, torch and transformers imported, that scan took 0.5-2 s per test (most of
    # the suite's time on 2 cores). What exists after collection lives for the whole run:
    # freeze it, so each collection scans only what the tests make.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _doctest_setup(doctest_namespace):
    doctest_namespace["fixture_path"] = fixture_path
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
