"""Box formats and overlaps for DETR: the one place that converts (cx, cy, w, h) <-> (x0, y0, x1, y1).

DETR predicts and trains on normalized centers and sizes (cx, cy, w, h); overlaps, COCO and drawing
use corners (x0, y0, x1, y1). The set loss, the matcher, post-processing, the target checks and the
data pipelines all convert through these functions.

The conversions and `box_area` keep the library of their input: NumPy arrays stay NumPy (host code:
post-processing, target checks), TensorFlow tensors stay TensorFlow (tf.data pipelines, whatever the
Keras backend), anything else goes through `keras.ops`. The IoUs use `keras.ops` (the loss and the
matcher, on the device).
"""

import numpy as np
from keras import ops


def _stack_last(parts, like):
    """Stacks `parts` along a new last axis with the array library of `like`."""
    if isinstance(like, np.ndarray):
        return np.stack(parts, axis=-1)
    if type(like).__module__.startswith("tensorflow"):
        import tensorflow as tf  # a tf.data graph tensor, also under the JAX or PyTorch backend

        return tf.stack(parts, axis=-1)
    return ops.stack(parts, axis=-1)


def _as_array(boxes):
    return np.asarray(boxes) if isinstance(boxes, (list, tuple)) else boxes


def box_cxcywh_to_xyxy(boxes):
    """(cx, cy, w, h) -> corners (x0, y0, x1, y1) along the last axis.

    Example:
    >>> box_cxcywh_to_xyxy(np.array([[0.5, 0.5, 0.2, 0.4]])).tolist()
    [[0.4, 0.3, 0.6, 0.7]]
    """
    boxes = _as_array(boxes)
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return _stack_last([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], boxes)


def box_xyxy_to_cxcywh(boxes):
    """Corners (x0, y0, x1, y1) -> (cx, cy, w, h) along the last axis.

    Example:
    >>> box_xyxy_to_cxcywh(np.array([[10.0, 20.0, 30.0, 60.0]])).tolist()
    [[20.0, 40.0, 20.0, 40.0]]
    """
    boxes = _as_array(boxes)
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    return _stack_last([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], boxes)


def box_area(boxes):
    """Area of corner boxes (x0, y0, x1, y1): (..., 4) -> (...).

    Example:
    >>> box_area(np.array([[10.0, 20.0, 30.0, 60.0]])).tolist()
    [800.0]
    """
    boxes = _as_array(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pair_up(boxes1, boxes2, pairwise):
    boxes1 = ops.convert_to_tensor(boxes1)
    boxes2 = ops.convert_to_tensor(boxes2)
    if pairwise:
        boxes1 = ops.expand_dims(boxes1, -2)  # (..., N, 1, 4)
        boxes2 = ops.expand_dims(boxes2, -3)  # (..., 1, M, 4)
    return boxes1, boxes2


def _iou_and_union(boxes1, boxes2):
    inter_wh = ops.maximum(
        ops.minimum(boxes1[..., 2:], boxes2[..., 2:]) - ops.maximum(boxes1[..., :2], boxes2[..., :2]), 0.0
    )
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter / union, union


def box_iou(boxes1, boxes2, pairwise=True):
    """IoU of corner boxes (x0, y0, x1, y1), with `keras.ops`.

    `pairwise=True`: boxes1 (..., N, 4) and boxes2 (..., M, 4) -> (..., N, M).
    `pairwise=False`: boxes of equal shape (..., 4) -> (...,).

    Example:
    >>> a = np.array([[0.0, 0.0, 2.0, 1.0]], "float32")
    >>> b = np.array([[1.0, 0.0, 3.0, 1.0]], "float32")
    >>> round(float(ops.convert_to_numpy(box_iou(a, b))[0, 0]), 4)
    0.3333
    """
    iou, _ = _iou_and_union(*_pair_up(boxes1, boxes2, pairwise))
    return iou


def generalized_box_iou(boxes1, boxes2, pairwise=True):
    """Generalized IoU of corner boxes (x0, y0, x1, y1), with `keras.ops`.

    IoU minus the part of the smallest enclosing box that the union does not cover, in [-1, 1].
    `pairwise` as in `box_iou`. Boxes must have a positive area (GIoU is undefined otherwise).

    Example:
    >>> b = np.array([[0.0, 0.0, 1.0, 1.0]], "float32")
    >>> float(ops.convert_to_numpy(generalized_box_iou(b, b))[0, 0])
    1.0
    """
    boxes1, boxes2 = _pair_up(boxes1, boxes2, pairwise)
    iou, union = _iou_and_union(boxes1, boxes2)
    hull_wh = ops.maximum(
        ops.maximum(boxes1[..., 2:], boxes2[..., 2:]) - ops.minimum(boxes1[..., :2], boxes2[..., :2]), 0.0
    )
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull
