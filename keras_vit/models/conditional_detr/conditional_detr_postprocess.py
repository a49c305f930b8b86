"""Conditional DETR post-processing: from sigmoid logits and boxes to detections in pixels.

As the reference (the original repository's `PostProcess` and transformers'
`post_process_object_detection` for Conditional DETR): sigmoid scores of every (query, class)
pair, the `top_k` best pairs of each image (a query may give several classes), those above
`threshold` kept, boxes to corners scaled by each image's size. On the host with NumPy; the
output format is DETR's `post_process_detections`'.
"""

import keras
import numpy as np

from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy


def post_process_conditional_detections(outputs, image_sizes, threshold=0.5, top_k=100):
    """Turns Conditional DETR outputs into per-image detections in pixel coordinates.

    Args:
        outputs: the model's output dict with "logits" (B, Q, C) sigmoid logits and
            "pred_boxes" (B, Q, 4) normalized (cx, cy, w, h).
        image_sizes: (B, 2) (height, width) of each image, in pixels.
        threshold: minimum score kept (0 keeps all `top_k`, as COCO evaluation wants).
        top_k: how many (query, class) pairs are ranked per image (100 as the reference).

    Returns:
        A list of B dicts with "boxes" (n, 4) float32 (x0, y0, x1, y1) pixels, "scores" (n,)
        float32 and "labels" (n,) int64, sorted by decreasing score.

    Example:
    >>> logits = np.full((1, 2, 3), -9.0, "float32"); logits[0, 1, 2] = 4.0
    >>> boxes = np.array([[[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.1]]], "float32")
    >>> det = post_process_conditional_detections({"logits": logits, "pred_boxes": boxes}, [[100, 200]])
    >>> det[0]["boxes"].round(3).tolist(), det[0]["labels"].tolist(), round(float(det[0]["scores"][0]), 3)
    ([[30.0, 15.0, 50.0, 25.0]], [2], 0.982)
    """
    logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), "float32")
    boxes = np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), "float32")
    image_sizes = np.asarray(keras.ops.convert_to_numpy(image_sizes), "float32").reshape(-1, 2)
    if len(image_sizes) != len(logits):
        raise ValueError(f"Got {len(image_sizes)} image sizes for a batch of {len(logits)} images.")
    batch, num_queries, num_classes = logits.shape
    probs = (1.0 / (1.0 + np.exp(-logits))).reshape(batch, -1)
    k = min(int(top_k), probs.shape[1])
    corners = box_cxcywh_to_xyxy(boxes)
    results = []
    for i, (height, width) in enumerate(image_sizes):
        best = np.argsort(-probs[i], kind="stable")[:k]
        best = best[probs[i][best] > threshold]
        scale = np.array([width, height, width, height], "float32")
        results.append(
            {
                "boxes": (corners[i][best // num_classes] * scale).astype("float32"),
                "scores": probs[i][best].astype("float32"),
                "labels": (best % num_classes).astype("int64"),
            }
        )
    return results
