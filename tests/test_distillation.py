"""DistillationModel: the official DeiT loss, a frozen teacher, fit/evaluate/predict/save, errors."""

import os

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy
from keras_vit.training import DistillationModel

CLASSES = 5
TINY_STUDENT = dict(image_size=16, patch_size=8, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=CLASSES)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def official_deit_loss(class_logits, distillation_logits, teacher_logits, labels, distillation, alpha, tau):
    """facebookresearch/deit losses.py, DistillationLoss.forward, in NumPy (float64)."""
    class_logits, distillation_logits, teacher_logits = (
        np.asarray(a, np.float64) for a in (class_logits, distillation_logits, teacher_logits))
    rows = np.arange(len(labels))
    base = -_log_softmax(class_logits)[rows, labels].mean()
    if distillation == "none":
        return base
    if distillation == "soft":
        log_student = _log_softmax(distillation_logits / tau)
        log_teacher = _log_softmax(teacher_logits / tau)
        kd = (np.exp(log_teacher) * (log_teacher - log_student)).sum() * tau * tau / distillation_logits.size
    else:
        kd = -_log_softmax(distillation_logits)[rows, teacher_logits.argmax(-1)].mean()
    return (1 - alpha) * base + alpha * kd


def _identity_teacher():
    """A teacher whose logits are its input: fixed teacher logits for the loss tests."""
    inputs = keras.Input((CLASSES,))
    return keras.Model(inputs, keras.layers.Identity()(inputs), name="identity_teacher")


def _student_on_logits():
    inputs = keras.Input((CLASSES,))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(inputs), name="dense_student")


FIXED = np.random.default_rng(7)
CLASS_LOGITS = FIXED.normal(size=(6, CLASSES)).astype("float32") * 2
DIST_LOGITS = FIXED.normal(size=(6, CLASSES)).astype("float32") * 2
TEACHER_LOGITS = FIXED.normal(size=(6, CLASSES)).astype("float32") * 3
LABELS = np.array([0, 1, 2, 3, 4, 0])


@pytest.mark.parametrize("distillation, alpha, tau", [("hard", 0.5, 1.0), ("soft", 0.5, 1.0), ("soft", 0.3, 3.0),
                                                      ("hard", 0.9, 1.0), ("none", 0.5, 1.0)])
def test_loss_equals_official_formula_on_fixed_logits(distillation, alpha, tau):
    model = DistillationModel(_student_on_logits(), _identity_teacher(), distillation, alpha=alpha, temperature=tau)
    model.compile(optimizer="sgd")
    total = model.compute_loss(x=TEACHER_LOGITS, y=LABELS, y_pred=(CLASS_LOGITS, DIST_LOGITS), training=True)
    expected = official_deit_loss(CLASS_LOGITS, DIST_LOGITS, TEACHER_LOGITS, LABELS, distillation, alpha, tau)
    np.testing.assert_allclose(float(to_numpy(total)), expected, rtol=1e-5, atol=1e-6)
    expected_student = official_deit_loss(CLASS_LOGITS, DIST_LOGITS, TEACHER_LOGITS, LABELS, "none", 0, 1)
    np.testing.assert_allclose(float(to_numpy(model.student_loss_tracker.result())), expected_student, rtol=1e-5)


def test_teacher_probabilities_give_the_same_soft_loss_as_its_logits():
    inputs = keras.Input((CLASSES,))
    softmax_teacher = keras.Model(inputs, keras.layers.Softmax()(inputs))
    model = DistillationModel(_student_on_logits(), softmax_teacher, "soft", temperature=2.0, teacher_from_logits=False)
    model.compile(optimizer="sgd")
    total = model.compute_loss(x=TEACHER_LOGITS, y=LABELS, y_pred=(CLASS_LOGITS, DIST_LOGITS))
    expected = official_deit_loss(CLASS_LOGITS, DIST_LOGITS, TEACHER_LOGITS, LABELS, "soft", 0.5, 2.0)
    np.testing.assert_allclose(float(to_numpy(total)), expected, rtol=1e-5)


