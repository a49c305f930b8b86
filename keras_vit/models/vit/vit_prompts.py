"""Visual Prompt Tuning (Jia et al., 2022) for trained ViT and DeiT models.

`add_prompts(model, num_prompts, deep=True)` returns the same network with learned
prompt tokens after the class (and distillation) tokens, its backbone frozen: only
the prompts and the head train. VPT-deep gives each of the `depth` blocks its own
`num_prompts` tokens (the previous block's outputs at those places are dropped), so
the prompts hold `depth * num_prompts * hidden_dim` parameters (VPT-shallow: one
block's worth) and the head `hidden_dim * classes + classes`; VPT's parameter count
is these two.

`vision_transformer_config(model)` reads a built ViT/DeiT back into the arguments of
`VisionTransformer`, which `add_prompts` and the MAE's `to_vision_transformer` use.
"""

import keras

from keras_vit.layers import ClassToken, ImageNormalization, PatchEmbedding, PositionEmbedding, TransformerEncoderBlock
from keras_vit.models.vit.vit_layers import PromptTokens
from keras_vit.models.vit.vit_model import VisionTransformer
from keras_vit.weights.assignment import numbered_layers, optional_layer


def _require_vit(model, what):
    layers = {name: optional_layer(model, name) for name in ("patch_embed", "cls_token", "pos_embed", "block_0")}
    kinds = {"patch_embed": PatchEmbedding, "cls_token": ClassToken, "pos_embed": PositionEmbedding,
             "block_0": TransformerEncoderBlock}
    if not isinstance(model, keras.Model) or any(not isinstance(layers[n], kinds[n]) for n in kinds):
        raise ValueError(
            f"{what} works on ViT and DeiT models (keras_vit.VisionTransformer and the ViT*/DeiT* builders); "
            f"{getattr(model, 'name', model)!r} is not one of them (Swin, TNT and DETR have no class-token "
            "sequence to put prompts in)."
        )


def vision_transformer_config(model):
    """The `VisionTransformer` arguments that rebuild `model` (a ViT or DeiT), without its weights.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, num_classes=10, pooling="avg")
    >>> config = vision_transformer_config(model)
    >>> config["depth"], config["pooling"], config["num_classes"]
    (2, 'avg', 10)
    """
    _require_vit(model, "vision_transformer_config")
    embed = model.get_layer("patch_embed")
    blocks = numbered_layers(model, "block_{}")
    first = blocks[0]
    head = optional_layer(model, "head")
    preprocessing = optional_layer(model, "preprocessing")
    activation = optional_layer(model, "predictions")
    prompts = optional_layer(model, "prompt_0")
    if optional_layer(model, "fc_norm") is not None:
        pooling = "max" if optional_layer(model, "max_pool") is not None else "avg"
    elif head is not None or len(model.output_shape) == 2:
        pooling = "token"
    else:
        pooling = None
    config = dict(
        image_size=tuple(model.input_shape[1:3]),
        num_channels=model.input_shape[3],
        patch_size=embed.patch_size[0],
        hidden_dim=embed.hidden_dim,
        depth=len(blocks),
        num_heads=first.num_heads,
        mlp_dim=first.mlp_dim,
        qkv_bias=first.qkv_bias,
        layer_norm_epsilon=first.layer_norm_epsilon,
        dropout=first.dropout,
        attention_dropout=first.attention_dropout,
        drop_path_rate=blocks[-1].drop_path_rate,
        seed=first.seed,
        num_classes=head.units if head is not None else 1000,
        include_top=head is not None,
        pooling=pooling,
        distilled=optional_layer(model, "dist_token") is not None,
        include_preprocessing=preprocessing is not None,
        classifier_activation=None if activation is None else keras.activations.serialize(activation.activation),
        num_prompts=0 if prompts is None else prompts.num_prompts,
        deep_prompts=optional_layer(model, "prompt_1") is not None,
        prompt_dropout=0.0 if prompts is None else prompts.dropout,
        name=model.name,
    )
    if isinstance(preprocessing, ImageNormalization):
        config.update(preprocessing_mean=preprocessing.mean, preprocessing_std=preprocessing.std)
    return config


