"""DETR's set loss: Hungarian matching of predictions to targets, then classification and box losses.

Targets come in a fixed-size padded form so that shapes stay static under jit:
`{"boxes": (B, M, 4) normalized (cx, cy, w, h), "labels": (B, M) int32 in [0, num_classes),
"valid": (B, M) float32, 1 for a real box and 0 for padding}`. `pad_detection_targets` builds it
from per-image lists.

The matching itself (`scipy.optimize.linear_sum_assignment`) runs on the host: through
`tf.numpy_function` on TensorFlow, `jax.pure_callback` on JAX, and directly on PyTorch, so the loss
works inside compiled train steps (`tf.function`, `jax.jit`) on every backend. The cost matrices
are computed with `keras.ops` on the device; only the (B, Q, M) costs travel to the host.
XLA cannot compile a host callback: on TensorFlow, train with `jit_compile=False`.
"""

import keras
import numpy as np
from keras import ops
from scipy.optimize import linear_sum_assignment

# Corners may stick out of [0, 1] by this much (float rounding of pixel -> normalized boxes).
_CORNER_TOLERANCE = 1e-3
_LARGEST = float(np.finfo(np.float32).max)


def pad_detection_targets(boxes, labels, max_boxes, num_classes=None):
    """Pads per-image boxes and labels into the fixed-size target dict that `DETRLoss` takes.

    Args:
        boxes: a list (one entry per image) of (n_i, 4) arrays, normalized (cx, cy, w, h).
        labels: a list of (n_i,) integer arrays of class indices.
        max_boxes: M, the padded number of boxes per image (>= every n_i).
        num_classes: when given, labels are checked to lie in [0, num_classes).

    Returns:
        `{"boxes": (B, M, 4) float32, "labels": (B, M) int32, "valid": (B, M) float32}`.

    Example:
    >>> t = pad_detection_targets([[[0.5, 0.5, 0.2, 0.2]], []], [[1], []], max_boxes=3)
    >>> t["boxes"].shape, t["valid"].tolist()
    ((2, 3, 4), [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    """
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
        if len(image_boxes) > max_boxes:
            raise ValueError(
                f"Image {i} has {len(image_boxes)} boxes, more than max_boxes={max_boxes}; "
                "raise max_boxes."
            )
        n = len(image_boxes)
        out_boxes[i, :n] = image_boxes
        out_labels[i, :n] = image_labels
        out_valid[i, :n] = 1.0
    targets = {"boxes": out_boxes, "labels": out_labels, "valid": out_valid}
    validate_detection_targets(targets, num_classes)
    return targets


