"""DeiT (Touvron et al., 2021): data-efficient ViTs and distillation through attention.

A DeiT is a `VisionTransformer`; `distilled=True` adds the distillation token
(tokens [cls, dist, patches]) and a second head `head_dist`. At inference the
model returns one tensor, the mean of both heads' logits, so it exports like any
classifier; `distillation_heads(model)` gives the two heads separately for
training (see `keras_vit.DistillationModel`), sharing the model's layers.
"""

import keras

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.models.builder_args import check_input_shape, default_weights
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


def _builder(config_name):
    config = DEIT_CONFIGS[config_name]

    def build(
        input_shape=(224, 224, 3),
        num_classes=1000,
        distilled=False,
        include_top=True,
        pooling="token",
        weights=None,
        include_preprocessing=False,
        dropout=0.0,
        drop_path_rate=0.0,
        classifier_activation=None,
        name=None,
        **kwargs,
    ):
        check_input_shape(input_shape)
        weights = _resolve_deit_weights(config_name, input_shape, weights, distilled)
        kwargs.setdefault("preprocessing_mean", IMAGENET_MEAN)
        kwargs.setdefault("preprocessing_std", IMAGENET_STD)
        return VisionTransformer(
            image_size=tuple(input_shape[:2]),
            num_channels=input_shape[2],
            num_classes=num_classes,
            include_top=include_top,
            pooling=pooling,
            distilled=distilled,
            weights=weights,
            include_preprocessing=include_preprocessing,
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            classifier_activation=classifier_activation,
            name=name or (config_name.lower() + ("_distilled" if distilled else "")),
            **config,
            **kwargs,
        )

    c = config
    build.__name__ = config_name
    build.__qualname__ = config_name
    build.__doc__ = f"""DeiT with patch {c['patch_size']}, width {c['hidden_dim']}, depth {c['depth']}, {c['num_heads']} heads.

    `distilled=True` adds the distillation token and its head `head_dist`; the
    model then returns the mean of both heads' logits (`distillation_heads`
    gives them separately). Other arguments as keras.applications:
    `input_shape` (default (224, 224, 3)), `num_classes`, `include_top`,
    `pooling`, `weights` (None, "imagenet", a published DeiT name such as
    "deit_small_distilled_patch16_224.fb_in1k", or a timm/transformers/Keras
    checkpoint file), `include_preprocessing` (ImageNet mean and std),
    `dropout`, `drop_path_rate` (0.1 in the DeiT recipe), `name`; other
    keywords go to `VisionTransformer`.

    Example:
    >>> model = {config_name}(input_shape=(224, 224, 3), num_classes=10, distilled=True)
    >>> model.output_shape
    (None, 10)
    """
    return build


DeiTTi16 = _builder("DeiTTi16")
DeiTS16 = _builder("DeiTS16")
DeiTB16 = _builder("DeiTB16")
