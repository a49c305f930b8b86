"""`weights=` for every builder: a published name, or a file of any supported format."""

import os

import keras
import numpy as np

from keras_vit.weights import formats
from keras_vit.weights.assignment import WeightAssignment
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


def _keras_file_arrays(path):
    """`{dataset path: array}` of a Keras `.weights.h5` file, or of the weights inside a `.keras` archive."""
    import io
    import zipfile

    import h5py

    def read(h5):
        arrays = {}
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
        return arrays

    if formats.detect_format(path) == formats.KERAS_ARCHIVE:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
        with h5py.File(io.BytesIO(data), "r") as h5:
            return read(h5)
    with h5py.File(path, "r") as h5:
        return read(h5)


def _keras_file_slots(model):
    """`{dataset path: variable}`: where `model.save_weights` puts each variable of `model`.

    Keras' own traversal (`saving_lib._save_state`) walks the model into an in-memory store, so
    the paths are exactly those of the files Keras writes. Raises NotImplementedError when this
    Keras has no such traversal or a layer stores computed values rather than its variables.
    """
    try:
        from keras.src.saving import saving_lib

        store = saving_lib.NpzIOStore(None, mode="w")
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    except (ImportError, AttributeError, TypeError) as error:
        raise NotImplementedError(f"this Keras version cannot list where its files keep variables ({error})") from None
    slots = {}
    for inner_path, values in store.contents.items():
        group = "vars" if inner_path == "__root__" else f"{inner_path}/vars"
        for index, value in values.items():
            if not isinstance(value, keras.Variable):
                raise NotImplementedError(f"{inner_path} stores a computed value, not a variable")
            slots[f"{group}/{index}"] = value
    return slots


# Classifier heads: reset, not resampled, when the number of classes differs (DETR's is `class_embed`).
HEAD_LAYER_NAMES = ("head", "head_dist", "class_embed")


def load_keras_checkpoint_resampled(model, path, allow_head_reset=False):
    """Fills `model` from a Keras file saved by a model of the same architecture at another input
    size or with another number of classes, as a foreign checkpoint would be.

    A weight whose shape differs is resampled by the layer that owns it, through its
    `resample_weight(variable, array)` method (position embeddings as timm resamples them,
    Swin's relative-position bias tables as timm's `resize_rel_pos_bias_table`); the head
    (layers `head`, `head_dist`, DETR's `class_embed`) is left at its initial values when `allow_head_reset` and the
    classes differ, said once in a log line. Every other difference raises `WeightsMismatchError`,
    and the model keeps its weights.

    Example:
    >>> import keras_vit, os, tempfile
    >>> small = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "small.weights.h5")
    >>> small.save_weights(path)
    >>> large = keras_vit.VisionTransformer(48, 8, 48, 2, 3, 192, num_classes=10)
    >>> load_keras_checkpoint_resampled(large, path)
    >>> tuple(large.get_layer("pos_embed").embedding.shape)
    (1, 37, 48)
    """
    # A compiled model's .keras file also holds its optimizer's state, which a new model does not take.
    arrays = {key: array for key, array in _keras_file_arrays(path).items() if not key.startswith("optimizer/")}
    slots = _keras_file_slots(model)
    owners = {}
    for layer in [model, *model._flatten_layers(include_self=False, recursive=True)]:
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            owners.setdefault(id(variable), layer)
    head_ids = {
        id(variable) for layer in model.layers if layer.name in HEAD_LAYER_NAMES for variable in layer.weights
    }
    plan = WeightAssignment(model, arrays, source=f"Keras file {os.path.basename(path)!r}",
                            allow_head_reset=allow_head_reset)
    # Weights used in training only (DETR's denoising queries) may be absent from the file (then they keep
    # their initial values), and a file of a model trained with them loads into a model without them.
    training_only = {id(variable) for variable in getattr(model, "training_only_weights", ())}
    for name in getattr(model, "training_only_layer_names", ()):
        if not any(key.startswith(name + "/") for key in slots):
            plan.skip_prefix(name + "/")
    for key, variable in slots.items():
        if id(variable) in training_only and not plan.has(key):
            continue
        array = plan.take(key)
        if array is None:
            continue
        head = id(variable) in head_ids
        resample = getattr(owners.get(id(variable)), "resample_weight", None)
        if tuple(array.shape) != tuple(variable.shape) and not head and resample is not None:
            array = resample(variable, array)
        plan.assign_array(variable, array, key, head=head)
    plan.apply()


def _load_keras_weights(model, path, allow_head_reset=False):
    try:
        arrays = _keras_file_arrays(path)
        slots = _keras_file_slots(model)
        fits = set(slots) <= set(arrays) and all(tuple(arrays[k].shape) == tuple(v.shape) for k, v in slots.items())
    except NotImplementedError:
        fits = True  # Keras loads it, or says why not
    if not fits:
        # Another resolution or number of classes: loaded as a foreign checkpoint would be
        # (resampled, head reset); any other difference is an error naming the weights.
        load_keras_checkpoint_resampled(model, path, allow_head_reset=allow_head_reset)
        return
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
        _load_keras_weights(model, path, allow_head_reset=allow_head_reset)
        return
    if not allow_non_finite:
        check_finite(tensors, path)
    converter(model, tensors, allow_head_reset=allow_head_reset)
