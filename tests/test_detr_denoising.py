"""DN-DETR denoising training for DETR: the noised queries, the attention mask, the reconstruction
loss against plain NumPy constructions; inference unchanged; fit() learns on every backend."""

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
from keras_vit.layers.denoising import (
    DenoisingQueries,
    apply_denoising_noise,
    denoising_attention_mask,
    draw_denoising_noise,
)
from keras_vit.models.detr.detr_model import DENOISING_TARGETS, DETRModel
from keras_vit.training import Denoising, DETRLoss, denoising_loss

NUM_CLASSES = 3
GROUPS = 2
MAX_BOXES = 3
NUM_QUERIES = 6


def tiny_detr(denoising):
    return keras_vit.DETR(
        tiny_detection_cnn(), num_classes=NUM_CLASSES, num_queries=NUM_QUERIES, hidden_dim=16, num_encoder_layers=1,
        num_decoder_layers=2, num_heads=2, mlp_dim=32, dropout=0.0, input_shape=(32, 32, 3), denoising=denoising,
    )  # fmt: skip


@pytest.fixture(scope="module")
def models():
    """A model with denoising and the same model without it, with the same weights."""
    keras.utils.set_random_seed(1)
    with_denoising = tiny_detr(Denoising(groups=GROUPS))
    plain = tiny_detr(None)
    copy_weights_by_path(with_denoising, plain)
    return with_denoising, plain


# ------------------------------------------------------------------ the noised queries and the mask


def numpy_noised_queries(boxes, labels, valid, draws, label_noise, box_noise):
    """DN-DETR's noising written out one box at a time."""
    flip, new_label, box_draw = (np.asarray(to_numpy(draws[key])) for key in ("flip", "new_label", "box"))
    batch, groups, max_boxes = flip.shape
    out_labels = np.zeros((batch, groups * max_boxes), "int64")
    out_boxes = np.zeros((batch, groups * max_boxes, 4), "float64")
    out_valid = np.zeros((batch, groups * max_boxes), "float64")
    for b in range(batch):
        for g in range(groups):
            for m in range(max_boxes):
                q = g * max_boxes + m
                if not valid[b, m]:
                    out_boxes[b, q] = [0.5, 0.5, 1.0, 1.0]
                    continue
                out_valid[b, q] = 1.0
                out_labels[b, q] = new_label[b, g, m] if flip[b, g, m] < label_noise else labels[b, m]
                cx, cy, w, h = boxes[b, m]
                u = box_draw[b, g, m]
                noised = [cx + u[0] * box_noise * w / 2, cy + u[1] * box_noise * h / 2,
                          w + u[2] * box_noise * w, h + u[3] * box_noise * h]
                out_boxes[b, q] = np.clip(noised, 0.0, 1.0)
    return out_labels, out_boxes, out_valid


def test_noised_queries_equal_a_numpy_construction_with_a_fixed_seed():
    _, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    boxes, labels, valid = targets["boxes"], targets["labels"], targets["valid"]
    denoising = Denoising(groups=3, label_noise=0.5, box_noise=0.4)
    draws = draw_denoising_noise(4, 3, MAX_BOXES, NUM_CLASSES, seed=7)
    noised = apply_denoising_noise(boxes, labels, valid, draws, denoising.label_noise, denoising.box_noise)
    expected = numpy_noised_queries(boxes, labels, valid, draws, denoising.label_noise, denoising.box_noise)
    np.testing.assert_array_equal(to_numpy(noised["labels"]), expected[0])
    np.testing.assert_allclose(to_numpy(noised["boxes"]), expected[1], atol=1e-6)
    np.testing.assert_array_equal(to_numpy(noised["valid"]), expected[2])
    flipped = np.asarray(to_numpy(draws["flip"])) < 0.5
    assert flipped.any() and (~flipped).any()  # the seed exercises both branches

    # The layer draws the same numbers from a SeedGenerator with the same seed.
    layer = DenoisingQueries(NUM_CLASSES, 16, denoising, seed=11)
    out = layer(boxes, labels, valid, num_queries=NUM_QUERIES)
    draws = draw_denoising_noise(4, 3, MAX_BOXES, NUM_CLASSES, seed=keras.random.SeedGenerator(11))
    expected = numpy_noised_queries(boxes, labels, valid, draws, denoising.label_noise, denoising.box_noise)
    np.testing.assert_array_equal(to_numpy(out["labels"]), expected[0])
    np.testing.assert_allclose(to_numpy(out["boxes"]), expected[1], atol=1e-6)
    content = to_numpy(out["content"])
    assert content.shape == (4, 3 * MAX_BOXES, 16) and np.all(content[..., -1] == 1.0)  # the indicator


