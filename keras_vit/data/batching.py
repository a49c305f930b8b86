"""Batches that split evenly over devices: the replica count, a check, and a padded last batch.

Under `tf.distribute` (TensorFlow) or `keras.distribution` (JAX) every batch is split over the devices
of the data (batch) axis, so its size must divide by their number. Training pipelines drop the last
partial batch. Evaluation pipelines either do the same (`drop_remainder=True`: those samples are not
scored) or pad it (`pad_last_batch=True`): the last batch is filled to the full batch size with
zero images and a third element, a sample weight of 1 for real samples and 0 for padding, so every
sample is scored once and padding never. Metrics must then be `weighted_metrics` (Keras passes the
weights to those only).

Example:
>>> import numpy as np, tensorflow as tf
>>> batches = tf.data.Dataset.from_tensor_slices((np.ones((5, 2), "float32"), np.arange(5))).batch(4)
>>> [weights.numpy().tolist() for _, _, weights in pad_last_batch(batches, 4)]
[[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]
"""

import tensorflow as tf

import keras


def data_parallel_replicas():
    """How many devices each batch is split over now: the replicas of the active `tf.distribute`
    strategy (TensorFlow backend), or the size of the batch axis of the active `keras.distribution`
    (JAX); 1 without either.

    Example:
    >>> data_parallel_replicas()
    1
    """
    if keras.backend.backend() == "tensorflow" and tf.distribute.has_strategy():
        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    batch_axis = getattr(distribution, "batch_dim_name", None) or mesh.axis_names[0]
    return int(mesh.shape[list(mesh.axis_names).index(batch_axis)])


def _engine():
    if keras.backend.backend() == "tensorflow" and tf.distribute.has_strategy():
        return type(tf.distribute.get_strategy()).__name__
    return type(keras.distribution.distribution()).__name__


def check_batch_size(batch_size, num_examples=None, drop_remainder=False, pad_last_batch=None):
    """Raises a ValueError naming the fix when batches would not split over the current replicas.

    Args:
        batch_size: examples per (global) batch.
        num_examples: examples in the dataset when known: its last partial batch is checked too.
        drop_remainder, pad_last_batch: what the pipeline does with the last partial batch
            (`pad_last_batch=None`: the pipeline cannot pad, the error does not offer it).

    Example:
    >>> check_batch_size(32, num_examples=100)  # one device: any batch splits
    """
    replicas = data_parallel_replicas()
    if replicas == 1:
        return
    engine = _engine()
    if batch_size % replicas:
        lower = max(replicas, batch_size // replicas * replicas)
        raise ValueError(
            f"batch_size {batch_size} does not split over the {replicas} replicas of {engine}: use a multiple "
            f"of {replicas} (e.g. {lower} or {lower + replicas})."
        )
    if num_examples is None or drop_remainder or pad_last_batch:
        return
    remainder = int(num_examples) % batch_size
    if remainder % replicas:
        padding = ("pass pad_last_batch=True (a zero-weight padded batch: every example scored once; use "
                   "weighted_metrics) or " if pad_last_batch is not None else "pass ")
        raise ValueError(
            f"The last batch has {remainder} of the {num_examples} examples, which does not split over the "
            f"{replicas} replicas of {engine}: {padding}drop_remainder=True (those examples are skipped)."
        )


def pad_last_batch(dataset, batch_size):
    """Pads every batch of `(inputs, labels)` to `batch_size` and adds sample weights (0 on padding).

    Padding repeats zeros of each tensor's shape and dtype: zero images, label 0 (or an all-zero
    one-hot row), weight 0.

    Args:
        dataset: a batched `tf.data.Dataset` of `(inputs, labels)` pairs (nested structures allowed).
        batch_size: the size every batch is padded to.

    Returns:
        A dataset of `(inputs, labels, sample_weights)`, every batch of `batch_size`.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> batches = tf.data.Dataset.from_tensor_slices((np.ones((3, 2), "float32"), np.arange(3))).batch(2)
    >>> [tuple(x.shape) for x, _, _ in pad_last_batch(batches, 2)]
    [(2, 2), (2, 2)]
    """

    def pad(inputs, labels):
        count = tf.shape(tf.nest.flatten(inputs)[0])[0]
        missing = batch_size - count

        def fill(tensor):
            paddings = [[0, missing]] + [[0, 0]] * (len(tensor.shape) - 1)
            padded = tf.pad(tensor, paddings)
            return tf.ensure_shape(padded, [batch_size] + list(tensor.shape[1:]))

        weights = tf.concat([tf.ones([count]), tf.zeros([missing])], axis=0)
        return (tf.nest.map_structure(fill, inputs), tf.nest.map_structure(fill, labels),
                tf.ensure_shape(weights, [batch_size]))

    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE)
