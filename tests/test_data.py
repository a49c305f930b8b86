"""keras_vit.data: classification pipelines as fit() input on every backend."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import to_numpy
from keras_vit.data import (
    arrays_dataset,
    classification_pipeline,
    digits_dataset,
    image_folder_dataset,
    load_classification_data,
    load_digits,
    tfds_dataset,
)
from keras_vit.data.classification import DIGITS_PATH
from keras_vit.models.vit.vit_model import VisionTransformer


def tiny_vit(num_classes, image_size=16):
    return VisionTransformer(
        image_size=image_size, patch_size=8, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32,
        num_classes=num_classes, include_preprocessing=True,
    )


def fit_one_epoch(dataset, num_classes, one_hot=False, image_size=16):
    model = tiny_vit(num_classes, image_size)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # tf.data shuffles itself
    return model, history.history


def write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))


def make_image_folder(root, splits=("train",), per_class=6):
    """root/<split>/<class>/<i>.png with classes 'dark' and 'light', of mixed sizes, some grey."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label, (low, high) in (("dark", (0, 80)), ("light", (170, 256))):
            for i in range(per_class):
                size = (10 + i, 12 + 2 * i)
                channels = 1 if i % 3 == 0 else 3
                image = rng.integers(low, high, size + (channels,), dtype=np.uint8)
                write_png(os.path.join(str(root), split, label, f"{i}.png"), image)
    return str(root)


def test_arrays_pipeline_is_fit_input():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 12, 12), dtype=np.uint8)  # grey, another size than the model's
    labels = rng.integers(0, 3, 20)
    dataset = arrays_dataset(images, labels, num_classes=3, image_size=16, batch_size=8, training=True, seed=1)
    batches = list(dataset)
    assert len(batches) == 2  # training drops the last partial batch
    batch_images, batch_labels = (to_numpy(x) for x in batches[0])
    assert batch_images.shape == (8, 16, 16, 3) and batch_images.dtype == np.float32
    assert 0.0 <= batch_images.min() and batch_images.max() <= 255.0
    np.testing.assert_array_equal(batch_images[..., 0], batch_images[..., 2])  # grey repeated as RGB
    assert batch_labels.dtype == np.int32 and set(batch_labels) <= {0, 1, 2}
    model, history = fit_one_epoch(dataset, 3)
    assert np.isfinite(history["loss"][0])
    # Evaluation pipelines keep every example, in order.
    evaluation = arrays_dataset(images, labels, num_classes=3, image_size=16, batch_size=8)
    assert sum(len(to_numpy(y)) for _, y in evaluation) == 20
    np.testing.assert_array_equal(np.concatenate([to_numpy(y) for _, y in evaluation]), labels)
    assert model.evaluate(evaluation, verbose=0, return_dict=True)["loss"] > 0


def test_image_folder_pipeline_is_fit_input(tmp_path):
    root = make_image_folder(tmp_path / "images", splits=("train", "test"))
    dataset, info = image_folder_dataset(root, split="train", image_size=16, batch_size=4)
    assert info.features["label"].names == ["dark", "light"]
    images, labels = (to_numpy(x) for x in next(iter(dataset)))
    assert images.shape == (4, 16, 16, 3)
    # The classes are told apart by brightness: each image's mean follows its label.
    assert np.all((images.mean(axis=(1, 2, 3)) > 127) == (labels == 1))
    _, history = fit_one_epoch(dataset, 2)
    assert np.isfinite(history["loss"][0])

    data = load_classification_data(f"folder:{root}", image_size=16, batch_size=4)
    assert data.class_names == ("dark", "light") and data.num_classes == 2
    # No validation folder: 10% of train held out (1 of 12); the test folder is the test split.
    assert data.num_examples == {"train": 11, "validation": 1, "test": 12}
    assert data.splits == {"train": "train[0:11]", "validation": "train[11:12]", "test": "test"}
    assert sum(len(to_numpy(y)) for _, y in data.test) == 12


def test_tfds_dataset_is_fit_input(tmp_path):
    # A small tensorflow-datasets set prepared locally (the catalog's sets need a download).
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    stored = {}
    for split, count in (("train", 30), ("test", 12)):
        stored[split] = {"image": rng.integers(0, 256, (count, 10, 12, 3), dtype=np.uint8), "label": np.arange(count) % 3}
    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_shapes", version="1.0.0", data_dir=str(tmp_path),
        split_datasets={split: tf.data.Dataset.from_tensor_slices(arrays) for split, arrays in stored.items()},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(10, 12, 3)),
            "label": tfds.features.ClassLabel(names=["circle", "square", "triangle"]),
        }),
    )
    data = load_classification_data("tfds:tiny_shapes", image_size=16, batch_size=4, data_dir=str(tmp_path))
    assert data.class_names == ("circle", "square", "triangle")
    # No validation split: the last 10% of train is held out.
    assert data.num_examples == {"train": 27, "validation": 3, "test": 12}
    test_labels = np.concatenate([to_numpy(y) for _, y in data.test])
    np.testing.assert_array_equal(np.sort(test_labels), np.sort(stored["test"]["label"]))
    dataset, info = tfds_dataset("tiny_shapes", split="train", image_size=16, batch_size=8, data_dir=str(tmp_path))
    assert info.features["label"].num_classes == 3 and len(list(dataset)) == 3
    _, history = fit_one_epoch(dataset, 3)
    assert np.isfinite(history["loss"][0])


