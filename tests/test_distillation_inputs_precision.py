"""DistillationModel: a teacher for another input size is refused at construction; losses in float32
under mixed precision."""

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy
from keras_vit.training import DistillationLoss, DistillationModel

CLASSES = 4


def _classifier(size, name):
    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Conv2D(4, 3, strides=2),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES)], name=name)


def test_teacher_for_another_input_size_is_refused_at_construction():
    student = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)],
                               name="student")
    teacher = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)],
                               name="teacher")
    with pytest.raises(ValueError, match=r"(?s)\(None, 32, 32, 3\).*\(None, 16, 16, 3\).*Resizing"):
        DistillationModel(student, teacher)


def test_teacher_with_free_spatial_size_is_accepted():
    student = keras_vit.VisionTransformer(16, 8, 16, 1, 2, 32, num_classes=CLASSES)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    teacher = keras.Model(inputs, keras.layers.Dense(CLASSES)(features), name="any_size_teacher")
    model = DistillationModel(student, teacher, "hard")
    assert model.teacher is teacher


def test_distillation_loss_round_trips_its_config():
    loss = DistillationLoss("soft", temperature=3.0)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (clone.distillation, clone.temperature, clone.reduction) == ("soft", 3.0, "sum_over_batch_size")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("distillation", ["hard", "soft"])
def test_losses_are_float32_under_mixed_precision(policy, distillation):
    keras.config.set_dtype_policy(policy)
    model = DistillationModel(_classifier(16, "student"), _classifier(16, "teacher"), distillation, temperature=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    images = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
    labels = np.arange(4) % CLASSES
    logits = model(images)
    total = model.compute_loss(x=images, y=labels, y_pred=logits, training=True)
    assert keras.backend.standardize_dtype(total.dtype) == "float32"
    for tracker in (model.student_loss_tracker, model.distillation_loss_tracker):
        assert keras.backend.standardize_dtype(tracker.result().dtype) == "float32"
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert all(np.isfinite(values[-1]) for values in history.history.values()), history.history
    assert np.isfinite(float(to_numpy(total)))
