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


def input_specs(model):
    """[(name, shape with batch None, dtype)] of a model's inputs, in call order.

    Example:
    >>> import keras
    >>> inputs = keras.Input((8, 8, 3), name="images")
    >>> input_specs(keras.Model(inputs, keras.layers.Flatten()(inputs)))
    [('images', (None, 8, 8, 3), 'float32')]
    """
    structure = model.input
    if isinstance(structure, dict):
        named = [(key, structure[key]) for key in sorted(structure)]
    else:
        named = [(tensor.name, tensor) for tensor in keras.tree.flatten(structure)]
    specs = []
    for name, tensor in named:
        shape = (None,) + tuple(tensor.shape[1:])
        specs.append((_clean(name), shape, str(keras.backend.standardize_dtype(tensor.dtype))))
    return specs


def pack_inputs(model, arrays_by_name):
    """The structure `model(...)` takes, from a dict of arrays named as `input_specs`."""
    structure = model.input
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
