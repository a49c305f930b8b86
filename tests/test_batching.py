"""Partial batches: padded evaluation scores every example once; batches that cannot split raise."""

import numpy as np
import pytest

import keras

from keras_vit.data import arrays_dataset, batching, check_batch_size, pad_last_batch, prepare_detection_dataset
from keras_vit.data import detection_dataset_from_arrays

COUNT, BATCH, CLASSES = 45, 8, 3  # 5 full batches and one of 5


@pytest.fixture(scope="module")
def model_and_data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(COUNT, 4, 4)).astype("uint8")
    labels = rng.integers(0, CLASSES, size=(COUNT,)).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Rescaling(1 / 255),
                              keras.layers.Dense(CLASSES)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=["accuracy"])
    return model, images, labels


def test_padded_evaluation_scores_every_example_once(model_and_data):
    model, images, labels = model_and_data
    whole = arrays_dataset(images, labels, num_classes=CLASSES, batch_size=COUNT)
    padded = arrays_dataset(images, labels, num_classes=CLASSES, batch_size=BATCH, pad_last_batch=True)
    batches = list(padded)
    assert [len(b[0]) for b in batches] == [BATCH] * 6
    assert float(sum(np.sum(weights) for _, _, weights in batches)) == COUNT
    expected = model.evaluate(whole, return_dict=True, verbose=0)
    result = model.evaluate(padded, return_dict=True, verbose=0)
    # The accuracy is exact; hard-check that some predictions are right and some wrong (a real test).
    assert 0 < expected["accuracy"] < 1
    assert result["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    # Keras averages the loss over padded batch sizes: the zero-weight padding adds 0 to the sum.
    assert result["loss"] * 6 * BATCH / COUNT == pytest.approx(expected["loss"], rel=1e-5)


def test_pad_last_batch_pads_nested_inputs_and_one_hot_labels():
    import tensorflow as tf

    inputs = {"images": np.ones((3, 2, 2), "float32"), "mask": np.ones((3, 2), "int32")}
    batches = tf.data.Dataset.from_tensor_slices((inputs, np.eye(3, dtype="float32"))).batch(2)
    last_inputs, last_labels, last_weights = list(pad_last_batch(batches, 2))[-1]
    assert last_inputs["mask"].dtype == tf.int32 and tuple(last_inputs["images"].shape) == (2, 2, 2)
    np.testing.assert_array_equal(last_labels.numpy(), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(last_weights.numpy(), [1, 0])


def test_pad_last_batch_is_for_evaluation():
    with pytest.raises(ValueError, match="pad_last_batch is for evaluation"):
        arrays_dataset(np.zeros((4, 4, 4), "uint8"), np.zeros(4, "int32"), num_classes=2, batch_size=2,
                       training=True, pad_last_batch=True)


def test_drop_remainder_for_evaluation():
    batches = arrays_dataset(np.zeros((5, 4, 4), "uint8"), np.zeros(5, "int32"), num_classes=2, batch_size=2,
                             drop_remainder=True)
    assert [len(images) for images, _ in batches] == [2, 2]


def test_batches_that_do_not_split_over_replicas_raise_with_the_fix(monkeypatch):
    monkeypatch.setattr(batching, "data_parallel_replicas", lambda: 4)
    monkeypatch.setattr(batching, "_engine", lambda: "MirroredStrategy")
    with pytest.raises(ValueError, match=r"batch_size 10 does not split over the 4 replicas of MirroredStrategy: "
                                         r"use a multiple of 4 \(e.g. 8 or 12\)"):
        check_batch_size(10)
    with pytest.raises(ValueError, match="last batch has 5 of the 45 examples.*pad_last_batch=True"):
        arrays_dataset(np.zeros((COUNT, 4, 4), "uint8"), np.zeros(COUNT, "int32"), num_classes=2, batch_size=BATCH)
    # The fixes it names work.
    arrays_dataset(np.zeros((COUNT, 4, 4), "uint8"), np.zeros(COUNT, "int32"), num_classes=2, batch_size=BATCH,
                   pad_last_batch=True)
    arrays_dataset(np.zeros((COUNT, 4, 4), "uint8"), np.zeros(COUNT, "int32"), num_classes=2, batch_size=BATCH,
                   drop_remainder=True)
    raw = detection_dataset_from_arrays(np.zeros((5, 8, 8, 3), "uint8"), np.full((5, 1, 4), 0.5, "float32"),
                                        np.zeros((5, 1)))
    with pytest.raises(ValueError, match="last batch has 1 of the 5 examples.*: pass drop_remainder=True"):
        prepare_detection_dataset(raw, 8, max_boxes=2, batch_size=4)
    prepare_detection_dataset(raw, 8, max_boxes=2, batch_size=4, training=True)
