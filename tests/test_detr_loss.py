"""DETR's Hungarian matcher and set loss against the reference (transformers), on every backend."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, load_fixture, to_numpy

from keras_vit.data.detection import pad_detection_targets, validate_detection_targets
from keras_vit.training.detr_loss import DETRLoss
from keras_vit.training.detr_matcher import HungarianMatcher

NUM_CLASSES = 5


def fixture_targets(data, max_boxes=4):
    return pad_detection_targets(
        [data["target_boxes_0"], data["target_boxes_1"]],
        [data["target_labels_0"], data["target_labels_1"]],
        max_boxes=max_boxes,
        num_classes=NUM_CLASSES,
    )


def test_loss_terms_equal_reference_fixture():
    # detr_tiny.json: auxiliary_loss=false, so "loss" = ce + 5 * bbox + 2 * giou of the final layer.
    data = load_fixture("detr_tiny")
    loss_fn = DETRLoss(NUM_CLASSES)
    y_pred = {"logits": data["logits"], "pred_boxes": data["pred_boxes"]}
    for max_boxes in (2, 6):  # the amount of padding must not matter
        out = loss_fn(fixture_targets(data, max_boxes), y_pred)
        for key, ref in (("loss", "loss"), ("loss_ce", "loss_loss_ce"), ("loss_bbox", "loss_loss_bbox"),
                         ("loss_giou", "loss_loss_giou")):  # fmt: skip
            np.testing.assert_allclose(float(to_numpy(out[key])), data[ref], atol=1e-4, err_msg=key)
    card = loss_fn.cardinality_error(fixture_targets(data), y_pred)
    np.testing.assert_allclose(float(to_numpy(card)), data["loss_cardinality_error"], atol=1e-6)


def random_case(seed, batch=3, queries=7, layers=3, max_boxes=5):
    rng = np.random.default_rng(seed)
    counts = [3, 0, 5][:batch]  # an image without targets, and one with as many as slots
    boxes, labels = [], []
    for n in counts:
        centers = rng.uniform(0.3, 0.7, size=(n, 2))
        sizes = rng.uniform(0.05, 0.5, size=(n, 2))
        boxes.append(np.concatenate([centers, sizes], -1).astype("float32"))
        labels.append(rng.integers(0, NUM_CLASSES, size=n))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    logits = rng.normal(size=(batch, layers, queries, NUM_CLASSES + 1)).astype("float32")
    pred_boxes = sigmoid(rng.normal(size=(batch, layers, queries, 4))).astype("float32")
    return boxes, labels, logits, pred_boxes, max_boxes


def reference_loss_and_grads(boxes, labels, logits, pred_boxes):
    """transformers' DETR criterion (with auxiliary outputs) and its gradients, in torch."""
    torch = pytest.importorskip("torch")
    detr_loss = pytest.importorskip("transformers.loss.loss_for_object_detection")
    matcher = detr_loss.HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)
    criterion = detr_loss.ImageLoss(matcher, NUM_CLASSES, eos_coef=0.1, losses=["labels", "boxes"])
    logits_t = torch.tensor(logits, requires_grad=True)
    boxes_t = torch.tensor(pred_boxes, requires_grad=True)
    layers = logits.shape[1]
    outputs = {
        "logits": logits_t[:, -1],
        "pred_boxes": boxes_t[:, -1],
        "auxiliary_outputs": [{"logits": logits_t[:, i], "pred_boxes": boxes_t[:, i]} for i in range(layers - 1)],
    }
    targets = [
        {"class_labels": torch.tensor(l, dtype=torch.int64), "boxes": torch.tensor(b)} for b, l in zip(boxes, labels)
    ]
    terms = criterion(outputs, targets)
    weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    total = sum(value * weights[key.rsplit("_", 1)[0] if key[-1].isdigit() else key] for key, value in terms.items())
    total.backward()
    final = {key: float(terms[key].detach()) for key in weights}
    return float(total), final, logits_t.grad.numpy(), boxes_t.grad.numpy()


