"""DETR post-processing: from model outputs to boxes in pixels with scores and labels.

What `predict` users and the COCO metrics (`keras_vit.training.coco_callback`) both run, on the host
with NumPy.
"""

import keras
import numpy as np

from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy


def image_sizes_from_pixel_mask(pixel_mask):
    """(height, width) of the real pixels of each padded image, from its (B, H, W) pixel mask.

    Images are padded at the bottom and right, so the real part is the rows and columns that hold
    at least one real pixel.

    Example:
    >>> mask = np.zeros((1, 4, 6)); mask[0, :3, :5] = 1
    >>> image_sizes_from_pixel_mask(mask).tolist()
    [[3, 5]]
    """
    mask = np.asarray(keras.ops.convert_to_numpy(pixel_mask)) > 0
    if mask.ndim != 3:
        raise ValueError(f"pixel_mask must have shape (batch, height, width); got {mask.shape}.")
    heights = mask.any(axis=2).sum(axis=1)
    widths = mask.any(axis=1).sum(axis=1)
    return np.stack([heights, widths], axis=-1).astype("int64")


def post_process_detections(outputs, image_sizes, threshold=0.5):
    """Turns DETR outputs into per-image detections in pixel coordinates.

    As the reference post-processing: softmax over classes, drop the no-object column, take each
    query's best class and its probability as the score, keep queries scoring above `threshold`,
    and turn normalized (cx, cy, w, h) into corners (x0, y0, x1, y1) scaled by each image's size.

    Args:
        outputs: the model's output dict with "logits" (B, Q, C + 1) and "pred_boxes" (B, Q, 4).
        image_sizes: (B, 2) (height, width) of each image, in pixels; the boxes are scaled to it.
        threshold: minimum score kept (0 keeps every query, as COCO evaluation wants).

    Returns:
        A list of B dicts with "boxes" (n, 4) float32 (x0, y0, x1, y1) pixels, "scores" (n,) float32
        and "labels" (n,) int64 class indices, sorted by decreasing score.

    Example:
    >>> logits = np.array([[[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]], "float32")
    >>> boxes = np.array([[[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.1]]], "float32")
    >>> det = post_process_detections({"logits": logits, "pred_boxes": boxes}, [[100, 200]])
    >>> det[0]["boxes"].tolist(), det[0]["labels"].tolist()
    ([[50.0, 25.0, 150.0, 75.0]], [0])
    """
    logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), "float32")
    boxes = np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), "float32")
    image_sizes = np.asarray(keras.ops.convert_to_numpy(image_sizes), "float32").reshape(-1, 2)
    if len(image_sizes) != len(logits):
        raise ValueError(f"Got {len(image_sizes)} image sizes for a batch of {len(logits)} images.")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    object_probs = probs[..., :-1]
    scores = object_probs.max(axis=-1)
    labels = object_probs.argmax(axis=-1)
    corners = box_cxcywh_to_xyxy(boxes)
    results = []
    for i, (height, width) in enumerate(image_sizes):
        keep = np.flatnonzero(scores[i] > threshold)
        keep = keep[np.argsort(-scores[i][keep], kind="stable")]
        scale = np.array([width, height, width, height], "float32")
        results.append(
            {
                "boxes": (corners[i][keep] * scale).astype("float32"),
                "scores": scores[i][keep].astype("float32"),
                "labels": labels[i][keep].astype("int64"),
            }
        )
    return results


def targets_to_pixel_boxes(targets, image_sizes):
    """Padded normalized targets -> per-image {"boxes": (n, 4) corners in pixels, "labels": (n,)}.

    Example:
    >>> t = {"boxes": np.array([[[0.5, 0.5, 0.5, 0.5]]]), "labels": np.array([[2]]),
    ...      "valid": np.array([[1.0]])}
    >>> targets_to_pixel_boxes(t, [[10, 20]])[0]["boxes"].tolist()
    [[5.0, 2.5, 15.0, 7.5]]
    """
    boxes = np.asarray(keras.ops.convert_to_numpy(targets["boxes"]), "float32")
    labels = np.asarray(keras.ops.convert_to_numpy(targets["labels"])).astype("int64")
    valid = np.asarray(keras.ops.convert_to_numpy(targets["valid"])) > 0
    image_sizes = np.asarray(keras.ops.convert_to_numpy(image_sizes), "float32").reshape(-1, 2)
    results = []
    for i, (height, width) in enumerate(image_sizes):
        corners = box_cxcywh_to_xyxy(boxes[i][valid[i]]).reshape(-1, 4)
        scale = np.array([width, height, width, height], "float32")
        results.append({"boxes": corners * scale, "labels": labels[i][valid[i]]})
    return results