def test_digits_are_embedded_and_split():
    counts = {}
    for split in ("train", "validation", "test"):
        images, labels = load_digits(split)
        assert images.shape[1:] == (8, 8) and images.dtype == np.uint8 and images.max() == 255
        counts[split] = len(labels)
        # Stratified: every class is there in about the same share.
        shares = np.bincount(labels, minlength=10) / len(labels)
        assert shares.min() > 0.07 and shares.max() < 0.13
    assert counts == {"train": 1257, "validation": 180, "test": 360}  # the 1,797 digits of scikit-learn
    # The splits are disjoint, cover all of scikit-learn's digits, and hold exactly its pixels.
    from sklearn.datasets import load_digits as sklearn_digits

    reference = sklearn_digits()
    with np.load(DIGITS_PATH) as stored:
        indices = [stored[f"{split}_indices"] for split in ("train", "validation", "test")]
    np.testing.assert_array_equal(np.sort(np.concatenate(indices)), np.arange(1797))
    for split, index in zip(("train", "validation", "test"), indices):
        images, labels = load_digits(split)
        np.testing.assert_array_equal(labels, reference.target[index])
        np.testing.assert_array_equal(images, np.round(reference.images[index] * 255 / 16).astype(np.uint8))


def test_digits_pipeline_is_fit_input():
    dataset = digits_dataset("train", image_size=16, batch_size=32, limit=96, seed=0)
    images, labels = (to_numpy(x) for x in next(iter(dataset)))
    assert images.shape == (32, 16, 16, 3) and 0 <= images.min() and images.max() <= 255
    assert images.max() > 200  # real strokes, not an empty image
    _, history = fit_one_epoch(dataset, 10)
    assert np.isfinite(history["loss"][0])

    data = load_classification_data("digits", image_size=16, batch_size=64)
    assert data.num_classes == 10 and data.class_names[3] == "3"
    assert data.steps_per_epoch == 1257 // 64


def test_mixup_and_cutmix_give_soft_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(32) % 4
    for options in ({"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": True, "cutmix": True}):
        dataset = arrays_dataset(images, labels, num_classes=4, batch_size=16, training=True, seed=3, **options)
        batch_images, soft = (to_numpy(x) for x in next(iter(dataset)))
        assert batch_images.shape == (16, 16, 16, 3)
        assert soft.shape == (16, 4) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
        mixed = (soft > 1e-6) & (soft < 1 - 1e-6)
        assert mixed.any(), f"{options}: no soft label in the batch"
    _, history = fit_one_epoch(dataset, 4, one_hot=True)
    assert np.isfinite(history["loss"][0])
    # Evaluation pipelines are never mixed, but keep the one-hot format when asked.
    evaluation = arrays_dataset(images, labels, num_classes=4, batch_size=16, one_hot=True)
    _, hard = (to_numpy(x) for x in next(iter(evaluation)))
    np.testing.assert_array_equal(hard, np.eye(4, dtype=np.float32)[labels[:16]])


def test_randaugment_in_the_pipeline():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    plain = arrays_dataset(images, np.zeros(16, int), batch_size=16, training=True, seed=0, shuffle_buffer=1)
    augmented = arrays_dataset(images, np.zeros(16, int), batch_size=16, training=True, seed=0, shuffle_buffer=1,
                               randaugment={"num_ops": 2, "factor": 0.9})
    first, augmented_first = to_numpy(next(iter(plain))[0]), to_numpy(next(iter(augmented))[0])
    assert augmented_first.shape == first.shape
    assert 0 <= augmented_first.min() and augmented_first.max() <= 255
    assert not np.allclose(first, augmented_first)
    _, history = fit_one_epoch(augmented, 1)
    assert np.isfinite(history["loss"][0])


def test_bad_input_is_reported_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_classification_data(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="Unknown dataset source"):
        load_classification_data("imagenet")
    with pytest.raises(ValueError, match="Unknown tensorflow-datasets dataset"):
        load_classification_data("tfds:no_such_dataset_xyz")
    flat = tmp_path / "flat"
    write_png(str(flat / "cat" / "0.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="needs split folders"):
        load_classification_data(f"folder:{flat}")
    with pytest.raises(ValueError, match="one label per image"):
        arrays_dataset(np.zeros((4, 8, 8, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match="integer class ids"):
        arrays_dataset(np.zeros((4, 8, 8, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="need one_hot"):
        arrays_dataset(np.zeros((4, 8, 8, 3)), np.zeros(4, int), mixup=True, one_hot=False)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        arrays_dataset(np.zeros((4, 8, 8, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="Unknown digits split"):
        load_digits("val")
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((2, 8, 8)), np.zeros(2, int)))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        classification_pipeline(pairs, 2, 8, batch_size=1, training=True, mixup=True)


def test_equalization_inside_tf_data_matches_keras():
    # RandAugment's equalization is swapped for one whose histogram runs fast inside tf.data under JAX;
    # it must compute what Keras' own layer computes.
    from keras_vit.data.classification import TFDataEqualization

    images = np.random.default_rng(0).integers(0, 200, (2, 8, 8, 3)).astype("float32")
    expected = to_numpy(keras.layers.Equalization(value_range=(0, 255))(images))
    equalization = TFDataEqualization(value_range=(0, 255))
    inside_tf_data = tf.data.Dataset.from_tensors(images).map(lambda x: equalization(x))
    # Up to one grey level: the lookup table's float rounding differs between backends.
    np.testing.assert_allclose(next(iter(inside_tf_data)).numpy(), expected, atol=1.0)
    assert not np.allclose(expected, images, atol=1.0)
