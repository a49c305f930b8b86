"""Fine-tuning helpers: what users otherwise do by hand on a pretrained model.

- `freeze_backbone(model)`: a linear probe, only the classifier head trains; `unfreeze(model)`
  undoes it.
- `layer_decay_multipliers(model, decay)` and `layer_decay_optimizer(model, ...)`: layer-wise
  learning-rate decay as in BEiT and DeiT III (the embeddings learn at `decay ** (depth + 1)`
  times the rate, block i at `decay ** (depth - i)`, the final norm and head at the full rate),
  as per-variable multipliers honored by `ScaledAdamW` on every backend.
- `enable_lora(model, rank)`: Keras' LoRA on the attention and MLP projections (Dense layers
  `qkv`, `proj`, `fc1`, `fc2`); only the LoRA factors and the head train.

Loading a checkpoint of another resolution or number of classes is `keras_vit.load_weights`
(or `weights=` in a builder). Recompile after changing what trains (Keras reads `trainable`
when it compiles).
"""

import re

import keras
from keras import ops

HEAD_LAYER_NAMES = ("head", "head_dist", "class_embed", "bbox_embed")
LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")


def _head_layers(model, head_layer_names):
    heads = [layer for layer in model.layers if layer.name in head_layer_names]
    if not heads:
        raise ValueError(
            f"Model {model.name!r} has no layer named {' or '.join(head_layer_names)}: build it with "
            "include_top=True (or pass head_layer_names= with the names of the layers that should train)."
        )
    return heads


def freeze_backbone(model, head_layer_names=HEAD_LAYER_NAMES):
    """Freezes every layer but the classifier head (a linear probe); returns `model`.

    The head is the top-level layers named in `head_layer_names` (`head`, and DeiT's `head_dist`).
    Compile (again) afterwards.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> [v.path for v in freeze_backbone(model).trainable_variables]
    ['head/kernel', 'head/bias']
    """
    heads = _head_layers(model, head_layer_names)
    for layer in model.layers:
        layer.trainable = layer in heads
    return model


def unfreeze(model):
    """Makes every layer of `model` trainable again (after `freeze_backbone` or `enable_lora`).

    Weights created non-trainable (frozen batch-norm statistics) stay so, and so do the kernels of
    Dense layers under LoRA (their LoRA factors train), on every backend. Compile (again) afterwards.

    Example:
    >>> import keras_vit
    >>> model = freeze_backbone(keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10))
    >>> len(unfreeze(model).trainable_variables) == len(model.weights)
    True
    >>> _ = enable_lora(model, rank=2)
    >>> len(unfreeze(model).trainable_variables)  # 32 weights + 16 LoRA factors - 8 kernels under LoRA
    40
    """
    model.trainable = True
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer.trainable = True
        for variable in getattr(layer, "_lora_frozen_variables", ()):
            variable.trainable = True
        if getattr(layer, "lora_enabled", False):
            layer._kernel.trainable = False  # as Keras' enable_lora leaves it
    return model


_BLOCK = re.compile(r"^(?:stage_\d+_)?block_\d+$")
_BETWEEN_BLOCKS = re.compile(r"^(stage_\d+_downsample|prompt_\d+)$")


