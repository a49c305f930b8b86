"""Vision Transformer (Dosovitskiy et al., 2021), and DeiT's distilled variant.

`VisionTransformer` takes every hyper-parameter; `ViTTi16` ... `ViTH14` are the
canonical configurations. The layer names (`patch_embed`, `cls_token`,
`pos_embed`, `block_{i}`, `norm`, `head`) are what the checkpoint converters in
`keras_vit.models.vit.convert_vit` fill.
"""

import keras
import numpy as np

from keras_vit import layers as vit_layers
from keras_vit.layers.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from keras_vit.models.builder_args import functional_model, model_inputs, named_builder, pooling_word
from keras_vit.models.vit.convert_vit import convert_vit
from keras_vit.models.vit.vit_layers import PromptTokens
from keras_vit.models.vit.vit_presets import DEFAULT_WEIGHTS
from keras_vit.weights.loader import load_weights, resolve_weights

VIT_CONFIGS = {
    "ViTTi16": dict(patch_size=16, hidden_dim=192, depth=12, num_heads=3, mlp_dim=768),
    "ViTS16": dict(patch_size=16, hidden_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "ViTS32": dict(patch_size=32, hidden_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "ViTB16": dict(patch_size=16, hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    "ViTB32": dict(patch_size=32, hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    "ViTL16": dict(patch_size=16, hidden_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    "ViTL32": dict(patch_size=32, hidden_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    "ViTH14": dict(patch_size=14, hidden_dim=1280, depth=32, num_heads=16, mlp_dim=5120),
}

def _image_size(image_size):
    if isinstance(image_size, int):
        return (image_size, image_size)
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    return tuple(int(s) for s in image_size)


def check_image_size(image_size, patch_size, model_name):
    """Raises a clear error when the image is not a whole number of patches."""
    height, width = image_size
    for size, axis in ((height, "height"), (width, "width")):
        if size % patch_size != 0 or size < patch_size:
            fixed = max(patch_size, round(size / patch_size) * patch_size)
            raise ValueError(
                f"{model_name}: image {axis} {size} is not a multiple of the patch size "
                f"{patch_size}. Use an input size that is (for example {fixed})."
            )


def VisionTransformer(
    image_size=224,
    patch_size=16,
    hidden_dim=768,
    depth=12,
    num_heads=12,
    mlp_dim=3072,
    num_classes=1000,
    include_top=True,
    pooling="token",
    distilled=False,
    weights=None,
    include_preprocessing=False,
    preprocessing_mean=INCEPTION_MEAN,
    preprocessing_std=INCEPTION_STD,
    num_channels=3,
    dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    qkv_bias=True,
    layer_norm_epsilon=1e-6,
    classifier_activation=None,
    seed=None,
    num_prompts=0,
    deep_prompts=False,
    prompt_dropout=0.0,
    dtype=None,
    name="vision_transformer",
    input_tensor=None,
    dynamic_image_size=False,
):
    """A Vision Transformer as a functional `keras.Model`.

    Args:
        image_size: int or (height, width); each a multiple of `patch_size`.
        patch_size, hidden_dim, depth, num_heads, mlp_dim: the architecture.
        num_classes: classifier outputs (with `include_top=True`).
        include_top: add the classifier head; else return features.
        pooling: "token" (class token, after the final norm), "avg" (mean of the
            patch tokens, then `fc_norm`, as timm's `global_pool="avg"`) or "max"
            (their maximum, then `fc_norm`, timm's "max"); with `include_top=False`,
            None returns every token after the final norm. "gap" is the old word
            for "avg" (DeprecationWarning).
        distilled: DeiT's distillation token and second head; the output is the
            mean of both heads' logits (the heads are the layers `head` and `head_dist`).
        weights: None, a checkpoint file (timm, transformers, Google .npz, Keras)
            or a published name (see `keras_vit.weights.published_names("vit")`).
        include_preprocessing: take RGB in [0, 255] and normalize in the model.
        dropout, attention_dropout, drop_path_rate: regularization; drop path
            grows linearly over the blocks up to `drop_path_rate`, as in timm.
        seed: seed of the drop-path noise.
        num_prompts, deep_prompts, prompt_dropout: Visual Prompt Tuning (Jia et al.,
            2022): `num_prompts` learned tokens after the class (and distillation)
            tokens, new ones at every block with `deep_prompts=True` (layers
            `prompt_{i}`); "avg" and "max" pool the patch tokens only. To freeze a trained
            model and train only the prompts and head: `keras_vit.add_prompts`.
        input_tensor: a Keras tensor to use as the model's input (keras.applications'
            argument); its shape must be (None, *image_size, num_channels), or
            (None, None, None, num_channels) with `dynamic_image_size=True`.
        dynamic_image_size: take images of any size (timm's `dynamic_img_size`): the
            input is (None, None, None, num_channels), the position embeddings are stored
            for `image_size` (weights load as for a model of that size) and resampled at run
            time to each batch's patch grid (bicubic with antialias, as timm). At `image_size`
            the outputs are the fixed-size model's. Height and width must be multiples of
            `patch_size`. The builders do this for `input_shape=(None, None, 3)`.

    Example:
    >>> import numpy as np
    >>> model = VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=2,
    ...                           num_heads=3, mlp_dim=192, num_classes=10)
    >>> tuple(model(np.zeros((1, 32, 32, 3), "float32")).shape)
    (1, 10)
    """
    image_size = _image_size(image_size)
    check_image_size(image_size, patch_size, name)
    pooling = pooling_word(pooling, name)
    if include_top and pooling is None:
        raise ValueError("include_top=True needs pooling='token', 'avg' or 'max'.")
    if distilled and pooling != "token":
        raise ValueError("A distilled model pools its class and distillation tokens: use pooling='token'.")
    if hidden_dim % num_heads != 0:
        raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}.")
    weights_path, entry = (None, None) if weights is None else resolve_weights(weights, "vit")
    if entry is not None:
        preprocessing_mean, preprocessing_std = entry["mean"], entry["std"]

    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    num_prefix = 2 if distilled else 1
    input_size = (None, None) if dynamic_image_size else image_size
    inputs = model_inputs(input_tensor, (*input_size, num_channels), dtype, name)
    x = inputs
    if include_preprocessing:
        x = vit_layers.ImageNormalization(preprocessing_mean, preprocessing_std, dtype=dtype, name="preprocessing")(x)
    x = vit_layers.PatchEmbedding(patch_size, hidden_dim, dtype=dtype, name="patch_embed")(x)
    if distilled:
        x = vit_layers.ClassToken(dtype=dtype, name="dist_token")(x)
    x = vit_layers.ClassToken(dtype=dtype, name="cls_token")(x)
    if dynamic_image_size:  # resampled at run time to the images' patch grid
        x = vit_layers.PositionEmbedding(grid, num_prefix, patch_size, dtype=dtype, name="pos_embed")(x, inputs)
    else:
        x = vit_layers.PositionEmbedding(grid, num_prefix, dtype=dtype, name="pos_embed")(x)
    x = keras.layers.Dropout(dropout, dtype=dtype, name="pos_drop")(x)
    prompt_args = dict(num_prefix_tokens=num_prefix, patch_area=patch_size * patch_size, dropout=prompt_dropout,
                       seed=seed, dtype=dtype)
    if num_prompts:
        x = PromptTokens(num_prompts, name="prompt_0", **prompt_args)(x)
    rates = np.linspace(0.0, drop_path_rate, depth) if depth > 1 else [drop_path_rate]
    for i in range(depth):
        if num_prompts and deep_prompts and i > 0:  # deep VPT: this block's own prompts
            x = PromptTokens(num_prompts, replace=True, name=f"prompt_{i}", **prompt_args)(x)
        x = vit_layers.TransformerEncoderBlock(
            hidden_dim, num_heads, mlp_dim, qkv_bias=qkv_bias, dropout=dropout,
            attention_dropout=attention_dropout, drop_path_rate=float(rates[i]),
            layer_norm_epsilon=layer_norm_epsilon, seed=None if seed is None else seed + i,
            dtype=dtype, name=f"block_{i}",
        )(x)
    if pooling in ("avg", "max"):
        patches = x[:, num_prefix + num_prompts:]
        if pooling == "avg":  # the layer keeps its first name, "gap"
            x = keras.layers.GlobalAveragePooling1D(dtype=dtype, name="gap")(patches)
        else:
            x = keras.layers.GlobalMaxPooling1D(dtype=dtype, name="max_pool")(patches)
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="fc_norm")(x)
    else:
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="norm")(x)
    if pooling == "token":
        if distilled:
            dist_features = vit_layers.token_features(x, 1)
        x = vit_layers.token_features(x, 0)
    if include_top:
        # Logits in float32 under every policy (Keras' mixed-precision guide: the last layer in float32).
        head = keras.layers.Dense(num_classes, dtype="float32", name="head")
        if distilled:
            head_dist = keras.layers.Dense(num_classes, dtype="float32", name="head_dist")
            x = keras.layers.Average(dtype="float32", name="average_heads")([head(x), head_dist(dist_features)])
        else:
            x = head(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "token" and distilled:
        x = keras.layers.Average(dtype=dtype, name="average_features")([x, dist_features])
    model = functional_model(inputs, x, name)
    if weights_path is not None:
        load_weights(model, weights_path, convert_vit, "vit", allow_head_reset=True)
    return model


def _vit_builder(config_name):
    c = VIT_CONFIGS[config_name]
    return named_builder(
        config_name, VisionTransformer, c,
        f"ViT with patch {c['patch_size']}, width {c['hidden_dim']}, depth {c['depth']}, {c['num_heads']} heads.",
        pooling="token", example_size=2 * c["patch_size"], weights_table=DEFAULT_WEIGHTS, any_size=True,
    )


ViTTi16 = _vit_builder("ViTTi16")
ViTS16 = _vit_builder("ViTS16")
ViTS32 = _vit_builder("ViTS32")
ViTB16 = _vit_builder("ViTB16")
ViTB32 = _vit_builder("ViTB32")
ViTL16 = _vit_builder("ViTL16")
ViTL32 = _vit_builder("ViTL32")
ViTH14 = _vit_builder("ViTH14")
