"""Strict, all-or-nothing filling of a Keras model from a checkpoint's arrays.

A converter (one per family and checkpoint source) says which checkpoint key
fills which Keras variable; `WeightAssignment.apply()` then checks that every
key was used, every weight of the model filled, and every shape matches, and
only then assigns. Any problem raises `WeightsMismatchError` naming all of them,
and the model keeps the weights it had.
"""

import logging

import numpy as np

logger = logging.getLogger("keras_vit")


class WeightsMismatchError(ValueError):
    """A checkpoint does not fit the model: unused keys, unfilled weights, or shapes."""


def linear_kernel(weight):
    """torch Linear weight (out, in) to a Keras Dense kernel (in, out)."""
    return np.transpose(weight)


def conv_kernel(weight):
    """torch Conv2d weight (O, I, H, W) to a Keras Conv2D kernel (H, W, I, O)."""
    return np.transpose(weight, (2, 3, 1, 0))


def optional_layer(model, name):
    """`model.get_layer(name)`, or None when the model has no such layer (optional parts: heads, tokens)."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def numbered_layers(model, name_format):
    """The layers `name_format.format(0)`, `name_format.format(1)`, ... up to the first missing one.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="block_0"),
    ...                           keras.layers.Dense(2, name="block_1")])
    >>> [layer.name for layer in numbered_layers(model, "block_{}")]
    ['block_0', 'block_1']
    """
    layers = []
    while (layer := optional_layer(model, name_format.format(len(layers)))) is not None:
        layers.append(layer)
    return layers


def _variable_name(variable):
    return getattr(variable, "path", None) or variable.name


def _is_state_variable(variable):
    # Seed generators and optimizer-free counters hold no learned state.
    return "seed_generator" in _variable_name(variable)


class WeightAssignment:
    """Collects (checkpoint key -> model variable) pairs, then applies them at once.

    Example:
    >>> import keras, numpy as np
    >>> layer = keras.layers.Dense(2)
    >>> model = keras.Sequential([keras.Input((3,)), layer])
    >>> plan = WeightAssignment(model, {"w": np.ones((2, 3)), "b": np.zeros(2)}, source="demo")
    >>> plan.assign(layer.kernel, "w", linear_kernel)
    >>> plan.assign(layer.bias, "b")
    >>> plan.apply()
    >>> float(layer.kernel.numpy().sum())
    6.0
    """

    def __init__(self, model, tensors, source, allow_head_reset=False, rename=None):
        self.model = model
        self.tensors = tensors
        self.source = source
        self.allow_head_reset = allow_head_reset
        # Maps the key names a converter is written in to the checkpoint's (one converter, two layouts).
        self.rename = rename or (lambda key: key)
        self._pairs = []  # (variable, array, description, is_head)
        self._used = set()
        self._missing = []

    def take(self, key):
        """The array at `key`, marked used; None (and noted) when absent."""
        key = self.rename(key)
        if key not in self.tensors:
            self._missing.append(key)
            return None
        self._used.add(key)
        return np.asarray(self.tensors[key])

    def has(self, key):
        return self.rename(key) in self.tensors

    def key(self, key):
        """The checkpoint's name for `key`."""
        return self.rename(key)

    def skip(self, *keys):
        """Marks keys that are deliberately not loaded (e.g. a dropped pre-logits layer)."""
        self._used.update(k for k in map(self.rename, keys) if k in self.tensors)

    def skip_prefix(self, prefix):
        prefix = self.rename(prefix)
        self._used.update(k for k in self.tensors if k.startswith(prefix))

    def assign(self, variable, key, transform=None, head=False):
        """Fills `variable` from checkpoint `key`, through `transform` if given."""
        array = self.take(key)
        if array is None:
            return
        if transform is not None:
            array = transform(array)
        self._pairs.append((variable, array, self.rename(key), head))

    # The layer-level helpers every converter uses; keys are `prefix + separator + name`.

    def dense(self, layer, prefix, transform=linear_kernel, head=False, separator=".", weight="weight", bias="bias"):
        """A Dense layer from a Linear (`prefix.weight`, and `prefix.bias` when the layer has one)."""
        self.assign(layer.kernel, prefix + separator + weight, transform, head=head)
        if layer.bias is not None:
            self.assign(layer.bias, prefix + separator + bias, head=head)

    def norm(self, layer, prefix, separator=".", weight="weight", bias="bias"):
        """A LayerNormalization from `prefix.weight` (Flax: `scale`) and `prefix.bias`."""
        self.assign(layer.gamma, prefix + separator + weight)
        self.assign(layer.beta, prefix + separator + bias)

    def conv(self, layer, prefix, transform=conv_kernel):
        """A Conv2D from a torch Conv2d (OIHW weight; bias when the layer has one)."""
        self.assign(layer.kernel, prefix + ".weight", transform)
        if layer.bias is not None:
            self.assign(layer.bias, prefix + ".bias")

    def batch_norm(self, layer, prefix):
        """A (frozen) BatchNormalization from torch's weight, bias, running_mean and running_var."""
        for key, attribute in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                               ("running_var", "moving_variance")):
            self.assign(getattr(layer, attribute), f"{prefix}.{key}")

    def fused_dense(self, layer, prefixes, transform=linear_kernel, separator=".", weight="weight", bias="bias"):
        """One Dense (a fused qkv) from separate projections, concatenated along the outputs.

        `transform` turns each part's weight into a Keras (in, out_i) kernel; biases are flattened.
        """
        kernels = [self.take(prefix + separator + weight) for prefix in prefixes]
        biases = [self.take(prefix + separator + bias) for prefix in prefixes] if layer.bias is not None else []
        if any(part is None for part in kernels + biases):
            return  # the missing keys are noted and reported by apply()
        description = f"{self.key(prefixes[0])} (+{len(prefixes) - 1} fused)"
        self.assign_array(layer.kernel, np.concatenate([transform(k) for k in kernels], axis=1), description)
        if biases:
            self.assign_array(layer.bias, np.concatenate([b.reshape(-1) for b in biases]), description)

    def assign_array(self, variable, array, description, head=False):
        """Fills `variable` with an array computed from one or more keys already taken."""
        if array is not None:
            self._pairs.append((variable, np.asarray(array), description, head))

    def apply(self):
        """Checks everything, then assigns; raises `WeightsMismatchError` on any problem."""
        problems = []
        if self._missing:
            problems.append("keys the model needs but the checkpoint lacks: " + ", ".join(self._missing))
        unused = sorted(set(self.tensors) - self._used)
        if unused:
            problems.append("checkpoint keys that fit nothing in the model: " + ", ".join(unused))
        filled = {}
        mismatched, head_mismatched = [], []
        for variable, array, description, head in self._pairs:
            name = _variable_name(variable)
            if id(variable) in filled:
                problems.append(f"{name} is filled twice ({filled[id(variable)]} and {description})")
            filled[id(variable)] = description
            if tuple(array.shape) != tuple(variable.shape):
                entry = f"{description} {tuple(array.shape)} -> {name} {tuple(variable.shape)}"
                (head_mismatched if head else mismatched).append(entry)
        if mismatched:
            problems.append("shapes that differ: " + "; ".join(mismatched))
        reset_head = False
        if head_mismatched:
            if self.allow_head_reset and not problems:
                reset_head = True
            else:
                problems.append("head shapes that differ: " + "; ".join(head_mismatched))
        # Weights a model uses in training only (DETR's denoising queries) stay at their initial values.
        training_only = {id(v) for v in getattr(self.model, "training_only_weights", ())}
        unfilled = [
            _variable_name(v)
            for v in self.model.weights
            if id(v) not in filled and id(v) not in training_only and not _is_state_variable(v)
        ]
        if unfilled:
            problems.append("model weights the checkpoint does not fill: " + ", ".join(unfilled))
        if problems:
            raise WeightsMismatchError(
                f"The {self.source} checkpoint does not fit model {self.model.name!r}:\n- "
                + "\n- ".join(problems)
                + "\nBuild the model with the checkpoint's configuration (depth, width, heads, "
                "patch size, number of classes), or pass the checkpoint of this architecture. "
                "The model's weights are unchanged."
            )
        if reset_head:
            logger.warning(
                "Classifier head left at its initial values: the checkpoint's head has another "
                "number of classes (%s). Fine-tune the model to train it.",
                "; ".join(head_mismatched),
            )
        for variable, array, _, head in self._pairs:
            if reset_head and head:
                continue
            variable.assign(array.astype(variable.dtype))
