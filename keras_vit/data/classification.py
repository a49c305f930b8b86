"""Image classification input pipelines on tf.data / tensorflow-datasets.

Every pipeline yields batches of `(images, labels)`: images float32 RGB in [0, 255] resized to the
model's input size (the models take raw pixels with `include_preprocessing=True`), labels int32 class
ids, or float32 one-hot / soft labels when MixUp or CutMix is on. Augmentation uses Keras' own
`RandAugment`, `MixUp` and `CutMix` layers inside tf.data, so the same dataset feeds `fit()` on the
TensorFlow, JAX and PyTorch backends.

Sources:
- arrays: `arrays_dataset(images, labels, ...)`;
- a tensorflow-datasets name: `tfds_dataset("cifar10", split="train", ...)`;
- a local folder `root/<split>/<class>/<image>.png|jpg` (tfds `ImageFolder`): `image_folder_dataset`;
- the embedded handwritten digits (scikit-learn's, no download): `digits_dataset`;
- all of them with train / validation / test splits at once: `load_classification_data(source)`,
  with `source` "digits", "tfds:NAME" or "folder:PATH".
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

import keras

from keras_vit.data.batching import check_batch_size
from keras_vit.data.images import to_rgb_float
from keras_vit.data.batching import pad_last_batch as pad_batches

DIGITS_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")
DIGITS_CLASS_NAMES = tuple(str(i) for i in range(10))
SPLITS = ("train", "validation", "test")
# Names a folder dataset may use for its validation split, in order of preference.
VALIDATION_FOLDER_NAMES = ("validation", "val", "valid")
# Fraction of the training split held out for validation when a source has no validation split.
HELD_OUT_FRACTION = 0.1
# How `classification_pipeline` resizes images (to the size, aspect not kept, bilinear, antialiased), in
# `keras_vit.load_image`'s words: a model trained on these pipelines keeps it (`with_class_names`).
PIPELINE_IMAGE_RECIPE = {"crop_mode": "squash", "crop_pct": 1.0, "interpolation": "bilinear"}


def load_digits(split="train"):
    """The embedded handwritten digits: `(images, labels)` NumPy arrays of one split.

    scikit-learn's digits (1,797 real 8x8 handwritten digits), stored in the package as uint8 grey
    pixels in [0, 255] and split once, stratified by class with a fixed seed, into train (1,257),
    validation (180) and test (360) (see scripts/make_digits.py).

    Args:
        split: "train", "validation" or "test".

    Returns:
        images uint8 (N, 8, 8) and labels uint8 (N,) in 0..9.

    Example:
    >>> images, labels = load_digits("test")
    >>> images.shape, labels.shape
    ((360, 8, 8), (360,))
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown digits split {split!r}: use one of {SPLITS}.")
    with np.load(DIGITS_PATH) as data:
        return data[f"{split}_images"], data[f"{split}_labels"]


def _pair(image_size):
    if isinstance(image_size, (int, np.integer)):
        return (int(image_size), int(image_size))
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    return (int(image_size[0]), int(image_size[1]))