def layer_decay_multipliers(model, decay=0.75):
    """`{variable.path: learning-rate multiplier}` for layer-wise decay (BEiT, DeiT III, timm's
    `param_groups_layer_decay`).

    The model's layers are numbered as timm numbers them: the embeddings (everything before the
    first block) 0, the blocks 1 ... depth in order (`block_{i}`, or Swin's `stage_{i}_block_{j}`
    counted over all stages, a stage's downsampling with its first block), and what follows the
    last block (final norm, head) depth + 1. A variable of layer k gets
    `decay ** (depth + 1 - k)`.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> multipliers = layer_decay_multipliers(model, decay=0.5)
    >>> multipliers["pos_embed/embedding"], multipliers["block_1/attn/qkv/kernel"], multipliers["head/kernel"]
    (0.125, 0.5, 1.0)
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}.")
    layers = list(model.layers)
    depth = sum(1 for layer in layers if _BLOCK.match(layer.name))
    if depth == 0:
        raise ValueError(
            f"Model {model.name!r} has no layers named block_{{i}} or stage_{{i}}_block_{{j}}: layer-wise "
            "decay needs this package's ViT, DeiT, TNT or Swin."
        )
    multipliers, index = {}, 0
    for layer in layers:
        if _BLOCK.match(layer.name):
            index += 1
            number = index
        elif _BETWEEN_BLOCKS.match(layer.name) and index < depth:
            number = index + 1  # with the block that follows
        else:
            number = 0 if index == 0 else depth + 1
        for variable in layer.weights:
            multipliers[variable.path] = float(decay ** (depth + 1 - number))
    return multipliers


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaledAdamW(keras.optimizers.AdamW):
    """AdamW where each variable learns at `learning_rate * multiplier` (weight decay included, as
    torch's AdamW does per parameter group); variables not listed get multiplier 1.

    `learning_rate_multipliers` maps `variable.path` to its multiplier (see
    `layer_decay_multipliers`). Schedules work: the multiplier scales the current rate. The
    update runs variable by variable on every backend (on PyTorch this subclass is not swapped
    for Keras' fused AdamW, which has one rate for all variables).

    Example:
    >>> import keras, numpy as np
    >>> variable = keras.Variable(np.ones(2, "float32"), name="w")
    >>> optimizer = ScaledAdamW(learning_rate=0.1, learning_rate_multipliers={variable.path: 0.5}, weight_decay=0.0)
    >>> optimizer.apply([np.ones(2, "float32")], [variable])
    >>> [round(float(value), 3) for value in keras.ops.convert_to_numpy(variable)]  # one Adam step of 0.1 * 0.5
    [0.95, 0.95]
    """

    def __init__(self, learning_rate=1e-3, learning_rate_multipliers=None, name="scaled_adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.learning_rate_multipliers = {str(k): float(v) for k, v in (learning_rate_multipliers or {}).items()}
        self._multipliers = []

    def build(self, variables):
        super().build(variables)
        # By the optimizer's own variable index, which every backend's update path knows.
        self._multipliers = [self.learning_rate_multipliers.get(v.path, 1.0) for v in variables]

    def _multiplier(self, variable):
        return self._multipliers[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multiplier(variable)
        if multiplier != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), multiplier)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        for variable in variables:
            if self._use_weight_decay(variable):
                lr = ops.cast(self.learning_rate, variable.dtype) * self._multiplier(variable)
                wd = ops.cast(self.weight_decay, variable.dtype)
                variable.assign(variable - variable * wd * lr)

    def get_config(self):
        config = super().get_config()
        config["learning_rate_multipliers"] = dict(self.learning_rate_multipliers)
        return config


def layer_decay_optimizer(model, learning_rate=1e-3, layer_decay=0.75, weight_decay=0.05, **adamw_kwargs):
    """A `ScaledAdamW` for fine-tuning `model` with layer-wise learning-rate decay.

    Biases, norms, class tokens and position embeddings get no weight decay (as in DeiT and
    timm). `learning_rate` (a float or schedule) is the head's rate; other keywords go to AdamW.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> optimizer = layer_decay_optimizer(model, learning_rate=1e-3, layer_decay=0.65)
    >>> round(optimizer.learning_rate_multipliers["block_0/mlp/fc1/kernel"], 6)
    0.4225
    """
    from keras_vit.training.recipe import no_weight_decay_variables

    optimizer = ScaledAdamW(
        learning_rate=learning_rate, learning_rate_multipliers=layer_decay_multipliers(model, layer_decay),
        weight_decay=weight_decay, **adamw_kwargs,
    )
    optimizer.exclude_from_weight_decay(var_list=no_weight_decay_variables(model))
    return optimizer


def enable_lora(model, rank, targets=LORA_TARGETS, head_layer_names=HEAD_LAYER_NAMES):
    """Keras' LoRA (`Dense.enable_lora`) on the attention and MLP projections; returns how many.

    Every Dense layer inside the model's blocks whose name is in `targets` (`qkv`, `proj`, `fc1`,
    `fc2`) gets two trainable factors of rank `rank` and a frozen kernel; every other weight is
    frozen too, except the head (`head_layer_names`), which trains. A `.keras` file keeps the LoRA
    layers; `unfreeze(model)` makes every weight trainable again. Compile (again) afterwards.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> enable_lora(model, rank=4)
    8
    >>> sorted({v.path.split("/")[-1] for v in model.trainable_variables})
    ['bias', 'kernel', 'lora_kernel_a', 'lora_kernel_b']
    >>> sorted({v.path.split("/")[0] for v in model.trainable_variables if v.path.endswith("/kernel")})
    ['head']
    """
    if int(rank) < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}.")
    heads = {id(layer) for layer in model.layers if layer.name in head_layer_names}
    lora_layers = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dense) and layer.name in targets and id(layer) not in heads:
            if getattr(layer, "lora_enabled", False):
                raise ValueError(f"LoRA is already enabled on {layer.path if hasattr(layer, 'path') else layer.name}.")
            lora_layers.append(layer)
    if not lora_layers:
        raise ValueError(f"Model {model.name!r} has no Dense layers named {', '.join(targets)}: nothing to adapt.")
    for layer in lora_layers:
        layer.enable_lora(int(rank))
    head_variables = {id(v) for layer in model.layers if id(layer) in heads for v in layer.weights}
    lora_variables = {id(v) for layer in lora_layers for v in (layer.lora_kernel_a, layer.lora_kernel_b)}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        frozen = []
        for variable in layer._trainable_variables:
            if variable.trainable and id(variable) not in head_variables | lora_variables:
                variable.trainable = False
                frozen.append(variable)
        if frozen:  # `unfreeze` gives them back
            layer._lora_frozen_variables = getattr(layer, "_lora_frozen_variables", []) + frozen
    return len(lora_layers)
