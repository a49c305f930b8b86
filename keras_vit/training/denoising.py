"""DN-DETR's reconstruction loss (Li et al., 2022): the denoising queries against their own ground truth.

The model side (the configuration `Denoising`, the noised queries and the attention mask) is
`keras_vit.layers.denoising`; a model that supports it (`keras_vit.DETR(..., denoising=Denoising())`)
returns, in training only, `denoising_logits` (B, L, G * M, classes) and `denoising_pred_boxes`
(B, L, G * M, 4) for its L decoder layers (the final one last). Query `g * M + m` reconstructs target
slot `m` of its image: no matching. `DETRLoss` adds `denoising_loss` to the set loss when they are
there; another DETR-like loss (focal classification, as Conditional DETR's) calls it with
`classification="focal"`.
"""

import numpy as np  # noqa: F401  (docstring examples)
from keras import ops

from keras_vit.layers.denoising import Denoising  # noqa: F401  (re-exported: keras_vit.training.Denoising)
from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from keras_vit.training.detr_matcher import safe_labels, safe_target_boxes

CLASSIFICATIONS = ("cross_entropy", "focal")


def _sigmoid_focal(logits, target_onehot, alpha, gamma):
    """Per-element sigmoid focal loss (RetinaNet), as Deformable and Conditional DETR use it."""
    probability = ops.sigmoid(logits)
    # log(sigmoid(x)) and log(1 - sigmoid(x)) without overflow: -softplus(-x) and -softplus(x).
    cross_entropy = target_onehot * ops.softplus(-logits) + (1.0 - target_onehot) * ops.softplus(logits)
    p_t = probability * target_onehot + (1.0 - probability) * (1.0 - target_onehot)
    loss = cross_entropy * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target_onehot + (1.0 - alpha) * (1.0 - target_onehot))
    return loss


