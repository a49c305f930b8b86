"""Resuming a killed `fit()`: Keras' `BackupAndRestore` with backups that a kill cannot tear.

Keras 3.15's `BackupAndRestore` overwrites `latest.weights.h5` in place and then writes
`training_metadata.json` (the epoch) in place: a kill during either write leaves a damaged file, and a
kill between the two leaves the weights of one epoch with the epoch number of the previous one (the
resumed run then trains an epoch twice). `AtomicBackupAndRestore` writes each epoch's weights (with the
optimizer state) to a new file through `keras_vit.atomic_files`, then the metadata, naming that file,
by an atomic rename; the metadata is the commit. A kill at any moment leaves the last complete backup.

Keras' weight files also leave out the states of the layers' `SeedGenerator`s (dropout, stochastic
depth): a run resumed from them would draw other masks than an uninterrupted one. The metadata keeps
them, so a resumed run draws the same ones.

Example:
>>> import os, tempfile, keras, numpy as np
>>> backup_dir = os.path.join(tempfile.mkdtemp(), "backup")
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> model.compile(optimizer="sgd", loss="mse")
>>> class Interrupt(keras.callbacks.Callback):
...     def on_epoch_end(self, epoch, logs=None):
...         if epoch == 1:
...             raise KeyboardInterrupt
>>> x, y = np.ones((4, 2)), np.ones((4, 1))
>>> try:
...     model.fit(x, y, epochs=4, verbose=0, callbacks=[AtomicBackupAndRestore(backup_dir), Interrupt()])
... except KeyboardInterrupt:
...     pass
>>> read_backup_epoch(backup_dir)
2
>>> history = model.fit(x, y, epochs=4, verbose=0, callbacks=[AtomicBackupAndRestore(backup_dir)])
>>> len(history.history["loss"])  # epochs 3 and 4 only
2
"""

import json
import os

import keras

from keras_vit.atomic_files import atomic_open, atomic_path

METADATA_FILE = "training_metadata.json"


def read_backup_epoch(backup_dir):
    """The number of epochs completed by the backup in `backup_dir`, or None when it has none.

    Example:
    >>> import tempfile
    >>> read_backup_epoch(tempfile.mkdtemp()) is None
    True
    """
    path = os.path.join(backup_dir, METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return int(json.load(f)["epoch"])


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are written atomically (see the module).

    The arguments are Keras' (`backup_dir`, `save_freq`, `delete_checkpoint`); `double_checkpoint` is
    not needed (the previous backup is kept until the new one is complete) and is refused. Like Keras'
    callback, it restores the weights, the optimizer state and the epoch at the start of `fit()`, and
    deletes the backup when `fit()` completes (unless `delete_checkpoint=False`).

    Example:
    >>> import tempfile
    >>> callback = AtomicBackupAndRestore(tempfile.mkdtemp())
    >>> callback.save_freq
    'epoch'
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=False,
                         delete_checkpoint=delete_checkpoint)
        self._training_metadata_path = os.path.join(backup_dir, METADATA_FILE)

    def _weights_file(self):
        # A new name per backup: the committed one is never overwritten.
        return f"epoch-{self._current_epoch}-batch-{self._last_batch_seen}.weights.h5"

    def _seed_states(self):
        # In model.variables' order, which is the same for every build of one architecture.
        return [v for v in self.model.variables if v.path.split("/")[-1] == "seed_generator_state"]

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights_file = self._weights_file()
        with atomic_path(os.path.join(self.backup_dir, weights_file)) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": weights_file,
                    "seed_generator_states": [keras.ops.convert_to_numpy(v).tolist() for v in self._seed_states()]}
        with atomic_open(self._training_metadata_path, "w") as f:
            json.dump(metadata, f)
        for name in os.listdir(self.backup_dir):  # backups older than the committed one
            if name.endswith(".weights.h5") and name != weights_file:
                os.remove(os.path.join(self.backup_dir, name))

    def _load_model(self):
        if not os.path.exists(self._training_metadata_path):
            return
        if not self.model.built:
            raise ValueError("AtomicBackupAndRestore restores weights: build the model before fit().")
        with open(self._training_metadata_path) as f:
            metadata = json.load(f)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        states = self._seed_states()
        saved = metadata.get("seed_generator_states", [])
        if len(saved) != len(states):
            raise ValueError(f"The backup in {self.backup_dir} has {len(saved)} random-generator states and the model "
                             f"{len(states)}: it was made by another model; delete it to start again.")
        for variable, value in zip(states, saved):
            variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
        self.model._initial_epoch = int(metadata["epoch"])  # what Keras' own callback sets
