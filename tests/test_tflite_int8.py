"""int8 TFLite files that XNNPACK runs on its integer kernels, and that agree with a trained model.

One tiny ViT is trained for a few epochs on 32x32 digits (a random model's logits are too
flat for top-1 agreement to mean anything), then exported as float32 and int8 in one
`export_many` call; the tests read the int8 file's graph and run it on held-out digits.
"""

import os

import keras
import numpy as np
import pytest

from conftest import assert_xnnpack_runs_whole_graph, to_numpy

import keras_vit
from keras_vit.export import ExportJob, export_many, run_tflite
from keras_vit.export.verification import digit_images


# What is checked here is the file the TensorFlow worker's quantizer writes, which is the same from
# every backend (JAX and PyTorch models are converted in that worker; tests/test_export.py covers
# exporting from each backend). Training the toy and converting it twice costs minutes, so once.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the int8 file comes from the TensorFlow export worker whatever the backend; runs once, from the "
    "TensorFlow pytest run (exporting from JAX and PyTorch is tested in tests/test_export.py)",
)


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)  # XNNPACK applies when tensors are allocated
    interpreter.allocate_tensors()
    return interpreter


@pytest.fixture(scope="module")
def trained_exports(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=96,
                                        num_classes=10, include_preprocessing=True, name="toy_vit")
    images, labels = digit_images(600, 32, 32, offset=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, labels, batch_size=32, epochs=10, verbose=0)
    folder = str(tmp_path_factory.mktemp("int8"))
    jobs = [ExportJob(model, "tflite", os.path.join(folder, "toy.tflite")),
            ExportJob(model, "tflite", os.path.join(folder, "toy_int8.tflite"), "int8", images[:200])]
    float32, int8 = export_many(jobs)
    return {"model": model, "float32": float32, "int8": int8, "train_accuracy": history.history["accuracy"][-1]}


def test_int8_dense_layers_are_fully_connected_int8_with_per_channel_weights(trained_exports):
    interpreter = _interpreter(trained_exports["int8"].path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    fully_connected = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    # 2 blocks x (qkv, proj, fc1, fc2) + the head, each on int8 activations and int8 weights.
    assert len(fully_connected) == 9
    for op in fully_connected:
        activations, weights = (tensors[i] for i in op["inputs"][:2])
        assert activations["dtype"] == np.int8 and weights["dtype"] == np.int8, op
        scales = weights["quantization_parameters"]["scales"]
        assert len(scales) == weights["shape"][0] > 1  # one scale per output channel
    # The only batched matmuls are the attention products (q k^T, weights v), kept in float32.
    batch_matmuls = [op for op in ops if op["op_name"] == "BATCH_MATMUL"]
    assert len(batch_matmuls) == 4
    assert all(tensors[op["inputs"][0]]["dtype"] == np.float32 for op in batch_matmuls)
    conv = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(conv) == 1 and len(tensors[conv[0]["inputs"][1]]["quantization_parameters"]["scales"]) == 48


def test_xnnpack_takes_the_whole_int8_and_float32_graphs(trained_exports):
    # Every op that XNNPACK cannot run stays on TFLite's own kernels and splits the graph into another
    # delegate partition. The class-token pooling is a slice and a reshape (`token_features`), not an
    # index (a STRIDED_SLICE that drops an axis, which XNNPACK does not run): one partition runs it all.
    for key in ("float32", "int8"):
        assert_xnnpack_runs_whole_graph(_interpreter(trained_exports[key].path), key)


def test_int8_agrees_with_the_trained_model(trained_exports):
    assert trained_exports["train_accuracy"] > 0.8  # the toy model did learn the digits
    assert trained_exports["float32"].max_abs_diff <= 1e-4
    images, labels = digit_images(300, 32, 32, offset=1400)  # digits it was neither trained nor calibrated on
    expected = to_numpy(trained_exports["model"].predict(images, batch_size=100, verbose=0)).argmax(-1)
    got = run_tflite(trained_exports["int8"].path, images)["output_0"].argmax(-1)
    # This toy's held-out margins are small (test accuracy ~0.68): its int8 file agreed on 97.3%
    # (full-integer int8, LayerNorm and softmax included, gave 93.7%; dynamic-range 99.0%). The
    # >= 99% of issue 16 is measured on real trained models by benchmarks/tflite_latency.py.
    assert np.mean(got == expected) >= 0.95
    assert abs(np.mean(got == labels) - np.mean(expected == labels)) <= 0.02  # no accuracy lost
