"""DETR's optimizer: AdamW with a lower learning rate for the backbone and global-norm clipping."""

import keras
from keras import ops

from keras_vit.training.finetune import ScaledAdamW


def _find_layer(model, name):
    """The first layer called `name` anywhere in `model` (nested models included), or None."""
    if model.name == name:
        return model
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name == name:
            return layer
    return None


@keras.saving.register_keras_serializable(package="keras_vit")
class BackboneAdamW(ScaledAdamW):
    """AdamW whose backbone variables learn at their own (usually lower) learning rate.

    Every variable whose `path` is in `backbone_variable_paths` is updated, weight decay included,
    with `learning_rate * backbone_learning_rate_multiplier`: the equivalent of the two parameter
    groups of DETR's PyTorch recipe. Schedules work: the multiplier scales the current rate. It is
    `keras_vit.training.ScaledAdamW` with one multiplier for the backbone's variables (the update
    runs variable by variable on every backend, PyTorch included).

    Args:
        learning_rate: the rate of every non-backbone variable (float or schedule).
        backbone_learning_rate_multiplier: factor applied to the rate for backbone variables.
        backbone_variable_paths: the `variable.path` of each backbone variable.
        **kwargs: the arguments of `keras.optimizers.AdamW` (`weight_decay`, `global_clipnorm`, ...).

    Example:
    >>> import keras
    >>> opt = BackboneAdamW(learning_rate=1e-4, backbone_learning_rate_multiplier=0.1,
    ...                     backbone_variable_paths=["backbone/conv/kernel"], global_clipnorm=0.1)
    >>> opt.backbone_learning_rate_multiplier
    0.1
    """

    def __init__(
        self,
        learning_rate=1e-4,
        backbone_learning_rate_multiplier=0.1,
        backbone_variable_paths=(),
        name="backbone_adamw",
        **kwargs,
    ):
        multiplier, paths = float(backbone_learning_rate_multiplier), sorted(set(backbone_variable_paths))
        super().__init__(
            learning_rate=learning_rate, learning_rate_multipliers=dict.fromkeys(paths, multiplier), name=name, **kwargs
        )
        self.backbone_learning_rate_multiplier = multiplier
        self.backbone_variable_paths = paths

    def get_config(self):
        config = super().get_config()
        # Saved as the two DETR arguments (files written before ScaledAdamW existed have these keys).
        config.pop("learning_rate_multipliers")
        config.update(
            {
                "backbone_learning_rate_multiplier": self.backbone_learning_rate_multiplier,
                "backbone_variable_paths": list(self.backbone_variable_paths),
            }
        )
        return config


def _backbone_multiplier(learning_rate, backbone_learning_rate, backbone_learning_rate_multiplier):
    """The backbone's rate as a fraction of `learning_rate`, from whichever of the two arguments was given."""
    if backbone_learning_rate is not None and backbone_learning_rate_multiplier is not None:
        raise ValueError(
            "detr_optimizer: give backbone_learning_rate or backbone_learning_rate_multiplier, not both "
            f"(got {backbone_learning_rate} and {backbone_learning_rate_multiplier})."
        )
    if backbone_learning_rate_multiplier is not None:
        return float(backbone_learning_rate_multiplier)
    if backbone_learning_rate is None:
        return 0.1
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        base_rate = float(ops.convert_to_numpy(learning_rate(0)))
        if base_rate == 0:
            raise ValueError(
                "detr_optimizer: the schedule starts at rate 0, so backbone_learning_rate cannot be read as a "
                "fraction of it; give backbone_learning_rate_multiplier (e.g. 0.1) instead."
            )
    else:
        base_rate = float(learning_rate)
    # A schedule's first rate reads back in float32 (1e-3 as 1.0000000475e-3): rounded to 6 significant
    # digits, the ratio is the one a constant rate gives (0.1, not 0.09999999525), so a schedule that starts
    # at a constant recipe's rates trains exactly as that recipe until it changes the rate.
    return float(f"{float(backbone_learning_rate) / base_rate:.6g}")


def detr_optimizer(
    model,
    learning_rate=1e-4,
    backbone_learning_rate=None,
    weight_decay=1e-4,
    clipnorm=0.1,
    backbone_layer_name="backbone",
    backbone_learning_rate_multiplier=None,
):
    """DETR's training recipe: AdamW, the backbone at its own rate, gradients clipped by global norm.

    The backbone is the layer named `backbone_layer_name` (searched through nested models); its
    trainable variables learn at `backbone_learning_rate_multiplier` times the rate of every other
    variable (`learning_rate`). Give either the multiplier or `backbone_learning_rate` (a rate, read as
    `backbone_learning_rate / learning_rate`); with neither, the backbone learns at 1/10 of the rate
    (DETR's recipe). `clipnorm` clips the global norm of all gradients together (torch's `clip_grad_norm_`).

    `learning_rate` may be a schedule; the backbone follows it, scaled by the multiplier. With a schedule,
    `backbone_learning_rate` is read against the schedule's first rate, `learning_rate(0)` (the ratio
    rounded to 6 significant digits, as a float32 rate has no more: a schedule starting at 1e-3 with a
    backbone at 1e-4 gets 0.1, as a constant 1e-3 does); for a schedule that does not start at its peak
    (a warmup), give `backbone_learning_rate_multiplier` instead.

    Returns a `BackboneAdamW`.

    Example:
    >>> import keras
    >>> inputs = keras.Input((8, 8, 3))
    >>> features = keras.Sequential([keras.layers.Conv2D(4, 3)], name="backbone")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(features))
    >>> opt = detr_optimizer(model)
    >>> opt.backbone_variable_paths
    ['backbone/conv2d/bias', 'backbone/conv2d/kernel']
    >>> opt.backbone_learning_rate_multiplier
    0.1
    >>> warmup = keras.optimizers.schedules.CosineDecay(0.0, 1000, warmup_target=1e-3, warmup_steps=100)
    >>> detr_optimizer(model, learning_rate=warmup, backbone_learning_rate_multiplier=0.1).backbone_learning_rate_multiplier
    0.1
    """
    backbone = _find_layer(model, backbone_layer_name)
    if backbone is None:
        raise ValueError(
            f"detr_optimizer: the model has no layer named {backbone_layer_name!r}, so it cannot tell "
            "backbone variables apart. Name the backbone layer so, or pass backbone_layer_name=."
        )
    if not model.built:
        raise ValueError("detr_optimizer: build the model first (call it once) so its variables exist.")
    multiplier = _backbone_multiplier(learning_rate, backbone_learning_rate, backbone_learning_rate_multiplier)
    backbone_paths = [v.path for v in backbone.trainable_variables]
    backbone_ids = {id(v) for v in backbone.trainable_variables}
    shared = {v.path for v in model.trainable_variables if id(v) not in backbone_ids} & set(backbone_paths)
    if shared:
        raise ValueError(
            f"detr_optimizer: backbone variables share their paths with other variables ({sorted(shared)[:3]}), "
            "so they cannot be told apart; give the layers unique names."
        )
    return BackboneAdamW(
        learning_rate=learning_rate,
        backbone_learning_rate_multiplier=multiplier,
        backbone_variable_paths=backbone_paths,
        weight_decay=weight_decay,
        global_clipnorm=clipnorm,
    )
