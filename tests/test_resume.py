"""Resuming a killed run: same final weights as an uninterrupted one; backups a kill cannot tear."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND
from keras_vit.cli import main
from keras_vit.training import AtomicBackupAndRestore, read_backup_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny ViT with stochastic depth (random masks) on 32 shuffled digits, 2 epochs of 2 steps.
RUN = ["train", "--epochs", "2", "--limit", "32", "--batch-size", "16", "--depth", "1", "--hidden-dim", "16",
       "--num-heads", "2", "--mlp-dim", "32", "--image-size", "16", "--patch-size", "4", "--drop-path-rate", "0.5",
       "--no-export", "--progress", "none"]


def _weights(path):
    model = keras.saving.load_model(str(path))
    return [keras.ops.convert_to_numpy(v) for v in model.weights + model.optimizer.variables]


def test_killed_train_resumes_to_the_uninterrupted_weights(tmp_path, capsys):
    uninterrupted, resumed = tmp_path / "uninterrupted.keras", tmp_path / "resumed.keras"
    assert main([*RUN, "--output", str(uninterrupted)]) == 0
    # The same run in a process that SIGKILLs itself right after epoch 1's backup.
    env = dict(os.environ, KERAS_BACKEND=BACKEND, KERAS_VIT_TEST_KILL_AFTER_EPOCH="1", OMP_NUM_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    killed = subprocess.run([sys.executable, "-m", "keras_vit", *RUN, "--output", str(resumed)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=900)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not resumed.exists() and read_backup_epoch(tmp_path / "resumed.backup") == 1
    capsys.readouterr()
    assert main([*RUN, "--output", str(resumed), "--resume"]) == 0
    assert "after epoch 1 of 2" in capsys.readouterr().out
    assert not (tmp_path / "resumed.backup").exists()  # deleted once training completes
    for expected, actual in zip(_weights(uninterrupted), _weights(resumed)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def _tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5, seed=3),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_backup_restores_weights_optimizer_and_random_masks(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    initial = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    expected = model.get_weights()

    backup = str(tmp_path / "backup")
    model = _tiny_model()
    model.set_weights(initial)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                  callbacks=[AtomicBackupAndRestore(backup), _Interrupt()])
    # A kill while the next backup was written: a newer, torn weights file next to the committed one.
    with open(os.path.join(backup, "epoch-3-batch-0.weights.h5"), "wb") as f:
        f.write(b"torn")
    assert read_backup_epoch(backup) == 2
    model = _tiny_model()  # a fresh process's model: other weights, fresh random generators
    history = model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[AtomicBackupAndRestore(backup)])
    assert len(history.history["loss"]) == 2
    for e, a in zip(expected, model.get_weights()):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_backup_files_are_committed_by_the_metadata(tmp_path):
    backup = str(tmp_path / "backup")
    model = _tiny_model()
    model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=2, verbose=0,
              callbacks=[AtomicBackupAndRestore(backup, delete_checkpoint=False)])
    with open(os.path.join(backup, "training_metadata.json")) as f:
        metadata = json.load(f)
    # Only the committed weights remain, no temporary files.
    assert sorted(os.listdir(backup)) == sorted([metadata["weights"], "training_metadata.json"])
    assert metadata["epoch"] == 2 and len(metadata["seed_generator_states"]) == 1