def test_attention_mask_equals_the_rules_and_hides_padding_slots():
    groups, max_boxes, queries = 3, 2, 4
    mask = denoising_attention_mask(groups, max_boxes, queries)
    total = groups * max_boxes + queries
    for row in range(total):
        for column in range(total):
            row_group = row // max_boxes if row < groups * max_boxes else None
            column_group = column // max_boxes if column < groups * max_boxes else None
            # Matching queries see matching queries only; a denoising query its group and the matching ones.
            allowed = column_group is None or (row_group is not None and row_group == column_group)
            assert mask[row, column] == allowed, (row, column)

    _, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    layer = DenoisingQueries(NUM_CLASSES, 16, Denoising(groups=groups), seed=0)
    out = layer(targets["boxes"], targets["labels"], targets["valid"], num_queries=queries)
    per_image = to_numpy(out["attention_mask"])[:, 0]  # (B, T, T)
    real_slot = np.tile(targets["valid"] > 0, (1, groups))  # (B, G * M)
    for b in range(4):
        key_is_real = np.concatenate([real_slot[b], np.ones(queries, bool)])
        np.testing.assert_array_equal(per_image[b], denoising_attention_mask(groups, MAX_BOXES, queries) & key_is_real)


# ------------------------------------------------------------------ the reconstruction loss


def _numpy_giou(a, b):
    def corners(box):
        return box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return inter / union - (hull - union) / hull


@pytest.mark.parametrize("classification", ["cross_entropy", "focal"])
def test_reconstruction_loss_equals_numpy(classification):
    rng = np.random.default_rng(2)
    _, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    layers, n = 2, GROUPS * MAX_BOXES
    logits = rng.normal(size=(4, layers, n, NUM_CLASSES + 1)).astype("float32")
    pred = rng.uniform(0.2, 0.6, size=(4, layers, n, 4)).astype("float32")
    out = denoising_loss(targets, logits, pred, NUM_CLASSES, classification=classification)
    num_boxes = targets["valid"].sum() * GROUPS  # 4 boxes, 2 groups
    sums = np.zeros((layers, 3))
    for b in range(4):
        for layer in range(layers):
            for q in range(n):
                m = q % MAX_BOXES
                if not targets["valid"][b, m]:
                    continue
                label, box = targets["labels"][b, m], targets["boxes"][b, m].astype("float64")
                x = logits[b, layer, q].astype("float64")
                if classification == "cross_entropy":
                    ce = -(x[label] - np.log(np.exp(x).sum()))
                else:
                    target = np.eye(NUM_CLASSES)[label]
                    p = 1 / (1 + np.exp(-x[:NUM_CLASSES]))
                    p_t = p * target + (1 - p) * (1 - target)
                    alpha_t = 0.25 * target + 0.75 * (1 - target)
                    ce = np.sum(-alpha_t * (1 - p_t) ** 2 * np.log(p_t))
                sums[layer] += [ce, np.abs(pred[b, layer, q] - box).sum(), 1 - _numpy_giou(pred[b, layer, q], box)]
    terms = sums / num_boxes
    np.testing.assert_allclose(float(out["loss_dn_ce"]), terms[-1, 0], rtol=1e-5)
    np.testing.assert_allclose(float(out["loss_dn_bbox"]), terms[-1, 1], rtol=1e-5)
    np.testing.assert_allclose(float(out["loss_dn_giou"]), terms[-1, 2], rtol=1e-5)
    np.testing.assert_allclose(float(out["loss_dn"]), (terms @ [1.0, 5.0, 2.0]).sum(), rtol=1e-5)


