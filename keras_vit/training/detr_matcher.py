"""DETR's Hungarian matcher: the one-to-one assignment of predictions to targets that the set loss scores.

The matching cost is computed with `keras.ops` on the device. The assignment itself is solved by one
of two solvers, chosen with `solver=`:
- "scipy": `scipy.optimize.linear_sum_assignment` on the host, through `tf.numpy_function` on
  TensorFlow, `jax.pure_callback` on JAX and directly on PyTorch. Only the (N, Q, M) costs travel to
  the host, and the host checks the targets (a bad box or label is a clear error). XLA cannot compile
  it (TensorFlow's `jit_compile=True`), and on JAX the callback runs on one device for the whole
  global batch.
- "keras": `keras_vit.training.hungarian.linear_sum_assignment`, pure `keras.ops` with static shapes,
  inside the compiled step: XLA on TensorFlow (and TPU), `jit` on JAX with each device matching its
  own shard of the batch, and PyTorch.
- "auto" (the default) picks per call: "keras" inside XLA (a TensorFlow function compiled with
  `jit_compile=True`, or a JAX trace, as in every JAX train step), "scipy" everywhere else (TensorFlow
  graphs without XLA, eager calls on every backend, PyTorch), where the host solver is faster on CPU
  (see benchmarks/detr_matcher_step.py) and checks the targets.
"""

import functools

import keras
import numpy as np
from keras import ops
from scipy.optimize import linear_sum_assignment

from keras_vit.data.detection import check_target_arrays
from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from keras_vit.training import hungarian

_LARGEST = float(np.finfo(np.float32).max)

# Assignment solvers by name: whether each runs on the host (a callback XLA cannot compile).
SOLVERS = {"scipy": {"runs_on_host": True}, "keras": {"runs_on_host": False}, "auto": {"runs_on_host": False}}
# Stand-in for non-finite costs on the device: large, yet far from float32's limits so that the
# solver's sums of costs and potentials stay finite.
_DEVICE_LARGEST = 1e10


def _assign_on_host(cost, valid, labels, boxes, num_classes, rows_per_image=1):
    """NumPy: per image, the Hungarian assignment of valid target slots to queries.

    Returns (N, M) int32: the query matched to each target slot, -1 for padding (or a target left
    unmatched because there are fewer queries than targets).
    """
    cost = np.asarray(cost, "float64")
    valid = np.asarray(valid)
    check_target_arrays(np.asarray(boxes, "float64"), np.asarray(labels), valid, num_classes, rows_per_image)
    assignment = np.full(valid.shape, -1, "int32")
    for n in range(cost.shape[0]):
        columns = np.flatnonzero(valid[n] > 0)
        if columns.size == 0:
            continue
        # As the reference does: non-finite costs (a diverging model) become the largest float, so
        # such a query is matched only when nothing else can be.
        image_cost = np.nan_to_num(cost[n][:, columns], nan=_LARGEST, posinf=_LARGEST, neginf=_LARGEST)
        query_index, column_index = linear_sum_assignment(image_cost)
        assignment[n, columns[column_index]] = query_index
    return assignment


def _host_assignment(cost, valid, labels, boxes, num_classes, rows_per_image=1):
    """Runs `_assign_on_host` from inside a (possibly compiled) computation on any backend."""
    cost, valid, labels, boxes = (ops.stop_gradient(ops.convert_to_tensor(x)) for x in (cost, valid, labels, boxes))
    max_boxes = valid.shape[-1]
    host = lambda *arrays: _assign_on_host(*arrays, num_classes=num_classes, rows_per_image=rows_per_image)  # noqa: E731
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
            raise ValueError(
                "DETR's Hungarian matching runs on the host (scipy) and XLA cannot compile it: on "
                "TensorFlow, compile the model with jit_compile=False (Keras picks XLA by itself on a GPU)."
            )
        out = tf.numpy_function(host, [cost, valid, labels, boxes], tf.int32, stateful=False)
        out.set_shape([cost.shape[0], max_boxes])
        return out
    if backend == "jax":
        import jax

        shape = jax.ShapeDtypeStruct((cost.shape[0], max_boxes), "int32")
        return jax.pure_callback(host, shape, cost, valid, labels, boxes, vmap_method="sequential")
    arrays = [ops.convert_to_numpy(x) for x in (cost, valid, labels, boxes)]
    return ops.convert_to_tensor(host(*arrays), dtype="int32")


