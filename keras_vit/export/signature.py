"""How a Keras model's inputs and outputs are named in an exported serving signature.

Shared by the exporter (any backend) and the TensorFlow-backend worker, so both
sides agree on the names: one input per model input (the `keras.Input` name, or
the key when the model takes a dict), and outputs named `output_0` for a single
tensor, `output_{i}` for a list, or the dict's keys (DETR: `logits`, `pred_boxes`).
"""

import re

import keras
import numpy as np


def _clean(name):
    name = re.sub(r"\W", "_", str(name))
    return name if name and not name[0].isdigit() else f"input_{name}"


def _structure(model):
    """The model's symbolic input structure, or None for a subclassed model that has none."""
    try:
        return model.input
    except (AttributeError, ValueError):
        return None


def input_specs(model, input_shape=None):
    """[(name, shape with batch None, dtype)] of a model's inputs, in call order.

    A subclassed model (e.g. DETR) without symbolic inputs is taken to have one
    input, `images`, of the shape it was built with. `input_shape` (without the
    batch axis) overrides the shape of a single-input model, e.g. to give a
    model built for any image size a fixed size in a .tflite file.

    Example:
    >>> import keras
    >>> inputs = keras.Input((8, 8, 3), name="images")
    >>> input_specs(keras.Model(inputs, keras.layers.Flatten()(inputs)))
    [('images', (None, 8, 8, 3), 'float32')]
    """
    structure = _structure(model)
    if structure is None:
        shapes = getattr(model, "_build_shapes_dict", None) or {}
        shape = next(iter(shapes.values()), None)
        if shape is None and input_shape is None:
            raise ValueError(f"{model.name} has not been built; call it on a batch or pass input_shape=(H, W, 3).")
        shape = (None,) + tuple(shape[1:] if input_shape is None else input_shape)
        return [("images", shape, "float32")]
    if isinstance(structure, dict):
        named = [(key, structure[key]) for key in sorted(structure)]
    else:
        named = [(tensor.name, tensor) for tensor in keras.tree.flatten(structure)]
    if input_shape is not None and len(named) != 1:
        raise ValueError(f"input_shape applies to single-input models; {model.name} has {len(named)} inputs.")
    specs = []
    for name, tensor in named:
        shape = (None,) + tuple(tensor.shape[1:] if input_shape is None else input_shape)
        specs.append((_clean(name), shape, str(keras.backend.standardize_dtype(tensor.dtype))))
    return specs


def pack_inputs(model, arrays_by_name):
    """The structure `model(...)` takes, from a dict of arrays named as `input_specs`."""
    structure = _structure(model)
    if structure is None:
        return arrays_by_name["images"]
    if isinstance(structure, dict):
        return {key: arrays_by_name[_clean(key)] for key in structure}
    names = [spec[0] for spec in input_specs(model)]
    flat = [arrays_by_name[name] for name in names]
    return keras.tree.pack_sequence_as(structure, flat)


def output_dict(outputs):
    """Model outputs (tensor, list or dict) as an ordered {name: tensor} dict."""
    if isinstance(outputs, dict):
        return {_clean(key): outputs[key] for key in sorted(outputs)}
    if isinstance(outputs, (list, tuple)):
        return {f"output_{i}": value for i, value in enumerate(outputs)}
    return {"output_0": outputs}


def to_numpy_dict(outputs):
    return {name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in output_dict(outputs).items()}
