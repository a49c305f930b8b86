"""Knowledge distillation as in DeiT (Touvron et al., 2021), trained with `fit()`.

The loss is the official one (facebookresearch/deit, `losses.py`):

    total = (1 - alpha) * student_loss(class head, labels) + alpha * distillation_loss

with the distillation loss on the distillation head (the class head for a
student without a distillation token):
- "hard": cross-entropy against the teacher's argmax, averaged over the batch;
- "soft": KL(softmax(teacher / tau) || softmax(student / tau)) summed over the
  batch and classes, times tau^2, divided by the number of logits (batch x classes);
- "none": the student loss alone (no teacher needed).
"""

import keras
from keras import ops

DISTILLATION_TYPES = ("hard", "soft", "none")


def _student_heads(student):
    """A functional view `[class_logits, distillation_logits]` of a distilled DeiT, or None."""
    names = {layer.name for layer in getattr(student, "layers", [])}
    if {"head", "head_dist"} <= names and hasattr(student, "input"):
        from keras_vit.models.deit.deit_model import distillation_heads

        return distillation_heads(student)
    return None


def _output_classes(model, input_shape, role):
    """The number of classes a classifier outputs, read from its output shape."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        try:
            spec = model.compute_output_spec(keras.KerasTensor((1,) + tuple(input_shape[1:])))
        except Exception as error:
            raise ValueError(
                f"Could not find the output shape of the {role} {model.name!r} ({error}). "
                "Build it (call it on a batch) before making the DistillationModel."
            ) from error
        shape = spec.shape if hasattr(spec, "shape") else spec
    if isinstance(shape, list) or not isinstance(shape, tuple) or not shape or isinstance(shape[0], tuple):
        raise ValueError(
            f"The {role} {model.name!r} must return one tensor of logits (batch, classes); its output "
            f"shape is {shape}."
        )
    return shape[-1]


def _per_sample_distillation(distillation_logits, teacher_logits, distillation, temperature):
    """The distillation term of each sample, (batch,), in float32; its batch mean is DeiT's term."""
    distillation_logits = ops.cast(distillation_logits, "float32")
    teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    if distillation == "hard":
        teacher_labels = ops.argmax(teacher_logits, axis=-1)
        return keras.losses.sparse_categorical_crossentropy(teacher_labels, distillation_logits, from_logits=True)
    if distillation == "soft":
        log_student = ops.log_softmax(distillation_logits / temperature, axis=-1)
        log_teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
        # DeiT sums over batch and classes and divides by batch * classes: per sample, a mean over classes.
        return ops.mean(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1) * (temperature * temperature)
    raise ValueError(f"distillation must be 'hard' or 'soft' here, got {distillation!r}.")


def distillation_loss(distillation_logits, teacher_logits, distillation="hard", temperature=1.0):
    """The DeiT distillation term on one batch of logits (a float32 scalar tensor).

    This is the plain batch mean, for use outside `fit()`. `DistillationModel`
    uses `DistillationLoss`, which Keras also scales per replica under
    `tf.distribute`.

    Example:
    >>> import numpy as np
    >>> student = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> teacher = np.array([[0.0, 3.0, 0.0]], "float32")
    >>> round(float(distillation_loss(student, teacher, "hard")), 4)  # -log softmax(student)[1]
    2.1698
    """
    return ops.mean(_per_sample_distillation(distillation_logits, teacher_logits, distillation, temperature))


