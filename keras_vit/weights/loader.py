"""`weights=` for every builder: a published name, or a file of any supported format."""

import os

import numpy as np

from keras_vit.weights import formats
from keras_vit.weights.published import PUBLISHED_WEIGHTS, fetch_published, hub_download, hub_name, published_names


def resolve_weights(weights, family):
    """`(path, published_entry_or_None)` for a `weights=` value.

    `weights` is a local file, a published name, or a name as copied from the hub:
    `"timm/<name>"`, `"hf-hub:timm/<name>"` (timm's `model.safetensors`) or `"owner/repo"`
    (its `model.safetensors`, or the file the table names, e.g. `"facebook/detr-resnet-50"`).

    Example:
    >>> import keras_vit
    >>> path, entry = resolve_weights(fixture_path("vit_tiny.safetensors"), "vit")
    >>> entry is None
    True
    """
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(f"weights must be None, a file path or a published weights name, got {type(weights).__name__}.")
    if os.path.exists(weights):
        return weights, None
    name, repo_id = hub_name(weights)
    entry = PUBLISHED_WEIGHTS.get(name) if name is not None else None
    if entry is not None:
        if entry["family"] != family:
            raise ValueError(f"The weights {weights!r} are for a {entry['family']} model, not {family}.")
        return fetch_published(name), entry
    if repo_id is not None:  # a hub repository the table does not list: its safetensors file
        return hub_download(repo_id, "model.safetensors", description=weights), None
    if os.sep in weights or weights.endswith((".safetensors", ".pth", ".bin", ".npz", ".h5", ".keras")):
        raise FileNotFoundError(f"No weights file at {weights!r}.")
    names = "\n  ".join(published_names(family)) or "(none yet)"
    raise ValueError(
        f"Unknown weights {weights!r}: neither a file nor a published {family} checkpoint "
        f"(hub names are written \"timm/<name>\" or \"owner/repo\"). Published {family} checkpoints:\n  {names}"
    )


def _load_keras_weights(model, path):
    snapshot = [v.numpy() for v in model.weights]
    try:
        model.load_weights(path)
    except Exception as error:
        for variable, value in zip(model.weights, snapshot):
            variable.assign(value)
        raise formats.CheckpointFormatError(
            f"The Keras weights in {path!r} do not fit model {model.name!r}: {error}. "
            "Build the model with the configuration the weights were saved from. "
            "The model's weights are unchanged."
        ) from error


def check_finite(tensors, path):
    """Refuses a checkpoint with NaN or infinite values, naming the tensors (before anything is assigned).

    Example:
    >>> import numpy as np
    >>> check_finite({"a": np.zeros(2), "b": np.array([1.0, np.nan])}, "model.safetensors")
    Traceback (most recent call last):
    ...
    keras_vit.weights.formats.CheckpointFormatError: The checkpoint 'model.safetensors' has non-finite values (NaN or inf) in 1 tensor: b. It would make every output NaN; re-export it from a healthy run (load_weights(..., allow_non_finite=True) loads it anyway, for debugging).
    """
    bad = sorted(
        name for name, array in tensors.items()
        if np.issubdtype(np.asarray(array).dtype, np.floating) and not np.isfinite(array).all()
    )
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise formats.CheckpointFormatError(
            f"The checkpoint {path!r} has non-finite values (NaN or inf) in {len(bad)} tensor"
            f"{'s' if len(bad) > 1 else ''}: {shown}. It would make every output NaN; re-export it from a "
            "healthy run (load_weights(..., allow_non_finite=True) loads it anyway, for debugging)."
        )


def load_weights(model, weights, converter, family, allow_head_reset=False, allow_non_finite=False):
    """Fills `model` from `weights` (a path or published name), strictly.

    `converter(model, tensors, allow_head_reset)` maps a state dict onto the model
    (see `keras_vit.weights.assignment`). Keras weight files load through Keras.
    A checkpoint with NaN or infinite values is refused unless `allow_non_finite`.
    On any error the model is left as it was.

    Example:
    >>> import keras_vit, tempfile, os
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "vit.weights.h5")
    >>> model.save_weights(path)
    >>> from keras_vit.models.vit.convert_vit import convert_vit
    >>> load_weights(model, path, convert_vit, "vit")
    """
    if weights is None:
        return
    path, _ = resolve_weights(weights, family)
    fmt, tensors = formats.read_checkpoint(path)
    if tensors is None:
        _load_keras_weights(model, path)
        return
    if not allow_non_finite:
        check_finite(tensors, path)
    converter(model, tensors, allow_head_reset=allow_head_reset)
