"""Detection input pipelines on tf.data / tensorflow-datasets, producing DETR's inputs and targets.

Two sources give the same raw examples, `{"image": uint8 (h, w, 3), "boxes": (n, 4) float32
normalized (cx, cy, w, h), "labels": (n,) int32}`:
- `coco_detection_dataset(...)`: the tfds `coco/2017` builder (needs a network, or the data
  already under `data_dir`), or a local COCO-format folder of images plus an annotations json.
- `detection_dataset_from_arrays(...)`: images and padded targets in memory.

`prepare_detection_dataset` then augments (random horizontal flip, random scale), resizes keeping
the aspect ratio to fit `image_size`, pads at the bottom/right with a pixel mask, pads the targets
to `max_boxes` and batches into `({"images": (B, H, W, 3) float32 in [0, 255],
"pixel_mask": (B, H, W) float32}, {"boxes": (B, M, 4), "labels": (B, M) int32, "valid": (B, M)})`,
the form `DETRModel.fit` and `DETRLoss` take. All shapes are static.
"""

import json
import os
import warnings

import numpy as np
import tensorflow as tf

# Corners may stick out of [0, 1] by this much (float rounding of pixel -> normalized boxes).
_CORNER_TOLERANCE = 1e-3


def _raw_signature():
    return {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "boxes": tf.TensorSpec((None, 4), tf.float32),
        "labels": tf.TensorSpec((None,), tf.int32),
    }


def _read_coco_annotations(annotation_file, image_dir):
    """Parses a COCO json into per-image (path, pixel boxes clipped, contiguous labels)."""
    with open(annotation_file) as f:
        coco = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{annotation_file} is not a COCO detection file: it has no {key!r} list.")
    category_ids = sorted(int(c["id"]) for c in coco["categories"])
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in coco["categories"]}
    to_label = {cid: i for i, cid in enumerate(category_ids)}
    images = {int(im["id"]): im for im in coco["images"]}
    per_image = {image_id: [] for image_id in images}
    dropped = 0
    for ann in coco["annotations"]:
        image_id = int(ann["image_id"])
        if image_id not in images:
            raise ValueError(f"Annotation {ann.get('id')} in {annotation_file} names image {image_id}, which is not listed.")
        if int(ann["category_id"]) not in to_label:
            raise ValueError(
                f"Annotation {ann.get('id')} in {annotation_file} has category_id {ann['category_id']}, "
                f"which is not in its categories {category_ids}."
            )
        if ann.get("iscrowd", 0):  # crowd regions are not objects to detect (as in DETR)
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        width, height = float(images[image_id]["width"]), float(images[image_id]["height"])
        # As the reference: clip to the image, drop boxes left without area.
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            dropped += 1
            continue
        per_image[image_id].append(
            ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height,
             to_label[int(ann["category_id"])])
        )  # fmt: skip
    if dropped:
        warnings.warn(f"{annotation_file}: dropped {dropped} boxes with no area inside their image.")
    records = []
    for image_id in sorted(images):
        path = os.path.join(image_dir, images[image_id]["file_name"])
        if not os.path.exists(path):
            raise ValueError(f"Image {image_id} of {annotation_file} is missing: {path} does not exist.")
        objects = np.asarray(per_image[image_id], "float32").reshape(-1, 5)
        records.append((path, objects[:, :4], objects[:, 4].astype("int32")))
    info = {
        "num_classes": len(category_ids),
        "class_names": [names[cid] for cid in category_ids],
        "category_ids": category_ids,
    }
    return records, info


def load_coco_folder(image_dir, annotation_file):
    """A local COCO-format detection set as a tf.data.Dataset of raw examples.

    Category ids are mapped to contiguous labels 0..C-1 in increasing id order; crowd annotations
    are skipped; boxes are clipped to their image and dropped if left empty (as DETR's COCO loader).

    Returns `(dataset, info)`, info = {"num_classes", "class_names", "category_ids"}.

    Example:
    >>> # dataset, info = load_coco_folder("coco/val2017", "coco/annotations/instances_val2017.json")
    """
    records, info = _read_coco_annotations(annotation_file, image_dir)

    def generate():
        for path, boxes, labels in records:
            yield {"path": path, "boxes": boxes, "labels": labels}

    signature = {
        "path": tf.TensorSpec((), tf.string),
        "boxes": tf.TensorSpec((None, 4), tf.float32),
        "labels": tf.TensorSpec((None,), tf.int32),
    }
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)

    def read(example):
        image = tf.io.decode_image(tf.io.read_file(example["path"]), channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return {"image": tf.cast(image, tf.uint8), "boxes": example["boxes"], "labels": example["labels"]}

    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(records))), info