@keras.saving.register_keras_serializable(package="keras_vit")
class DistillationLoss(keras.losses.Loss):
    """DeiT's distillation term as a Keras loss: `loss(teacher_logits, distillation_logits)`.

    A standard Keras loss (reduction "sum_over_batch_size", float32), so under
    `tf.distribute` Keras divides it by the number of replicas like its own
    losses, and the summed gradients of all replicas equal one device's.

    Args:
        distillation: "hard" (cross-entropy against the teacher's argmax) or
            "soft" (KL divergence at `temperature`, times temperature^2, divided
            by the number of classes).
        temperature: tau of soft distillation, > 0.

    Example:
    >>> import numpy as np
    >>> loss = DistillationLoss("hard")
    >>> teacher = np.array([[0.0, 3.0, 0.0]], "float32")
    >>> student = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> round(float(loss(teacher, student)), 4)
    2.1698
    """

    def __init__(self, distillation="hard", temperature=1.0, name="distillation_loss",
                 reduction="sum_over_batch_size", dtype="float32"):
        if distillation not in ("hard", "soft"):
            raise ValueError(f"distillation must be 'hard' or 'soft', got {distillation!r}.")
        # float32 whatever the dtype policy: losses stay in float32 under mixed precision.
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.distillation = distillation
        self.temperature = float(temperature)

    def call(self, teacher_logits, distillation_logits):
        return _per_sample_distillation(distillation_logits, teacher_logits, self.distillation, self.temperature)

    def get_config(self):
        return {**super().get_config(), "distillation": self.distillation, "temperature": self.temperature}


def _unscaled_for_logging(loss):
    """A loss as one device would log it: Keras divides its losses by the replica count under `tf.distribute`.

    The same factor as Keras' own logging (keras/src/losses/loss.py,
    `unscale_loss_for_distribution`), read through TensorFlow's public API. Only
    `tf.distribute` scales losses; JAX and PyTorch see the global batch.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            return loss * ops.cast(replicas, loss.dtype)
    return loss


def _check_teacher_input(teacher, student):
    """The teacher must accept the student's images: one clear error now, not one inside its layers in fit()."""
    student_shape = getattr(student, "input_shape", None)
    teacher_shape = getattr(teacher, "input_shape", None)
    if not isinstance(student_shape, tuple) or not isinstance(teacher_shape, tuple):
        return  # several inputs, or a subclassed model: _output_classes calls it on the student's shape
    if len(student_shape) != len(teacher_shape) or any(
        s is not None and t is not None and s != t for s, t in zip(student_shape[1:], teacher_shape[1:])
    ):
        raise ValueError(
            f"The teacher {teacher.name!r} takes inputs of shape {teacher_shape} but the student "
            f"{student.name!r} takes {student_shape}; the teacher runs on the student's images. Build the "
            "teacher for the student's input size, or put a resize in front of it (e.g. a keras.Sequential of "
            "keras.Input(student input shape), keras.layers.Resizing(height, width) and the teacher)."
        )