def denoising_loss(
    y_true,
    denoising_logits,
    denoising_pred_boxes,
    num_classes,
    ce_weight=1.0,
    bbox_weight=5.0,
    giou_weight=2.0,
    classification="cross_entropy",
    focal_alpha=0.25,
    focal_gamma=2.0,
    auxiliary_loss=True,
    sum_over_replicas=None,
):
    """The reconstruction loss of the denoising queries, normalized like DETR's set loss.

    Args:
        y_true: the padded targets `{"boxes": (B, M, 4), "labels": (B, M), "valid": (B, M)}`.
        denoising_logits: (B, L, G * M, C') for L decoder layers (final last): C' = num_classes + 1
            (no-object last, softmax cross-entropy) or num_classes and up (focal: the first
            num_classes columns are scored). A rank-3 (B, G * M, C') tensor is one layer.
        denoising_pred_boxes: (B, L, G * M, 4) (or rank 3), normalized cx, cy, w, h.
        classification: "cross_entropy" (softmax, DETR) or "focal" (sigmoid focal, Conditional DETR).
        auxiliary_loss: sum every layer's loss (else the final layer's only).
        sum_over_replicas: the function that sums a normalizer over `tf.distribute` replicas
            (`keras_vit.training.detr_loss.sum_over_replicas` by default).

    Returns a dict of scalars: "loss_dn", the weighted sum over the layers of
    `ce_weight * class + bbox_weight * L1 + giou_weight * (1 - GIoU)`, and the final layer's
    unweighted "loss_dn_ce", "loss_dn_bbox", "loss_dn_giou". Every term is summed over the real
    (non-padding) denoising queries and divided by G times the number of target boxes summed over
    the replicas (at least G): DETR's box normalizer per group, so each replica returns its share of
    the global batch's loss, as DETRLoss does. (For focal classification, the sum also runs over
    the classes, as DETR-family focal losses do.)

    Example:
    >>> from keras_vit.data.detection import pad_detection_targets
    >>> y_true = pad_detection_targets([[[0.5, 0.5, 0.4, 0.4]]], [[1]], max_boxes=1)
    >>> logits = np.zeros((1, 1, 2, 3), "float32")  # one layer, two groups of one query, 2 classes + 1
    >>> boxes = np.array([[[[0.5, 0.5, 0.4, 0.4], [0.6, 0.5, 0.4, 0.4]]]], "float32")
    >>> out = denoising_loss(y_true, logits, boxes, num_classes=2)
    >>> round(float(out["loss_dn_ce"]), 4), round(float(out["loss_dn_bbox"]), 4)
    (1.0986, 0.05)
    """
    if classification not in CLASSIFICATIONS:
        raise ValueError(f"Unknown denoising classification loss {classification!r}; use one of {CLASSIFICATIONS}.")
    if sum_over_replicas is None:
        from keras_vit.training.detr_loss import sum_over_replicas
    logits = ops.cast(denoising_logits, "float32")
    pred_boxes = ops.cast(denoising_pred_boxes, "float32")
    if len(logits.shape) == 3:
        logits, pred_boxes = ops.expand_dims(logits, 1), ops.expand_dims(pred_boxes, 1)
    if not auxiliary_loss:
        logits, pred_boxes = logits[:, -1:], pred_boxes[:, -1:]
    num_denoising = logits.shape[2]
    valid = ops.cast(y_true["valid"], "float32")
    max_boxes = valid.shape[1]
    if max_boxes is None or num_denoising is None or num_denoising % max_boxes:
        raise ValueError(
            f"The model returned {num_denoising} denoising queries, which is not a whole number of groups of "
            f"the targets' {max_boxes} boxes per image: the targets must be padded to the fixed max_boxes "
            "the model was trained on."
        )
    groups = num_denoising // max_boxes

    def per_query(x):  # (B, M, ...) -> (B, G * M, ...), group-major as the queries
        return ops.reshape(ops.repeat(ops.expand_dims(x, 1), groups, axis=1), (-1, num_denoising) + tuple(x.shape[2:]))

    real = per_query(valid)
    target_boxes = per_query(safe_target_boxes(ops.cast(y_true["boxes"], "float32"), valid))
    labels = per_query(safe_labels(ops.cast(y_true["labels"], "int32"), valid, num_classes + 1))
    num_boxes = ops.maximum(sum_over_replicas(ops.sum(valid)), 1.0) * groups

    real_layers = ops.expand_dims(real, 1)  # (B, 1, N): the same queries are real in every layer
    target_layers = ops.expand_dims(target_boxes, 1)
    if classification == "cross_entropy":
        target_onehot = ops.expand_dims(ops.one_hot(labels, logits.shape[-1]), 1)
        class_loss = -ops.sum(target_onehot * ops.log_softmax(logits, axis=-1), axis=-1)  # (B, L, N)
    else:
        class_logits = logits[..., :num_classes]
        target_onehot = ops.expand_dims(ops.one_hot(labels, num_classes), 1)
        class_loss = ops.sum(_sigmoid_focal(class_logits, target_onehot, focal_alpha, focal_gamma), axis=-1)
    l1 = ops.sum(ops.abs(pred_boxes - target_layers), axis=-1)
    giou = 1.0 - generalized_box_iou(
        box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(ops.broadcast_to(target_layers, ops.shape(pred_boxes))),
        pairwise=False,
    )

    def per_layer(x):  # (B, L, N) -> (L,), normalized
        return ops.sum(x * real_layers, axis=(0, 2)) / num_boxes

    loss_ce, loss_bbox, loss_giou = per_layer(class_loss), per_layer(l1), per_layer(giou)
    total = ce_weight * loss_ce + bbox_weight * loss_bbox + giou_weight * loss_giou
    return {
        "loss_dn": ops.sum(total),
        "loss_dn_ce": loss_ce[-1],
        "loss_dn_bbox": loss_bbox[-1],
        "loss_dn_giou": loss_giou[-1],
    }


def has_denoising_outputs(y_pred):
    """Whether a model's outputs carry denoising predictions (training with denoising on).

    Example:
    >>> has_denoising_outputs({"logits": np.zeros((1, 2, 3))})
    False
    """
    return isinstance(y_pred, dict) and "denoising_logits" in y_pred and "denoising_pred_boxes" in y_pred


__all__ = ["Denoising", "denoising_loss", "has_denoising_outputs"]
