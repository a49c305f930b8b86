"""A minimum-cost assignment (Hungarian) solver in `keras.ops`, for DETR's matcher inside a compiled step.

The algorithm is the shortest augmenting path method (Jonker and Volgenant, 1987;
the variant described by Crouse, "On implementing 2D rectangular assignment
algorithms", 2016): rows are matched one at a time; for each, a Dijkstra search
over reduced costs `cost[i, j] - u[i] - v[j]` finds the cheapest path that ends
in a free column, the dual potentials `u`, `v` are updated so the reduced costs
stay non-negative, and the path is flipped. After row k the first k rows are
matched optimally, so after the last row the assignment is optimal.

Everything is batched and has static shapes: the outer loop runs `min(rows,
cols)` times, each search and each path flip at most as many steps
(`keras.ops.fori_loop` / `keras.ops.while_loop` with a bound), so it compiles
under TensorFlow XLA (`jit_compile=True`), JAX `jit`, and runs eagerly in PyTorch.
Work per batch element is O(k^2 n) for k matched pairs out of n = max(rows, cols).
"""

import functools

import keras
from keras import ops


def _one_hot(index, size):
    """(batch, size) bool: True at `index` (batch,) in each row."""
    return ops.expand_dims(index, 1) == ops.expand_dims(ops.arange(size, dtype="int32"), 0)


def _at(values, index):
    """values[b, index[b]] for (batch, n) values and (batch,) int32 index."""
    return ops.take_along_axis(values, ops.expand_dims(index, 1), axis=1)[:, 0]


def _argmax(mask):
    return ops.cast(ops.argmax(ops.cast(mask, "int32"), axis=-1), "int32")


def _match_rows_in_order(cost, row_valid, col_valid, num_rows_to_match):
    """Shortest augmenting paths for rows 0..num_rows_to_match-1 of square (batch, n, n) problems.

    Invalid rows are skipped, invalid columns never used; each batch element must have at
    least as many valid columns as valid rows. Returns row_for_col (batch, n) int32, -1 = free.
    """
    n = cost.shape[-1]
    batch = ops.shape(cost)[0]
    infinity = ops.cast(float("inf"), cost.dtype)
    zeros_b = ops.zeros((batch,), cost.dtype)
    minus_ones = ops.full((batch, n), -1, dtype="int32")

    def match_one_row(row, state):
        u, v, col_for_row, row_for_col = state
        row_index = ops.full((batch,), row, dtype="int32") if isinstance(row, int) else (
            ops.cast(ops.broadcast_to(row, (batch,)), "int32"))
        active = _at(row_valid, row_index)

        # Dijkstra over columns from `row`, until it reaches a free column (the sink).
        def search(i, min_value, shortest, path, scanned_rows, scanned_cols, sink, done):
            searching = ops.logical_not(done)
            scanned_rows = scanned_rows | (_one_hot(i, n) & searching[:, None])
            cost_i = ops.take_along_axis(cost, i[:, None, None], axis=1)[:, 0, :]
            reduced = min_value[:, None] + cost_i - _at(u, i)[:, None] - v
            open_cols = ops.logical_not(scanned_cols) & col_valid
            improves = open_cols & searching[:, None] & (reduced < shortest)
            path = ops.where(improves, i[:, None], path)
            shortest = ops.where(improves, reduced, shortest)
            open_shortest = ops.where(open_cols, shortest, infinity)
            lowest = ops.min(open_shortest, axis=1)
            ties = open_cols & (open_shortest == lowest[:, None])
            free_ties = ties & (row_for_col < 0)  # among equal distances a free column ends the search now
            j = ops.where(ops.any(free_ties, axis=1), _argmax(free_ties), _argmax(ties))
            min_value = ops.where(searching, lowest, min_value)
            scanned_cols = scanned_cols | (_one_hot(j, n) & searching[:, None])
            owner = _at(row_for_col, j)
            reached_free = searching & (owner < 0)
            sink = ops.where(reached_free, j, sink)
            i = ops.where(searching & ops.logical_not(reached_free), owner, i)
            return i, min_value, shortest, path, scanned_rows, scanned_cols, sink, done | reached_free

        false = ops.zeros((batch, n), "bool")
        start = (row_index, zeros_b, ops.full((batch, n), infinity, dtype=cost.dtype), minus_ones, false, false,
                 ops.full((batch,), -1, dtype="int32"), ops.logical_not(active))
        # Row k meets at most k matched columns before a free one: k + 1 <= num_rows_to_match steps.
        _, min_value, shortest, path, scanned_rows, scanned_cols, sink, _ = ops.while_loop(
            lambda *s: ops.any(ops.logical_not(s[-1])), lambda *s: search(*s), start,
            maximum_iterations=num_rows_to_match)

        # Dual update: reduced costs stay >= 0 and are 0 along the matching and the new path.
        is_row = _one_hot(row_index, n)
        shortest_at_match = ops.take_along_axis(shortest, ops.maximum(col_for_row, 0), axis=1)
        u = u + ops.where(is_row & active[:, None], min_value[:, None], 0.0)
        u = u + ops.where(scanned_rows & ops.logical_not(is_row) & active[:, None],
                          min_value[:, None] - shortest_at_match, 0.0)
        v = v - ops.where(scanned_cols & active[:, None], min_value[:, None] - shortest, 0.0)

        # Flip the path back from the sink to `row`.
        def flip(j, col_for_row, row_for_col, going):
            i = _at(path, ops.maximum(j, 0))
            row_for_col = ops.where(_one_hot(j, n) & going[:, None], i[:, None], row_for_col)
            previous = _at(col_for_row, ops.maximum(i, 0))
            col_for_row = ops.where(_one_hot(i, n) & going[:, None], j[:, None], col_for_row)
            return ops.where(going, previous, j), col_for_row, row_for_col, going & (i != row_index)

        _, col_for_row, row_for_col, _ = ops.while_loop(
            lambda *s: ops.any(s[-1]), lambda *s: flip(*s), (sink, col_for_row, row_for_col, active),
            maximum_iterations=num_rows_to_match)
        return u, v, col_for_row, row_for_col

    state = (ops.zeros((batch, n), cost.dtype), ops.zeros((batch, n), cost.dtype), minus_ones, minus_ones)
    return ops.fori_loop(0, num_rows_to_match, match_one_row, state)[3]