def coco_detection_dataset(split="validation", data_dir=None, image_dir=None, annotation_file=None, download=True):
    """COCO detection examples: from tensorflow-datasets, or from a local COCO-format folder.

    With `image_dir` and `annotation_file`, reads that folder (`load_coco_folder`); otherwise
    loads the tfds `coco/2017` builder's `split` (downloaded into `data_dir` when there is a
    network). tfds' 80 COCO classes are its contiguous labels.

    Returns `(dataset of raw examples, info)`.

    Example:
    >>> # train, info = coco_detection_dataset("train", data_dir="~/tensorflow_datasets")
    >>> # val, info = coco_detection_dataset(image_dir="val2017", annotation_file="instances_val2017.json")
    """
    if image_dir is not None or annotation_file is not None:
        if image_dir is None or annotation_file is None:
            raise ValueError("A local COCO folder needs both image_dir and annotation_file.")
        return load_coco_folder(image_dir, annotation_file)
    import tensorflow_datasets as tfds

    try:
        dataset, tfds_info = tfds.load("coco/2017", split=split, data_dir=data_dir, download=download, with_info=True)
    except Exception as error:  # no network, or not prepared in data_dir
        raise RuntimeError(
            f"Could not load the tfds 'coco/2017' split {split!r} ({type(error).__name__}: {error}). Without "
            "a network, download COCO by hand (images and annotations from cocodataset.org) and call "
            "coco_detection_dataset(image_dir=..., annotation_file=...)."
        ) from error

    def convert(example):
        objects = example["objects"]
        keep = tf.logical_not(objects["is_crowd"])
        ymin, xmin, ymax, xmax = tf.unstack(tf.boolean_mask(objects["bbox"], keep), axis=-1)
        boxes = tf.stack([(xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], axis=-1)
        labels = tf.cast(tf.boolean_mask(objects["label"], keep), tf.int32)
        nonempty = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        return {
            "image": example["image"],
            "boxes": tf.boolean_mask(boxes, nonempty),
            "labels": tf.boolean_mask(labels, nonempty),
        }

    names = tfds_info.features["objects"]["label"].names
    info = {"num_classes": len(names), "class_names": list(names), "category_ids": None}
    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE), info


def detection_dataset_from_arrays(images, boxes, labels, valid=None):
    """Raw detection examples from in-memory arrays.

    Args:
        images: (N, H, W, 3) uint8 (or anything castable).
        boxes: (N, M, 4) normalized (cx, cy, w, h), padded.
        labels: (N, M) integer class indices.
        valid: (N, M), 1 for real boxes; default all real.

    Example:
    >>> ds = detection_dataset_from_arrays(np.zeros((2, 8, 8, 3), "uint8"), np.full((2, 1, 4), 0.5),
    ...                                    np.zeros((2, 1)), valid=np.array([[1.0], [0.0]]))
    >>> [int(e["labels"].shape[0]) for e in ds]
    [1, 0]
    """
    images = np.asarray(images)
    boxes = np.asarray(boxes, "float32")
    labels = np.asarray(labels).astype("int32")
    valid = np.ones(labels.shape, "float32") if valid is None else np.asarray(valid, "float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": images.astype("uint8"), "boxes": boxes, "labels": labels, "valid": valid}
    )

    def unpad(example):
        keep = example["valid"] > 0
        return {
            "image": example["image"],
            "boxes": tf.boolean_mask(example["boxes"], keep),
            "labels": tf.boolean_mask(example["labels"], keep),
        }

    return dataset.map(unpad)


def _validate_example(example, num_classes):
    """tf.debugging checks of one raw example: a clear error naming what is wrong."""
    boxes, labels = example["boxes"], example["labels"]
    tol = _CORNER_TOLERANCE
    corners = tf.concat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=-1)
    checks = [
        tf.debugging.assert_equal(
            tf.shape(boxes)[0], tf.shape(labels)[0], message="Each box needs one label: boxes and labels differ in number."
        ),
        tf.debugging.assert_greater(
            boxes[:, 2:], 0.0, message="A target box has a non-positive width or height; drop empty boxes first."
        ),
        tf.debugging.assert_greater_equal(
            corners, -tol,
            message="A target box lies outside [0, 1]: boxes must be normalized (cx, cy, w, h) inside the image.",
        ),
        tf.debugging.assert_less_equal(
            corners, 1.0 + tol,
            message="A target box lies outside [0, 1]: boxes must be normalized (cx, cy, w, h) inside the image.",
        ),
        tf.debugging.assert_non_negative(labels, message="A target label is negative; labels are class indices."),
    ]  # fmt: skip
    if num_classes is not None:
        checks.append(
            tf.debugging.assert_less(
                labels, tf.cast(num_classes, labels.dtype),
                message=f"A target label is >= num_classes={num_classes}; labels are class indices below it.",
            )
        )  # fmt: skip
    with tf.control_dependencies(checks):
        return {key: tf.identity(value) for key, value in example.items()}