def classification_pipeline(
    dataset,
    num_classes,
    image_size,
    batch_size=32,
    training=False,
    randaugment=False,
    mixup=False,
    cutmix=False,
    one_hot=None,
    label_smoothing=0.0,
    shuffle_buffer=None,
    cache=False,
    seed=None,
    drop_remainder=None,
    pad_last_batch=False,
    shuffle_epoch=None,
):
    """Batches a tf.data dataset of single `(image, label)` pairs for `fit()`/`evaluate()`.

    Each image is made float32 RGB in [0, 255] (grey images are repeated over the three channels) and
    resized (bilinear) to `image_size`. With `training=True` the examples are shuffled every epoch, the
    last partial batch is dropped (static shapes) and the augmentations are applied: `randaugment`
    (`keras.layers.RandAugment`, per batch), then `mixup` (`keras.layers.MixUp`) and/or `cutmix`
    (`keras.layers.CutMix`); with both, each batch gets one of the two, at random, as in timm.
    Evaluation pipelines (`training=False`) are never augmented.

    Args:
        dataset: unbatched `tf.data.Dataset` of `(image, label)`, image (H, W[, C]), label an int.
        num_classes: number of classes (for one-hot labels).
        image_size: int or (height, width) of the model's input.
        batch_size: examples per batch.
        training: shuffle, drop the last partial batch, augment.
        randaugment: False, True (Keras' defaults: 2 ops, factor 0.5) or a dict of `RandAugment` arguments.
        mixup: False, True (alpha 0.2) or the MixUp alpha (float).
        cutmix: False, True (factor 1.0) or the CutMix factor (float).
        one_hot: labels as float one-hot vectors; None means "when MixUp or CutMix is on" (they
            mix labels, so they need one-hot labels; the loss is then `CategoricalCrossentropy`).
        label_smoothing: smooth one-hot labels (needs one-hot labels).
        shuffle_buffer: shuffle buffer size; None: 10,000.
        cache: cache the resized images in memory (for small datasets read from files).
        seed: seed of the shuffling and the augmentations.
        drop_remainder: drop the last partial batch; default True when training, else False.
        pad_last_batch: evaluation only: pad the last partial batch to `batch_size` and yield
            `(images, labels, sample_weights)`, weight 0 on the padding, so that every batch splits over
            the devices and every example is scored once (see `keras_vit.data.batching`; compile the
            metrics as `weighted_metrics`).
        shuffle_epoch: a `ShuffleEpoch` callback (pass it to `fit()` too): each epoch's shuffle order is
            then a function of `seed` and the epoch number alone, so a run resumed at epoch k (see
            `keras_vit.training.AtomicBackupAndRestore`) sees the order an uninterrupted run saw. Without
            it, the order follows how many times this dataset was iterated. (RandAugment, MixUp and
            CutMix draw from their own random streams, which a resumed run starts afresh.)

    Under `tf.distribute` or `keras.distribution`, a `batch_size` that does not divide by the replicas,
    or a last partial batch that does not (evaluation, neither option set), raises a ValueError that
    names the fix.

    Returns:
        A batched, prefetched `tf.data.Dataset` of `(images, labels)` (with `pad_last_batch`, also the
        sample weights).

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> pairs = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8), "uint8"), np.arange(4)))
    >>> batches = classification_pipeline(pairs, num_classes=4, image_size=16, batch_size=2)
    >>> images, labels = next(iter(batches))
    >>> tuple(images.shape), tuple(labels.shape)
    ((2, 16, 16, 3), (2,))
    """
    height, width = _pair(image_size)
    mixing = bool(mixup) or bool(cutmix)
    if one_hot is None:
        one_hot = mixing or label_smoothing > 0
    if mixing and not one_hot:
        raise ValueError("MixUp and CutMix mix the labels: they need one_hot=True (or one_hot=None).")
    if label_smoothing and not one_hot:
        raise ValueError("label_smoothing needs one-hot labels: pass one_hot=True (or one_hot=None).")
    if mixing and training and batch_size < 2:
        raise ValueError("MixUp and CutMix mix examples within a batch: use batch_size >= 2.")
    if num_classes is None or int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    num_classes = int(num_classes)
    if drop_remainder is None:
        drop_remainder = bool(training)
    if pad_last_batch and (training or drop_remainder):
        raise ValueError("pad_last_batch is for evaluation: it needs training=False and drop_remainder=False.")
    count = int(dataset.cardinality())
    check_batch_size(batch_size, num_examples=count if count >= 0 else None, drop_remainder=drop_remainder,
                     pad_last_batch=pad_last_batch)

    def prepare(image, label):
        image = tf.image.resize(to_rgb_float(image), (height, width), method="bilinear", antialias=True)
        return image, tf.cast(label, tf.int32)

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if training and shuffle_epoch is not None:
        base, epoch = dataset, shuffle_epoch.variable

        def shuffled_for_this_epoch(_):
            # Runs each time the dataset is iterated: the shuffle's seed is read from the epoch variable.
            # Without a graph seed, TensorFlow combines its fixed default with this (tensor) op seed; with
            # one it would compare the tensor to 0 in Python and fail.
            tf.compat.v1.get_default_graph().seed = None
            return base.shuffle(shuffle_buffer or 10_000, seed=(seed or 0) * 1_000_003 + epoch.read_value(),
                                reshuffle_each_iteration=False)

        count = int(base.cardinality())
        dataset = tf.data.Dataset.range(1).flat_map(shuffled_for_this_epoch)
        if count >= 0:  # flat_map hides it; fit() and the schedules need the steps per epoch
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    elif training:
        dataset = dataset.shuffle(shuffle_buffer or 10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)

    if training and randaugment:
        options = dict(randaugment) if isinstance(randaugment, dict) else {}
        options.setdefault("value_range", (0, 255))
        options.setdefault("seed", seed)
        rand_augment = keras.layers.RandAugment(**options)
        if keras.backend.backend() == "jax":
            rand_augment.equalization = TFDataEqualization(value_range=rand_augment.value_range)
        dataset = dataset.map(
            lambda images, labels: (tf.clip_by_value(rand_augment(images, training=True), 0.0, 255.0), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if one_hot:
        dataset = dataset.map(
            lambda images, labels: (images, _one_hot(labels, num_classes, label_smoothing)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if training and mixing:
        dataset = dataset.map(_mixer(mixup, cutmix, seed), num_parallel_calls=tf.data.AUTOTUNE)
    if pad_last_batch:
        dataset = pad_batches(dataset, batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


class ShuffleEpoch(keras.callbacks.Callback):
    """The epoch number that seeds a training pipeline's shuffle (`shuffle_epoch=`), set by `fit()`.

    Pass the same object to the pipeline and to `fit(callbacks=...)`: at the start of each epoch it
    stores the epoch number in a `tf.Variable` that the pipeline reads when it is iterated.

    Example:
    >>> import numpy as np
    >>> epoch = ShuffleEpoch()
    >>> batches = arrays_dataset(np.arange(6, dtype="uint8").reshape(6, 1, 1), np.arange(6), image_size=1,
    ...                          batch_size=6, training=True, seed=0, shuffle_epoch=epoch)
    >>> def order():
    ...     return [int(label) for label in next(iter(batches))[1]]
    >>> first = order()
    >>> epoch.on_epoch_begin(1)
    >>> second = order()
    >>> epoch.on_epoch_begin(0)
    >>> order() == first, sorted(second) == sorted(first)
    (True, True)
    """

    def __init__(self):
        super().__init__()
        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="shuffle_epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


class TFDataEqualization(keras.layers.Equalization):
    """`keras.layers.Equalization` whose histogram follows the backend it computes with.

    Keras 3.15 picks the histogram code by the global backend: under JAX it unrolls a loop over the 256
    bins even inside tf.data, where the layer computes with TensorFlow; that takes about a minute to trace
    on a CPU and is slow to run. TensorFlow's bincount is what the layer uses on every other backend.
    `classification_pipeline` puts it into RandAugment under JAX.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> equalization = TFDataEqualization(value_range=(0, 255))
    >>> images = tf.data.Dataset.from_tensors(np.arange(48, dtype="float32").reshape(1, 4, 4, 3))
    >>> tuple(next(iter(images.map(equalization))).shape)
    (1, 4, 4, 3)
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        if self.backend._backend == "jax":
            return super()._custom_histogram_fixed_width(values, value_range, nbins)
        values = self.backend.cast(values, "float32")
        low, high = (float(v) for v in value_range)
        indices = self.backend.cast((values - low) * (nbins - 1) / (high - low), "int32")
        indices = self.backend.numpy.reshape(self.backend.numpy.clip(indices, 0, nbins - 1), [-1])
        return self.backend.numpy.bincount(indices, minlength=nbins)


def _one_hot(labels, num_classes, label_smoothing):
    labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    return labels


def _mixer(mixup, cutmix, seed):
    """A tf.data map function that applies MixUp and/or CutMix (one of them per batch)."""
    layers = []
    if mixup:
        alpha = 0.2 if mixup is True else float(mixup)
        layers.append(keras.layers.MixUp(alpha=alpha, seed=seed))
    if cutmix:
        factor = 1.0 if cutmix is True else float(cutmix)
        layers.append(keras.layers.CutMix(factor=factor, seed=seed))

    def apply(layer, images, labels):
        mixed = layer({"images": images, "labels": labels}, training=True)
        return tf.cast(mixed["images"], tf.float32), tf.cast(mixed["labels"], tf.float32)

    if len(layers) == 1:
        return lambda images, labels: apply(layers[0], images, labels)

    def mix_either(images, labels):
        use_mixup = tf.random.uniform(()) < 0.5
        return tf.cond(
            use_mixup, lambda: apply(layers[0], images, labels), lambda: apply(layers[1], images, labels)
        )

    return mix_either


def arrays_dataset(images, labels, num_classes=None, image_size=None, **pipeline_options):
    """A `fit()`-ready dataset from NumPy arrays of images and integer labels.

    Args:
        images: (N, H, W), (N, H, W, 1) or (N, H, W, 3) array, pixels in [0, 255].
        labels: (N,) integer class ids.
        num_classes: number of classes; None: `max(labels) + 1`.
        image_size: the model's input size; None keeps the arrays' size.
        **pipeline_options: `batch_size`, `training`, `randaugment`, `mixup`, `cutmix`, `one_hot`,
            `label_smoothing`, `seed` (see `classification_pipeline`).

    Example:
    >>> import numpy as np
    >>> images = np.random.randint(0, 256, (6, 10, 10, 3), "uint8")
    >>> batches = arrays_dataset(images, np.array([0, 1, 2, 0, 1, 2]), image_size=16, batch_size=3)
    >>> [tuple(x.shape) for x in next(iter(batches))]
    [(3, 16, 16, 3), (3,)]
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}.")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: give one label per image.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if image_size is None:
        image_size = images.shape[1:3]
    pipeline_options.setdefault("shuffle_buffer", max(len(images), 1))
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return classification_pipeline(dataset, num_classes, image_size, **pipeline_options)


def digits_dataset(split="train", image_size=32, limit=None, **pipeline_options):
    """The embedded handwritten digits (see `load_digits`), upscaled to `image_size`, as RGB in [0, 255].

    Args:
        split: "train", "validation" or "test". `training` defaults to True for "train".
        image_size: the model's input size (the digits are 8x8, upscaled bilinearly).
        limit: keep only the first `limit` examples (quick runs).
        **pipeline_options: see `classification_pipeline`.

    Example:
    >>> batches = digits_dataset("test", image_size=16, batch_size=8)
    >>> [tuple(x.shape) for x in next(iter(batches))]
    [(8, 16, 16, 3), (8,)]
    """
    images, labels = load_digits(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    pipeline_options.setdefault("training", split == "train")
    return arrays_dataset(images, labels.astype(np.int32), num_classes=10, image_size=image_size, **pipeline_options)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise ImportError("tensorflow-datasets is needed: pip install tensorflow-datasets") from error
    return tfds


def _tfds_builder(name, data_dir=None):
    tfds = _import_tfds()
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"Unknown tensorflow-datasets dataset {name!r}. Use a name from "
            "https://www.tensorflow.org/datasets/catalog (e.g. 'cifar10', 'mnist', 'tf_flowers')."
        ) from error


def _image_and_label_keys(info, name):
    """The (image, label) feature names of a tfds classification set, and its label feature.

    Its supervised keys when it has them; else its only `Image` and only `ClassLabel` features.
    """
    tfds = _import_tfds()
    keys = info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
    else:
        features = info.features
        images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
        labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
        if len(images) != 1 or len(labels) != 1:
            raise ValueError(
                f"tfds dataset {name!r} is not an image classification set: it needs one image and one "
                f"class label feature (it has {sorted(features.keys())})."
            )
        image_key, label_key = images[0], labels[0]
    label_feature = info.features[label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
        raise ValueError(f"tfds dataset {name!r}: its label {label_key!r} is not a class label.")
    return image_key, label_key, label_feature


def _as_pairs(builder, split, image_key, label_key):
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    return dataset.map(lambda example: (example[image_key], example[label_key]), num_parallel_calls=tf.data.AUTOTUNE)


def _prepare_tfds(builder, name):
    """Prepares a tfds dataset, turning a failed download into an error that says what to do."""
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise RuntimeError(
            f"Could not download or prepare tfds dataset {name!r} ({type(error).__name__}: {error}). "
            "Without a network, prepare it on a machine that has one and copy ~/tensorflow_datasets "
            "here (or pass data_dir=)."
        ) from error


def tfds_dataset(name, split="train", image_size=224, data_dir=None, limit=None, **pipeline_options):
    """A `fit()`-ready dataset from a tensorflow-datasets classification set (downloaded on first use).

    Args:
        name: a tfds name, e.g. "cifar10", "mnist", "tf_flowers" (or "name/config:version").
        split: a tfds split, sub-splits too ("train[:90%]"). `training` defaults to True when the
            split starts with "train".
        image_size: the model's input size.
        data_dir: where tfds keeps its data (default ~/tensorflow_datasets).
        limit: keep only the first `limit` examples.
        **pipeline_options: see `classification_pipeline`.

    Returns:
        `(dataset, info)`: the batched dataset and the tfds `DatasetInfo`.

    Example (needs a network the first time):
    >>> batches, info = tfds_dataset("mnist", split="test", image_size=28)  # doctest: +SKIP
    >>> info.features["label"].num_classes  # doctest: +SKIP
    10
    """
    builder = _tfds_builder(name, data_dir)
    _prepare_tfds(builder, name)
    image_key, label_key, label_feature = _image_and_label_keys(builder.info, name)
    dataset = _as_pairs(builder, split, image_key, label_key)
    if limit is not None:
        dataset = dataset.take(limit)
    pipeline_options.setdefault("training", str(split).startswith("train"))
    batches = classification_pipeline(dataset, label_feature.num_classes, image_size, **pipeline_options)
    return batches, builder.info


def _image_folder_builder(path):
    path = os.path.expanduser(str(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Image folder {path!r} does not exist. Expected a folder laid out as "
            "PATH/<split>/<class>/<image>.png|jpg (e.g. PATH/train/cat/1.jpg)."
        )
    suffixes = (".jpg", ".jpeg", ".png")
    subfolders = sorted(f for f in os.listdir(path) if os.path.isdir(os.path.join(path, f)))
    for folder in subfolders:
        if any(f.lower().endswith(suffixes) for f in os.listdir(os.path.join(path, folder))):
            raise ValueError(
                f"Image folder {path!r} has images directly in {folder!r}: it needs split folders. "
                f"Lay it out as PATH/train/<class>/<image> (e.g. move {folder!r} to {os.path.join(path, 'train', folder)!r})."
            )
    tfds = _import_tfds()
    builder = tfds.ImageFolder(path, shape=(None, None, 3))
    if not builder.info.splits or not builder.info.features["label"].names:
        raise ValueError(
            f"Image folder {path!r} has no images: expected PATH/<split>/<class>/<image>.png|jpg "
            "(supported: .jpg, .jpeg, .png)."
        )
    return builder


def image_folder_dataset(path, split="train", image_size=224, limit=None, **pipeline_options):
    """A `fit()`-ready dataset from a folder of images, read with tfds' `ImageFolder`.

    The folder is laid out as `path/<split>/<class>/<image>` (.jpg, .jpeg or .png); the class names are
    the sorted folder names.

    Args:
        path: the folder.
        split: one of its split folders ("train", "test", ...). `training` defaults to True for "train".
        image_size: the model's input size (the images may have any size).
        limit: keep only the first `limit` examples.
        **pipeline_options: see `classification_pipeline`.

    Returns:
        `(dataset, info)`: the batched dataset and the tfds `DatasetInfo` (class names under
        `info.features["label"].names`).

    Example:
    >>> batches, info = image_folder_dataset("my_images", split="train", image_size=32)  # doctest: +SKIP
    """
    builder = _image_folder_builder(path)
    if split not in builder.info.splits:
        raise ValueError(f"Image folder {path!r} has no split {split!r}; it has {sorted(builder.info.splits)}.")
    dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    if limit is not None:
        dataset = dataset.take(limit)
    pipeline_options.setdefault("training", split == "train")
    pipeline_options.setdefault("cache", True)
    num_classes = builder.info.features["label"].num_classes
    return classification_pipeline(dataset, num_classes, image_size, **pipeline_options), builder.info


@dataclasses.dataclass
class ClassificationData:
    """The three splits of a classification source, ready for `fit()` / `evaluate()`.

    Attributes:
        train, validation, test: batched `tf.data.Dataset`s of `(images, labels)`.
        num_classes: number of classes.
        class_names: the class names, index = label.
        num_examples: examples per split (after `limit`), a dict.
        splits: which split of the source each one is (e.g. {"validation": "train[90%:]"}).
        one_hot: whether the labels are one-hot (use `CategoricalCrossentropy`) or class ids
            (use `SparseCategoricalCrossentropy`).
        source: the source it came from.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: tuple
    num_examples: dict
    splits: dict
    one_hot: bool
    source: str

    @property
    def steps_per_epoch(self):
        """Training batches per epoch."""
        return int(self.train.cardinality().numpy())


def _held_out(count):
    return max(1, int(round(count * HELD_OUT_FRACTION)))


def load_classification_data(
    source="digits",
    image_size=32,
    batch_size=32,
    randaugment=False,
    mixup=False,
    cutmix=False,
    one_hot=None,
    label_smoothing=0.0,
    limit=None,
    seed=0,
    data_dir=None,
    pad_last_batch=False,
    shuffle_epoch=None,
):
    """Train, validation and test pipelines of a classification source, in one call.

    Args:
        source: "digits" (the embedded handwritten digits), "tfds:NAME" (a tensorflow-datasets
            classification set) or "folder:PATH" (a folder `PATH/<split>/<class>/<image>`).
            When the source has no validation split, the last 10% of its training split is held out
            for validation; when it has no test split, its validation split is also the test split
            (with neither, the held-out part of train is both).
        image_size: the model's input size.
        batch_size: examples per batch (for every split).
        randaugment, mixup, cutmix, one_hot, label_smoothing, seed: see `classification_pipeline`
            (augmentation is applied to the training split only).
        limit: keep at most `limit` examples of each split (quick runs).
        data_dir: tfds data folder (for "tfds:" sources).
        pad_last_batch: pad the last batch of validation and test to `batch_size`, with sample weights
            (see `classification_pipeline`): for evaluation on many devices.
        shuffle_epoch: a `ShuffleEpoch` that seeds the training split's shuffle by epoch (for resuming).

    Returns:
        A `ClassificationData`.

    Example:
    >>> data = load_classification_data("digits", image_size=16, batch_size=64)
    >>> data.num_classes, data.num_examples
    (10, {'train': 1257, 'validation': 180, 'test': 360})
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be 'digits', 'tfds:NAME' or 'folder:PATH', got {source!r}.")
    if one_hot is None:
        one_hot = bool(mixup) or bool(cutmix) or label_smoothing > 0
    common = dict(image_size=image_size, batch_size=batch_size, one_hot=one_hot, label_smoothing=label_smoothing, seed=seed)
    evaluation_options = {"training": False, "pad_last_batch": pad_last_batch}
    train_options = dict(training=True, randaugment=randaugment, mixup=mixup, cutmix=cutmix, shuffle_epoch=shuffle_epoch)

    if source == "digits":
        datasets, counts = {}, {}
        for split in SPLITS:
            images, labels = load_digits(split)
            images, labels = images[:limit], labels[:limit].astype(np.int32)
            counts[split] = len(labels)
            options = dict(common, **(train_options if split == "train" else evaluation_options))
            datasets[split] = arrays_dataset(images, labels, num_classes=10, **options)
        return ClassificationData(
            **datasets, num_classes=10, class_names=DIGITS_CLASS_NAMES, num_examples=counts,
            splits={s: s for s in SPLITS}, one_hot=one_hot, source=source,
        )

    kind, _, location = source.partition(":")
    if kind == "tfds" and location:
        builder = _tfds_builder(location, data_dir)
        _prepare_tfds(builder, location)
        image_key, label_key, label_feature = _image_and_label_keys(builder.info, location)
        available = {name: info.num_examples for name, info in builder.info.splits.items()}
    elif kind == "folder" and location:
        builder = _image_folder_builder(location)
        image_key, label_key, label_feature = "image", "label", builder.info.features["label"]
        available = {name: info.num_examples for name, info in builder.info.splits.items()}
    else:
        raise ValueError(
            f"Unknown dataset source {source!r}: use 'digits', 'tfds:NAME' (e.g. tfds:cifar10) or "
            "'folder:PATH' (a folder PATH/<split>/<class>/<image>)."
        )
    if "train" not in available:
        raise ValueError(f"Dataset {source!r} has no 'train' split; it has {sorted(available)}.")

    # Which of the source's splits (and which part of them) make train / validation / test.
    # Each entry: (split name, start, stop) in examples; None = to the end.
    validation_name = next((n for n in VALIDATION_FOLDER_NAMES if n in available), None)
    test_name = "test" if "test" in available else None
    if validation_name is None and test_name is None:
        held = _held_out(available["train"])
        plan = {"train": ("train", 0, available["train"] - held), "validation": ("train", available["train"] - held, None)}
        plan["test"] = plan["validation"]
    elif validation_name is None:
        held = _held_out(available["train"])
        plan = {"train": ("train", 0, available["train"] - held), "validation": ("train", available["train"] - held, None),
                "test": (test_name, 0, None)}
    else:
        plan = {"train": ("train", 0, None), "validation": (validation_name, 0, None),
                "test": (test_name or validation_name, 0, None)}

    datasets, counts, splits = {}, {}, {}
    for split, (name, start, stop) in plan.items():
        stop = available[name] if stop is None else stop
        whole = (start, stop) == (0, available[name])
        if kind == "tfds":  # tfds reads just the slice; ImageFolder has no sub-splits
            dataset = _as_pairs(builder, name if whole else f"{name}[{start}:{stop}]", image_key, label_key)
        else:
            dataset = _as_pairs(builder, name, image_key, label_key).skip(start).take(stop - start)
        if limit is not None:
            dataset = dataset.take(limit)
        counts[split] = min(stop - start, limit) if limit is not None else stop - start
        splits[split] = name if whole else f"{name}[{start}:{stop}]"
        options = dict(common, **(train_options if split == "train" else evaluation_options))
        options["cache"] = kind == "folder"
        datasets[split] = classification_pipeline(dataset, label_feature.num_classes, **options)
    return ClassificationData(
        **datasets, num_classes=label_feature.num_classes, class_names=tuple(label_feature.names),
        num_examples=counts, splits=splits, one_hot=one_hot, source=source,
    )