def loss_and_grads_compiled(loss_fn, y_true, logits, pred_boxes):
    """The loss and its gradients inside a compiled function of this backend (jit / tf.function)."""

    def y_pred(all_logits, all_boxes):
        return {
            "logits": all_logits[:, -1],
            "pred_boxes": all_boxes[:, -1],
            "aux_logits": all_logits[:, :-1],
            "aux_pred_boxes": all_boxes[:, :-1],
        }

    if BACKEND == "jax":
        import jax

        def total(all_logits, all_boxes):
            out = loss_fn(y_true, y_pred(all_logits, all_boxes))
            return out["loss"], out

        (value, out), grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))(logits, pred_boxes)
        return out, grads
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(all_logits, all_boxes):
            with tf.GradientTape() as tape:
                tape.watch([all_logits, all_boxes])
                out = loss_fn(y_true, y_pred(all_logits, all_boxes))
            return out, tape.gradient(out["loss"], [all_logits, all_boxes])

        return step(tf.constant(logits), tf.constant(pred_boxes))
    import torch

    logits_t = torch.tensor(logits, requires_grad=True)
    boxes_t = torch.tensor(pred_boxes, requires_grad=True)
    out = loss_fn(y_true, y_pred(logits_t, boxes_t))
    out["loss"].backward()
    return out, (logits_t.grad, boxes_t.grad)


def test_auxiliary_loss_and_gradients_equal_transformers_compiled():
    boxes, labels, logits, pred_boxes, max_boxes = random_case(seed=1)
    ref_total, ref_final, ref_grad_logits, ref_grad_boxes = reference_loss_and_grads(boxes, labels, logits, pred_boxes)
    y_true = pad_detection_targets(boxes, labels, max_boxes=max_boxes, num_classes=NUM_CLASSES)
    out, (grad_logits, grad_boxes) = loss_and_grads_compiled(DETRLoss(NUM_CLASSES), y_true, logits, pred_boxes)
    np.testing.assert_allclose(float(to_numpy(out["loss"])), ref_total, atol=1e-4)
    for key, value in ref_final.items():
        np.testing.assert_allclose(float(to_numpy(out[key])), value, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(to_numpy(grad_logits), ref_grad_logits, atol=1e-5)
    np.testing.assert_allclose(to_numpy(grad_boxes), ref_grad_boxes, atol=1e-5)


def test_auxiliary_loss_off_uses_final_layer_only():
    boxes, labels, logits, pred_boxes, max_boxes = random_case(seed=2)
    y_true = pad_detection_targets(boxes, labels, max_boxes=max_boxes)
    full = {"logits": logits[:, -1], "pred_boxes": pred_boxes[:, -1],
            "aux_logits": logits[:, :-1], "aux_pred_boxes": pred_boxes[:, :-1]}  # fmt: skip
    final_only = DETRLoss(NUM_CLASSES, auxiliary_loss=False)(y_true, full)
    without_aux = DETRLoss(NUM_CLASSES)(y_true, {"logits": logits[:, -1], "pred_boxes": pred_boxes[:, -1]})
    with_aux = DETRLoss(NUM_CLASSES)(y_true, full)
    np.testing.assert_allclose(to_numpy(final_only["loss"]), to_numpy(without_aux["loss"]), atol=1e-6)
    assert float(to_numpy(with_aux["loss"])) > float(to_numpy(final_only["loss"])) + 1.0
    np.testing.assert_allclose(to_numpy(with_aux["loss_ce"]), to_numpy(final_only["loss_ce"]), atol=1e-6)


def test_matcher_agrees_with_transformers():
    torch = pytest.importorskip("torch")
    detr_loss = pytest.importorskip("transformers.loss.loss_for_object_detection")
    boxes, labels, logits, pred_boxes, max_boxes = random_case(seed=3, layers=1)
    logits, pred_boxes = logits[:, 0], pred_boxes[:, 0]
    reference = detr_loss.HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)(
        {"logits": torch.tensor(logits), "pred_boxes": torch.tensor(pred_boxes)},
        [{"class_labels": torch.tensor(l), "boxes": torch.tensor(b)} for b, l in zip(boxes, labels)],
    )
    targets = pad_detection_targets(boxes, labels, max_boxes=max_boxes)
    assignment = to_numpy(HungarianMatcher()(logits, pred_boxes, targets))
    for image, (query_index, target_index) in enumerate(reference):
        expected = np.full(max_boxes, -1)
        expected[target_index.numpy()] = query_index.numpy()
        np.testing.assert_array_equal(assignment[image], expected)


