"""Class names: the ImageNet-1k, ImageNet-22k and COCO names shipped with the package, naming a
model's predictions (`decode_predictions`, `decode_detections`), and the names a trained model keeps
(`with_class_names`, `get_class_names`) through `.keras` files and into exports (a labels file next to
a .tflite file or in a SavedModel directory: `labels_path`).

The files of this folder were generated once, offline, by scripts/make_class_names.py from the
timm 1.0.31 wheel (`timm/data/_info/`: ImageNet synsets and WordNet lemmas) and the torchvision 0.28.0
wheel (`torchvision/models/_meta.py`: COCO's 91 category ids as DETR numbers them); see README.md here.

Example:
>>> import numpy as np
>>> logits = np.zeros((1, 1000), "float32"); logits[0, 281] = 9.0
>>> decode_predictions(logits, top=1)[0][0][:2]
(281, 'tabby')
"""

import functools
import gzip
import os

import numpy as np

from keras_vit.layers.class_names import ClassNames

_HERE = os.path.dirname(os.path.abspath(__file__))
# Number of classes of a head -> the names that a checkpoint with that head was trained on.
_NAMES_BY_CLASS_COUNT = {1000: "imagenet1k", 21841: "imagenet22k"}
LABELS_FILE_NAME = "labels.txt"
DETECTION_FILE_NAME = "detection.json"