def linear_sum_assignment(cost, row_mask=None, col_mask=None):
    """The minimum-cost matching of rows to columns, like `scipy.optimize.linear_sum_assignment`.

    Matches min(valid rows, valid columns) pairs, each row and each column at
    most once, with the least total cost. Pure `keras.ops` with static shapes
    and bounded loops: it runs inside a compiled train step on every backend
    (TensorFlow with `jit_compile=True`, JAX `jit`, PyTorch). For DETR: cost
    (batch, queries, targets) and `col_mask` the valid (non-padding) targets.

    Args:
        cost: (rows, cols) or (batch, rows, cols) finite costs (computed in
            float32, or float64 if given).
        row_mask: optional bool, (rows,) or (batch, rows): rows that may be
            matched. Default: all.
        col_mask: optional bool, (cols,) or (batch, cols): columns that may be
            matched. Default: all.

    Returns:
        `(col_for_row, row_for_col)`, int32, shaped (…, rows) and (…, cols):
        the matched column of each row and the matched row of each column,
        -1 where unmatched.

    Example:
    >>> import numpy as np
    >>> from keras import ops
    >>> cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]], "float32")
    >>> col_for_row, row_for_col = linear_sum_assignment(cost)
    >>> ops.convert_to_numpy(col_for_row).tolist()  # total 1 + 2 + 2 = 5, as scipy finds
    [1, 0, 2]
    >>> queries_by_targets = np.array([[[0.9, 0.1], [0.2, 0.8], [0.1, 0.7]]], "float32")
    >>> valid_targets = np.array([[True, False]])  # the second target is padding
    >>> _, query_for_target = linear_sum_assignment(queries_by_targets, col_mask=valid_targets)
    >>> ops.convert_to_numpy(query_for_target).tolist()
    [[2, -1]]
    """
    if keras.backend.backend() == "jax":
        # One compiled program per shape: called eagerly, JAX would trace and compile each loop and run every
        # op around them on its own (seconds per call); inside a jitted step this is an inlined nested call.
        return _jax_solver()(cost, row_mask, col_mask)
    return _solve(cost, row_mask, col_mask)


