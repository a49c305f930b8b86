"""keras_vit.training.hungarian: the same optimal total cost as scipy, a valid assignment, compiled too."""

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from keras_vit.training.hungarian import linear_sum_assignment

scipy_optimize = pytest.importorskip("scipy.optimize")


def _problems():
    """Named (cost (batch, rows, cols), row_mask, col_mask) with every case in one batch shape."""
    rng = np.random.default_rng(0)
    random = rng.normal(size=(3, 6, 6))
    tied = rng.integers(0, 3, size=(3, 6, 6)).astype("float64")  # many equal costs
    many_rows = rng.uniform(size=(3, 9, 4))  # DETR: more queries (rows) than targets (columns)
    many_cols = rng.uniform(size=(3, 4, 9))
    targets_valid = np.array([[True, True, False, False], [True, False, True, False], [False] * 4])
    queries_valid = np.ones((3, 9), bool)
    queries_valid[1, ::2] = False  # 4 valid rows, 3 valid columns in element 1: fewer columns than rows
    return {
        "random": (random, None, None),
        "tied": (tied, None, None),
        "rectangular_tall": (many_rows, None, None),
        "rectangular_wide": (many_cols, None, None),
        "padded_targets": (many_rows, None, targets_valid),
        # element 0 has fewer valid rows, element 1 fewer valid columns, element 2 no valid row
        "mixed_sides": (random, np.array([[1, 0, 1, 0, 0, 1], [1] * 6, [0] * 6], bool),
                        np.array([[1] * 6, [0, 1, 1, 0, 0, 0], [1] * 6], bool)),
        "both_masked": (many_rows, queries_valid, np.array([[True] * 4, [True, True, False, True], [True] * 4])),
    }


PROBLEMS = _problems()


def _check(cost, row_mask, col_mask, col_for_row, row_for_col):
    rows, cols = cost.shape[1:]
    row_mask = np.ones((len(cost), rows), bool) if row_mask is None else row_mask
    col_mask = np.ones((len(cost), cols), bool) if col_mask is None else col_mask
    for b in range(len(cost)):
        valid_rows, valid_cols = np.flatnonzero(row_mask[b]), np.flatnonzero(col_mask[b])
        sub = cost[b][np.ix_(valid_rows, valid_cols)]
        scipy_rows, scipy_cols = scipy_optimize.linear_sum_assignment(sub)
        expected_total = sub[scipy_rows, scipy_cols].sum()
        matched_rows = np.flatnonzero(col_for_row[b] >= 0)
        matched_cols = col_for_row[b][matched_rows]
        # A valid assignment: min(valid rows, valid cols) pairs, only valid rows/cols, each once, both views agree.
        assert len(matched_rows) == min(len(valid_rows), len(valid_cols)), (b, col_for_row[b])
        assert set(matched_rows) <= set(valid_rows) and set(matched_cols) <= set(valid_cols)
        assert len(set(matched_cols)) == len(matched_cols)
        np.testing.assert_array_equal(row_for_col[b][matched_cols], matched_rows)
        assert (row_for_col[b] >= 0).sum() == len(matched_rows)
        np.testing.assert_allclose(cost[b][matched_rows, matched_cols].sum(), expected_total, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_same_total_cost_as_scipy_and_a_valid_assignment(name):
    cost, row_mask, col_mask = PROBLEMS[name]
    col_for_row, row_for_col = linear_sum_assignment(cost.astype("float32"), row_mask, col_mask)
    assert keras.backend.standardize_dtype(col_for_row.dtype) == "int32"
    _check(cost, row_mask, col_mask, to_numpy(col_for_row), to_numpy(row_for_col))


def test_one_unbatched_matrix():
    cost = PROBLEMS["random"][0][0]
    col_for_row, row_for_col = linear_sum_assignment(cost.astype("float32"))
    assert tuple(col_for_row.shape) == (6,) and tuple(row_for_col.shape) == (6,)
    _check(cost[None], None, None, to_numpy(col_for_row)[None], to_numpy(row_for_col)[None])


def _compiled(function):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function  # torch: eager (its loops are Python loops)


def test_detr_sized_padded_problems_compiled_with_static_shapes():
    rng = np.random.default_rng(1)
    cost = rng.uniform(size=(4, 100, 20)).astype("float32")
    targets_valid = np.arange(20)[None] < np.array([[20], [7], [1], [0]])
    solve = _compiled(lambda c, m: linear_sum_assignment(c, col_mask=m))
    col_for_row, row_for_col = solve(cost, targets_valid)
    _check(cost.astype("float64"), None, targets_valid, to_numpy(col_for_row), to_numpy(row_for_col))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="rows, cols"):
        linear_sum_assignment(np.zeros((2, 2, 2, 2), "float32"))
    with pytest.raises(ValueError, match="col_mask must have 3 entries"):
        linear_sum_assignment(np.zeros((1, 2, 3), "float32"), col_mask=np.ones((1, 2), bool))
