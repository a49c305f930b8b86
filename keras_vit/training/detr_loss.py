"""DETR's set loss: Hungarian matching of predictions to targets, then classification and box losses.

Targets come in the fixed-size padded form of `keras_vit.data.detection` (`pad_detection_targets`):
`{"boxes": (B, M, 4) normalized (cx, cy, w, h), "labels": (B, M) int32, "valid": (B, M) float32}`.
The matching is `keras_vit.training.detr_matcher.HungarianMatcher`; box conversions and GIoU come
from `keras_vit.models.detr.box_ops`.
"""

import keras
import numpy as np  # noqa: F401  (docstring examples)
from keras import ops

from keras_vit.data.detection import pad_detection_targets, validate_detection_targets  # noqa: F401  (their home before)
from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from keras_vit.training.denoising import denoising_loss, has_denoising_outputs
from keras_vit.training.detr_matcher import HungarianMatcher, is_jax_tracing, safe_labels, safe_target_boxes


def sum_over_replicas(value):
    """`value` summed over the replicas of a `tf.distribute` strategy, inside `strategy.run`; else `value`.

    The global normalizers of DETR's loss (as the reference all-reduces num_boxes). No gradient
    flows through it: the normalizers depend on the targets and the matching only.

    Example:
    >>> float(sum_over_replicas(np.float32(3.0)))
    3.0
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()  # None in a cross-replica context
        if context is not None and context.num_replicas_in_sync > 1:
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))
    return value


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRLoss:
    """DETR's set loss: Hungarian matching, weighted cross-entropy, L1 and GIoU box losses.

    `loss_fn(y_true, y_pred)` returns a dict of scalars:
    - "loss": the weighted total, ce_weight * CE + bbox_weight * L1 + giou_weight * (1 - GIoU),
      summed over the final decoder layer and, with `auxiliary_loss=True` and "aux_logits" /
      "aux_pred_boxes" in y_pred, every earlier decoder layer (each matched on its own).
    - "loss_ce", "loss_bbox", "loss_giou": the unweighted terms of the final layer.
    - with denoising training (y_pred holds "denoising_logits" and "denoising_pred_boxes", which a
      model built with `denoising=` returns in training), "loss" also holds DN-DETR's reconstruction
      loss, weighted with the same ce/bbox/giou weights and reported as "loss_dn" (with the final
      layer's "loss_dn_ce", "loss_dn_bbox", "loss_dn_giou"; see `keras_vit.training.denoising`).
    The cross-entropy is a weighted mean over all queries, the no-object class weighted `eos_coef`;
    L1 and GIoU are summed over matched boxes and divided by the number of target boxes (at least 1),
    as in the reference implementations.

    Under `tf.distribute` (inside `strategy.run`, as in `fit`) the normalizers, the number of
    target boxes and the cross-entropy's weight sum, are summed over the replicas (the reference
    all-reduces num_boxes): each replica returns its share of the global batch's loss, and the
    replicas' shares add up to one device's loss on the whole batch, the way Keras scales its own
    losses. Under JAX's `keras.distribution` the loss sees the global batch and needs nothing.
    The matching runs where `matcher.solver` says (by default the `keras.ops` solver inside XLA,
    scipy on the host elsewhere; see `HungarianMatcher`).

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
    >>> import numpy as np
    >>> from keras_vit.data.detection import pad_detection_targets
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

    @property
    def xla_compatible(self):
        """Whether a train step with this loss can be XLA-compiled (TensorFlow's `jit_compile`)."""
        return not self.matcher.runs_on_host

    def _layer_outputs(self, y_pred):
        """Logits (B, L, Q, C+1) and boxes (B, L, Q, 4) of the decoder layers, the final one last."""
        logits = ops.expand_dims(ops.cast(y_pred["logits"], "float32"), 1)
        boxes = ops.expand_dims(ops.cast(y_pred["pred_boxes"], "float32"), 1)
        if self.auxiliary_loss and "aux_logits" in y_pred and "aux_pred_boxes" in y_pred:
            logits = ops.concatenate([ops.cast(y_pred["aux_logits"], "float32"), logits], axis=1)
            boxes = ops.concatenate([ops.cast(y_pred["aux_pred_boxes"], "float32"), boxes], axis=1)
        return logits, boxes

    def __call__(self, y_true, y_pred):
        if keras.backend.backend() == "jax" and not is_jax_tracing((y_true, y_pred)):
            # Eager JAX runs op by op, compiling each for every new shape (seconds per call):
            # compile the whole loss once instead.
            import jax

            if getattr(self, "_jitted", None) is None:
                # An eager call: the "auto" matcher solves on the host, as on the other backends.
                host = "scipy" if self.matcher.solver == "auto" else None
                self._jitted = jax.jit(lambda y_true, y_pred: self.compute(y_true, y_pred, solver=host))
            return self._jitted(dict(y_true), dict(y_pred))
        return self.compute(y_true, y_pred)

    def compute(self, y_true, y_pred, solver=None):
        """The loss dict, traced op by op (what `__call__` runs inside a compiled train step).

        `solver` overrides the matcher's solver for this call. The matching, the box terms, the
        auxiliary layers and the denoising term are shared with the subclasses, which change the
        classification term only (`_classification_loss`, `_num_logits`, `_denoising_options`).
        """
        logits, pred_boxes = self._layer_outputs(y_pred)
        self._check_num_logits(logits.shape[-1])
        num_layers, num_queries = logits.shape[1], logits.shape[2]
        valid = ops.cast(y_true["valid"], "float32")
        labels = ops.cast(y_true["labels"], "int32")
        raw_boxes = ops.cast(y_true["boxes"], "float32")
        num_boxes = ops.maximum(sum_over_replicas(ops.sum(valid)), 1.0)

        # Every decoder layer is matched and scored on its own: fold layers into the batch,
        # image-major, and repeat each image's targets once per layer.
        flat = lambda x: ops.reshape(x, (-1,) + tuple(x.shape[2:]))  # noqa: E731
        logits, pred_boxes = flat(logits), flat(pred_boxes)
        repeat = lambda x: ops.repeat(x, num_layers, axis=0)  # noqa: E731
        valid, raw_labels, raw_boxes = repeat(valid), repeat(labels), repeat(raw_boxes)
        target_boxes = safe_target_boxes(raw_boxes, valid)
        labels = safe_labels(raw_labels, valid, self._num_logits)

        cost = self.matcher.cost_matrix(logits, pred_boxes, labels, target_boxes)
        assignment = self.matcher.assign(cost, valid, raw_labels, raw_boxes, solver=solver, rows_per_image=num_layers)

        # Gathers as one-hot products: static shapes, exportable, differentiable in pred_boxes.
        matched = valid * ops.cast(assignment >= 0, "float32")  # (N, M)
        query_onehot = ops.one_hot(ops.maximum(assignment, 0), num_queries) * ops.expand_dims(matched, -1)
        matched_pred = ops.einsum("nmq,nqd->nmd", query_onehot, pred_boxes)  # (N, M, 4)

        l1 = ops.sum(ops.sum(ops.abs(matched_pred - target_boxes), axis=-1) * matched, axis=-1)
        giou = generalized_box_iou(
            box_cxcywh_to_xyxy(matched_pred), box_cxcywh_to_xyxy(target_boxes), pairwise=False
        )
        giou = ops.sum((1.0 - giou) * matched, axis=-1)

        per_layer = lambda x: ops.sum(ops.reshape(x, (-1, num_layers)), axis=0)  # noqa: E731
        loss_ce = self._classification_loss(logits, query_onehot, labels, num_boxes, per_layer)
        loss_bbox = per_layer(l1) / num_boxes
        loss_giou = per_layer(giou) / num_boxes
        total = self.ce_weight * loss_ce + self.bbox_weight * loss_bbox + self.giou_weight * loss_giou
        result = {
            "loss": ops.sum(total),
            "loss_ce": loss_ce[-1],
            "loss_bbox": loss_bbox[-1],
            "loss_giou": loss_giou[-1],
        }
        if has_denoising_outputs(y_pred):
            denoising = denoising_loss(
                y_true, y_pred["denoising_logits"], y_pred["denoising_pred_boxes"], self.num_classes,
                ce_weight=self.ce_weight, bbox_weight=self.bbox_weight, giou_weight=self.giou_weight,
                auxiliary_loss=self.auxiliary_loss, sum_over_replicas=sum_over_replicas,
                **self._denoising_options(),
            )  # fmt: skip
            result.update(denoising)
            result["loss"] = result["loss"] + denoising["loss_dn"]
        return result

    @property
    def _num_logits(self):
        """The width of the model's logits: the classes and the no-object class, last."""
        return self.num_classes + 1

    def _check_num_logits(self, width):
        if width is not None and width != self._num_logits:
            raise ValueError(
                f"The model predicts {width} classes but DETRLoss(num_classes={self.num_classes}) "
                f"expects num_classes + 1 = {self._num_logits} (no-object last)."
            )

    def _classification_loss(self, logits, query_onehot, labels, num_boxes, per_layer):
        """The per-layer (L,) classification term: cross-entropy, a weighted mean over all queries.

        logits (N, Q, C + 1) with N = B * L (image-major); query_onehot (N, M, Q) the matched query
        of each target (zero rows for unmatched targets); labels (N, M) the safe target labels.
        """
        num_logits = self._num_logits
        is_matched = ops.sum(query_onehot, axis=1)  # (N, Q)
        target_onehot = ops.einsum("nmq,nmc->nqc", query_onehot, ops.one_hot(labels, num_logits))
        no_object = ops.one_hot(ops.full(ops.shape(is_matched), self.num_classes, "int32"), num_logits)
        target_onehot = target_onehot + ops.expand_dims(1.0 - is_matched, -1) * no_object
        nll = -ops.sum(target_onehot * ops.log_softmax(logits, axis=-1), axis=-1)  # (N, Q)
        class_weight = is_matched + (1.0 - is_matched) * self.eos_coef
        ce_numerator = ops.sum(class_weight * nll, axis=-1)
        ce_denominator = ops.sum(class_weight, axis=-1)
        return per_layer(ce_numerator) / sum_over_replicas(per_layer(ce_denominator))

    def _denoising_options(self):
        """The classification arguments of `denoising_loss` (softmax cross-entropy here)."""
        return {}

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
