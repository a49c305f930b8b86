"""TNT, Transformer in Transformer (Han et al., 2021).

`TNT` takes every hyper-parameter; `TNTS16` and `TNTB16` are the canonical
configurations (TNT-S: 23.8M parameters, 81.5% ImageNet top-1). The layer
names (`pixel_embed`, `pixel_pos`, `pixel_to_patch`, `cls_token`, `patch_pos`,
`block_{i}`, `norm`, `head`) are what `keras_vit.models.tnt.convert_tnt` fills.
"""

import keras
import numpy as np

from keras_vit import layers as vit_layers
from keras_vit.layers.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from keras_vit.models.tnt.tnt_layers import renamed_tnt_arguments, PixelEmbedding, PixelPositionEmbedding, PixelToPatchProjection, TNTBlock
from keras_vit.models.builder_args import functional_model, model_inputs, named_builder, pooling_word
from keras_vit.models.tnt.convert_tnt import convert_tnt
from keras_vit.models.tnt.tnt_presets import DEFAULT_WEIGHTS
from keras_vit.models.vit.vit_model import _image_size, check_image_size
from keras_vit.weights.loader import load_weights, resolve_weights

TNT_CONFIGS = {
    "TNTS16": dict(patch_size=16, hidden_dim=384, inner_dim=24, depth=12, inner_num_heads=4, num_heads=6),
    "TNTB16": dict(patch_size=16, hidden_dim=640, inner_dim=40, depth=12, inner_num_heads=4, num_heads=10),
}