@keras.saving.register_keras_serializable(package="keras_vit")
class DistillationModel(keras.Model):
    """Trains `student` against a frozen `teacher` with DeiT's distillation loss.

    A distilled DeiT student (`distilled=True`) learns the labels through its
    class head and the teacher through its distillation head; any other
    classifier is distilled through its one head. The teacher is any Keras
    classifier returning (batch, classes) logits (`teacher_from_logits=False` for
    one that returns probabilities, like `keras.applications` models by default);
    it is frozen, runs in inference mode and gets no gradient.

    `compile(optimizer, loss, metrics)` takes the student's loss on the labels
    (default: sparse categorical cross-entropy on logits; use
    `CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)` with MixUp or
    CutMix soft labels). Metrics are computed on the student's inference output
    (the mean of both heads). `fit()` logs `loss` (the total), `student_loss` and
    `distillation_loss`; `evaluate()` computes the same losses without dropout.
    Calling the model returns `(class_logits, distillation_logits)`; `predict()`
    returns the student's inference logits. Save or export `model.student`.

    Args:
        student: the Keras classifier to train (returns logits).
        teacher: a Keras classifier with the same number of classes; None only
            with `distillation="none"`.
        distillation: "hard", "soft" or "none".
        alpha: weight of the distillation loss, in [0, 1].
        temperature: tau of soft distillation, > 0.
        teacher_from_logits: False when the teacher returns probabilities.

    Example:
    >>> import keras, numpy as np, keras_vit
    >>> student = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10, distilled=True)
    >>> teacher = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    >>> model = keras_vit.DistillationModel(student, teacher, distillation="hard", alpha=0.5)
    >>> model.compile(optimizer="adam", metrics=["accuracy"])
    >>> history = model.fit(np.zeros((4, 32, 32, 3), "float32"), np.arange(4), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'distillation_loss', 'loss', 'student_loss']
    """

    def __init__(self, student, teacher, distillation="hard", alpha=0.5, temperature=1.0,
                 teacher_from_logits=True, **kwargs):
        if distillation not in DISTILLATION_TYPES:
            raise ValueError(f"distillation must be one of {DISTILLATION_TYPES}, got {distillation!r}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (the weight of the distillation loss) must be in [0, 1], got {alpha!r}.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}.")
        if not isinstance(student, keras.Model):
            raise TypeError(f"student must be a keras.Model, got {type(student).__name__}.")
        if teacher is None and distillation != "none":
            raise ValueError(f"distillation={distillation!r} needs a teacher model; pass one, or distillation='none'.")
        if teacher is not None and not isinstance(teacher, keras.Model):
            raise TypeError(f"teacher must be a keras.Model, got {type(teacher).__name__}.")
        super().__init__(**kwargs)
        self.distillation = distillation
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.teacher_from_logits = bool(teacher_from_logits)
        self.student = student
        self.student_heads = _student_heads(student)  # shares the student's layers
        input_shape = student.input_shape if hasattr(student, "input_shape") else None
        student_classes = (
            self.student_heads.output_shape[0][-1]
            if self.student_heads is not None
            else _output_classes(student, input_shape, "student")
        )
        if teacher is not None:
            _check_teacher_input(teacher, student)
            teacher_classes = _output_classes(teacher, input_shape, "teacher")
            if teacher_classes != student_classes:
                raise ValueError(
                    f"The teacher {teacher.name!r} predicts {teacher_classes} classes and the student "
                    f"{student.name!r} {student_classes}: they must classify the same classes."
                )
            teacher.trainable = False
        self.teacher = teacher
        self._default_student_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float32")
        self._distillation_criterion = (
            None if distillation == "none" else DistillationLoss(distillation, self.temperature)
        )
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def call(self, images, training=False):
        """`(class_logits, distillation_logits)`; the same tensor twice for a one-head student."""
        if self.student_heads is not None:
            class_logits, distillation_logits = self.student_heads(images, training=training)
        else:
            class_logits = distillation_logits = self.student(images, training=training)
        return class_logits, distillation_logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        class_logits, distillation_logits = y_pred
        # The loss given to compile(), else sparse categorical cross-entropy on logits. Both terms are
        # Keras losses in float32: under tf.distribute each is divided by the replica count, so the
        # replicas' summed gradients equal one device's.
        student_criterion = self._compile_loss if self._compile_loss is not None else self._default_student_loss
        student_loss = ops.cast(student_criterion(y, class_logits, sample_weight), "float32")
        if self.distillation == "none":
            distill = ops.zeros((), dtype="float32")
            total = student_loss
        else:
            # The teacher runs here, on the same (augmented) images, frozen and in inference mode.
            teacher_output = self.teacher(x, training=False)
            if not self.teacher_from_logits:  # log-probabilities are logits up to a constant
                teacher_output = ops.log(ops.maximum(ops.cast(teacher_output, "float32"), 1e-12))
            distill = self._distillation_criterion(teacher_output, distillation_logits)
            total = (1.0 - self.alpha) * student_loss + self.alpha * distill
        for extra in self.losses:  # regularizers of the student, not weighted by alpha
            total = total + ops.cast(self._aggregate_additional_loss(extra), "float32")
        # Logged like Keras logs `loss`: unscaled, weighted by the number of images in the batch.
        batch_size = ops.shape(class_logits)[0]
        self.student_loss_tracker.update_state(_unscaled_for_logging(student_loss), sample_weight=batch_size)
        self.distillation_loss_tracker.update_state(_unscaled_for_logging(distill), sample_weight=batch_size)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        class_logits, distillation_logits = y_pred
        # The student's inference output: the mean of its two heads.
        logits = class_logits if self.student_heads is None else (class_logits + distillation_logits) / 2
        return super().compute_metrics(x, y, logits, sample_weight)

    def predict(self, x, *args, **kwargs):
        """The student's inference logits (`student.predict`)."""
        return self.student.predict(x, *args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher),
            "distillation": self.distillation,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "teacher_from_logits": self.teacher_from_logits,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