def validate_detection_targets(targets, num_classes=None):
    """Raises a ValueError naming the first bad box or label of padded targets (NumPy values).

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
    _check_targets(boxes, labels, valid, num_classes)


def _check_targets(boxes, labels, valid, num_classes):
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
    where = lambda bad: tuple(int(i) for i in np.argwhere(bad & real)[0])  # noqa: E731
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    bad = ~np.isfinite(boxes).all(-1) | (boxes < 0).any(-1) | (boxes > 1).any(-1)
    if np.any(bad & real):
        b, m = where(bad)
        raise ValueError(
            f"Target box {boxes[b, m].tolist()} (image {b}, box {m}) is outside [0, 1]: boxes must be "
            "normalized (cx, cy, w, h), i.e. pixel coordinates divided by the image width and height."
        )
    bad = (w <= 0) | (h <= 0)
    if np.any(bad & real):
        b, m = where(bad)
        raise ValueError(
            f"Target box {boxes[b, m].tolist()} (image {b}, box {m}) has a non-positive width or height; "
            "drop empty boxes (or mark them invalid) before training."
        )
    tol = _CORNER_TOLERANCE
    bad = (cx - w / 2 < -tol) | (cy - h / 2 < -tol) | (cx + w / 2 > 1 + tol) | (cy + h / 2 > 1 + tol)
    if np.any(bad & real):
        b, m = where(bad)
        raise ValueError(
            f"Target box {boxes[b, m].tolist()} (image {b}, box {m}) extends outside the image: its "
            "corners cx -+ w/2, cy -+ h/2 must lie in [0, 1]. Clip boxes to the image first."
        )
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if np.any(bad & real):
            b, m = where(bad)
            raise ValueError(
                f"Target label {int(labels[b, m])} (image {b}, box {m}) is not in [0, {num_classes}): "
                f"labels are class indices below num_classes={num_classes} (no-object is implicit)."
            )


def box_cxcywh_to_xyxy(boxes):
    """(cx, cy, w, h) -> (x0, y0, x1, y1) along the last axis, with `keras.ops`.

    Example:
    >>> box_cxcywh_to_xyxy(np.array([[0.5, 0.5, 0.2, 0.4]], "float32")).tolist()
    [[0.4000000059604645, 0.30000001192092896, 0.6000000238418579, 0.699999988079071]]
    """
    boxes = ops.convert_to_tensor(boxes)
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def generalized_box_iou(boxes1, boxes2, pairwise=True):
    """Generalized IoU of corner boxes (x0, y0, x1, y1), with `keras.ops`.

    `pairwise=True`: boxes1 (..., N, 4) and boxes2 (..., M, 4) -> (..., N, M).
    `pairwise=False`: boxes of equal shape (..., 4) -> (...,).
    Boxes must have a positive area (GIoU is undefined otherwise).

    Example:
    >>> b = np.array([[0.0, 0.0, 1.0, 1.0]], "float32")
    >>> float(generalized_box_iou(b, b)[0, 0])
    1.0
    """
    boxes1 = ops.convert_to_tensor(boxes1)
    boxes2 = ops.convert_to_tensor(boxes2)
    if pairwise:
        boxes1 = ops.expand_dims(boxes1, -2)  # (..., N, 1, 4)
        boxes2 = ops.expand_dims(boxes2, -3)  # (..., 1, M, 4)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    inter_wh = ops.maximum(
        ops.minimum(boxes1[..., 2:], boxes2[..., 2:]) - ops.maximum(boxes1[..., :2], boxes2[..., :2]), 0.0
    )
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / union
    hull_wh = ops.maximum(
        ops.maximum(boxes1[..., 2:], boxes2[..., 2:]) - ops.minimum(boxes1[..., :2], boxes2[..., :2]), 0.0
    )
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def _assign_on_host(cost, valid, labels, boxes, num_classes):
    """NumPy: per image, the Hungarian assignment of valid target slots to queries.

    Returns (N, M) int32: the query matched to each target slot, -1 for padding (or a target left
    unmatched because there are fewer queries than targets).
    """
    cost = np.asarray(cost, "float64")
    valid = np.asarray(valid)
    _check_targets(np.asarray(boxes, "float64"), np.asarray(labels), valid, num_classes)
    assignment = np.full(valid.shape, -1, "int32")
    for n in range(cost.shape[0]):
        columns = np.flatnonzero(valid[n] > 0)
        if columns.size == 0:
            continue
        # As the reference does: non-finite costs (a diverging model) become the largest float, so
        # such a query is matched only when nothing else can be.
        image_cost = np.nan_to_num(cost[n][:, columns], nan=_LARGEST, posinf=_LARGEST, neginf=_LARGEST)
        query_index, column_index = linear_sum_assignment(image_cost)
        assignment[n, columns[column_index]] = query_index
    return assignment


def _host_assignment(cost, valid, labels, boxes, num_classes):
    """Runs `_assign_on_host` from inside a (possibly compiled) computation on any backend."""
    cost, valid, labels, boxes = (ops.stop_gradient(ops.convert_to_tensor(x)) for x in (cost, valid, labels, boxes))
    max_boxes = valid.shape[-1]
    host = lambda *arrays: _assign_on_host(*arrays, num_classes=num_classes)  # noqa: E731
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        out = tf.numpy_function(host, [cost, valid, labels, boxes], tf.int32, stateful=False)
        out.set_shape([cost.shape[0], max_boxes])
        return out
    if backend == "jax":
        import jax

        shape = jax.ShapeDtypeStruct((cost.shape[0], max_boxes), "int32")
        return jax.pure_callback(host, shape, cost, valid, labels, boxes, vmap_method="sequential")
    arrays = [ops.convert_to_numpy(x) for x in (cost, valid, labels, boxes)]
    return ops.convert_to_tensor(host(*arrays), dtype="int32")


@keras.saving.register_keras_serializable(package="keras_vit")
class HungarianMatcher:
    """Matches DETR's predictions to targets one-to-one, minimizing DETR's matching cost.

    cost = cost_class * (-p(target class)) + cost_bbox * L1(boxes) + cost_giou * (-GIoU(boxes)),
    solved per image with `scipy.optimize.linear_sum_assignment` on the host.

    Call with `logits` (N, Q, C + 1), `pred_boxes` (N, Q, 4) and padded targets; returns (N, M)
    int32, the query matched to each target slot (-1 for padding).

    Example:
    >>> matcher = HungarianMatcher()
    >>> logits = np.zeros((1, 3, 3), "float32")
    >>> pred = np.array([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]], "float32")
    >>> targets = pad_detection_targets([[[0.8, 0.8, 0.1, 0.1]]], [[1]], max_boxes=2)
    >>> np.asarray(matcher(logits, pred, targets)).tolist()
    [[2, -1]]
    """

    def __init__(self, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0, num_classes=None):
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher needs at least one non-zero cost.")
        self.cost_class = float(cost_class)
        self.cost_bbox = float(cost_bbox)
        self.cost_giou = float(cost_giou)
        self.num_classes = num_classes

    def cost_matrix(self, logits, pred_boxes, target_labels, target_boxes):
        """The (N, Q, M) matching cost, with `keras.ops`."""
        logits = ops.cast(logits, "float32")
        pred_boxes = ops.cast(pred_boxes, "float32")
        target_boxes = ops.cast(target_boxes, "float32")
        probs = ops.softmax(logits, axis=-1)
        target_onehot = ops.one_hot(ops.cast(target_labels, "int32"), ops.shape(logits)[-1])
        cost_class = -ops.einsum("nqc,nmc->nqm", probs, target_onehot)
        cost_bbox = ops.sum(
            ops.abs(ops.expand_dims(pred_boxes, 2) - ops.expand_dims(target_boxes, 1)), axis=-1
        )
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    def __call__(self, logits, pred_boxes, targets):
        if keras.backend.backend() == "jax" and not _is_jax_tracing((logits, pred_boxes, targets)):
            import jax  # eager JAX: compile once rather than op by op

            if getattr(self, "_jitted", None) is None:
                self._jitted = jax.jit(self._match)
            return self._jitted(logits, pred_boxes, dict(targets))
        return self._match(logits, pred_boxes, targets)

    def _match(self, logits, pred_boxes, targets):
        raw_labels = ops.cast(targets["labels"], "int32")
        valid = ops.cast(targets["valid"], "float32")
        boxes = _safe_target_boxes(ops.cast(targets["boxes"], "float32"), valid)
        labels = _safe_labels(raw_labels, valid, ops.shape(logits)[-1])
        cost = self.cost_matrix(logits, pred_boxes, labels, boxes)
        # The host checks the targets as given, not the stand-ins for padding.
        return _host_assignment(cost, valid, raw_labels, targets["boxes"], self.num_classes)

    def get_config(self):
        return {
            "cost_class": self.cost_class,
            "cost_bbox": self.cost_bbox,
            "cost_giou": self.cost_giou,
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _safe_labels(labels, valid, num_logits):
    # Padding slots may hold any label; out-of-range values would break one_hot on some backends
    # before the host check can name them, so the device side only sees labels in range.
    return ops.clip(ops.where(valid > 0, labels, 0), 0, num_logits - 1)


def _safe_target_boxes(boxes, valid):
    # Padding slots hold arbitrary (often all-zero) boxes; a zero-area box makes GIoU 0/0 = NaN, and
    # NaN * 0 is still NaN in the gradient. Give padding a harmless full-image box instead.
    placeholder = ops.convert_to_tensor(np.array([0.5, 0.5, 1.0, 1.0], "float32"))
    return ops.where(ops.expand_dims(valid, -1) > 0, boxes, placeholder)


def _is_jax_tracing(structure):
    import jax

    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(structure))


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRLoss:
    """DETR's set loss: Hungarian matching, weighted cross-entropy, L1 and GIoU box losses.

    `loss_fn(y_true, y_pred)` returns a dict of scalars:
    - "loss": the weighted total, ce_weight * CE + bbox_weight * L1 + giou_weight * (1 - GIoU),
      summed over the final decoder layer and, with `auxiliary_loss=True` and "aux_logits" /
      "aux_pred_boxes" in y_pred, every earlier decoder layer (each matched on its own).
    - "loss_ce", "loss_bbox", "loss_giou": the unweighted terms of the final layer.
    The cross-entropy is a weighted mean over all queries, the no-object class weighted `eos_coef`;
    L1 and GIoU are summed over matched boxes and divided by the number of target boxes (at least 1),
    as in the reference implementations.

    Args:
        num_classes: number of object classes (the model's logits have num_classes + 1).
        matcher: a `HungarianMatcher`; by default costs class 1, L1 5, GIoU 2.
        eos_coef: weight of the no-object class in the cross-entropy.
        ce_weight, bbox_weight, giou_weight: weights of the terms in "loss".
        auxiliary_loss: add the loss of every intermediate decoder layer, when the model outputs them.

    y_true: `{"boxes": (B, M, 4), "labels": (B, M), "valid": (B, M)}` (see `pad_detection_targets`);
    y_pred: `{"logits": (B, Q, C + 1), "pred_boxes": (B, Q, 4)}`, optionally with
    `"aux_logits": (B, L - 1, Q, C + 1)` and `"aux_pred_boxes": (B, L - 1, Q, 4)`.
    An image with no valid target is fine: all its queries are trained towards no-object.

    Example:
    >>> loss_fn = DETRLoss(num_classes=2)
    >>> y_true = pad_detection_targets([[[0.5, 0.5, 0.4, 0.4]], []], [[1], []], max_boxes=2)
    >>> y_pred = {"logits": np.zeros((2, 4, 3), "float32"),
    ...           "pred_boxes": np.full((2, 4, 4), 0.5, "float32")}
    >>> round(float(loss_fn(y_true, y_pred)["loss_ce"]), 4)
    1.0986
    """

    def __init__(
        self,
        num_classes,
        matcher=None,
        eos_coef=0.1,
        ce_weight=1.0,
        bbox_weight=5.0,
        giou_weight=2.0,
        auxiliary_loss=True,
    ):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}.")
        self.num_classes = int(num_classes)
        if isinstance(matcher, dict):
            matcher = keras.saving.deserialize_keras_object(matcher)
        self.matcher = matcher if matcher is not None else HungarianMatcher(num_classes=self.num_classes)
        if self.matcher.num_classes is None:
            self.matcher.num_classes = self.num_classes
        self.eos_coef = float(eos_coef)
        self.ce_weight = float(ce_weight)
        self.bbox_weight = float(bbox_weight)
        self.giou_weight = float(giou_weight)
        self.auxiliary_loss = bool(auxiliary_loss)

    def _layer_outputs(self, y_pred):
        """Logits (B, L, Q, C+1) and boxes (B, L, Q, 4) of the decoder layers, the final one last."""
        logits = ops.expand_dims(ops.cast(y_pred["logits"], "float32"), 1)
        boxes = ops.expand_dims(ops.cast(y_pred["pred_boxes"], "float32"), 1)
        if self.auxiliary_loss and "aux_logits" in y_pred and "aux_pred_boxes" in y_pred:
            logits = ops.concatenate([ops.cast(y_pred["aux_logits"], "float32"), logits], axis=1)
            boxes = ops.concatenate([ops.cast(y_pred["aux_pred_boxes"], "float32"), boxes], axis=1)
        return logits, boxes

    def __call__(self, y_true, y_pred):
        if keras.backend.backend() == "jax" and not _is_jax_tracing((y_true, y_pred)):
            # Eager JAX runs op by op, compiling each for every new shape (seconds per call):
            # compile the whole loss once instead.
            import jax

            if getattr(self, "_jitted", None) is None:
                self._jitted = jax.jit(self.compute)
            return self._jitted(dict(y_true), dict(y_pred))
        return self.compute(y_true, y_pred)

    def compute(self, y_true, y_pred):
        """The loss dict, traced op by op (what `__call__` runs inside a compiled train step)."""
        logits, pred_boxes = self._layer_outputs(y_pred)
        expected = self.num_classes + 1
        if logits.shape[-1] is not None and logits.shape[-1] != expected:
            raise ValueError(
                f"The model predicts {logits.shape[-1]} classes but DETRLoss(num_classes={self.num_classes}) "
                f"expects num_classes + 1 = {expected} (no-object last)."
            )
        num_layers, num_queries = logits.shape[1], logits.shape[2]
        valid = ops.cast(y_true["valid"], "float32")
        labels = ops.cast(y_true["labels"], "int32")
        raw_boxes = ops.cast(y_true["boxes"], "float32")
        num_boxes = ops.maximum(ops.sum(valid), 1.0)

        # Every decoder layer is matched and scored on its own: fold layers into the batch,
        # image-major, and repeat each image's targets once per layer.
        flat = lambda x: ops.reshape(x, (-1,) + tuple(x.shape[2:]))  # noqa: E731
        logits, pred_boxes = flat(logits), flat(pred_boxes)
        repeat = lambda x: ops.repeat(x, num_layers, axis=0)  # noqa: E731
        valid, raw_labels, raw_boxes = repeat(valid), repeat(labels), repeat(raw_boxes)
        target_boxes = _safe_target_boxes(raw_boxes, valid)
        labels = _safe_labels(raw_labels, valid, self.num_classes + 1)

        cost = self.matcher.cost_matrix(logits, pred_boxes, labels, target_boxes)
        assignment = _host_assignment(cost, valid, raw_labels, raw_boxes, self.matcher.num_classes)

        # Gathers as one-hot products: static shapes, exportable, differentiable in pred_boxes.
        matched = valid * ops.cast(assignment >= 0, "float32")  # (N, M)
        query_onehot = ops.one_hot(ops.maximum(assignment, 0), num_queries) * ops.expand_dims(matched, -1)
        matched_pred = ops.einsum("nmq,nqd->nmd", query_onehot, pred_boxes)  # (N, M, 4)

        l1 = ops.sum(ops.sum(ops.abs(matched_pred - target_boxes), axis=-1) * matched, axis=-1)
        giou = generalized_box_iou(
            box_cxcywh_to_xyxy(matched_pred), box_cxcywh_to_xyxy(target_boxes), pairwise=False
        )
        giou = ops.sum((1.0 - giou) * matched, axis=-1)

        num_logits = self.num_classes + 1
        is_matched = ops.sum(query_onehot, axis=1)  # (N, Q)
        target_onehot = ops.einsum("nmq,nmc->nqc", query_onehot, ops.one_hot(labels, num_logits))
        no_object = ops.one_hot(ops.full(ops.shape(is_matched), self.num_classes, "int32"), num_logits)
        target_onehot = target_onehot + ops.expand_dims(1.0 - is_matched, -1) * no_object
        nll = -ops.sum(target_onehot * ops.log_softmax(logits, axis=-1), axis=-1)  # (N, Q)
        class_weight = is_matched + (1.0 - is_matched) * self.eos_coef
        ce_numerator = ops.sum(class_weight * nll, axis=-1)
        ce_denominator = ops.sum(class_weight, axis=-1)

        per_layer = lambda x: ops.sum(ops.reshape(x, (-1, num_layers)), axis=0)  # noqa: E731
        loss_ce = per_layer(ce_numerator) / per_layer(ce_denominator)
        loss_bbox = per_layer(l1) / num_boxes
        loss_giou = per_layer(giou) / num_boxes
        total = self.ce_weight * loss_ce + self.bbox_weight * loss_bbox + self.giou_weight * loss_giou
        return {
            "loss": ops.sum(total),
            "loss_ce": loss_ce[-1],
            "loss_bbox": loss_bbox[-1],
            "loss_giou": loss_giou[-1],
        }

    def cardinality_error(self, y_true, y_pred):
        """Mean absolute difference between the number of non-no-object predictions and of targets.

        A logging metric of the reference (no gradient).
        """
        logits = ops.cast(y_pred["logits"], "float32")
        predicted = ops.sum(ops.cast(ops.argmax(logits, axis=-1) != self.num_classes, "float32"), axis=-1)
        actual = ops.sum(ops.cast(y_true["valid"], "float32"), axis=-1)
        return ops.mean(ops.abs(predicted - actual))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "matcher": keras.saving.serialize_keras_object(self.matcher),
            "eos_coef": self.eos_coef,
            "ce_weight": self.ce_weight,
            "bbox_weight": self.bbox_weight,
            "giou_weight": self.giou_weight,
            "auxiliary_loss": self.auxiliary_loss,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
