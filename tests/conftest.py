"""Shared test setup. Each pytest run uses one backend, chosen by KERAS_BACKEND."""

import gc
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


def assert_xnnpack_runs_whole_graph(interpreter, label=""):
    """One XNNPACK partition that reads the graph's input and writes its output; no node runs outside it.

    `interpreter` is a LiteRT interpreter after `allocate_tensors()` (XNNPACK is applied then). Every op
    XNNPACK cannot run stays on TFLite's own kernels and cuts the graph into another partition.
    """
    nodes = interpreter._get_ops_details()  # the graph's own nodes, then the delegate's
    partitions = [node for node in nodes if node["op_name"] == "DELEGATE"]
    assert len(partitions) == 1, (label, len(partitions))
    (partition,) = partitions
    assert sorted(partition["outputs"]) == sorted(d["index"] for d in interpreter.get_output_details()), label
    produced_by_a_node = {t for node in nodes if node["op_name"] != "DELEGATE" for t in node["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    assert graph_inputs <= set(partition["inputs"]), label
    outside = [t for t in partition["inputs"] if t in produced_by_a_node and t not in graph_inputs]
    assert not outside, (label, outside)


def pytest_collection_finish(session):
    # Every test starts with keras.utils.clear_session(), which runs a full gc.collect(). With
    # TensorFlow, JAX, torch and transformers imported, that scan took 0.5-2 s per test (most of
    # the suite's time on 2 cores). What exists after collection lives for the whole run:
    # freeze it, so each collection scans only what the tests make.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _clean_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


@pytest.fixture
def tiny_registered_vit(monkeypatch):
    """Registers "TinyTestViT" (a 1-block ViT builder) in the model registry for one test, and
    records the keyword arguments each call got: a registered name is known to every command."""
    from keras_vit.models import VisionTransformer, registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    calls = []

    def TinyTestViT(input_shape=(32, 32, 3), num_classes=1000, **kwargs):
        calls.append(dict(kwargs, input_shape=input_shape, num_classes=num_classes))
        return VisionTransformer(image_size=input_shape[:2], patch_size=8, hidden_dim=16, depth=1, num_heads=2,
                                 mlp_dim=32, num_classes=num_classes, name="tiny_test_vit", **kwargs)

    registry.register_model("TinyTestViT", TinyTestViT, "vit", default_input_size=32)
    return calls


# --- tiny detectors (DETR, Conditional DETR, their denoising) ------------------------------------------------


def tiny_detection_cnn():
    """A 2-convolution backbone of stride 8 for tiny DETR-family models: 32x32 images -> 4x4 maps, 16 channels."""
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1"),
            keras.layers.ReLU(),
            keras.layers.Conv2D(16, 3, strides=4, padding="same", name="conv2"),
        ],
        name="cnn",
    )


def tiny_detection_batch(batch=4, seed=0, num_classes=3, max_boxes=3):
    """Up to 4 random 32x32 images with 2, 0, 1 and 1 boxes (one image without objects), targets padded."""
    from keras_vit.data.detection import pad_detection_targets

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, size=(batch, 32, 32, 3)).astype("float32")
    boxes = [[[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]], [], [[0.5, 0.5, 0.5, 0.5]], [[0.2, 0.8, 0.2, 0.2]]]
    labels = [[0, 2], [], [1], [2]]
    return images, pad_detection_targets(boxes[:batch], labels[:batch], max_boxes=max_boxes, num_classes=num_classes)


def copy_weights_by_path(source, target):
    """Gives `target` the values of `source`'s variables of the same paths (`source` may have more)."""
    by_path = {v.path: v for v in source.weights}
    for variable in target.weights:
        variable.assign(to_numpy(by_path[variable.path]))  # a copy: JAX's train step donates its buffers


def training_forward(model, inputs):
    """`model(inputs, training=True)`, compiled on JAX (eager JAX compiles every op)."""
    if BACKEND != "jax":
        return model(inputs, training=True)
    import jax

    def forward(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, training=True)[0]

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return jax.jit(forward)(trainable, non_trainable, inputs)


def assert_inference_ignores_denoising(with_denoising, plain, images):
    """A detector with denoising predicts what the same weights without it predict, with no denoising
    outputs, also after its training-only weights (the denoising queries' label embedding and box MLP)
    are overwritten."""
    expected = plain.predict_on_batch(images)
    got = with_denoising.predict_on_batch(images)
    assert sorted(got) == sorted(expected)  # no denoising outputs at inference
    for key in expected:
        np.testing.assert_array_equal(to_numpy(got[key]), to_numpy(expected[key]))

    training_only = with_denoising.training_only_weights
    # The label embedding and the box MLP's two Dense layers.
    assert {v.path.split("/")[1] for v in training_only} == {"denoising_queries"} and len(training_only) == 5
    saved = [to_numpy(v) for v in training_only]
    try:
        for variable in training_only:
            variable.assign(np.full(variable.shape, 7.0, "float32"))
        got = with_denoising.predict_on_batch(images)
    finally:
        for variable, value in zip(training_only, saved):
            variable.assign(value)
    for key in expected:
        np.testing.assert_array_equal(to_numpy(got[key]), to_numpy(expected[key]))