def _resize_and_pad(image, boxes, image_size, scale):
    """Resizes to fit (H, W) * scale keeping the aspect ratio, pads to (H, W); boxes stay normalized
    to the real image, which is what DETR predicts and what the pixel mask marks."""
    target_h, target_w = image_size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    ratio = tf.minimum(target_h / shape[0], target_w / shape[1]) * scale
    new_h = tf.clip_by_value(tf.cast(tf.round(shape[0] * ratio), tf.int32), 1, target_h)
    new_w = tf.clip_by_value(tf.cast(tf.round(shape[1] * ratio), tf.int32), 1, target_w)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), antialias=True)
    resized = tf.clip_by_value(resized, 0.0, 255.0)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, target_h, target_w)
    mask = tf.image.pad_to_bounding_box(tf.ones(tf.stack([new_h, new_w, 1])), 0, 0, target_h, target_w)[..., 0]
    padded.set_shape((target_h, target_w, 3))
    mask.set_shape((target_h, target_w))
    return padded, mask, boxes


def _pad_targets(boxes, labels, max_boxes):
    count = tf.minimum(tf.shape(boxes)[0], max_boxes)  # extra boxes beyond max_boxes are dropped
    boxes, labels = boxes[:count], labels[:count]
    pad = max_boxes - count
    return {
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_boxes, 4)),
        "labels": tf.ensure_shape(tf.pad(labels, [[0, pad]]), (max_boxes,)),
        "valid": tf.ensure_shape(tf.pad(tf.ones([count], tf.float32), [[0, pad]]), (max_boxes,)),
    }


def prepare_detection_dataset(
    dataset,
    image_size,
    max_boxes,
    batch_size,
    num_classes=None,
    training=False,
    horizontal_flip=True,
    scale_range=(0.6, 1.0),
    shuffle_buffer=256,
    seed=None,
    drop_remainder=None,
):
    """Augments, resizes, pads and batches raw detection examples into DETR's (inputs, targets).

    Args:
        dataset: raw examples `{"image", "boxes" (n, 4) normalized cx,cy,w,h, "labels" (n,)}`.
        image_size: (H, W) (or an int) of the padded batch; each image is resized, keeping its aspect
            ratio, to fit inside it, then padded at the bottom and right.
        max_boxes: M, the fixed number of target slots (boxes past M are dropped: pick M >= the most
            objects in an image).
        batch_size: images per batch.
        num_classes: when given, labels >= num_classes raise an error.
        training: shuffle, random horizontal flip and random scale (a scale in `scale_range` of the
            fitted size: DETR's multi-scale training with a fixed padded size).
        horizontal_flip, scale_range, shuffle_buffer, seed: the augmentation settings.
        drop_remainder: drop the last partial batch; default True when training.

    Bad targets (boxes outside [0, 1], non-positive sizes, labels out of range) raise an
    InvalidArgumentError naming the problem when the dataset is iterated. An image without objects
    is valid (all its target slots are padding).

    Example:
    >>> raw = detection_dataset_from_arrays(np.zeros((4, 30, 40, 3), "uint8"),
    ...                                     np.full((4, 1, 4), 0.5, "float32"), np.zeros((4, 1)))
    >>> inputs, targets = next(iter(prepare_detection_dataset(raw, (32, 32), max_boxes=3, batch_size=2)))
    >>> tuple(inputs["images"].shape), tuple(inputs["pixel_mask"].shape), tuple(targets["boxes"].shape)
    ((2, 32, 32, 3), (2, 32, 32), (2, 3, 4))
    """
    image_size = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    if drop_remainder is None:
        drop_remainder = bool(training)
    min_scale, max_scale = (float(s) for s in scale_range)
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1 (the padded size is fixed); got {scale_range}.")
    generator = tf.random.Generator.from_seed(0 if seed is None else seed) if training else None

    def prepare(example):
        example = _validate_example(example, num_classes)
        image, boxes, labels = example["image"], example["boxes"], example["labels"]
        scale = 1.0
        if training:
            random = generator.uniform((2,))
            if horizontal_flip:
                flip = random[0] < 0.5
                image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
                boxes = tf.cond(flip, lambda: tf.concat([1.0 - boxes[:, :1], boxes[:, 1:]], -1), lambda: boxes)
            scale = min_scale + (max_scale - min_scale) * random[1]
        image, mask, boxes = _resize_and_pad(image, boxes, image_size, scale)
        return {"images": image, "pixel_mask": mask}, _pad_targets(boxes, tf.cast(labels, tf.int32), max_boxes)

    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # The random generator is shared state: map serially when training to stay deterministic.
    dataset = dataset.map(prepare, num_parallel_calls=None if training else tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