def _device_assignment(cost, valid):
    """The (N, M) assignment of valid target slots to queries with the `keras.ops` solver."""
    if keras.backend.backend() == "jax" and not is_jax_tracing((cost, valid)):
        # Eager JAX: compile the solver once per shape rather than its loops on every call.
        return _jax_jit(_solve_on_device)(cost, valid)
    return _solve_on_device(cost, valid)


@functools.cache
def _jax_jit(function):
    import jax

    return jax.jit(function)


def _solve_on_device(cost, valid):
    cost = ops.stop_gradient(ops.cast(cost, "float32"))
    # As on the host: a non-finite cost (a diverging model) is matched only when nothing else can be.
    cost = ops.where(ops.isfinite(cost), cost, _DEVICE_LARGEST)
    _, query_for_target = hungarian.linear_sum_assignment(cost, col_mask=ops.convert_to_tensor(valid) > 0)
    return query_for_target


def in_xla_compilation(tensor):
    """Whether `tensor` is being traced for XLA: a TensorFlow function with `jit_compile=True`, or JAX's jit.

    Example:
    >>> in_xla_compilation(np.zeros((1, 2)))
    False
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        return not tf.executing_eagerly() and bool(
            control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
        )
    return is_jax_tracing(tensor)


def safe_labels(labels, valid, num_logits):
    """Labels with every padding slot set to 0, so that `one_hot` sees only classes in range.

    Padding slots may hold any label; out-of-range values would break `one_hot` on some backends
    before the host check can name them.

    Example:
    >>> keras.ops.convert_to_numpy(safe_labels(np.array([[2, 99]]), np.array([[1.0, 0.0]]), 3)).tolist()
    [[2, 0]]
    """
    return ops.clip(ops.where(valid > 0, labels, 0), 0, num_logits - 1)


def safe_target_boxes(boxes, valid):
    """Boxes with every padding slot set to the full image (0.5, 0.5, 1, 1).

    Padding slots hold arbitrary (often all-zero) boxes; a zero-area box makes GIoU 0/0 = NaN, and
    NaN * 0 is still NaN in the gradient.

    Example:
    >>> keras.ops.convert_to_numpy(safe_target_boxes(np.zeros((1, 1, 4), "float32"), np.zeros((1, 1)))).tolist()
    [[[0.5, 0.5, 1.0, 1.0]]]
    """
    placeholder = ops.convert_to_tensor(np.array([0.5, 0.5, 1.0, 1.0], "float32"))
    return ops.where(ops.expand_dims(valid, -1) > 0, boxes, placeholder)


def is_jax_tracing(structure):
    """Whether any array in `structure` is a JAX tracer (inside `jax.jit`); False on other backends.

    Example:
    >>> is_jax_tracing({"logits": np.zeros((1, 2))})
    False
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(structure))


