"""DN-DETR denoising training for Conditional DETR: the denoising queries' reference points are the
noised boxes' centres, the matching part is untouched, inference is unchanged, the focal
reconstruction loss is added, and fit() learns on every backend."""

import keras
import numpy as np
import pytest
from conftest import (
    assert_inference_ignores_denoising,
    copy_weights_by_path,
    tiny_detection_batch,
    tiny_detection_cnn,
    to_numpy,
    training_forward,
)

import keras_vit
from keras_vit.models.conditional_detr.conditional_detr_model import ConditionalDETRModel
from keras_vit.models.detr.detr_model import DENOISING_TARGETS
from keras_vit.training import ConditionalDETRLoss, Denoising, denoising_loss

NUM_CLASSES = 3
GROUPS = 2
MAX_BOXES = 3
NUM_QUERIES = 6
BOX_NOISE = 0.4


def tiny_conditional_detr(denoising):
    return keras_vit.ConditionalDETR(
        tiny_detection_cnn(), num_classes=NUM_CLASSES, num_queries=NUM_QUERIES, hidden_dim=16, num_encoder_layers=1,
        num_decoder_layers=2, num_heads=2, mlp_dim=32, dropout=0.0, input_shape=(32, 32, 3), denoising=denoising,
    )  # fmt: skip


@pytest.fixture(scope="module")
def models():
    """A model with denoising and the same model without it, with the same weights."""
    keras.utils.set_random_seed(1)
    with_denoising = tiny_conditional_detr(Denoising(groups=GROUPS, box_noise=BOX_NOISE))
    plain = tiny_conditional_detr(None)
    copy_weights_by_path(with_denoising, plain)
    return with_denoising, plain


def test_inference_is_unchanged_and_never_reads_the_denoising_weights(models):
    with_denoising, plain = models
    images, _ = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    assert_inference_ignores_denoising(with_denoising, plain, images)
    config = with_denoising.get_config()
    assert config["denoising"] == Denoising(groups=GROUPS, box_noise=BOX_NOISE).get_config()
    assert ConditionalDETRModel.from_config(config).denoising == Denoising(groups=GROUPS, box_noise=BOX_NOISE)


def test_training_matching_part_is_untouched_and_denoising_boxes_start_at_the_noised_centres(models):
    with_denoising, plain = models
    images, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    got = training_forward(with_denoising, {"images": images, DENOISING_TARGETS: targets})
    expected = training_forward(plain, images)
    assert tuple(got["denoising_logits"].shape) == (4, 2, GROUPS * MAX_BOXES, NUM_CLASSES)
    assert tuple(got["denoising_pred_boxes"].shape) == (4, 2, GROUPS * MAX_BOXES, 4)
    for key in expected:
        np.testing.assert_allclose(to_numpy(got[key]), to_numpy(expected[key]), atol=1e-5, err_msg=key)

    # The box head's last layer starts at zero, so before training every box sits on its reference
    # point with size sigmoid(0) = 0.5: a denoising box's centre is its noised box's centre, within
    # box_noise * size / 2 of the target's, and the full image's (0.5, 0.5) in a padding slot.
    assert not np.any(to_numpy(with_denoising.bbox_embed.dense_layers[-1].kernel))
    pred = np.asarray(to_numpy(got["denoising_pred_boxes"]), "float64")  # (B, L, G * M, 4)
    np.testing.assert_allclose(pred[..., 2:], 0.5, atol=1e-6)
    boxes, valid = np.asarray(targets["boxes"], "float64"), np.asarray(targets["valid"]) > 0
    per_query = lambda x: np.concatenate([x] * GROUPS, axis=1)  # noqa: E731  (group-major)
    boxes, valid = per_query(boxes), per_query(valid)
    reach = BOX_NOISE * boxes[..., 2:] / 2 + 1e-5
    for layer in range(pred.shape[1]):
        centre = pred[:, layer, :, :2]
        assert np.all(np.abs(centre - boxes[..., :2])[valid] <= reach[valid]), centre
        np.testing.assert_allclose(centre[~valid], 0.5, atol=1e-6)
    # The two layers of a query share its reference point (and so, at init, its box).
    np.testing.assert_allclose(pred[:, 0], pred[:, 1], atol=1e-6)


def test_the_loss_adds_the_focal_reconstruction_loss():
    rng = np.random.default_rng(3)
    _, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    y_pred = {
        "logits": rng.normal(size=(4, NUM_QUERIES, NUM_CLASSES)).astype("float32"),
        "pred_boxes": rng.uniform(0.2, 0.6, size=(4, NUM_QUERIES, 4)).astype("float32"),
    }
    dn = {
        "denoising_logits": rng.normal(size=(4, 1, GROUPS * MAX_BOXES, NUM_CLASSES)).astype("float32"),
        "denoising_pred_boxes": rng.uniform(0.2, 0.6, size=(4, 1, GROUPS * MAX_BOXES, 4)).astype("float32"),
    }
    loss = ConditionalDETRLoss(NUM_CLASSES, auxiliary_loss=False, focal_alpha=0.3, focal_gamma=1.5)
    plain, with_dn = loss(targets, y_pred), loss(targets, {**y_pred, **dn})
    assert "loss_dn" not in plain
    expected = denoising_loss(
        targets, dn["denoising_logits"], dn["denoising_pred_boxes"], NUM_CLASSES, ce_weight=2.0, bbox_weight=5.0,
        giou_weight=2.0, classification="focal", focal_alpha=0.3, focal_gamma=1.5,
    )  # fmt: skip
    for key in ("loss_dn", "loss_dn_ce", "loss_dn_bbox", "loss_dn_giou"):
        np.testing.assert_allclose(float(with_dn[key]), float(expected[key]), rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(float(with_dn["loss"]), float(plain["loss"]) + float(with_dn["loss_dn"]), rtol=1e-6)


def test_fit_with_denoising_logs_its_loss_and_learns(models):
    model = models[0]
    images, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2, weight_decay=0.0))
    history = model.fit(images, targets, batch_size=4, epochs=20, verbose=0).history
    loss, loss_dn = np.array(history["loss"]), np.array(history["loss_dn"])
    assert np.all(np.isfinite(loss)) and np.all(loss_dn > 0)
    assert np.all(loss > loss_dn)  # the total includes it, next to the set loss
    # The noise is new at every step, so the losses are noisy: compare the last epochs with the first.
    assert loss_dn[-3:].mean() < 0.8 * loss_dn[0] and loss[-3:].mean() < 0.9 * loss[0], history


def test_bad_denoising_arguments_fail_at_construction():
    with pytest.raises(TypeError, match="denoising takes None, True"):
        tiny_conditional_detr(5)
    with pytest.raises(ValueError, match="groups >= 1"):
        tiny_conditional_detr({"groups": 0})