def test_image_without_targets_trains_every_query_to_no_object():
    logits = np.random.default_rng(0).normal(size=(1, 4, NUM_CLASSES + 1)).astype("float32")
    boxes = np.full((1, 4, 4), 0.5, "float32")
    y_true = pad_detection_targets([np.zeros((0, 4))], [np.zeros((0,))], max_boxes=3)
    out = DETRLoss(NUM_CLASSES)(y_true, {"logits": logits, "pred_boxes": boxes})
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(float(to_numpy(out["loss_ce"])), -log_probs[..., -1].mean(), atol=1e-5)
    assert float(to_numpy(out["loss_bbox"])) == 0.0 and float(to_numpy(out["loss_giou"])) == 0.0
    np.testing.assert_allclose(float(to_numpy(out["loss"])), -log_probs[..., -1].mean(), atol=1e-5)


@pytest.mark.parametrize(
    "box, label, message",
    [
        ([0.5, 0.5, 1.5, 0.2], 0, "outside"),
        ([1.2, 0.5, 0.1, 0.1], 0, "outside"),
        ([0.5, 0.5, 0.0, 0.2], 0, "non-positive"),
        ([0.9, 0.5, 0.4, 0.2], 0, "extends outside"),
        ([0.5, 0.5, 0.2, 0.2], NUM_CLASSES, "not in \\[0, 5\\)"),
    ],
)
def test_bad_targets_raise_clear_errors(box, label, message):
    with pytest.raises(ValueError, match=message):
        pad_detection_targets([[box]], [[label]], max_boxes=2, num_classes=NUM_CLASSES)
    # The loss checks the targets it is given too (on the host, also inside compiled steps).
    targets = {"boxes": np.array([[box]], "float32"), "labels": np.array([[label]], "int32"),
               "valid": np.ones((1, 1), "float32")}  # fmt: skip
    y_pred = {"logits": np.zeros((1, 3, NUM_CLASSES + 1), "float32"), "pred_boxes": np.full((1, 3, 4), 0.5, "float32")}
    with pytest.raises(Exception, match=message):
        DETRLoss(NUM_CLASSES)(targets, y_pred)


def test_padding_slots_are_not_checked_and_wrong_class_count_is_caught():
    targets = {"boxes": np.array([[[0.5, 0.5, 0.2, 0.2], [7.0, -1.0, 0.0, 0.0]]], "float32"),
               "labels": np.array([[1, 99]], "int32"), "valid": np.array([[1.0, 0.0]], "float32")}  # fmt: skip
    validate_detection_targets(targets, num_classes=NUM_CLASSES)
    y_pred = {"logits": np.zeros((1, 3, NUM_CLASSES + 1), "float32"), "pred_boxes": np.full((1, 3, 4), 0.5, "float32")}
    assert np.isfinite(float(to_numpy(DETRLoss(NUM_CLASSES)(targets, y_pred)["loss"])))
    with pytest.raises(ValueError, match="num_classes \\+ 1"):
        DETRLoss(NUM_CLASSES + 2)(targets, y_pred)


