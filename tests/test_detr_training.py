"""DETR training: the recipe optimizer, fit() on every backend, post-processing and COCO mAP."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, load_fixture, tiny_detection_batch, tiny_detection_cnn, to_numpy

from keras_vit.training import (
    BackboneAdamW,
    COCOMetricsCallback,
    DETRLoss,
    coco_map,
    detr_optimizer,
    image_sizes_from_pixel_mask,
    post_process_detections,
)

NUM_CLASSES = 3


def tiny_detr(num_queries=6):
    from keras_vit.models.detr.detr_model import DETR

    return DETR(
        tiny_detection_cnn(), num_classes=NUM_CLASSES, num_queries=num_queries, hidden_dim=16, num_encoder_layers=1,
        num_decoder_layers=2, num_heads=2, mlp_dim=32, dropout=0.0, input_shape=(32, 32, 3),
    )  # fmt: skip


def variable_changes(model, before):
    changes = {}
    for variable, old in zip(model.trainable_variables, before):
        changes[variable.path] = np.abs(to_numpy(variable) - old).max()
    return changes


def test_weight_decay_uses_each_variables_rate_and_clipping_is_global():
    inputs = keras.Input((4,))
    backbone = keras.layers.Dense(3, name="backbone", kernel_initializer="ones")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head", kernel_initializer="ones")(backbone(inputs)))
    optimizer = detr_optimizer(model, learning_rate=0.1, backbone_learning_rate=0.01, weight_decay=0.5, clipnorm=0.1)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)  # zero gradients: only the decay moves weights
    np.testing.assert_allclose(to_numpy(backbone.kernel), 1 - 0.5 * 0.01, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(model.get_layer("head").kernel), 1 - 0.5 * 0.1, rtol=1e-6)
    grads = [keras.ops.ones(v.shape) * 10.0 for v in model.trainable_variables]
    clipped = optimizer._clip_gradients(grads)
    norm = np.sqrt(sum(np.sum(to_numpy(g) ** 2) for g in clipped))
    np.testing.assert_allclose(norm, 0.1, rtol=1e-5)
    restored = BackboneAdamW.from_config(optimizer.get_config())
    assert restored.backbone_variable_paths == optimizer.backbone_variable_paths
    assert restored.backbone_learning_rate_multiplier == pytest.approx(0.1)


def test_a_schedule_starting_at_a_constant_rate_gives_the_backbone_the_same_multiplier():
    # schedule(0) reads back in float32 (1e-3 -> 1.0000000475e-3): an unrounded ratio would be 0.09999999525,
    # another float32 factor than 0.1, and the two recipes would part ways after a few hundred steps.
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Dense(3, name="backbone")(inputs)))
    for rate, backbone_rate in ((1e-3, 1e-4), (5e-4, 5e-5), (2e-3, 1e-4)):
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay([100], [rate, rate / 10])
        constant = detr_optimizer(model, learning_rate=rate, backbone_learning_rate=backbone_rate)
        scheduled = detr_optimizer(model, learning_rate=schedule, backbone_learning_rate=backbone_rate)
        assert scheduled.backbone_learning_rate_multiplier == constant.backbone_learning_rate_multiplier
        assert constant.backbone_learning_rate_multiplier == backbone_rate / rate


def test_backbone_multiplier_given_or_read_from_a_rate_but_not_both():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Dense(3, name="backbone")(inputs)))
    assert detr_optimizer(model).backbone_learning_rate_multiplier == 0.1  # DETR's recipe
    warmup = keras.optimizers.schedules.CosineDecay(0.0, 100, warmup_target=1e-3, warmup_steps=10)
    assert detr_optimizer(model, learning_rate=warmup, backbone_learning_rate_multiplier=0.25).backbone_learning_rate_multiplier == 0.25
    with pytest.raises(ValueError, match="not both"):
        detr_optimizer(model, backbone_learning_rate=1e-5, backbone_learning_rate_multiplier=0.1)
    with pytest.raises(ValueError, match="starts at rate 0.*backbone_learning_rate_multiplier"):
        detr_optimizer(model, learning_rate=warmup, backbone_learning_rate=1e-4)


def test_detr_optimizer_needs_a_backbone_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no layer named 'backbone'"):
        detr_optimizer(model)


def test_fit_compiled_backbone_ten_times_slower_and_learns():
    # One model and one compiled train step for both checks (compiling DETR's step dominates the time).
    model = tiny_detr()
    optimizer = detr_optimizer(model, learning_rate=1e-2, backbone_learning_rate=1e-3, weight_decay=0.0)
    assert isinstance(optimizer, BackboneAdamW) and optimizer.global_clipnorm == 0.1
    backbone = {v.path for v in model.get_layer("backbone").trainable_variables}
    assert backbone and set(optimizer.backbone_variable_paths) == backbone
    model.compile(optimizer=optimizer)
    images, targets = tiny_detection_batch()  # includes an image without targets
    before = [to_numpy(v).copy() for v in model.trainable_variables]
    first = model.fit(images, targets, batch_size=4, epochs=1, verbose=0)
    changes = variable_changes(model, before)
    # Adam's first step moves every weight with a gradient by about the learning rate.
    backbone_moves = [c for path, c in changes.items() if path in backbone]
    other_moves = [c for path, c in changes.items() if path not in backbone and c > 0]
    np.testing.assert_allclose(max(backbone_moves), 1e-3, rtol=0.05)
    np.testing.assert_allclose(max(other_moves), 1e-2, rtol=0.05)
    assert len(other_moves) > len(model.trainable_variables) // 2

    callback = COCOMetricsCallback([(images, targets)], frequency=3)
    history = model.fit(images, targets, batch_size=4, epochs=9, verbose=0, callbacks=[callback])
    losses = first.history["loss"] + history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        assert np.isfinite(history.history[key][-1])
    assert len(history.history["val_mAP"]) == 3 and len(callback.history) == 3
    assert 0.0 <= history.history["val_mAP50"][-1] <= 1.0


def test_post_processing_equals_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    data = load_fixture("detr_tiny")
    sizes = image_sizes_from_pixel_mask(data["pixel_mask"])
    np.testing.assert_array_equal(sizes, [[64, 96], [48, 64]])  # image 2 is 48x64, padded

    class Outputs:
        logits = torch.tensor(data["logits"])
        pred_boxes = torch.tensor(data["pred_boxes"])

    reference = transformers.DetrImageProcessor().post_process_object_detection(
        Outputs(), threshold=0.2, target_sizes=[tuple(s) for s in sizes]
    )
    outputs = {"logits": keras.ops.convert_to_tensor(data["logits"]), "pred_boxes": data["pred_boxes"]}
    ours = post_process_detections(outputs, sizes, threshold=0.2)
    for mine, ref in zip(ours, reference):
        order = np.argsort(-ref["scores"].numpy(), kind="stable")
        np.testing.assert_allclose(mine["scores"], ref["scores"].numpy()[order], atol=1e-6)
        np.testing.assert_array_equal(mine["labels"], ref["labels"].numpy()[order])
        np.testing.assert_allclose(mine["boxes"], ref["boxes"].numpy()[order], atol=1e-4)
    assert sum(len(r["scores"]) for r in ours) > 0


def test_coco_map_perfect_shifted_and_missed():
    gt = [{"boxes": np.array([[10.0, 10.0, 30.0, 40.0], [40.0, 5.0, 60.0, 20.0]]), "labels": np.array([0, 2])}]
    sizes = [[64, 64]]
    perfect = [{"boxes": gt[0]["boxes"], "scores": np.array([0.9, 0.8]), "labels": gt[0]["labels"]}]
    assert coco_map(perfect, gt, sizes, NUM_CLASSES)["mAP"] == pytest.approx(1.0)
    wrong_class = [{"boxes": gt[0]["boxes"], "scores": np.array([0.9, 0.8]), "labels": np.array([1, 1])}]
    assert coco_map(wrong_class, gt, sizes, NUM_CLASSES)["mAP"] == pytest.approx(0.0)
    shifted = [{"boxes": gt[0]["boxes"] + 2.0, "scores": np.array([0.9, 0.8]), "labels": gt[0]["labels"]}]
    result = coco_map(shifted, gt, sizes, NUM_CLASSES)
    assert 0.0 < result["mAP"] < 1.0 and result["mAP50"] == pytest.approx(1.0)
    nothing = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}]
    assert coco_map(nothing, gt, sizes, NUM_CLASSES)["mAP50"] == 0.0