@keras.saving.register_keras_serializable(package="keras_vit")
class HungarianMatcher:
    """Matches DETR's predictions to targets one-to-one, minimizing DETR's matching cost.

    cost = cost_class * (-p(target class)) + cost_bbox * L1(boxes) + cost_giou * (-GIoU(boxes)),
    solved per image by `solver`:
    - "auto" (default): the `keras.ops` solver inside XLA (TensorFlow `jit_compile=True`, any JAX
      jit: every JAX train step), scipy on the host everywhere else (TensorFlow without XLA, eager
      calls, PyTorch), where it is faster on CPU and checks the targets.
    - "keras": always `keras_vit.training.hungarian.linear_sum_assignment` (pure `keras.ops`,
      compiled with the step; targets are not checked).
    - "scipy": always `scipy.optimize.linear_sum_assignment` on the host (not under XLA).
    Both give an optimal assignment (the same one when it is unique; among equal-cost
    assignments either may be returned).

    Call with `logits` (N, Q, C + 1), `pred_boxes` (N, Q, 4) and padded targets; returns (N, M)
    int32, the query matched to each target slot (-1 for padding).

    Example:
    >>> from keras_vit.data.detection import pad_detection_targets
    >>> matcher = HungarianMatcher()
    >>> logits = np.zeros((1, 3, 3), "float32")
    >>> pred = np.array([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]], "float32")
    >>> targets = pad_detection_targets([[[0.8, 0.8, 0.1, 0.1]]], [[1]], max_boxes=2)
    >>> keras.ops.convert_to_numpy(matcher(logits, pred, targets)).tolist()
    [[2, -1]]
    """

    def __init__(self, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0, num_classes=None, solver="auto"):
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher needs at least one non-zero cost.")
        if solver not in SOLVERS:
            raise ValueError(f"Unknown assignment solver {solver!r}; the solvers are {sorted(SOLVERS)}.")
        self.cost_class = float(cost_class)
        self.cost_bbox = float(cost_bbox)
        self.cost_giou = float(cost_giou)
        self.num_classes = num_classes
        self.solver = solver

    @property
    def runs_on_host(self):
        """Whether the assignment is always a host callback, which XLA (TensorFlow's jit_compile) cannot compile."""
        return SOLVERS[self.solver]["runs_on_host"]

    def cost_matrix(self, logits, pred_boxes, target_labels, target_boxes):
        """The (N, Q, M) matching cost, with `keras.ops`."""
        logits = ops.cast(logits, "float32")
        pred_boxes = ops.cast(pred_boxes, "float32")
        target_boxes = ops.cast(target_boxes, "float32")
        probs = ops.softmax(logits, axis=-1)
        target_onehot = ops.one_hot(ops.cast(target_labels, "int32"), ops.shape(logits)[-1])
        cost_class = -ops.einsum("nqc,nmc->nqm", probs, target_onehot)
        cost_bbox = ops.sum(
            ops.abs(ops.expand_dims(pred_boxes, 2) - ops.expand_dims(target_boxes, 1)), axis=-1
        )
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    def resolve_solver(self, cost, solver=None):
        """The solver a call on `cost` uses: "keras" or "scipy" (see the class docstring for "auto")."""
        solver = solver or self.solver
        if solver == "auto":
            return "keras" if in_xla_compilation(cost) else "scipy"
        return solver

    def assign(self, cost, valid, labels, boxes, solver=None, rows_per_image=1):
        """The (N, M) assignment minimizing `cost` (N, Q, M) over the valid target slots.

        `labels` and `boxes` are the targets as given (not the stand-ins for padding): the host
        solver checks them and names a bad one. `solver` overrides `self.solver` for this call.
        `rows_per_image`: how many consecutive rows hold one image's targets (the set loss repeats
        them once per decoder layer), so an error names the image as the user gave it.
        """
        if self.resolve_solver(cost, solver) == "keras":
            return _device_assignment(cost, ops.cast(valid, "float32"))
        return _host_assignment(cost, valid, labels, boxes, self.num_classes, rows_per_image)

    def __call__(self, logits, pred_boxes, targets):
        if keras.backend.backend() == "jax" and not is_jax_tracing((logits, pred_boxes, targets)):
            import jax  # eager JAX: compile once rather than op by op

            if getattr(self, "_jitted", None) is None:
                # An eager call: "auto" solves on the host, as on the other backends.
                host = "scipy" if self.solver == "auto" else None
                self._jitted = jax.jit(lambda *args: self._match(*args, solver=host))
            return self._jitted(logits, pred_boxes, dict(targets))
        return self._match(logits, pred_boxes, targets)

    def _match(self, logits, pred_boxes, targets, solver=None):
        raw_labels = ops.cast(targets["labels"], "int32")
        valid = ops.cast(targets["valid"], "float32")
        boxes = safe_target_boxes(ops.cast(targets["boxes"], "float32"), valid)
        labels = safe_labels(raw_labels, valid, ops.shape(logits)[-1])
        cost = self.cost_matrix(logits, pred_boxes, labels, boxes)
        return self.assign(cost, valid, raw_labels, targets["boxes"], solver=solver)

    def get_config(self):
        return {
            "cost_class": self.cost_class,
            "cost_bbox": self.cost_bbox,
            "cost_giou": self.cost_giou,
            "num_classes": self.num_classes,
            "solver": self.solver,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
