"""Conditional DETR's set loss: Hungarian matching with a focal classification cost, then the
sigmoid focal loss for classes and DETR's L1 and GIoU losses for boxes.

As the Atten4Vis/ConditionalDETR repository (and transformers' loss for
`ConditionalDetrForObjectDetection`): the logits are `num_classes` sigmoids with no "no object"
class; an unmatched query is trained towards all-zero targets. Matching costs class 2, L1 5,
GIoU 2, the class cost `alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))` at the
target class; loss weights focal 2, L1 5, GIoU 2 (transformers weighs its focal term 1; pass
`ce_weight=1.0` for its total). Every term is summed and divided by the number of target boxes.
Targets, matching solvers, auxiliary layers and the distribution rules are DETRLoss's.
With denoising training (y_pred holds "denoising_logits" and "denoising_pred_boxes"), DN-DETR's
reconstruction loss is added with the same weights and focal parameters
(`denoising_loss(classification="focal")`, normalized by G times the number of target boxes).
"""

import keras
import numpy as np  # noqa: F401  (docstring examples)
from keras import ops

from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from keras_vit.training.detr_loss import DETRLoss
from keras_vit.training.detr_matcher import HungarianMatcher


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """The element-wise sigmoid focal loss (Lin et al., 2017) of `logits` against 0/1 `targets`.

    `alpha_t (1 - p_t)^gamma BCE(logits, targets)` with p_t the probability of the target and
    alpha_t = alpha for positives, 1 - alpha for negatives; the cross-entropy in the stable
    form `max(x, 0) - x t + log(1 + exp(-|x|))`.

    Example:
    >>> round(float(sigmoid_focal_loss(np.float32(0.0), np.float32(1.0))), 4)
    0.0433
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    probs = ops.sigmoid(logits)
    cross_entropy = ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
    p_t = probs * targets + (1.0 - probs) * (1.0 - targets)
    loss = cross_entropy * ops.power(1.0 - p_t, gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return loss


@keras.saving.register_keras_serializable(package="keras_vit")
class FocalHungarianMatcher(HungarianMatcher):
    """`HungarianMatcher` with the focal classification cost of Deformable and Conditional DETR.

    cost = cost_class * (pos - neg)[target class] + cost_bbox * L1 + cost_giou * (-GIoU), with
    p = sigmoid(logits), pos = alpha (1 - p)^gamma (-log(p + 1e-8)) and
    neg = (1 - alpha) p^gamma (-log(1 - p + 1e-8)). `logits` are (N, Q, num_classes) sigmoids.
    Solvers as `HungarianMatcher`.

    Example:
    >>> from keras_vit.data.detection import pad_detection_targets
    >>> matcher = FocalHungarianMatcher()
    >>> logits = np.zeros((1, 3, 2), "float32")
    >>> pred = np.array([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]], "float32")
    >>> targets = pad_detection_targets([[[0.8, 0.8, 0.1, 0.1]]], [[1]], max_boxes=2)
    >>> keras.ops.convert_to_numpy(matcher(logits, pred, targets)).tolist()
    [[2, -1]]
    """

    def __init__(self, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, num_classes=None, solver="auto", alpha=0.25,
                 gamma=2.0):
        super().__init__(cost_class, cost_bbox, cost_giou, num_classes=num_classes, solver=solver)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def cost_matrix(self, logits, pred_boxes, target_labels, target_boxes):
        """The (N, Q, M) matching cost, with `keras.ops`."""
        probs = ops.sigmoid(ops.cast(logits, "float32"))
        pred_boxes = ops.cast(pred_boxes, "float32")
        target_boxes = ops.cast(target_boxes, "float32")
        negative = (1 - self.alpha) * ops.power(probs, self.gamma) * -ops.log(1 - probs + 1e-8)
        positive = self.alpha * ops.power(1 - probs, self.gamma) * -ops.log(probs + 1e-8)
        target_onehot = ops.one_hot(ops.cast(target_labels, "int32"), ops.shape(logits)[-1])
        cost_class = ops.einsum("nqc,nmc->nqm", positive - negative, target_onehot)
        cost_bbox = ops.sum(ops.abs(ops.expand_dims(pred_boxes, 2) - ops.expand_dims(target_boxes, 1)), axis=-1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="keras_vit")
class ConditionalDETRLoss(DETRLoss):
    """Conditional DETR's set loss: focal Hungarian matching, sigmoid focal loss, L1 and GIoU.

    `loss_fn(y_true, y_pred)` returns a dict of scalars: "loss", the weighted total
    (ce_weight * focal + bbox_weight * L1 + giou_weight * (1 - GIoU)) summed over the final decoder
    layer and, with `auxiliary_loss=True` and "aux_logits"/"aux_pred_boxes" in y_pred, every
    earlier layer (each matched on its own); "loss_ce" (the focal term), "loss_bbox", "loss_giou":
    the unweighted terms of the final layer. Each term is summed over queries (and classes) and
    divided by the number of target boxes (at least 1), summed over `tf.distribute` replicas
    as `DETRLoss` does.

    Args:
        num_classes: object classes; the model's logits have exactly num_classes (sigmoids).
        matcher: a `FocalHungarianMatcher` (default: costs class 2, L1 5, GIoU 2, alpha and gamma
            as the loss's).
        focal_alpha, focal_gamma: the focal loss's alpha (0.25) and gamma (2).
        ce_weight, bbox_weight, giou_weight: weights of the terms in "loss" (2, 5, 2).
        auxiliary_loss: add the loss of every intermediate decoder layer, when the model outputs them.

    Example:
    >>> from keras_vit.data.detection import pad_detection_targets
    >>> loss_fn = ConditionalDETRLoss(num_classes=2)
    >>> y_true = pad_detection_targets([[[0.5, 0.5, 0.4, 0.4]], []], [[1], []], max_boxes=2)
    >>> y_pred = {"logits": np.zeros((2, 4, 2), "float32"),
    ...           "pred_boxes": np.full((2, 4, 4), 0.5, "float32")}
    >>> round(float(loss_fn(y_true, y_pred)["loss_ce"]), 4)  # 15 negatives and 1 positive at p = 0.5
    1.9928
    """

    def __init__(
        self,
        num_classes,
        matcher=None,
        focal_alpha=0.25,
        focal_gamma=2.0,
        ce_weight=2.0,
        bbox_weight=5.0,
        giou_weight=2.0,
        auxiliary_loss=True,
    ):
        if isinstance(matcher, dict):
            matcher = keras.saving.deserialize_keras_object(matcher)
        if matcher is None:
            matcher = FocalHungarianMatcher(num_classes=int(num_classes), alpha=focal_alpha, gamma=focal_gamma)
        super().__init__(
            num_classes, matcher=matcher, ce_weight=ce_weight, bbox_weight=bbox_weight, giou_weight=giou_weight,
            auxiliary_loss=auxiliary_loss,
        )
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)

    @property
    def _num_logits(self):
        """The width of the model's logits: one sigmoid per class, no no-object class."""
        return self.num_classes

    def _check_num_logits(self, width):
        if width is not None and width != self.num_classes:
            raise ValueError(
                f"The model predicts {width} classes but ConditionalDETRLoss(num_classes="
                f"{self.num_classes}) expects {self.num_classes} sigmoid logits (no 'no object' class). "
                "A DETR model (softmax, no-object last) trains with DETRLoss."
            )

    def _classification_loss(self, logits, query_onehot, labels, num_boxes, per_layer):
        """The per-layer (L,) focal term, summed over queries and classes, divided by the target boxes."""
        # One-hot class targets of the matched queries; unmatched queries have all-zero targets.
        target_onehot = ops.einsum("nmq,nmc->nqc", query_onehot, ops.one_hot(labels, self.num_classes))
        focal = sigmoid_focal_loss(logits, target_onehot, self.focal_alpha, self.focal_gamma)
        focal = ops.sum(ops.reshape(focal, (ops.shape(focal)[0], -1)), axis=-1)  # (N,)
        return per_layer(focal) / num_boxes

    def _denoising_options(self):
        """The classification arguments of `denoising_loss`: the sigmoid focal loss with this loss's alpha, gamma."""
        return {"classification": "focal", "focal_alpha": self.focal_alpha, "focal_gamma": self.focal_gamma}

    def cardinality_error(self, y_true, y_pred):
        """Mean absolute difference between the number of queries with a class above 0.5 and of targets.

        A logging metric of the reference (no gradient).
        """
        probs = ops.sigmoid(ops.cast(y_pred["logits"], "float32"))
        predicted = ops.sum(ops.cast(ops.max(probs, axis=-1) > 0.5, "float32"), axis=-1)
        actual = ops.sum(ops.cast(y_true["valid"], "float32"), axis=-1)
        return ops.mean(ops.abs(predicted - actual))

    def get_config(self):
        config = super().get_config()
        del config["eos_coef"]  # no no-object class to weigh
        return {**config, "focal_alpha": self.focal_alpha, "focal_gamma": self.focal_gamma}
