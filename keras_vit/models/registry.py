"""One registry of model names: what `keras-vit train`, `export` and `predict` can build.

Each family's `__init__` registers its named builders with `register_model`; the commands
and `keras_vit.weights.published_names` read the registry and the presets table, so a new
builder is known everywhere once its family registers it.

Example:
>>> import keras_vit
>>> spec = keras_vit.models.get_model_spec("ViTTi16")
>>> spec.family, spec.task, spec.default_input_size
('vit', 'classification', 224)
>>> "SwinT" in keras_vit.models.model_names(task="classification")
True
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named builder: its family, its task ("classification" or "detection") and the
    input size its canonical configuration (and `weights="imagenet"`/`"coco"`) is made for."""

    name: str
    builder: object
    family: str
    task: str
    default_input_size: int


_MODELS = {}


def register_model(name, builder, family, task="classification", default_input_size=224):
    """Adds a named builder to the registry (a family's `__init__` calls this)."""
    if task not in ("classification", "detection"):
        raise ValueError(f"task must be 'classification' or 'detection', got {task!r}.")
    _MODELS[name] = ModelSpec(name, builder, family, task, int(default_input_size))


def model_names(family=None, task=None):
    """The registered builder names, optionally of one family or task, in registration order."""
    return [
        name for name, spec in _MODELS.items()
        if (family is None or spec.family == family) and (task is None or spec.task == task)
    ]


def get_model_spec(name):
    """The `ModelSpec` of a registered builder name; a clear error lists the names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(_MODELS)}.") from None