def TNT(
    image_size=224,
    patch_size=16,
    hidden_dim=384,
    inner_dim=24,
    depth=12,
    inner_num_heads=None,
    num_heads=None,
    num_classes=1000,
    include_top=True,
    pooling="token",
    weights=None,
    include_preprocessing=False,
    preprocessing_mean=INCEPTION_MEAN,
    preprocessing_std=INCEPTION_STD,
    num_channels=3,
    pixel_stride=4,
    mlp_dim=None,
    inner_mlp_dim=None,
    dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    qkv_bias=False,
    layer_norm_epsilon=1e-5,
    classifier_activation=None,
    seed=None,
    dtype=None,
    name="tnt",
    input_tensor=None,
    **deprecated,
):
    """A Transformer in Transformer as a functional `keras.Model`.

    Args:
        image_size: int or (height, width); each a multiple of `patch_size`.
        patch_size: side of a patch (16); a multiple of `pixel_stride`.
        hidden_dim, depth, num_heads, mlp_dim: the outer (patch) transformer;
            `num_heads` defaults to 6, `mlp_dim` to 4 * hidden_dim.
        inner_dim, inner_num_heads, inner_mlp_dim: the inner (pixel)
            transformer; each patch has (patch_size / pixel_stride) ** 2 pixels
            of `inner_dim` channels; `inner_num_heads` defaults to 4,
            `inner_mlp_dim` to 4 * inner_dim.
            The old names `num_heads_outer`, `num_heads_inner`, `mlp_ratio` and
            `inner_mlp_ratio` still work, with a DeprecationWarning.
        num_classes: classifier outputs (with `include_top=True`).
        include_top: add the classifier head; else return features.
        pooling: "token" (class token), "avg" (mean of the patch tokens) or "max"
            (their maximum), after the final norm as in timm; with
            `include_top=False`, None returns every patch-level token after the
            final norm. "gap" is the old word for "avg" (DeprecationWarning).
        input_tensor: a Keras tensor to use as the model's input.
        weights: None, a checkpoint file (timm, the official TNT repository,
            Keras) or a published name (see `keras_vit.weights.published_names("tnt")`).
        include_preprocessing: take RGB in [0, 255] and normalize in the model
            (mean = std = 0.5, what the published TNT weights expect).
        dropout, attention_dropout, drop_path_rate: regularization; drop path
            grows linearly over the blocks up to `drop_path_rate`, as in timm.
        seed: seed of the drop-path noise.

    Example:
    >>> import numpy as np
    >>> model = TNT(image_size=32, patch_size=16, hidden_dim=64, inner_dim=16, depth=2,
    ...             inner_num_heads=2, num_heads=4, num_classes=10)
    >>> tuple(model(np.zeros((1, 32, 32, 3), "float32")).shape)
    (1, 10)
    """
    given = {"hidden_dim": hidden_dim, "inner_dim": inner_dim, "inner_num_heads": inner_num_heads,
             "num_heads": num_heads, "mlp_dim": mlp_dim, "inner_mlp_dim": inner_mlp_dim}
    renamed = renamed_tnt_arguments({**given, **deprecated}, "TNT")
    unknown = sorted(set(renamed) - set(given))
    if unknown:
        raise TypeError(f"TNT() got an unexpected keyword argument {unknown[0]!r}.")
    # TNT-S's heads by default (4 inner, 6 outer).
    inner_num_heads = 4 if renamed["inner_num_heads"] is None else renamed["inner_num_heads"]
    num_heads = 6 if renamed["num_heads"] is None else renamed["num_heads"]
    mlp_dim, inner_mlp_dim = renamed["mlp_dim"], renamed["inner_mlp_dim"]
    image_size = _image_size(image_size)
    check_image_size(image_size, patch_size, name)
    if patch_size % pixel_stride != 0:
        raise ValueError(
            f"{name}: patch size {patch_size} is not divisible by the pixel stride {pixel_stride}; "
            "use a patch size that is a multiple of the stride (TNT uses 16 and 4)."
        )
    if inner_dim % inner_num_heads != 0:
        raise ValueError(
            f"{name}: inner_dim {inner_dim} is not divisible by inner_num_heads {inner_num_heads}; "
            "choose a number of inner heads that divides inner_dim."
        )
    if hidden_dim % num_heads != 0:
        raise ValueError(
            f"{name}: hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
            "choose a number of heads that divides hidden_dim."
        )
    pooling = pooling_word(pooling, name)
    if include_top and pooling is None:
        raise ValueError("include_top=True needs pooling='token', 'avg' or 'max'.")
    weights_path, entry = (None, None) if weights is None else resolve_weights(weights, "tnt")
    if entry is not None:
        preprocessing_mean, preprocessing_std = entry["mean"], entry["std"]

    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    inputs = model_inputs(input_tensor, (image_size[0], image_size[1], num_channels), dtype, name)
    x = inputs
    if include_preprocessing:
        x = vit_layers.ImageNormalization(preprocessing_mean, preprocessing_std, dtype=dtype, name="preprocessing")(x)
    pixels = PixelEmbedding(patch_size, inner_dim, pixel_stride=pixel_stride, dtype=dtype, name="pixel_embed")(x)
    pixels = PixelPositionEmbedding(dtype=dtype, name="pixel_pos")(pixels)
    patches = PixelToPatchProjection(
        hidden_dim, use_bias=True, layer_norm_epsilon=layer_norm_epsilon, dtype=dtype, name="pixel_to_patch"
    )(pixels)
    patches = vit_layers.ClassToken(dtype=dtype, name="cls_token")(patches)
    patches = vit_layers.PositionEmbedding(grid, 1, dtype=dtype, name="patch_pos")(patches)
    patches = keras.layers.Dropout(dropout, dtype=dtype, name="pos_drop")(patches)
    rates = np.linspace(0.0, drop_path_rate, depth) if depth > 1 else [drop_path_rate]
    for i in range(depth):
        pixels, patches = TNTBlock(
            hidden_dim, inner_dim, inner_num_heads, num_heads, mlp_dim=mlp_dim,
            inner_mlp_dim=inner_mlp_dim, qkv_bias=qkv_bias, dropout=dropout,
            attention_dropout=attention_dropout, drop_path_rate=float(rates[i]),
            layer_norm_epsilon=layer_norm_epsilon, seed=None if seed is None else seed + i,
            dtype=dtype, name=f"block_{i}",
        )([pixels, patches])
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="norm")(patches)
    if pooling == "avg":  # the layer keeps its first name, "gap"
        x = keras.layers.GlobalAveragePooling1D(dtype=dtype, name="gap")(x[:, 1:])
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling1D(dtype=dtype, name="max_pool")(x[:, 1:])
    elif pooling == "token":
        x = vit_layers.token_features(x, 0)
    if include_top:
        # Logits in float32 under every policy (Keras' mixed-precision guide: the last layer in float32).
        x = keras.layers.Dense(num_classes, dtype="float32", name="head")(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    model = functional_model(inputs, x, name)
    if weights_path is not None:
        load_weights(model, weights_path, convert_tnt, "tnt", allow_head_reset=True)
    return model


def _tnt_builder(config_name):
    c = TNT_CONFIGS[config_name]
    return named_builder(
        config_name, TNT, c,
        f"TNT with patch {c['patch_size']}, width {c['hidden_dim']} (inner {c['inner_dim']}), depth {c['depth']}, "
        f"{c['num_heads']} outer and {c['inner_num_heads']} inner heads.",
        pooling="token", example_size=2 * c["patch_size"], weights_table=DEFAULT_WEIGHTS,
    )


TNTS16 = _tnt_builder("TNTS16")
TNTB16 = _tnt_builder("TNTB16")