@functools.cache
def _jax_solver():
    import jax

    return jax.jit(_solve)


def _solve(cost, row_mask, col_mask):
    """`linear_sum_assignment` in plain `keras.ops`."""
    cost = ops.convert_to_tensor(cost)
    if len(cost.shape) not in (2, 3):
        raise ValueError(f"cost must be (rows, cols) or (batch, rows, cols), got shape {tuple(cost.shape)}.")
    unbatched = len(cost.shape) == 2
    rows, cols = cost.shape[-2], cost.shape[-1]
    if rows is None or cols is None:
        raise ValueError(f"cost needs static rows and columns (the loops are bounded by them), got {cost.shape}.")
    dtype = "float64" if "float64" in str(cost.dtype) else "float32"
    cost = ops.cast(cost[None] if unbatched else cost, dtype)
    batch = ops.shape(cost)[0]

    def mask(values, size, name):
        if values is None:
            return ops.ones((batch, size), "bool")
        values = ops.cast(ops.convert_to_tensor(values), "bool")
        if len(values.shape) == 1:
            values = ops.broadcast_to(values[None], (batch, size))
        if tuple(values.shape[1:]) != (size,):
            raise ValueError(f"{name} must have {size} entries per matrix, got shape {tuple(values.shape)}.")
        return values

    row_valid, col_valid = mask(row_mask, rows, "row_mask"), mask(col_mask, cols, "col_mask")
    if rows == 0 or cols == 0:
        return (ops.full((batch, rows), -1, "int32")[0 if unbatched else slice(None)],
                ops.full((batch, cols), -1, "int32")[0 if unbatched else slice(None)])

    # Square (n, n) problems, padded with invalid rows/columns; in each matrix the side with fewer
    # valid entries becomes the rows, so every searched row can always reach a free column.
    n = max(rows, cols)
    cost = ops.pad(cost, ((0, 0), (0, n - rows), (0, n - cols)))
    row_valid = ops.pad(row_valid, ((0, 0), (0, n - rows)), constant_values=False)
    col_valid = ops.pad(col_valid, ((0, 0), (0, n - cols)), constant_values=False)
    transposed = ops.sum(ops.cast(row_valid, "int32"), axis=1) > ops.sum(ops.cast(col_valid, "int32"), axis=1)
    cost = ops.where(transposed[:, None, None], ops.transpose(cost, (0, 2, 1)), cost)
    row_valid, col_valid = (ops.where(transposed[:, None], col_valid, row_valid),
                            ops.where(transposed[:, None], row_valid, col_valid))

    # Valid rows first (in order), so min(rows, cols) outer steps cover them all.
    position = ops.arange(n, dtype="int32")[None]
    order = ops.cast(ops.argsort(ops.where(row_valid, position, position + n), axis=1), "int32")
    cost = ops.take_along_axis(cost, order[:, :, None], axis=1)
    row_valid = ops.take_along_axis(row_valid, order, axis=1)
    row_for_col = _match_rows_in_order(cost, row_valid, col_valid, min(rows, cols))

    # Back to the original row numbers, then to the original orientation.
    row_for_col = ops.where(row_for_col >= 0, ops.take_along_axis(order, ops.maximum(row_for_col, 0), axis=1), -1)
    matches = row_for_col[:, None, :] == position[:, :, None]  # [b, i, j]: row i matched to column j
    col_for_row = ops.where(ops.any(matches, axis=2), _argmax(matches), -1)
    original_col_for_row = ops.where(transposed[:, None], row_for_col, col_for_row)[:, :rows]
    original_row_for_col = ops.where(transposed[:, None], col_for_row, row_for_col)[:, :cols]
    if unbatched:
        return original_col_for_row[0], original_row_for_col[0]
    return original_col_for_row, original_row_for_col
