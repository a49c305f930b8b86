"""`keras_vit.distribution`: a 2x4 ("batch", "model") mesh trains like one device.

JAX only: Keras' `ModelParallel` needs the JAX backend (Keras 3.15's TensorFlow backend has an
unfinished DTensor prototype, PyTorch none). The 8 devices are host CPUs
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`), which must be set before JAX starts, so the
training runs in a subprocess (this file run as a script); the parent compares.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

from keras_vit.distribution import get_layout_map, layout_rules

BATCH, STEPS, CLASSES = 8, 3, 5
BLOCKS = {"vit": 1, "swin": 2}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(family):
    import keras_vit

    if family == "vit":
        return keras_vit.VisionTransformer(image_size=16, patch_size=8, hidden_dim=32, depth=1, num_heads=4,
                                           mlp_dim=64, num_classes=CLASSES)
    return keras_vit.SwinTransformer(image_size=16, patch_size=2, window_size=4, hidden_dim=16, depths=(1, 1),
                                     num_heads=(2, 4), num_classes=CLASSES)


def _fit(family, initial_weights=None):
    """Per-step losses and final weights of STEPS SGD steps (in whatever distribution is set)."""
    keras.utils.set_random_seed(1)
    model = _tiny(family)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH * STEPS, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, CLASSES, size=(BATCH * STEPS,))
    before = [np.array(w) for w in model.get_weights()]
    losses = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    return model, before, losses, [np.array(w) for w in model.get_weights()]


def _padded_evaluation(model, pad=True):
    """Accuracy over 13 examples in batches of 8: padded (the last batch splits over the mesh's 2 batch
    devices) or, on one device, unpadded; and the error an unpadded pipeline raises on the mesh."""
    from keras_vit.data import arrays_dataset

    rng = np.random.default_rng(5)
    images, labels = rng.integers(0, 256, size=(13, 16, 16, 3)).astype("uint8"), rng.integers(0, CLASSES, size=13)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=["accuracy"])
    batches = arrays_dataset(images, labels, num_classes=CLASSES, batch_size=BATCH, pad_last_batch=pad)
    accuracy = model.evaluate(batches, return_dict=True, verbose=0)["accuracy"]
    if not pad:
        return accuracy
    try:
        arrays_dataset(images, labels, num_classes=CLASSES, batch_size=BATCH)
        error = None
    except ValueError as raised:
        error = str(raised)
    return {"accuracy_mesh_padded": accuracy, "unpadded_error": error}


def _worker(families):
    import jax

    assert len(jax.devices()) == 8, jax.devices()
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices=jax.devices())
    results = {}
    for family in families:
        keras.distribution.set_distribution(keras.distribution.ModelParallel(
            layout_map=get_layout_map(family, mesh), batch_dim_name="batch"))
        try:
            model, before, losses_mesh, after_mesh = _fit(family)
            split = [v.path for v in model.weights if len(v.value.sharding.device_set) == 8
                     and not v.value.sharding.is_fully_replicated]
            padded = _padded_evaluation(model) if family == "vit" else None
        finally:
            keras.distribution.set_distribution(None)
        model_one, _, losses_one, after_one = _fit(family, before)
        if padded is not None:
            padded["accuracy_one_device_unpadded"] = _padded_evaluation(model_one, pad=False)
        results[family] = {"padded_evaluation": padded,
            "losses_mesh": losses_mesh, "losses_one": losses_one, "split": split,
            "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(after_mesh, after_one)),
        }
    print("RESULTS " + json.dumps(results))


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="keras.distribution.ModelParallel runs on the JAX backend only (Keras 3.15)")
def test_2x4_mesh_trains_like_one_device():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.run([sys.executable, os.path.abspath(__file__), "vit", "swin"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=900)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULTS ")]
    assert process.returncode == 0 and lines, process.stdout[-3000:] + process.stderr[-5000:]
    for family, result in json.loads(lines[-1][len("RESULTS "):]).items():
        # Each block's qkv and fc1 kernels and biases, proj and fc2 kernels were really split.
        assert len(result["split"]) == 6 * BLOCKS[family], (family, result["split"])
        assert all(("attn" in path or "mlp" in path) for path in result["split"]), result["split"]
        assert len(result["losses_mesh"]) == STEPS
        np.testing.assert_allclose(result["losses_mesh"], result["losses_one"], rtol=1e-5, err_msg=family)
        assert result["max_weight_difference"] < 1e-5, (family, result)
    # Evaluation on the mesh: the padded last batch splits, every example counts once.
    padded = json.loads(lines[-1][len("RESULTS "):])["vit"]["padded_evaluation"]
    assert padded["accuracy_mesh_padded"] == pytest.approx(padded["accuracy_one_device_unpadded"], abs=1e-6), padded
    assert "5 of the 13 examples" in padded["unpadded_error"] and "2 replicas of ModelParallel" in padded["unpadded_error"]


def test_layout_map_splits_blocks_and_replicates_the_rest():
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
    layout_map = get_layout_map("vit", mesh)
    assert layout_map["block_3/attn/qkv/kernel"].axes == (None, "model")
    assert layout_map["block_3/attn/qkv/bias"].axes == ("model",)
    assert layout_map["block_3/attn/proj/kernel"].axes == ("model", None)
    assert layout_map["block_3/attn/proj/bias"] is None
    assert layout_map["block_3/mlp/fc2/kernel"].axes == ("model", None)
    for replicated in ("patch_embed/proj/kernel", "pos_embed/embedding", "norm/gamma", "head/kernel"):
        assert layout_map[replicated] is None, replicated
    detr = get_layout_map("detr", mesh)
    assert detr["detr/decoder_2/cross_attn/v_proj/kernel"].axes == (None, "model")
    assert detr["detr/encoder_0/linear2/kernel"].axes == ("model", None)
    assert detr["detr/bbox_embed/layers_0/kernel"] is None
    assert layout_rules("tnt")[".*attn_(in|out)/(qk|v)/kernel"] == (None, "model")


def test_conditional_detr_layout_map_splits_every_attention_projection():
    import keras_vit

    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8)], name="cnn")
    model = keras_vit.ConditionalDETR(cnn, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
                                      num_decoder_layers=2, num_heads=2, mlp_dim=16, input_shape=(32, 32, 3))
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
    layout_map = get_layout_map(model, mesh)  # the family is found from the weights' names
    split = {v.path: layout_map[v.path].axes for v in model.weights if layout_map[v.path] is not None}
    # Encoder: q, k, v (kernels and biases), out_proj, linear1 (kernel and bias), linear2: 10. Decoder layers:
    # self-attention's 5 projections and cross-attention's 5 (6 in the first: q_pos_proj) with their biases,
    # 2 out_proj, linear1 (2), linear2: 27 and 25.
    assert len(split) == 10 + 27 + 25, sorted(split)
    assert split[model.decoder_layers[0].cross_attn.q_pos_sine_proj.kernel.path] == (None, "model")
    assert split[model.decoder_layers[0].cross_attn.q_pos_proj.bias.path] == ("model",)
    assert split[model.decoder_layers[1].self_attn.out_proj.kernel.path] == ("model", None)
    assert not [path for path in split if "bbox_embed" in path or "class_embed" in path or "ref_point" in path]
    assert get_layout_map("detr", mesh)[model.decoder_layers[0].cross_attn.q_content_proj.kernel.path] is None


def test_layout_map_errors_name_the_fix():
    mesh = keras.distribution.DeviceMesh((1, 1), ("data", "tensor"), devices=["cpu:0"])
    with pytest.raises(ValueError, match="needs one named 'model'"):
        get_layout_map("vit", mesh)
    with pytest.raises(ValueError, match="Unknown family"):
        get_layout_map("resnet", keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"]))
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="pass a family name"):
        get_layout_map(dense, keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"]))


if __name__ == "__main__":
    _worker(sys.argv[1:])
