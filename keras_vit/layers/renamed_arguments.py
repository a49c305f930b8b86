"""Old argument names that still work: one vocabulary across families, nothing broken.

The package names the model width `hidden_dim`, the MLP width `mlp_dim` (`mlp_ratio` where
the width changes from stage to stage, as in Swin) and the head count `num_heads` in every
family. Arguments that had other names keep working: a caller gets a `DeprecationWarning`,
and configurations saved in `.keras` files load silently (through `from_config`).
"""

import warnings


def take_renamed_arguments(kwargs, renames, owner, warn=True, stacklevel=3):
    """Moves old-named keyword arguments in `kwargs` to their new names, in place.

    `renames` maps an old name to `(new_name, convert)`; `convert` (or None) turns the old
    value into the new one. Both names given at once is an error. `stacklevel` points the
    warning at the caller's line (3: the caller of the function that calls this one), where
    Python shows a DeprecationWarning.

    Example:
    >>> kwargs = {"embed_dim": 96}
    >>> take_renamed_arguments(kwargs, {"embed_dim": ("hidden_dim", None)}, "SwinTransformer", warn=False)
    {'hidden_dim': 96}
    """
    for old, (new, convert) in renames.items():
        if old not in kwargs:
            continue
        value = kwargs.pop(old)
        if new in kwargs and kwargs[new] is not None:
            raise TypeError(f"{owner}: pass `{new}` only; `{old}` is its old name.")
        kwargs[new] = value if convert is None else convert(value)
        if warn:
            warnings.warn(
                f"{owner}: `{old}` is now called `{new}`; the old name will be removed.",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
    return kwargs
