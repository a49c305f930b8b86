"""COCO mean average precision (pycocotools) for detectors, as a function and a Keras callback."""

import contextlib
import io

import keras
import numpy as np

from keras_vit.models.detr.box_ops import box_area
from keras_vit.models.detr.detr_postprocess import (
    image_sizes_from_pixel_mask,
    post_process_detections,
    targets_to_pixel_boxes,
)

COCO_METRIC_NAMES = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError(
            "COCO evaluation needs pycocotools: pip install pycocotools (or keras-vit[detection])."
        ) from error
    return COCO, COCOeval


def coco_map(detections, ground_truths, image_sizes, num_classes):
    """COCO box metrics (pycocotools) of per-image detections against ground truth, in pixels.

    Args:
        detections: list of dicts with "boxes" (n, 4) corners (x0, y0, x1, y1), "scores", "labels".
        ground_truths: list of dicts with "boxes" (m, 4) corners and "labels".
        image_sizes: (N, 2) (height, width) of each image.
        num_classes: the number of classes (categories 0 .. num_classes - 1).

    Returns:
        A dict of the 12 COCO numbers (`COCO_METRIC_NAMES`: "mAP" = AP@[.5:.95], "mAP50", ...),
        each in [0, 1]; -1 where COCO has nothing to measure (e.g. no large objects).

    Example:
    >>> gt = [{"boxes": np.array([[10.0, 10.0, 50.0, 40.0]]), "labels": np.array([0])}]
    >>> det = [{"boxes": np.array([[10.0, 10.0, 50.0, 40.0]]), "scores": np.array([0.9]),
    ...         "labels": np.array([0])}]
    >>> round(coco_map(det, gt, [[64, 64]], num_classes=1)["mAP50"], 3)
    1.0
    """
    COCO, COCOeval = _pycocotools()
    if not (len(detections) == len(ground_truths) == len(image_sizes)):
        raise ValueError(
            f"Got {len(detections)} detections, {len(ground_truths)} ground truths and "
            f"{len(image_sizes)} image sizes; give one of each per image."
        )
    images, annotations, results = [], [], []
    for image_id, (det, gt, size) in enumerate(zip(detections, ground_truths, image_sizes), start=1):
        images.append({"id": image_id, "height": int(size[0]), "width": int(size[1])})
        for box, label in zip(np.asarray(gt["boxes"], "float64").reshape(-1, 4), np.asarray(gt["labels"]).reshape(-1)):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,  # COCO category ids start at 1
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(box_area(box)),
                    "iscrowd": 0,
                }
            )
        boxes = np.asarray(det["boxes"]).reshape(-1, 4)
        for box, score, label in zip(boxes, np.asarray(det["scores"]).reshape(-1), np.asarray(det["labels"]).reshape(-1)):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append(
                {"image_id": image_id, "category_id": int(label) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
            )
    if not annotations or not results:
        # pycocotools cannot evaluate an empty set; nothing found (or nothing to find) scores 0.
        return {name: (0.0 if annotations else -1.0) for name in COCO_METRIC_NAMES}
    categories = [{"id": c + 1, "name": str(c)} for c in range(int(num_classes))]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations, "categories": categories}
        ground.createIndex()
        predicted = ground.loadRes(results)
        evaluation = COCOeval(ground, predicted, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluation.stats)}


def _split_batch(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("The validation data must yield (inputs, targets) batches.")
    return batch[0], batch[1]


def evaluate_coco(model, dataset, num_classes=None, threshold=0.0, max_batches=None):
    """Runs a detector over `(inputs, targets)` batches and returns its COCO metrics (`coco_map`).

    `inputs` is an image batch or `{"images", "pixel_mask"}`; targets are the padded normalized
    targets (`boxes`, `labels`, `valid`). Boxes are compared in the pixels of each image's real
    (unpadded) part, found from the pixel mask.

    Example:
    >>> # metrics = evaluate_coco(detr_model, validation_dataset)
    >>> # metrics["mAP"], metrics["mAP50"]
    """
    num_classes = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    if num_classes is None:
        raise ValueError("evaluate_coco: pass num_classes (the model has no num_classes attribute).")
    detections, ground_truths, sizes = [], [], []
    if hasattr(dataset, "as_numpy_iterator"):  # tf.data: NumPy batches feed every backend
        dataset = dataset.as_numpy_iterator()
    for index, batch in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        inputs, targets = _split_batch(batch)
        if isinstance(inputs, dict) and "pixel_mask" in inputs:
            image_sizes = image_sizes_from_pixel_mask(inputs["pixel_mask"])
        else:
            images = inputs["images"] if isinstance(inputs, dict) else inputs
            batch_size, height, width = np.shape(images)[:3]
            image_sizes = np.tile([[height, width]], (batch_size, 1))
        outputs = model.predict_on_batch(inputs)
        # A detector with its own scoring (Conditional DETR's sigmoids) says how to read its outputs.
        post_process = getattr(model, "post_process_detections", post_process_detections)
        detections += post_process(outputs, image_sizes, threshold=threshold)
        ground_truths += targets_to_pixel_boxes(targets, image_sizes)
        sizes += list(image_sizes)
    if not sizes:
        raise ValueError("evaluate_coco: the validation data yielded no batch.")
    return coco_map(detections, ground_truths, sizes, num_classes)


class COCOMetricsCallback(keras.callbacks.Callback):
    """Computes COCO mAP on validation data at the end of every `frequency` epochs of `fit()`.

    Adds `val_mAP` (AP@[.5:.95]), `val_mAP50` and `val_mAP75` to the epoch's logs, so they show in
    the progress bar and in `History`, and can drive `ModelCheckpoint` / `EarlyStopping`.

    Args:
        validation_data: an iterable (e.g. a `tf.data.Dataset`) of `(inputs, targets)` batches.
        num_classes: defaults to `model.num_classes`.
        frequency: evaluate after every `frequency`-th epoch; other epochs log nothing.
        max_batches: evaluate on at most this many batches.

    Example:
    >>> # model.fit(train_ds, epochs=10, callbacks=[COCOMetricsCallback(val_ds)])
    """

    def __init__(self, validation_data, num_classes=None, frequency=1, max_batches=None):
        super().__init__()
        self.validation_data = validation_data
        self.num_classes = num_classes
        self.frequency = int(frequency)
        self.max_batches = max_batches
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency:
            return
        metrics = evaluate_coco(self.model, self.validation_data, self.num_classes, max_batches=self.max_batches)
        self.history.append({"epoch": epoch + 1, **metrics})
        if logs is not None:
            for name in ("mAP", "mAP50", "mAP75"):
                logs["val_" + name] = metrics[name]
