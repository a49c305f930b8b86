"""One training step on 1 device equals the same step on many (simulated) devices.

TensorFlow: `MirroredStrategy` over the CPU split into 2 logical devices. JAX:
`keras.distribution.DataParallel` over 8 host CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`). Both need their device
setup before the backend initializes, so each runs in a subprocess (this file run
as a script) with its own KERAS_BACKEND; the parent only compares. The cases run
once, from the TensorFlow pytest run (the subprocesses pick their own backend).
PyTorch has no multi-device training in Keras, so it has no case here.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

BATCH = 8  # divides by 2 replicas and by 8 devices
CLASSES = 5
TINY_VIT = dict(image_size=16, patch_size=8, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=CLASSES)
CASES = ("vit", "hard", "soft")  # plain fit with Keras' own loss (the control); DistillationModel hard and soft
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- the subprocess


def _data():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(BATCH, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, CLASSES, size=(BATCH,))
    return images, labels


def _build(case):
    import keras

    import keras_vit

    keras.utils.set_random_seed(1)
    if case == "vit":
        model = keras_vit.VisionTransformer(**TINY_VIT)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model
    student = keras_vit.VisionTransformer(**TINY_VIT, distilled=True)
    teacher = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)])
    model = keras_vit.DistillationModel(student, teacher, distillation=case, alpha=0.5, temperature=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def _one_step(case, initial_weights=None):
    """Weights before and after one SGD step on one batch, and the logged metrics."""
    model = _build(case)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    before = [np.array(w) for w in model.get_weights()]
    images, labels = _data()
    history = model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after = [np.array(w) for w in model.get_weights()]
    return before, after, {name: float(values[-1]) for name, values in history.history.items()}


def _worker(mode):
    """Runs every case on one device and on `mode` devices; prints one JSON line."""
    if mode == "mirrored":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    if mode == "mirrored":
        # One strategy for every case: a second MirroredStrategy in the same process reuses the
        # first one's collective instance keys and fails with a shape mismatch.
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
    results = {}
    for case in CASES:
        if mode == "mirrored":
            with strategy.scope():
                before, after_many, logs_many = _one_step(case)
        else:
            import jax

            assert len(jax.devices()) == 8, jax.devices()
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
            try:
                before, after_many, logs_many = _one_step(case)
            finally:
                keras.distribution.set_distribution(None)
        _, after_single, logs_single = _one_step(case, before)
        update_single = np.concatenate([(a - b).ravel() for a, b in zip(after_single, before)])
        update_many = np.concatenate([(a - b).ravel() for a, b in zip(after_many, before)])
        results[case] = {
            "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(after_single, after_many)),
            # |update on many devices| / |update on one|: 1 when both agree.
            "update_ratio": float(np.linalg.norm(update_many) / np.linalg.norm(update_single)),
            "logs_single": logs_single,
            "logs_many": logs_many,
        }
    print("RESULTS " + json.dumps(results))


# ---------------------------------------------------------------- the tests (parent process)


def _run_worker(backend, mode, extra_env=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {}))
    process = subprocess.run([sys.executable, os.path.abspath(__file__), mode], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULTS ")]
    assert process.returncode == 0 and lines, process.stdout[-3000:] + process.stderr[-5000:]
    return json.loads(lines[-1][len("RESULTS "):])


def _parent_backend():
    import keras

    return keras.backend.backend()


ONLY_ONCE = pytest.mark.skipif(
    _parent_backend() != "tensorflow",
    reason="runs its own TensorFlow and JAX subprocesses, so only from the TensorFlow pytest run",
)


def _assert_same_step(results):
    for case, result in results.items():
        assert result["max_weight_difference"] < 1e-5, (case, result)
        assert abs(result["update_ratio"] - 1.0) < 1e-4, (case, result)
        assert set(result["logs_single"]) == set(result["logs_many"]), (case, result)
        for name, value in result["logs_single"].items():
            np.testing.assert_allclose(result["logs_many"][name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{case}: logged {name}")


@ONLY_ONCE
def test_mirrored_strategy_with_2_replicas_equals_one_device():
    pytest.importorskip("tensorflow")
    _assert_same_step(_run_worker("tensorflow", "mirrored"))


@ONLY_ONCE
def test_jax_data_parallel_on_8_devices_equals_one_device():
    pytest.importorskip("jax")
    results = _run_worker("jax", "data_parallel",
                          {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"})
    _assert_same_step(results)


if __name__ == "__main__":
    _worker(sys.argv[1])
