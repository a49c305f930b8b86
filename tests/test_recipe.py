"""The DeiT recipe: weight-decay exclusions, schedule, loss, augmentation, and the parts in one fit()."""

import math

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy
from keras_vit.training import recipe

TINY = dict(image_size=16, patch_size=8, hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, num_classes=4)


def test_weight_decay_excludes_norms_biases_tokens_and_position_embeddings():
    model = keras_vit.VisionTransformer(**TINY, distilled=True)
    excluded = {v.path for v in recipe.no_weight_decay_variables(model)}
    decayed = {v.path for v in model.trainable_variables} - excluded
    assert decayed == {
        "patch_embed/proj/kernel", "head/kernel", "head_dist/kernel",
        *(f"block_{i}/{part}/kernel" for i in range(2) for part in ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2")),
    }
    assert {"cls_token/token", "dist_token/token", "pos_embed/embedding", "norm/gamma", "norm/beta",
            "block_0/norm1/gamma", "block_1/mlp/fc2/bias", "head_dist/bias"} <= excluded


def test_adamw_step_decays_only_the_decayed_weights():
    model = keras_vit.VisionTransformer(**TINY)
    # No warm-up: the first step uses the peak rate, 5e-4 for a batch of 512.
    optimizer = recipe.deit_optimizer(model, batch_size=512, steps_per_epoch=10, epochs=2, warmup_epochs=0)
    before = {v.path: to_numpy(v).copy() for v in model.trainable_variables}
    excluded = {v.path for v in recipe.no_weight_decay_variables(model)}
    # With zero gradients Adam's update is zero: only the decoupled weight decay moves the weights.
    optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in model.trainable_variables])
    shrink = 1.0 - 5e-4 * 0.05
    for variable in model.trainable_variables:
        expected = before[variable.path] if variable.path in excluded else before[variable.path] * shrink
        np.testing.assert_allclose(to_numpy(variable), expected, rtol=2e-7, atol=0, err_msg=variable.path)


def test_learning_rate_scaling_and_warmup_cosine_values():
    assert recipe.scaled_learning_rate(512) == 5e-4
    assert recipe.scaled_learning_rate(128) == pytest.approx(1.25e-4)
    peak, total, warmup, start, end = 1e-3, 1000, 100, 1e-6, 1e-5
    schedule = recipe.warmup_cosine_schedule(peak, total, warmup, start, end)

    def expected(step):  # linear warm-up, then cosine from the peak to the minimum
        if step < warmup:
            return start + (peak - start) * step / warmup
        progress = (step - warmup) / (total - warmup)
        return end + 0.5 * (peak - end) * (1 + math.cos(math.pi * progress))

    for step in (0, 1, 50, 99, 100, 101, 325, 550, 999, 1000):
        assert float(to_numpy(schedule(step))) == pytest.approx(expected(step), rel=1e-5), step
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        recipe.warmup_cosine_schedule(peak, 10, 10)


def test_deit_optimizer_schedule_is_per_step_from_epochs_and_keeps_an_ema():
    model = keras_vit.VisionTransformer(**TINY)
    optimizer = recipe.deit_optimizer(model, batch_size=256, steps_per_epoch=10, epochs=30, warmup_epochs=5,
                                      use_ema=True, ema_momentum=0.9)
    schedule = optimizer._learning_rate
    assert float(to_numpy(schedule(50))) == pytest.approx(2.5e-4, rel=1e-5)  # peak after 5 epochs
    assert float(to_numpy(schedule(300))) == pytest.approx(1e-5, rel=1e-4)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9 and optimizer.weight_decay == 0.05


def test_label_smoothed_loss_equals_numpy():
    logits = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    soft = np.array([[1, 0, 0, 0], [0.3, 0.7, 0, 0], [0, 0, 0.5, 0.5]], "float32")
    smoothed = soft * 0.9 + 0.1 / 4
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -(smoothed * log_probs).sum(-1).mean()
    assert float(to_numpy(recipe.deit_loss()(soft, logits))) == pytest.approx(expected, rel=1e-5)


def _batch(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32"), rng.integers(0, 4, size=n)


def test_augmentation_keeps_shapes_and_gives_soft_labels():
    images, labels = _batch()
    augment = recipe.DeiTAugmentation(num_classes=4, seed=1)
    for _ in range(3):  # MixUp and CutMix batches
        out_images, soft = (to_numpy(t) for t in augment(images, labels))
        assert out_images.shape == images.shape and out_images.dtype == np.float32
        assert out_images.min() >= 0 and out_images.max() <= 255
        assert soft.shape == (8, 4) and (soft >= 0).all()
        np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
        assert (soft.max(-1) < 1).any()  # some labels are mixed
        assert ((soft > 1e-6).sum(-1) <= 2).all()  # each row mixes its label with one other image's


def test_augmentation_with_everything_off_is_identity_and_one_hot():
    images, labels = _batch()
    augment = recipe.DeiTAugmentation(4, num_ops=0, random_erasing=0, mixup_alpha=0, cutmix_alpha=0)
    out_images, soft = (to_numpy(t) for t in augment(images, labels))
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_array_equal(soft, np.eye(4)[labels])


def test_random_erasing_alone_erases_a_rectangle_in_some_images():
    images, labels = _batch(16)
    augment = recipe.DeiTAugmentation(4, num_ops=0, random_erasing=1.0, mixup_alpha=0, cutmix_alpha=0, seed=3)
    out_images, _ = (to_numpy(t) for t in augment(images, labels))
    changed = (out_images != images).any(-1).mean(axis=(1, 2))  # fraction of changed pixels per image
    assert (changed > 0).all() and (changed <= 1 / 3 + 0.05).all()


def test_recipe_parts_train_together_with_fit():
    model = keras_vit.VisionTransformer(**TINY, distilled=True, drop_path_rate=recipe.DEIT_RECIPE["drop_path_rate"],
                                        seed=0)
    images, labels = _batch(8)
    batches = recipe.AugmentedBatches(images, labels, batch_size=4, augmentation=recipe.DeiTAugmentation(4, seed=0),
                                      seed=0)
    model.compile(optimizer=recipe.deit_optimizer(model, 4, len(batches), epochs=2, warmup_epochs=1, use_ema=True,
                                                  ema_momentum=0.5),
                  loss=recipe.deit_loss())
    history = model.fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and all(np.isfinite(history.history["loss"]))