def test_set_loss_adds_the_reconstruction_loss():
    rng = np.random.default_rng(3)
    _, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    y_pred = {
        "logits": rng.normal(size=(4, NUM_QUERIES, NUM_CLASSES + 1)).astype("float32"),
        "pred_boxes": rng.uniform(0.2, 0.6, size=(4, NUM_QUERIES, 4)).astype("float32"),
    }
    dn = {
        "denoising_logits": rng.normal(size=(4, 1, GROUPS * MAX_BOXES, NUM_CLASSES + 1)).astype("float32"),
        "denoising_pred_boxes": rng.uniform(0.2, 0.6, size=(4, 1, GROUPS * MAX_BOXES, 4)).astype("float32"),
    }
    loss = DETRLoss(NUM_CLASSES, auxiliary_loss=False)
    plain, with_dn = loss(targets, y_pred), loss(targets, {**y_pred, **dn})
    assert "loss_dn" not in plain
    np.testing.assert_allclose(float(with_dn["loss"]), float(plain["loss"]) + float(with_dn["loss_dn"]), rtol=1e-6)
    with pytest.raises(ValueError, match="not a whole number of groups"):
        denoising_loss(targets, dn["denoising_logits"][:, :, :-1], dn["denoising_pred_boxes"][:, :, :-1], NUM_CLASSES)


# ------------------------------------------------------------------ the model


def test_inference_is_unchanged_and_never_reads_the_denoising_weights(models):
    with_denoising, plain = models
    images, _ = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    assert_inference_ignores_denoising(with_denoising, plain, images)
    config = with_denoising.get_config()
    assert config["denoising"] == Denoising(groups=GROUPS).get_config()
    assert DETRModel.from_config(config).denoising == Denoising(groups=GROUPS)


def test_matching_queries_never_see_the_denoising_queries_in_training(models):
    with_denoising, plain = models
    images, targets = tiny_detection_batch(num_classes=NUM_CLASSES, max_boxes=MAX_BOXES)
    got = training_forward(with_denoising, {"images": images, DENOISING_TARGETS: targets})
    expected = training_forward(plain, images)
    assert tuple(got["denoising_logits"].shape) == (4, 2, GROUPS * MAX_BOXES, NUM_CLASSES + 1)
    assert tuple(got["denoising_pred_boxes"].shape) == (4, 2, GROUPS * MAX_BOXES, 4)
    for key in expected:
        np.testing.assert_allclose(to_numpy(got[key]), to_numpy(expected[key]), atol=1e-5, err_msg=key)


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


def test_checkpoint_loaders_leave_the_denoising_weights_alone(models):
    from keras_vit.weights.assignment import WeightAssignment

    with_denoising, _ = models
    training_only = {id(v) for v in with_denoising.training_only_weights}
    # A checkpoint that fills every weight but the denoising queries' (as a published DETR's does).
    tensors = {v.path: to_numpy(v) for v in with_denoising.weights if id(v) not in training_only}
    plan = WeightAssignment(with_denoising, tensors, source="test")
    for variable in with_denoising.weights:
        if id(variable) not in training_only:
            plan.assign(variable, variable.path)
    plan.apply()  # strict: raises on any weight left unfilled


def test_keras_weight_files_load_with_or_without_the_denoising_weights(models, tmp_path):
    from keras_vit.models.loading import load_weights

    with_denoising, plain = models
    for source, target in ((with_denoising, tiny_detr(None)), (plain, tiny_detr(True))):
        path = str(tmp_path / f"{source.denoising is not None}.weights.h5")
        source.save_weights(path)
        load_weights(target, path)
        by_path = {v.path: v for v in source.weights}
        for variable in target.weights:
            if variable.path in by_path:
                np.testing.assert_array_equal(to_numpy(variable), to_numpy(by_path[variable.path]), variable.path)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"groups": 0}, ValueError, "groups >= 1"),
        ({"groups": 2.5}, ValueError, "groups >= 1"),
        ({"label_noise": 1.5}, ValueError, "label_noise must be in"),
        ({"box_noise": -0.1}, ValueError, "box_noise must be in"),
        ({"box_noise": "big"}, TypeError, "box_noise must be a number"),
    ],
)
def test_bad_denoising_configurations_fail_at_construction(arguments, error, message):
    with pytest.raises(error, match=message):
        Denoising(**arguments)


def test_bad_denoising_arguments_of_the_model_fail_at_construction():
    with pytest.raises(TypeError, match="denoising takes None, True"):
        tiny_detr(5)
    with pytest.raises(ValueError, match="groups >= 1"):
        tiny_detr({"groups": 0})

    class NoDenoisingDETR(DETRModel):
        supports_denoising = False

    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    with pytest.raises(ValueError, match="cannot train with denoising"):
        NoDenoisingDETR(cnn, num_classes=2, num_queries=4, hidden_dim=16, num_encoder_layers=1,
                        num_decoder_layers=1, num_heads=2, mlp_dim=16, denoising=True)
