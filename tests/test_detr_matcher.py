"""HungarianMatcher's solvers: the keras.ops solver gives scipy's matching on every backend, "auto" picks
the keras.ops solver inside XLA / JAX jit and scipy elsewhere, and DETR trains with jit_compile=True."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, to_numpy

from keras_vit.data.detection import pad_detection_targets
from keras_vit.training import HungarianMatcher
from keras_vit.training import detr_matcher

NUM_CLASSES = 3


def _predictions(batch=4, queries=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, queries, NUM_CLASSES + 1)).astype("float32")
    boxes = np.concatenate([rng.uniform(0.2, 0.8, (batch, queries, 2)), rng.uniform(0.05, 0.4, (batch, queries, 2))],
                           axis=-1).astype("float32")  # fmt: skip
    return logits, boxes


def _targets(batch=4):
    boxes = [[[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4], [0.5, 0.5, 0.1, 0.1]], [], [[0.5, 0.5, 0.5, 0.5]],
             [[0.2, 0.8, 0.2, 0.2], [0.6, 0.3, 0.2, 0.2]]]  # fmt: skip
    labels = [[0, 2, 1], [], [1], [2, 0]]
    return pad_detection_targets(boxes[:batch], labels[:batch], max_boxes=4, num_classes=NUM_CLASSES)


def _total_cost(cost, assignment):
    return sum(cost[n, q, m] for n in range(len(cost)) for m, q in enumerate(assignment[n]) if q >= 0)


def _assign_both_ways(cost, valid):
    matcher = HungarianMatcher(num_classes=NUM_CLASSES)
    labels = np.zeros(valid.shape, "int32")
    boxes = np.tile(np.array([0.5, 0.5, 0.2, 0.2], "float32"), valid.shape + (1,))
    return [to_numpy(matcher.assign(cost, valid, labels, boxes, solver=solver)) for solver in ("keras", "scipy")]


def test_keras_solver_gives_scipys_matching_on_detr_costs():
    logits, boxes = _predictions()
    targets = _targets()
    matcher = HungarianMatcher(num_classes=NUM_CLASSES)
    cost = to_numpy(matcher.cost_matrix(logits, boxes, targets["labels"], targets["boxes"]))
    on_device, on_host = _assign_both_ways(cost, targets["valid"])
    # Random costs have one optimum: the same assignment, -1 on every padding slot.
    np.testing.assert_array_equal(on_device, on_host)
    assert np.all(on_device[targets["valid"] == 0] == -1)
    # More targets than queries: as many matched as there are queries, the same total cost.
    wide = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")
    on_device, on_host = _assign_both_ways(wide, np.ones((2, 5), "float32"))
    assert (on_device >= 0).sum(axis=1).tolist() == [3, 3]
    np.testing.assert_allclose(_total_cost(wide, on_device), _total_cost(wide, on_host), rtol=1e-6)


def test_keras_solver_on_tied_and_non_finite_costs():
    tied = np.random.default_rng(2).integers(0, 3, size=(3, 6, 4)).astype("float32")
    valid = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 1]], "float32")
    on_device, on_host = _assign_both_ways(tied, valid)
    # Among equal-cost optima either may be chosen: a valid one-to-one matching with the same total.
    for row in on_device:
        matched = row[row >= 0]
        assert len(set(matched.tolist())) == len(matched)
    np.testing.assert_array_equal(on_device >= 0, valid > 0)
    assert _total_cost(tied, on_device) == _total_cost(tied, on_host)
    # A diverging query (NaN, inf costs) is matched only when nothing else can be, as on the host.
    diverging = np.random.default_rng(3).uniform(size=(1, 3, 2)).astype("float32")
    diverging[0, 0] = [np.nan, np.inf]
    on_device, on_host = _assign_both_ways(diverging, np.ones((1, 2), "float32"))
    np.testing.assert_array_equal(on_device, on_host)
    assert 0 not in on_device[0].tolist()


@pytest.fixture
def host_calls(monkeypatch):
    counter = {"calls": 0}
    host_assignment = detr_matcher._host_assignment

    def counted(*args, **kwargs):
        counter["calls"] += 1
        return host_assignment(*args, **kwargs)

    monkeypatch.setattr(detr_matcher, "_host_assignment", counted)
    return counter


def _compiled(function):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    pytest.skip("PyTorch has no XLA compilation: 'auto' always solves on the host there")


def test_auto_solves_on_the_host_eagerly_and_on_the_device_under_xla(host_calls):
    logits, boxes = _predictions()
    targets = _targets()
    matcher = HungarianMatcher(num_classes=NUM_CLASSES)
    eager = to_numpy(matcher(logits, boxes, targets))
    assert host_calls["calls"] == 1  # eager calls (JAX's too) solve with scipy and check the targets
    compiled = to_numpy(_compiled(lambda a, b, t: matcher(a, b, t))(logits, boxes, dict(targets)))
    assert host_calls["calls"] == 1  # compiled: the keras.ops solver, no host callback
    np.testing.assert_array_equal(compiled, eager)
    # An explicit host solver is refused under XLA on TensorFlow, naming the fix.
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match="jit_compile=False"):
            _compiled(lambda a, b, t: HungarianMatcher(num_classes=NUM_CLASSES, solver="scipy")(a, b, t))(
                logits, boxes, dict(targets))


def test_unknown_solver_is_a_clear_error():
    with pytest.raises(ValueError, match="'auto', 'keras', 'scipy'"):
        HungarianMatcher(solver="lapjv")


def test_detr_fit_with_xla_on_tensorflow():
    if BACKEND != "tensorflow":
        pytest.skip("jit_compile=True is XLA on TensorFlow; JAX's train step is always jitted (test_detr_training)")
    from keras_vit.models.detr.detr_model import DETR

    def tiny():
        keras.utils.set_random_seed(0)
        cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8)], name="cnn")
        return DETR(cnn, num_classes=NUM_CLASSES, num_queries=5, hidden_dim=16, num_encoder_layers=1,
                    num_decoder_layers=2, num_heads=2, mlp_dim=16, dropout=0.0)  # fmt: skip

    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    targets = _targets()
    xla, host = tiny(), tiny()
    host.set_weights(xla.get_weights())
    xla.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    host.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    assert xla.jit_compile and not host.jit_compile
    xla_history = xla.fit(images, targets, batch_size=4, epochs=6, verbose=0).history
    host_history = host.fit(images, targets, batch_size=4, epochs=1, verbose=0).history
    # The same weights, the same loss: the first step's loss with scipy on the host and in XLA.
    np.testing.assert_allclose(xla_history["loss"][0], host_history["loss"][0], rtol=1e-5)
    assert np.all(np.isfinite(xla_history["loss"])) and xla_history["loss"][-1] < xla_history["loss"][0]