def test_loss_config_round_trip():
    loss_fn = DETRLoss(7, matcher=HungarianMatcher(cost_class=2.0), eos_coef=0.2, auxiliary_loss=False)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss_fn))
    assert restored.get_config() == loss_fn.get_config()
    assert restored.matcher.cost_class == 2.0 and restored.eos_coef == 0.2


def test_xla_on_tensorflow_uses_the_keras_solver_and_refuses_a_host_one_clearly():
    if BACKEND != "tensorflow":
        pytest.skip("XLA-compiled tf.function is TensorFlow-only; JAX's jit is covered in test_detr_matcher")
    import tensorflow as tf

    data = load_fixture("detr_tiny")
    targets = fixture_targets(data)

    def compiled(loss_fn):
        return tf.function(lambda logits, boxes: loss_fn(targets, {"logits": logits, "pred_boxes": boxes})["loss"],
                           jit_compile=True)  # fmt: skip

    default = DETRLoss(NUM_CLASSES)
    eager = default(targets, {"logits": data["logits"], "pred_boxes": data["pred_boxes"]})["loss"]
    under_xla = compiled(default)(tf.constant(data["logits"]), tf.constant(data["pred_boxes"]))
    np.testing.assert_allclose(to_numpy(under_xla), to_numpy(eager), rtol=1e-5)
    with pytest.raises(ValueError, match="jit_compile=False"):
        compiled(DETRLoss(NUM_CLASSES, matcher=HungarianMatcher(solver="scipy")))(
            tf.constant(data["logits"]), tf.constant(data["pred_boxes"]))


def test_box_ops_agree_across_numpy_keras_and_tensorflow():
    import tensorflow as tf

    from keras_vit.models.detr.box_ops import box_area, box_cxcywh_to_xyxy, box_iou, box_xyxy_to_cxcywh

    boxes = np.random.default_rng(0).uniform(0.1, 0.5, (2, 3, 4)).astype("float32")
    corners = box_cxcywh_to_xyxy(boxes)
    assert isinstance(corners, np.ndarray)  # host code stays NumPy
    np.testing.assert_allclose(to_numpy(box_cxcywh_to_xyxy(keras.ops.convert_to_tensor(boxes))), corners)
    np.testing.assert_allclose(box_cxcywh_to_xyxy(tf.constant(boxes)).numpy(), corners)  # tf.data, any backend
    np.testing.assert_allclose(box_xyxy_to_cxcywh(corners), boxes, atol=1e-6)
    np.testing.assert_allclose(box_area(corners), boxes[..., 2] * boxes[..., 3], rtol=1e-5)
    np.testing.assert_allclose(np.diagonal(to_numpy(box_iou(corners, corners)), axis1=-2, axis2=-1), 1.0, rtol=1e-6)


def test_bad_target_error_names_the_image_as_given_with_auxiliary_layers():
    # The loss repeats each image's targets once per decoder layer before matching: the error must
    # still name the image of the batch as the user gave it (image 1 here, not row 1 of 2 x 3 rows).
    good, bad = [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.0, 0.2]
    targets = {"boxes": np.array([[good], [bad]], "float32"), "labels": np.array([[0], [0]], "int32"),
               "valid": np.ones((2, 1), "float32")}  # fmt: skip
    y_pred = {"logits": np.zeros((2, 4, NUM_CLASSES + 1), "float32"), "pred_boxes": np.full((2, 4, 4), 0.5, "float32"),
              "aux_logits": np.zeros((2, 2, 4, NUM_CLASSES + 1), "float32"),
              "aux_pred_boxes": np.full((2, 2, 4, 4), 0.5, "float32")}  # fmt: skip
    with pytest.raises(Exception, match=r"image 1\b") as error:
        DETRLoss(NUM_CLASSES, matcher=HungarianMatcher(num_classes=NUM_CLASSES, solver="scipy"))(targets, y_pred)
    assert "image 3" not in str(error.value) and "image 4" not in str(error.value)
