"""DeiT (Touvron et al., 2021): data-efficient ViTs and distillation through attention.

A DeiT is a `VisionTransformer`; `distilled=True` adds the distillation token
(tokens [cls, dist, patches]) and a second head `head_dist`. At inference the
model returns one tensor, the mean of both heads' logits, so it exports like any
classifier; `distillation_heads(model)` gives the two heads separately for
training (see `keras_vit.DistillationModel`), sharing the model's layers.
"""

import keras

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.models.builder_args import default_weights, named_builder
from keras_vit.models.vit.vit_model import VisionTransformer
from keras_vit.weights.loader import resolve_weights
from keras_vit.models.deit.deit_presets import DEFAULT_WEIGHTS
from keras_vit.weights.published import PUBLISHED_WEIGHTS

DEIT_CONFIGS = {
    "DeiTTi16": dict(patch_size=16, hidden_dim=192, depth=12, num_heads=3, mlp_dim=768),
    "DeiTS16": dict(patch_size=16, hidden_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "DeiTB16": dict(patch_size=16, hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072),
}

def distillation_heads(model):
    """A view of a distilled DeiT that returns `[class_logits, distillation_logits]`.

    The view is a functional `keras.Model` built from the layers of `model`
    (no copy): training it trains `model`. It is what the DeiT losses need,
    while `model` itself returns one tensor (the mean of the two heads).

    Example:
    >>> import numpy as np, keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10, distilled=True)
    >>> class_logits, distillation_logits = distillation_heads(model)(np.zeros((1, 32, 32, 3), "float32"))
    >>> tuple(distillation_logits.shape)
    (1, 10)
    """
    names = {layer.name for layer in model.layers}
    if not {"head", "head_dist"} <= names:
        raise ValueError(
            f"Model {model.name!r} has no `head` and `head_dist` layers: it is not a distilled DeiT "
            "classifier. Build it with `distilled=True` and `include_top=True`."
        )
    outputs = [model.get_layer("head").output, model.get_layer("head_dist").output]
    return keras.Model(model.input, outputs, name=f"{model.name}_heads")


def _resolve_deit_weights(config_name, input_shape, weights, distilled):
    """Turns `weights` into what `VisionTransformer` takes, checking distilled-ness."""
    if weights is None:
        return None
    if weights == "imagenet":
        kind = " (distilled)" if distilled else " (undistilled)"
        return default_weights(config_name, input_shape, DEFAULT_WEIGHTS, (bool(distilled),), kind)
    entry = PUBLISHED_WEIGHTS.get(weights) if isinstance(weights, str) else None
    if entry is not None and entry.get("distilled") is not None and entry["distilled"] != bool(distilled):
        raise ValueError(
            f"The weights {weights!r} are {'distilled' if entry['distilled'] else 'undistilled'}: "
            f"build the model with distilled={entry['distilled']}."
        )
    if entry is None:
        resolve_weights(weights, "vit")  # a clear error now for a missing file or unknown name
    return weights


def _deit_builder(config_name):
    c = DEIT_CONFIGS[config_name]

    def prepare(arguments, input_shape):
        distilled = arguments.setdefault("distilled", False)
        arguments["weights"] = _resolve_deit_weights(config_name, input_shape, arguments["weights"], distilled)
        arguments.setdefault("preprocessing_mean", IMAGENET_MEAN)
        arguments.setdefault("preprocessing_std", IMAGENET_STD)
        if distilled and arguments["name"] is None:
            arguments["name"] = config_name.lower() + "_distilled"

    return named_builder(
        config_name, VisionTransformer, c,
        f"DeiT with patch {c['patch_size']}, width {c['hidden_dim']}, depth {c['depth']}, {c['num_heads']} heads.",
        pooling="token", example_size=2 * c["patch_size"], prepare=prepare, any_size=True,
        notes="\n\n    `distilled=True` adds the distillation token and its head `head_dist`; the model\n"
              "    then returns the mean of both heads' logits (`distillation_heads` gives them apart).\n"
              "    `weights=\"imagenet\"` takes the distilled or plain checkpoint to match, and\n"
              "    `include_preprocessing` ImageNet's mean and std; `drop_path_rate` is 0.1 in the recipe.",
    )


DeiTTi16 = _deit_builder("DeiTTi16")
DeiTS16 = _deit_builder("DeiTS16")
DeiTB16 = _deit_builder("DeiTB16")
