"""Detection data: DETR's padded targets, and input pipelines on tf.data / tensorflow-datasets.

Targets take one fixed-size padded form so that shapes stay static under jit: `{"boxes": (B, M, 4)
normalized (cx, cy, w, h), "labels": (B, M) int32 in [0, num_classes), "valid": (B, M) float32, 1 for
a real box and 0 for padding}`. `pad_detection_targets` builds it from per-image lists and
`validate_detection_targets` checks it; the tf.data pipeline below pads and checks with the same code.

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

import keras
import numpy as np
import tensorflow as tf

from keras_vit.data.batching import check_batch_size
from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

# Corners may stick out of [0, 1] by this much (float rounding of pixel -> normalized boxes).
_CORNER_TOLERANCE = 1e-3


# ------------------------------------------------------------------------------------ targets
def pad_detection_targets(boxes, labels, max_boxes, num_classes=None):
    """Pads per-image boxes and labels into the fixed-size target dict that `DETRLoss` takes.

    Args:
        boxes: a list (one entry per image) of (n_i, 4) arrays, normalized (cx, cy, w, h).
        labels: a list of (n_i,) integer arrays of class indices.
        max_boxes: M, the padded number of boxes per image (>= every n_i).
        num_classes: when given, labels are checked to lie in [0, num_classes).

    Returns:
        `{"boxes": (B, M, 4) float32, "labels": (B, M) int32, "valid": (B, M) float32}`, checked by
        `validate_detection_targets`.

    Example:
    >>> t = pad_detection_targets([[[0.5, 0.5, 0.2, 0.2]], []], [[1], []], max_boxes=3)
    >>> t["boxes"].shape, t["valid"].tolist()
    ((2, 3, 4), [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    """
    return _pad_targets(boxes, labels, max_boxes, num_classes, drop_extra=False)


def _pad_targets(boxes, labels, max_boxes, num_classes, drop_extra):
    """`pad_detection_targets`; with `drop_extra`, boxes past `max_boxes` are dropped instead of raising."""
    if len(boxes) != len(labels):
        raise ValueError(f"Got boxes for {len(boxes)} images but labels for {len(labels)} images.")
    batch = len(boxes)
    out_boxes = np.zeros((batch, max_boxes, 4), "float32")
    out_labels = np.zeros((batch, max_boxes), "int32")
    out_valid = np.zeros((batch, max_boxes), "float32")
    for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        image_boxes = np.asarray(image_boxes, "float32").reshape(-1, 4)
        image_labels = np.asarray(image_labels).reshape(-1)
        if len(image_boxes) != len(image_labels):
            raise ValueError(
                f"Image {i} has {len(image_boxes)} boxes but {len(image_labels)} labels; "
                "give one label per box."
            )
        if len(image_boxes) > max_boxes and not drop_extra:
            raise ValueError(
                f"Image {i} has {len(image_boxes)} boxes, more than max_boxes={max_boxes}; "
                "raise max_boxes."
            )
        n = min(len(image_boxes), max_boxes)
        out_boxes[i, :n] = image_boxes[:n]
        out_labels[i, :n] = image_labels[:n]
        out_valid[i, :n] = 1.0
    targets = {"boxes": out_boxes, "labels": out_labels, "valid": out_valid}
    validate_detection_targets(targets, num_classes)
    return targets


def validate_detection_targets(targets, num_classes=None):
    """Raises a ValueError naming the first bad box or label of padded targets.

    Checks, for every box marked valid: (cx, cy, w, h) finite and in [0, 1], w > 0 and h > 0, the
    corners inside [0, 1]; labels in [0, num_classes). Padding entries are not checked.
    An image without any valid box is fine: all its queries learn "no object".

    Example:
    >>> validate_detection_targets({"boxes": np.array([[[0.5, 0.5, 0.1, 0.1]]]),
    ...     "labels": np.array([[2]]), "valid": np.array([[1.0]])}, num_classes=3)
    """
    boxes = np.asarray(keras.ops.convert_to_numpy(targets["boxes"]), "float64")
    labels = np.asarray(keras.ops.convert_to_numpy(targets["labels"]))
    valid = np.asarray(keras.ops.convert_to_numpy(targets["valid"]))
    check_target_arrays(boxes, labels, valid, num_classes)


TARGET_KEYS = ("boxes", "labels", "valid")


def check_detection_targets(targets, num_classes=None, num_images=None):
    """Checks DETR training targets given as host data (NumPy arrays, lists) before they reach the model.

    What `DETRModel.fit`, `evaluate`, `train_on_batch` and `test_on_batch` run on targets passed as
    arrays, so that a bad target raises one ValueError naming its image (counted in the targets as
    given) before any backend traces the training step. Checks that `targets` is a dict with
    "boxes", "labels" and "valid", that their shapes agree, that there is one entry per image
    (`num_images`, when given), then every real box and label (`validate_detection_targets`).

    Example:
    >>> check_detection_targets({"boxes": np.full((1, 2, 4), 0.25), "labels": np.zeros((1, 2))})
    Traceback (most recent call last):
    ...
    ValueError: DETR targets are missing 'valid' ...
    >>> check_detection_targets(pad_detection_targets([[[0.5, 0.5, 0.2, 0.2]]], [[0]], max_boxes=2), num_images=1)
    """
    if not isinstance(targets, dict):
        raise ValueError(
            f"DETR targets must be a dict {{'boxes': (B, M, 4), 'labels': (B, M), 'valid': (B, M)}}; got "
            f"{type(targets).__name__}. Build it with keras_vit.data.pad_detection_targets(boxes, labels, max_boxes)."
        )
    missing = [key for key in TARGET_KEYS if key not in targets]
    if missing:
        raise ValueError(
            f"DETR targets are missing {', '.join(repr(k) for k in missing)} (got keys {sorted(targets)}): pass "
            "{'boxes': (B, M, 4) normalized cx,cy,w,h, 'labels': (B, M) int, 'valid': (B, M) 1 for a real box "
            "and 0 for padding}; keras_vit.data.pad_detection_targets(boxes, labels, max_boxes) builds it from "
            "per-image lists."
        )
    arrays = {}
    for key in TARGET_KEYS:
        try:
            arrays[key] = np.asarray(keras.ops.convert_to_numpy(targets[key]))
        except (ValueError, TypeError) as error:  # ragged lists: one image with more boxes than another
            raise ValueError(
                f"DETR target {key!r} is not a rectangular array ({error}); pad every image to the same "
                "number of boxes with keras_vit.data.pad_detection_targets(boxes, labels, max_boxes)."
            ) from None
    boxes, labels, valid = arrays["boxes"], arrays["labels"], arrays["valid"]
    if boxes.ndim == 3 and labels.ndim == 2 and boxes.shape[:2] != labels.shape:
        raise ValueError(
            f"DETR target 'labels' {labels.shape} and 'boxes' {boxes.shape} disagree: give one label per box "
            "slot, (B, M) labels for (B, M, 4) boxes; pad_detection_targets(boxes, labels, max_boxes) pads both."
        )
    if num_images is not None and boxes.ndim >= 1 and boxes.shape[0] != num_images:
        raise ValueError(
            f"Got {num_images} images but targets for {boxes.shape[0]} images; give one target row per image."
        )
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and np.any((labels != np.round(labels)) & (valid > 0))):
        raise ValueError(f"DETR target 'labels' must be integer class indices; got {labels.dtype} values.")
    check_target_arrays(np.asarray(boxes, "float64"), labels, valid, num_classes)


def check_target_arrays(boxes, labels, valid, num_classes=None, rows_per_image=1):
    """`validate_detection_targets` on NumPy arrays: what the matcher's host callback runs.

    `rows_per_image`: how many consecutive rows repeat each image's targets (the set loss
    repeats them once per decoder layer); errors name the image, row // rows_per_image.

    Example:
    >>> check_target_arrays(np.array([[[0.5, 0.5, 0.1, 0.1]]]), np.array([[0]]), np.array([[1.0]]))
    """
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"Target boxes must have shape (batch, max_boxes, 4); got {boxes.shape}.")
    if labels.shape != boxes.shape[:2] or valid.shape != boxes.shape[:2]:
        raise ValueError(
            f"Target labels {labels.shape} and valid {valid.shape} must both have shape "
            f"{boxes.shape[:2]} (batch, max_boxes), like the boxes {boxes.shape}."
        )
    if not np.all((valid == 0) | (valid == 1)):
        raise ValueError("Target 'valid' must be 1 for a real box and 0 for padding; got other values.")
    real = valid > 0

    def where(bad):  # (image, box, row) of the first bad real box
        row, slot = (int(i) for i in np.argwhere(bad & real)[0])
        return row // rows_per_image, slot, row

    bad = ~np.isfinite(boxes).all(-1)
    if np.any(bad & real):
        b, m, row = where(bad)
        raise ValueError(
            f"Target box {boxes[row, m].tolist()} (image {b}, box {m}) is not finite (NaN or inf); fix or drop it "
            "(or mark it invalid) before training."
        )
    bad = (boxes < 0).any(-1) | (boxes > 1).any(-1)
    if np.any(bad & real):
        b, m, row = where(bad)
        raise ValueError(
            f"Target box {boxes[row, m].tolist()} (image {b}, box {m}) is outside [0, 1]: boxes must be "
            "normalized (cx, cy, w, h), i.e. pixel coordinates divided by the image width and height."
        )
    bad = (boxes[..., 2] <= 0) | (boxes[..., 3] <= 0)
    if np.any(bad & real):
        b, m, row = where(bad)
        raise ValueError(
            f"Target box {boxes[row, m].tolist()} (image {b}, box {m}) has a non-positive width or height; "
            "drop empty boxes (or mark them invalid) before training."
        )
    corners = box_cxcywh_to_xyxy(boxes)
    bad = (corners < -_CORNER_TOLERANCE).any(-1) | (corners > 1 + _CORNER_TOLERANCE).any(-1)
    if np.any(bad & real):
        b, m, row = where(bad)
        raise ValueError(
            f"Target box {boxes[row, m].tolist()} (image {b}, box {m}) extends outside the image: its "
            "corners cx -+ w/2, cy -+ h/2 must lie in [0, 1]. Clip boxes to the image first."
        )
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if np.any(bad & real):
            b, m, row = where(bad)
            raise ValueError(
                f"Target label {int(labels[row, m])} (image {b}, box {m}) is not in [0, {num_classes}): "
                f"labels are class indices below num_classes={num_classes} (no-object is implicit)."
            )


# ------------------------------------------------------------------------------------ sources
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
        per_image[image_id].append((x0, y0, x1, y1, to_label[int(ann["category_id"])]))
    if dropped:
        warnings.warn(f"{annotation_file}: dropped {dropped} boxes with no area inside their image.")
    records = []
    for image_id in sorted(images):
        path = os.path.join(image_dir, images[image_id]["file_name"])
        if not os.path.exists(path):
            raise ValueError(f"Image {image_id} of {annotation_file} is missing: {path} does not exist.")
        objects = np.asarray(per_image[image_id], "float64").reshape(-1, 5)
        size = np.array([images[image_id]["width"], images[image_id]["height"]] * 2, "float64")
        boxes = (box_xyxy_to_cxcywh(objects[:, :4]) / size).astype("float32")  # normalized
        records.append((path, boxes, objects[:, 4].astype("int32")))
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
        ymin, xmin, ymax, xmax = tf.unstack(tf.boolean_mask(objects["bbox"], keep), axis=-1)  # tfds: normalized
        boxes = box_xyxy_to_cxcywh(tf.stack([xmin, ymin, xmax, ymax], axis=-1))
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


def _flip_boxes(targets):
    """Padded normalized targets' boxes mirrored left-right (padding slots stay as they are)."""
    boxes = targets["boxes"]
    flipped = tf.concat([1.0 - boxes[:, :1], boxes[:, 1:]], -1)
    return tf.where(targets["valid"][:, None] > 0, flipped, boxes)


def _resize_and_pad(image, image_size, scale):
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
    return padded, mask


def _pad_example_targets(boxes, labels, max_boxes, num_classes, index):
    """One example's targets padded to `max_boxes` and checked, by `pad_detection_targets`' own code.

    `index` is the example's place in the raw dataset, which the error names (the check itself sees
    a batch of one, its "image 0").
    """

    def pad(image_boxes, image_labels, example_index):
        try:
            targets = _pad_targets([image_boxes], [image_labels], max_boxes, num_classes, drop_extra=True)
        except ValueError as error:
            message = str(error).replace("(image 0, ", "(").replace("Image 0 has", "it has")
            raise ValueError(f"Example {int(example_index)} of the dataset (counting from 0): {message}") from None
        return targets["boxes"][0], targets["labels"][0], targets["valid"][0]

    # A bad target raises a ValueError here, which tf.data reports as an InvalidArgumentError.
    boxes, labels, valid = tf.numpy_function(pad, [boxes, labels, index], [tf.float32, tf.int32, tf.float32])
    return {
        "boxes": tf.ensure_shape(boxes, (max_boxes, 4)),
        "labels": tf.ensure_shape(labels, (max_boxes,)),
        "valid": tf.ensure_shape(valid, (max_boxes,)),
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
        drop_remainder: drop the last partial batch; default True when training. Under `tf.distribute`
            or `keras.distribution` a batch that does not split over the replicas raises a ValueError
            that names the fix (see `keras_vit.data.batching.check_batch_size`).

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
    count = int(dataset.cardinality())
    check_batch_size(batch_size, num_examples=count if count >= 0 else None, drop_remainder=drop_remainder)
    min_scale, max_scale = (float(s) for s in scale_range)
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1 (the padded size is fixed); got {scale_range}.")
    seed = 0 if seed is None else int(seed)

    def prepare(index, example, draw_seed=None):
        # Pad and check the targets as given, before augmentation moves them.
        targets = _pad_example_targets(
            example["boxes"], tf.cast(example["labels"], tf.int32), max_boxes, num_classes, index
        )
        image, scale = example["image"], 1.0
        if training:
            random = tf.random.stateless_uniform((2,), seed=tf.stack([draw_seed, tf.cast(index, tf.int64)]))
            if horizontal_flip:
                flip = random[0] < 0.5
                image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
                targets["boxes"] = tf.cond(flip, lambda: _flip_boxes(targets), lambda: targets["boxes"])
            scale = min_scale + (max_scale - min_scale) * random[1]
        image, mask = _resize_and_pad(image, image_size, scale)
        return {"images": image, "pixel_mask": mask}, targets

    dataset = dataset.enumerate()  # numbered before shuffling, so that an error names the example
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # The augmentation draws are a pure function of (the example's number, a random int64 from a stream that
        # restarts with a new seed for every pass): no random state is shared between iterators, so an iterator
        # started and dropped (a peek at one batch, whose prefetch runs on in the background) cannot shift the
        # draws of the next pass by a timing-dependent amount, as a shared tf.random.Generator did.
        draw_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, draw_seeds).map(
            lambda numbered, draw_seed: prepare(*numbered, draw_seed), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