def count_parameters(variables):
    """The number of values in `variables` (e.g. `model.trainable_weights`).

    Example:
    >>> import keras
    >>> count_parameters([keras.Variable([[1.0, 2.0]])])
    2
    """
    total = 0
    for variable in variables:
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size
    return total


def prompt_tuning_summary(model):
    """One line: trainable parameters (prompts + head) against the model's total.

    Example:
    >>> import keras_vit
    >>> vit = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, num_classes=10)
    >>> print(prompt_tuning_summary(keras_vit.add_prompts(vit, 4, deep=True, verbose=False)))
    VPT: 874 trainable parameters (prompts 384, head 490) of 49,018 (1.78%)
    """
    prompts = count_parameters(w for layer in model.layers if isinstance(layer, PromptTokens) for w in layer.weights)
    trainable = count_parameters(model.trainable_weights)
    total = count_parameters(model.weights)
    return (f"VPT: {trainable:,} trainable parameters (prompts {prompts:,}, head {trainable - prompts:,}) "
            f"of {total:,} ({100.0 * trainable / total:.2f}%)")


_HEADS = ("head", "head_dist")


def freeze_backbone(model):
    """Freezes every layer of a prompted ViT/DeiT but its prompts and head(s), in place.

    Example:
    >>> import keras_vit
    >>> vit = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, num_classes=10, num_prompts=4)
    >>> freeze_backbone(vit)
    >>> sorted(layer.name for layer in vit.layers if layer.trainable and layer.weights)
    ['head', 'prompt_0']
    """
    for layer in model.layers:
        layer.trainable = isinstance(layer, PromptTokens) or layer.name in _HEADS


def add_prompts(model, num_prompts, deep=True, num_classes=None, prompt_dropout=0.0, verbose=True):
    """Visual Prompt Tuning: `model` with prompt tokens, its backbone frozen.

    Returns a new model (the input model is left as it is) with the same weights,
    `num_prompts` learned tokens after the class/distillation tokens (`deep=True`: new
    prompts at every block, VPT-deep; `deep=False`: before the first block only,
    VPT-shallow), and every layer frozen except the prompts and the head(s). With
    `num_classes`, a new head of that many classes replaces the old one. Prints (with
    `verbose`) the trainable parameter count. The result trains with `compile()`/`fit()`
    and exports like any model of the package.

    Args:
        model: a ViT or DeiT classifier (`keras_vit.VisionTransformer` or a builder).
        num_prompts: prompt tokens per block (VPT uses 1 to 200; 50 is common).
        deep: VPT-deep (True) or VPT-shallow (False).
        num_classes: a new head with this many classes; None keeps the model's head.
        prompt_dropout: dropout on the prompt tokens while training.

    Example:
    >>> import keras_vit
    >>> vit = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, num_classes=10)
    >>> prompted = keras_vit.add_prompts(vit, num_prompts=4, deep=True, num_classes=5)
    VPT: 629 trainable parameters (prompts 384, head 245) of 48,773 (1.29%)
    >>> prompted.output_shape
    (None, 5)
    """
    _require_vit(model, "add_prompts")
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be a positive int (VPT uses 1 to 200), got {num_prompts!r}.")
    if optional_layer(model, "prompt_0") is not None:
        raise ValueError(f"{model.name!r} already has prompt tokens; call add_prompts on the model without them.")
    config = vision_transformer_config(model)
    if not config["include_top"]:
        raise ValueError("add_prompts needs a classifier (include_top=True): VPT trains the prompts and the head.")
    new_head = num_classes is not None and num_classes != config["num_classes"]
    if num_classes is not None:
        config["num_classes"] = num_classes
    config.update(num_prompts=num_prompts, deep_prompts=bool(deep), prompt_dropout=prompt_dropout)
    prompted = VisionTransformer(**config)
    for layer in model.layers:
        if layer.weights and not (new_head and layer.name in _HEADS):
            prompted.get_layer(layer.name).set_weights(layer.get_weights())
    freeze_backbone(prompted)
    if verbose:
        print(prompt_tuning_summary(prompted))
    return prompted