@functools.lru_cache(maxsize=None)
def _read(dataset):
    if dataset == "imagenet1k":
        with open(os.path.join(_HERE, "imagenet1k.txt"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    elif dataset == "imagenet22k":
        with gzip.open(os.path.join(_HERE, "imagenet22k.txt.gz"), "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    elif dataset == "coco":
        with open(os.path.join(_HERE, "coco91.txt"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    else:
        raise ValueError(f"Unknown class names {dataset!r}: use 'imagenet1k', 'imagenet22k' or 'coco'.")
    return tuple(line.split("\t", 1)[1] for line in lines if not line.startswith("#"))


def dataset_class_names(dataset, full=False):
    """The class names of "imagenet1k" (1,000), "imagenet22k" (21,841, fall11 order, Swin's
    `ms_in22k` heads) or "coco" (DETR's 91 ids, "N/A" where COCO has no category).

    ImageNet names are the first WordNet lemma of each synset ("tabby"); `full=True` gives all of them
    ("tabby, tabby cat").

    Example:
    >>> dataset_class_names("coco")[1], dataset_class_names("imagenet1k", full=True)[0]
    ('person', 'tench, Tinca tinca')
    """
    names = _read(dataset)
    return names if full or dataset == "coco" else tuple(name.split(",")[0] for name in names)


def _resolve_names(class_names, num_classes):
    """`class_names` (None, a dataset name, a sequence or a model) as a tuple of `num_classes` names."""
    if class_names is None:
        dataset = _NAMES_BY_CLASS_COUNT.get(num_classes)
        return dataset_class_names(dataset) if dataset else tuple(f"class {i}" for i in range(num_classes))
    if isinstance(class_names, str):
        class_names = dataset_class_names(class_names)
    elif hasattr(class_names, "layers"):
        model = class_names
        class_names = get_class_names(model)
        if class_names is None:
            return _resolve_names(None, num_classes)
    class_names = tuple(str(name) for name in class_names)
    if len(class_names) != num_classes:
        raise ValueError(
            f"{len(class_names)} class names for predictions of {num_classes} classes: give one name per class."
        )
    return class_names


def decode_predictions(preds, top=5, class_names=None):
    """The `top` classes of each row of `preds`, named: a list (one per image) of `(index, name,
    probability)` tuples, most probable first, as `keras.applications`' `decode_predictions`.

    Args:
        preds: (N, classes) logits or probabilities (rows of non-negative numbers that sum to 1 are
            taken as probabilities; anything else gets a softmax).
        top: classes per image.
        class_names: None (ImageNet-1k names for 1,000 classes, ImageNet-22k for 21,841, "class i"
            otherwise), "imagenet1k" / "imagenet22k", a list of names, or a model that keeps its names
            (`with_class_names`).

    Example:
    >>> import numpy as np
    >>> decode_predictions(np.array([[0.1, 0.7, 0.2]]), top=2, class_names=["cat", "dog", "fox"])
    [[(1, 'dog', 0.7), (2, 'fox', 0.2)]]
    """
    import keras

    preds = np.asarray(keras.ops.convert_to_numpy(preds), dtype="float64")
    if preds.ndim == 1:
        preds = preds[None]
    if preds.ndim != 2:
        raise ValueError(f"decode_predictions expects (N, classes) predictions, got shape {preds.shape}.")
    names = _resolve_names(class_names, preds.shape[1])
    if not (np.all(preds >= 0) and np.allclose(preds.sum(-1), 1.0, atol=1e-3)):
        shifted = np.exp(preds - preds.max(-1, keepdims=True))
        preds = shifted / shifted.sum(-1, keepdims=True)
    results = []
    for row in preds:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(int(i), names[i], round(float(row[i]), 6)) for i in order])
    return results


DETECTION_SCORES = ("softmax", "sigmoid")


def _post_processor(scores, model=None):
    """`(outputs, image_sizes, threshold) -> detections` for logits scored by `scores`: the model's
    own `post_process_detections` when it has one, else DETR's (softmax with a last "no object"
    column) or Conditional DETR's (one sigmoid per class, best query-class pairs)."""
    if model is not None and hasattr(model, "post_process_detections"):
        return model.post_process_detections
    if scores == "sigmoid":
        from keras_vit.models.conditional_detr.conditional_detr_postprocess import (
            post_process_conditional_detections,
        )

        return post_process_conditional_detections
    from keras_vit.models.detr.detr_postprocess import post_process_detections

    return post_process_detections


def _check_scores(scores):
    if scores not in DETECTION_SCORES:
        raise ValueError(
            f"scores={scores!r}: use 'softmax' (DETR: a last \"no object\" column) or 'sigmoid' "
            "(Conditional DETR: one sigmoid per class, no \"no object\" column)."
        )
    return scores


def decode_detections(outputs, image_sizes, threshold=0.5, class_names=None, scores=None):
    """A detector's outputs as boxes in pixels with named classes: its post-processing plus `"names"`.

    Args:
        outputs: the model's dict (`logits`, `pred_boxes`).
        image_sizes: (B, 2) (height, width) of each image, for the boxes in pixels.
        threshold: smallest score kept.
        class_names: None (COCO's names for 91 classes, "class i" otherwise), "coco", a list, or the
            detector (a DETR or Conditional DETR) that gave `outputs`: then its names (if it keeps
            them), its score kind and its own `post_process_detections` are used.
        scores: how `logits` are scored: "softmax" (DETR: classes + a last "no object" column) or
            "sigmoid" (Conditional DETR: one column per class). Default: the model's (given as
            `class_names`), else "softmax".

    Returns:
        One dict per image: `boxes` (n, 4) corners in pixels, `scores`, `labels`, `names`.

    Example:
    >>> import numpy as np
    >>> logits = np.full((1, 2, 92), -9.0, "float32"); logits[0, 0, 17] = 9.0
    >>> outputs = {"logits": logits, "pred_boxes": np.full((1, 2, 4), 0.5, "float32")}
    >>> decode_detections(outputs, [(100, 200)])[0]["names"]
    ['cat']
    >>> decode_detections({**outputs, "logits": logits[..., :91]}, [(100, 200)], scores="sigmoid")[0]["names"]
    ['cat']
    """
    import keras

    model = class_names if hasattr(class_names, "layers") else None
    if scores is None:
        scores = getattr(model, "SCORES", "softmax")
    scores = _check_scores(scores)
    width = int(keras.ops.shape(outputs["logits"])[-1])
    num_classes = width - 1 if scores == "softmax" else width  # softmax: the last class is "no object"
    if model is not None:  # the names the model keeps, else the defaults below
        class_names = get_class_names(model)
    if class_names is None and num_classes == 91:
        class_names = "coco"
    try:
        names = _resolve_names(class_names, num_classes)
    except ValueError as error:
        raise ValueError(
            f"{error} (logits of width {width} scored with scores={scores!r}: "
            f"{'one column per class' if scores == 'sigmoid' else 'classes + a last no-object column'}; "
            "pass the model as class_names, or scores='sigmoid' for Conditional DETR.)"
        ) from None
    results = _post_processor(scores, model)(outputs, image_sizes, threshold=threshold)
    for result in results:
        result["names"] = [names[int(label)] for label in result["labels"]]
    return results


def with_class_names(model, class_names, image_recipe=None):
    """The classifier `model` with a `ClassNames` layer at its output, so that it keeps `class_names`
    through `model.save(...)`/`keras.saving.load_model` and into `export_tflite`/`export_saved_model`
    (a labels file next to the export). The layers (and weights) are the model's own; the logits are
    unchanged. Call it before `compile()`. A DETR (`DETRModel`) keeps the names in its config instead:
    its `class_names` attribute is set and the same model is returned.

    `image_recipe` (optional): how the training images were resized, `load_image`'s `crop_mode`,
    `crop_pct` and `interpolation` as a dict; `keras_vit.load_image(image, model)` then follows it.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
    ...                                     num_heads=3, mlp_dim=96, num_classes=2)
    >>> model = with_class_names(model, ["cat", "dog"])
    >>> get_class_names(model)
    ('cat', 'dog')
    """
    import keras

    from keras_vit.models.detr.detr_model import DETRModel, check_class_names

    if isinstance(model, DETRModel):  # a subclassed detector: the names live in its config
        if image_recipe is not None:
            raise ValueError("with_class_names: image_recipe applies to classifiers, not to a DETR detector.")
        model.class_names = check_class_names(class_names, model.num_classes, model.name)
        return model
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            f"with_class_names takes a functional keras.Model (a classifier) or a DETR, got {type(model).__name__}."
        )
    outputs = model.outputs
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ValueError(
            f"with_class_names names the classes of a classifier with one (batch, classes) output; "
            f"{model.name} has outputs {[tuple(o.shape) for o in outputs]}."
        )
    logits = outputs[0]
    last = model.layers[-1]
    if isinstance(last, ClassNames):  # renaming: replace the old names
        logits = last.input
    names = tuple(str(name) for name in class_names)
    if len(names) != logits.shape[-1]:
        raise ValueError(
            f"{len(names)} class names for {model.name}, whose head has {logits.shape[-1]} classes: give one name per class."
        )
    if image_recipe is None and isinstance(last, ClassNames):
        image_recipe = last.image_recipe
    head = ClassNames(names, image_recipe=image_recipe, name="class_names")
    return keras.Model(model.inputs, head(logits), name=model.name)


def get_class_names(model):
    """The class names that `model` keeps (`with_class_names`; a DETR's `class_names`), or None.

    Example:
    >>> import keras
    >>> get_class_names(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])) is None
    True
    """
    kept = getattr(model, "class_names", None)  # a DETR keeps them in its config
    if kept is not None and not isinstance(model, ClassNames):
        return tuple(kept)
    for layer in reversed(getattr(model, "layers", [])):
        if isinstance(layer, ClassNames):
            return layer.class_names
    return None


def get_image_recipe(model):
    """How `model`'s training images were resized (see `with_class_names`), or None.

    Example:
    >>> import keras
    >>> get_image_recipe(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])) is None
    True
    """
    for layer in reversed(getattr(model, "layers", [])):
        if isinstance(layer, ClassNames):
            return layer.image_recipe
    return None


def labels_path(export_path):
    """Where the class names of an export live: `labels.txt` inside a SavedModel directory,
    `<name>.labels.txt` next to a .tflite file.

    Example:
    >>> labels_path("/tmp/vit_int8.tflite")
    '/tmp/vit_int8.labels.txt'
    """
    if os.path.isdir(export_path) or not os.path.splitext(export_path)[1]:
        return os.path.join(export_path, LABELS_FILE_NAME)
    return os.path.splitext(export_path)[0] + "." + LABELS_FILE_NAME


def read_labels_file(path, num_classes=None):
    """The class names of a text file, one per line (blank lines skipped); with `num_classes`, a
    `ValueError` if their number differs.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> _ = open(path, "w").write("cat\\ndog\\n")
    >>> read_labels_file(path, num_classes=2)
    ('cat', 'dog')
    """
    with open(path, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"{path} has {len(names)} class names but the model predicts {num_classes} classes: "
            "give one name per line, one line per class, in the order of the class ids."
        )
    return names


def write_labels_file(model, export_path):
    """Writes the names that `model` keeps next to its export (see `labels_path`); returns the
    file's path, or None when the model keeps no names.

    Example:
    >>> import os, tempfile, keras_vit
    >>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
    ...                                     num_heads=3, mlp_dim=96, num_classes=2)
    >>> path = write_labels_file(with_class_names(model, ["cat", "dog"]), os.path.join(tempfile.mkdtemp(), "m.tflite"))
    >>> os.path.basename(path), open(path).read()
    ('m.labels.txt', 'cat\\ndog\\n')
    """
    from keras_vit.atomic_files import atomic_open

    names = get_class_names(model)
    if names is None:
        return None
    path = labels_path(export_path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in names))
    return path


def detection_info_path(export_path):
    """Where an exported detector records how its `logits` are scored: `detection.json` inside a
    SavedModel directory, `<name>.detection.json` next to a .tflite file.

    Example:
    >>> detection_info_path("/tmp/detr.tflite")
    '/tmp/detr.detection.json'
    """
    labels = labels_path(export_path)
    return labels[: -len(LABELS_FILE_NAME)] + DETECTION_FILE_NAME


def write_detection_info(model, export_path):
    """For a detector (a model with a `SCORES` attribute: DETR "softmax", Conditional DETR
    "sigmoid"), writes `{"scores": ..., "num_classes": ...}` beside its export (see
    `detection_info_path`) so that `keras-vit predict` scores the file's logits as the model does;
    returns the file's path, or None for other models.

    Example:
    >>> import json, os, tempfile, keras_vit
    >>> model = keras_vit.ConditionalDETR(keras_vit.models.ResNet(depths=(1, 1, 1, 1), widths=(8, 8, 8, 8),
    ...     stem_width=8), num_classes=3, num_queries=2, hidden_dim=16, num_encoder_layers=1,
    ...     num_decoder_layers=1, num_heads=2, mlp_dim=16)
    >>> path = write_detection_info(model, os.path.join(tempfile.mkdtemp(), "m.tflite"))
    >>> os.path.basename(path), json.load(open(path))
    ('m.detection.json', {'scores': 'sigmoid', 'num_classes': 3})
    """
    import json

    from keras_vit.atomic_files import atomic_open

    scores = getattr(model, "SCORES", None)
    if scores is None:
        return None
    path = detection_info_path(export_path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump({"scores": _check_scores(scores), "num_classes": int(model.num_classes)}, f)
    return path


def read_detection_info(export_path):
    """What `write_detection_info` recorded beside `export_path`, or None when there is no such file
    (an export of a classifier, or of a DETR from before this file was written: softmax).

    Example:
    >>> import os, tempfile
    >>> read_detection_info(os.path.join(tempfile.mkdtemp(), "m.tflite")) is None
    True
    """
    import json

    path = detection_info_path(export_path)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    try:
        _check_scores(info.get("scores"))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return info