def _teacher_cnn():
    """A small CNN teacher with BatchNorm (its moving statistics must not move either)."""
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(CLASSES),
    ], name="teacher_cnn")


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 16, 16, 3)).astype("float32"), rng.integers(0, CLASSES, size=n)


@pytest.mark.parametrize("distillation", ["hard", "soft"])
def test_evaluate_of_distilled_deit_equals_official_loss(distillation):
    student = keras_vit.VisionTransformer(**TINY_STUDENT, distilled=True)
    teacher = _teacher_cnn()
    model = DistillationModel(student, teacher, distillation, alpha=0.4, temperature=2.0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    x, y = _images()
    logs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    class_logits, dist_logits = (to_numpy(t) for t in keras_vit.distillation_heads(student)(x))
    teacher_logits = to_numpy(teacher(x, training=False))
    expected = official_deit_loss(class_logits, dist_logits, teacher_logits, y, distillation, 0.4, 2.0)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4, atol=1e-5)
    expected_accuracy = np.mean(((class_logits + dist_logits) / 2).argmax(-1) == y)
    np.testing.assert_allclose(logs["accuracy"], expected_accuracy)
    assert set(logs) == {"loss", "accuracy", "student_loss", "distillation_loss"}


def test_fit_trains_the_student_and_leaves_the_teacher_unchanged(tmp_path):
    student = keras_vit.VisionTransformer(**TINY_STUDENT, distilled=True)
    teacher = _teacher_cnn()
    teacher_before = [to_numpy(w).copy() for w in teacher.weights]
    student_before = [to_numpy(w).copy() for w in student.trainable_weights]
    model = DistillationModel(student, teacher, "soft", alpha=0.5, temperature=2.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    x, y = _images(16)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(history.history)
    assert all(np.isfinite(history.history["loss"]))
    for before, after in zip(teacher_before, teacher.weights):  # kernels, BN gamma/beta and moving stats
        np.testing.assert_array_equal(before, to_numpy(after))
    changed = [not np.array_equal(b, to_numpy(a)) for b, a in zip(student_before, student.trainable_weights)]
    assert all(changed), "every student weight (both heads, tokens, blocks) should have been trained"
    assert {id(v) for v in model.trainable_variables} == {id(v) for v in student.trainable_variables}

    # predict() is the student's inference output: one tensor of logits.
    predictions = model.predict(x, verbose=0)
    np.testing.assert_allclose(predictions, to_numpy(student(x)), atol=1e-5)

    # The DistillationModel itself saves and loads (.keras); the student is what users export.
    path = os.path.join(str(tmp_path), "distillation.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, DistillationModel) and restored.distillation == "soft"
    np.testing.assert_allclose(to_numpy(restored.student(x)), predictions, atol=1e-5)
    np.testing.assert_allclose(to_numpy(restored.teacher(x)), to_numpy(teacher(x)), atol=1e-5)
    student_path = os.path.join(str(tmp_path), "student.keras")
    model.student.save(student_path)
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(student_path)(x)), predictions, atol=1e-5)


def test_one_head_student_is_distilled_through_its_class_head():
    student = keras_vit.VisionTransformer(**TINY_STUDENT)  # no distillation token
    teacher = _teacher_cnn()
    model = DistillationModel(student, teacher, "hard", alpha=0.5)
    model.compile(optimizer="adam")
    x, y = _images()
    logs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    logits = to_numpy(student(x))
    expected = official_deit_loss(logits, logits, to_numpy(teacher(x)), y, "hard", 0.5, 1.0)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4, atol=1e-5)


def test_bad_arguments_are_clear_errors_at_construction():
    student = keras_vit.VisionTransformer(**TINY_STUDENT, distilled=True)
    wrong_teacher = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(7)])
    with pytest.raises(ValueError, match="7 classes.*5"):
        DistillationModel(student, wrong_teacher)
    teacher = _teacher_cnn()
    with pytest.raises(ValueError, match="distillation must be one of"):
        DistillationModel(student, teacher, distillation="medium")
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"alpha .* \[0, 1\]"):
            DistillationModel(student, teacher, alpha=alpha)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be"):
            DistillationModel(student, teacher, distillation="soft", temperature=temperature)
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillationModel(student, None, distillation="hard")
