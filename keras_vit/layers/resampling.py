"""Resampling of learned position grids to a new size, in NumPy.

`resize_torch_bicubic_antialias` reproduces torch's
`F.interpolate(mode="bicubic", antialias=True, align_corners=False)`, which is
what timm uses to resample ViT/DeiT position embeddings. Its kernel is the cubic
with a = -0.5 and its weights are renormalized at the borders, also when
upsampling, so a generic image resize does not match it. `resize_bilinear` is
torch's bilinear without antialias (timm's .npz loader) and Swin's bias-table
resampling uses bicubic without antialias (`resize_torch_bicubic`).
"""

import numpy as np


def _cubic(x, a=-0.5):
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0),
    )


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _antialias_matrix(in_size, out_size, kernel, support_radius):
    """Row i holds the weights of output i over the inputs (torch's aa path)."""
    scale = in_size / out_size
    support = support_radius * scale if scale >= 1.0 else support_radius
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        js = np.arange(xmin, xmax)
        weights = kernel((js - center + 0.5) * invscale)
        total = weights.sum()
        if total != 0.0:
            weights = weights / total
        matrix[i, xmin:xmax] = weights
    return matrix


def _plain_matrix(in_size, out_size, kind):
    """torch's non-antialiased bilinear / bicubic with align_corners=False."""
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        src = scale * (i + 0.5) - 0.5
        if kind == "bilinear":
            src = max(src, 0.0)
            i0 = int(np.floor(src))
            frac = src - i0
            i1 = min(i0 + 1, in_size - 1)
            i0 = min(i0, in_size - 1)
            matrix[i, i0] += 1.0 - frac
            matrix[i, i1] += frac
        else:  # bicubic, a = -0.75 as in torch's upsample_bicubic2d
            i0 = int(np.floor(src))
            frac = src - i0
            for offset in range(-1, 3):
                weight = _cubic(np.array(offset - frac), a=-0.75)
                idx = min(max(i0 + offset, 0), in_size - 1)
                matrix[i, idx] += float(weight)
    return matrix


def resize_matrix(in_size, out_size, method):
    """The (out_size, in_size) float64 matrix that resamples one axis as torch's `F.interpolate`
    does (`method`: "bicubic_antialias", "bilinear_antialias", "bicubic" or "bilinear";
    align_corners=False).

    Example:
    >>> resize_matrix(4, 6, "bicubic_antialias").shape
    (6, 4)
    """
    if method == "bicubic_antialias":
        return _antialias_matrix(in_size, out_size, _cubic, 2.0)
    if method == "bilinear_antialias":
        return _antialias_matrix(in_size, out_size, _triangle, 1.0)
    if method in ("bilinear", "bicubic"):
        return _plain_matrix(in_size, out_size, method)
    raise ValueError(
        f"Unknown resampling method {method!r}; use 'bicubic_antialias', "
        "'bilinear_antialias', 'bicubic' or 'bilinear'."
    )


def resize_grid(grid, new_size, method="bicubic_antialias"):
    """Resizes a (H, W, C) array to `new_size` (h, w), separably, in float64.

    Example:
    >>> import numpy as np
    >>> resize_grid(np.ones((4, 4, 2)), (6, 6)).shape
    (6, 6, 2)
    """
    grid = np.asarray(grid, dtype=np.float64)
    height, width = grid.shape[:2]
    new_h, new_w = new_size
    if (height, width) == (new_h, new_w):
        return grid
    rows = resize_matrix(height, new_h, method)
    cols = resize_matrix(width, new_w, method)
    out = np.einsum("ih,hwc->iwc", rows, grid)
    return np.einsum("jw,iwc->ijc", cols, out)


def resample_position_embedding(
    pos_embed, source_grid, target_grid, num_prefix_tokens=1, method="bicubic_antialias"
):
    """Resamples a (1, prefix + H*W, D) position embedding to a new grid.

    The prefix tokens (class, distillation) are kept as they are; the patch part
    is reshaped to its (H, W) grid, resized, and flattened back row-major.

    Example:
    >>> import numpy as np
    >>> resample_position_embedding(np.zeros((1, 17, 8)), (4, 4), (6, 6)).shape
    (1, 37, 8)
    """
    pos_embed = np.asarray(pos_embed)
    dtype = pos_embed.dtype
    prefix = pos_embed[:, :num_prefix_tokens]
    patches = pos_embed[0, num_prefix_tokens:]
    source_grid = tuple(source_grid)
    target_grid = tuple(target_grid)
    if patches.shape[0] != source_grid[0] * source_grid[1]:
        raise ValueError(
            f"Position embedding has {patches.shape[0]} patch positions, "
            f"which is not a {source_grid[0]}x{source_grid[1]} grid."
        )
    grid = patches.reshape(source_grid[0], source_grid[1], -1).astype(np.float32)
    resized = resize_grid(grid, target_grid, method).astype(np.float32)
    resized = resized.reshape(1, target_grid[0] * target_grid[1], -1)
    return np.concatenate([prefix.astype(np.float32), resized], axis=1).astype(dtype)


def square_grid(num_positions):
    """The side of a square grid with `num_positions` cells, or raise."""
    side = int(round(num_positions ** 0.5))
    if side * side != num_positions:
        raise ValueError(
            f"{num_positions} positions do not form a square grid; pass the source grid explicitly."
        )
    return (side, side)
