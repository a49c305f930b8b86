"""Mixed precision for every family: float32 logits, and fit() trains under mixed_bfloat16 and
mixed_float16 on every backend (on JAX CPU mixed_float16 needs the attention core's explicit path)."""

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy

POLICIES = ["mixed_bfloat16", "mixed_float16"]
IMAGES = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 1, 2, 0, 1, 0], "int32")


def _classifier(family):
    if family == "vit":
        return keras_vit.VisionTransformer(32, 8, 16, 1, 2, 32, num_classes=3)
    if family == "deit":
        return keras_vit.VisionTransformer(32, 8, 16, 1, 2, 32, num_classes=3, distilled=True)
    if family == "tnt":
        return keras_vit.TNT(32, 16, 16, 8, 1, 2, 2, num_classes=3)
    # One stage of an 8x8 map with window 4: the second block is shifted, so the mask is used.
    return keras_vit.SwinTransformer(32, 4, 4, 16, (2,), (2,), num_classes=3)


def _detr(detector="detr"):
    backbone = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8, activation="relu")], name="cnn"
    )
    config = dict(num_classes=3, num_queries=3, hidden_dim=16, num_encoder_layers=1, num_decoder_layers=1,
                  num_heads=2, dropout=0.0)
    if detector == "detr":
        return keras_vit.DETR(backbone, **config, ffn_dim=16)
    # Conditional DETR: sigmoid focal loss instead of DETR's softmax cross-entropy, same checks.
    return keras_vit.ConditionalDETR(backbone, **config, mlp_dim=16)


def _changed(before, model):
    return any(not np.array_equal(b, to_numpy(v)) for b, v in zip(before, model.trainable_weights))


def _check_fit(model, x, y, policy, loss=None, epochs=1):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    if policy == "mixed_float16":
        # compile() wraps the optimizer in a LossScaleOptimizer under mixed_float16.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [to_numpy(v).copy() for v in model.trainable_weights]
    # Batches of one: under mixed_float16 the first steps can overflow and be skipped while the loss
    # scale (2 ** 15 at first) halves, as it should (3 steps for the tiny ViT, 9 for the tiny DETR).
    history = model.fit(x, y, batch_size=1, epochs=epochs, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])), history.history
    assert _changed(before, model), f"no weight moved in {epochs * len(LABELS)} steps"
    assert all(np.all(np.isfinite(to_numpy(v))) for v in model.weights)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("family", ["vit", "deit", "tnt", "swin"])
def test_classifier_logits_are_float32_and_fit_trains(family, policy):
    keras.config.set_dtype_policy(policy)
    model = _classifier(family)
    assert model.get_layer("head").compute_dtype == "float32"
    # The functional model's output spec comes from tracing every layer's call(): the dtype it returns.
    assert model.output.dtype == "float32" and tuple(model.output.shape) == (None, 3)
    _check_fit(model, IMAGES, LABELS, policy, keras.losses.SparseCategoricalCrossentropy(from_logits=True))


# DETR and Conditional DETR share the set loss and the train step: Conditional DETR under both policies,
# DETR under float16 (its narrower range) only.
@pytest.mark.parametrize("detector, policy", [("conditional_detr", "mixed_bfloat16"),
                                              ("conditional_detr", "mixed_float16"), ("detr", "mixed_float16")])
def test_detr_logits_are_float32_and_fit_trains(detector, policy):
    keras.config.set_dtype_policy(policy)
    model = _detr(detector)
    out = model.predict_on_batch(IMAGES)
    assert out["logits"].dtype == np.float32 and np.all(np.isfinite(out["logits"]))
    targets = {
        "boxes": np.tile(np.array([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2]], "float32"), (8, 1, 1)),
        "labels": np.tile(np.array([[0, 2]], "int32"), (8, 1)),
        "valid": np.tile(np.array([[1.0, 0.0]], "float32"), (8, 1)),
    }
    x = {"images": IMAGES, "pixel_mask": np.ones((8, 32, 32), "float32")}
    _check_fit(model, x, targets, policy, epochs=2)  # no loss: DETR's own set loss
    # The set loss (and every logged term) is float32 under both policies.
    loss = model.compute_loss(x, targets, model.predict_on_batch(x))
    assert keras.backend.standardize_dtype(loss.dtype) == "float32", loss.dtype
    assert all(keras.backend.standardize_dtype(tracker.result().dtype) == "float32"
               for tracker in (model.loss_ce_tracker, model.loss_bbox_tracker, model.loss_giou_tracker))
