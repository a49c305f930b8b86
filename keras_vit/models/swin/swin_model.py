"""Swin Transformer (Liu et al., 2021): hierarchical, shifted-window attention.

`SwinTransformer` takes every hyper-parameter; `SwinT`, `SwinS`, `SwinB`,
`SwinL` are the canonical configurations (window 7 at 224, window 12 at 384).
The layout is timm's: patch embedding + LayerNorm, then stages whose first
layer (from the second stage on) is a `PatchMerging`, then a final LayerNorm,
global average pooling and the head. Layer names (`patch_embed`,
`patch_embed_norm`, `stage_{i}_downsample`, `stage_{i}_block_{j}`, `norm`,
`head`) are what `keras_vit.models.swin.convert_swin` fills.

Use as a backbone: `features_only=True` returns a dict of every stage's map,
channels-last and keyed by stride (`"stride_4"` ... `"stride_32"` for patch 4),
each the raw stage output (timm's `forward_intermediates`). A detector that
wants only the last, stride-32 map (DETR) can take
`keras.Model(model.input, model.output["stride_32"])`, or build with
`include_top=False, pooling=None` to get the final map after the last
LayerNorm (timm's `forward_features`).
"""

import keras
import numpy as np

from keras_vit import layers as vit_layers
from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.models.swin.swin_layers import PatchMerging, SwinBlock
from keras_vit.layers.renamed_arguments import take_renamed_arguments
from keras_vit.models.builder_args import default_weights, functional_model, model_inputs, named_builder, pooling_word
from keras_vit.models.swin.convert_swin import convert_swin
from keras_vit.models.swin.swin_presets import DEFAULT_WEIGHTS
from keras_vit.weights.loader import load_weights, resolve_weights

SWIN_CONFIGS = {
    "SwinT": dict(hidden_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "SwinS": dict(hidden_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "SwinB": dict(hidden_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "SwinL": dict(hidden_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}

def _image_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        return (int(image_size), int(image_size))
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    return tuple(int(s) for s in image_size)


def _check_config(image_size, patch_size, window_size, hidden_dim, depths, num_heads, name):
    """Raises one clear error for a configuration Swin cannot build."""
    depths, num_heads = tuple(depths), tuple(num_heads)
    if len(depths) == 0 or any(int(d) < 1 for d in depths):
        raise ValueError(f"{name}: depths must be a non-empty list of positive block counts, got {depths}.")
    if len(depths) != len(num_heads):
        raise ValueError(
            f"{name}: depths {depths} and num_heads {num_heads} have different lengths "
            f"({len(depths)} vs {len(num_heads)}); give one number of heads per stage."
        )
    for i, heads in enumerate(num_heads):
        width = hidden_dim * 2**i
        if heads < 1 or width % heads != 0:
            raise ValueError(
                f"{name}: stage {i} has width {width} (hidden_dim {hidden_dim} * 2**{i}), which is not "
                f"divisible by its {heads} heads; choose num_heads that divide each stage's width."
            )
    stride = patch_size * 2 ** (len(depths) - 1)
    for size, axis in zip(image_size, ("height", "width")):
        if size % stride != 0 or size < stride:
            fixed = max(stride, round(size / stride) * stride)
            raise ValueError(
                f"{name}: image {axis} {size} is not a multiple of {stride} (patch size {patch_size} "
                f"* 2**{len(depths) - 1} for {len(depths)} stages). Use an input size such as {fixed}."
            )
    first = (image_size[0] // patch_size, image_size[1] // patch_size)
    window = (window_size, window_size) if isinstance(window_size, (int, np.integer)) else tuple(window_size)
    if any(w > r for w, r in zip(window, first)):
        raise ValueError(
            f"{name}: window_size {window_size} is larger than the first stage's {first[0]}x{first[1]} "
            f"map (image {image_size[0]}x{image_size[1]} / patch {patch_size}). Use a window of at most "
            f"{min(first)} or a larger image."
        )
    if any(w < 1 for w in window):
        raise ValueError(f"{name}: window_size must be positive, got {window_size}.")


def _hidden_dim(hidden_dim, deprecated, owner):
    """`hidden_dim` (default 96), also when given under its old name `embed_dim`."""
    arguments = take_renamed_arguments({"hidden_dim": hidden_dim, **deprecated}, {"embed_dim": ("hidden_dim", None)},
                                       owner, stacklevel=4)  # the warning points at the user's call
    unknown = sorted(set(arguments) - {"hidden_dim"})
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}.")
    return 96 if arguments["hidden_dim"] is None else arguments["hidden_dim"]


def SwinTransformer(
    image_size=224,
    patch_size=4,
    window_size=7,
    hidden_dim=None,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    num_classes=1000,
    include_top=True,
    pooling="avg",
    features_only=False,
    weights=None,
    include_preprocessing=False,
    preprocessing_mean=IMAGENET_MEAN,
    preprocessing_std=IMAGENET_STD,
    num_channels=3,
    mlp_ratio=4.0,
    qkv_bias=True,
    dropout=0.0,
    attention_dropout=0.0,
    head_dropout=0.0,
    drop_path_rate=0.0,
    layer_norm_epsilon=1e-5,
    classifier_activation=None,
    seed=None,
    dtype=None,
    name="swin_transformer",
    input_tensor=None,
    **deprecated,
):
    """A Swin Transformer as a functional `keras.Model` (channels-last images).

    Args:
        image_size: int or (height, width), each a multiple of
            `patch_size * 2 ** (len(depths) - 1)` (32 for the canonical models).
            Stages whose map is not a multiple of the window are padded and
            cropped back, as timm does.
        patch_size, window_size, hidden_dim, depths, num_heads, mlp_ratio,
            qkv_bias: the architecture; stage i has width `hidden_dim * 2**i` (96 by default)
            (`hidden_dim` is the Swin paper's C, timm's `embed_dim`; that old
            name still works, with a DeprecationWarning) and an MLP of
            `mlp_ratio` times its width.
        num_classes: classifier outputs (with `include_top=True`).
        include_top: add the classifier head (`head`).
        pooling: "avg" (global average of the final map, after `norm`), "max"
            (its maximum) or, with `include_top=False`, None: the final
            (B, H/32, W/32, C) map after `norm`. Swin has no class token ("token").
        input_tensor: a Keras tensor to use as the model's input.
        features_only: return a dict of every stage's raw output map, keyed
            `"stride_{s}"` (for example `"stride_4"` ... `"stride_32"`), for use
            as a backbone; `include_top` and `pooling` are then ignored.
        weights: None, a checkpoint file (timm, official Swin repository,
            transformers `SwinForImageClassification`/`SwinModel`, Keras) or a
            published name (`keras_vit.weights.published_names("swin")`).
            Bias tables of another window size are resampled as timm does.
        include_preprocessing: take RGB in [0, 255] and normalize in the model
            (ImageNet mean/std unless the published weights say otherwise).
        dropout, attention_dropout, head_dropout, drop_path_rate: regularization
            (timm's proj_drop_rate, attn_drop_rate, drop_rate and
            drop_path_rate); drop path grows linearly over all blocks.
        seed: seed of the drop-path noise (block k gets seed + k).

    As a detection backbone (DETR uses the last map): build with
    `features_only=True` and take `keras.Model(model.input, model.output["stride_32"])`;
    its channels are `hidden_dim * 2 ** (len(depths) - 1)` (768 for Swin-T/S).

    Example:
    >>> import numpy as np
    >>> model = SwinTransformer(image_size=64, patch_size=4, window_size=4, hidden_dim=32,
    ...                         depths=(2, 2, 2), num_heads=(2, 4, 8), num_classes=10)
    >>> tuple(model(np.zeros((1, 64, 64, 3), "float32")).shape)
    (1, 10)
    >>> backbone = SwinTransformer(image_size=64, patch_size=4, window_size=4, hidden_dim=32,
    ...                            depths=(2, 2, 2), num_heads=(2, 4, 8), features_only=True)
    >>> sorted(backbone.output)
    ['stride_16', 'stride_4', 'stride_8']
    """
    hidden_dim = _hidden_dim(hidden_dim, deprecated, "SwinTransformer")
    image_size = _image_size(image_size)
    depths, num_heads = tuple(int(d) for d in depths), tuple(int(h) for h in num_heads)
    _check_config(image_size, patch_size, window_size, hidden_dim, depths, num_heads, name)
    if not features_only:
        if pooling == "token":
            raise ValueError(f"{name}: Swin has no class token; use pooling='avg' (as timm), 'max' or None.")
        pooling = pooling_word(pooling, name, allowed=(None, "avg", "max"))
        if include_top and pooling is None:
            raise ValueError("include_top=True needs pooling='avg' or 'max'.")
    weights_path, entry = (None, None) if weights is None else resolve_weights(weights, "swin")
    if entry is not None:
        preprocessing_mean, preprocessing_std = entry["mean"], entry["std"]

    inputs = model_inputs(input_tensor, (image_size[0], image_size[1], num_channels), dtype, name)
    x = inputs
    if include_preprocessing:
        x = vit_layers.ImageNormalization(preprocessing_mean, preprocessing_std, dtype=dtype, name="preprocessing")(x)
    x = vit_layers.PatchEmbedding(patch_size, hidden_dim, flatten=False, dtype=dtype, name="patch_embed")(x)
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="patch_embed_norm")(x)

    rates = np.linspace(0.0, drop_path_rate, sum(depths)) if sum(depths) > 1 else [drop_path_rate]
    resolution = (image_size[0] // patch_size, image_size[1] // patch_size)
    dim, block_index, features = hidden_dim, 0, {}
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        if i > 0:
            x = PatchMerging(dim, layer_norm_epsilon=layer_norm_epsilon, dtype=dtype, name=f"stage_{i}_downsample")(x)
            dim, resolution = 2 * dim, (resolution[0] // 2, resolution[1] // 2)
        for j in range(depth):
            window = (window_size, window_size) if isinstance(window_size, (int, np.integer)) else tuple(window_size)
            x = SwinBlock(
                dim, heads, resolution, window_size=window,
                shift_size=(0, 0) if j % 2 == 0 else (window[0] // 2, window[1] // 2),
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, dropout=dropout, attention_dropout=attention_dropout,
                drop_path_rate=float(rates[block_index]), layer_norm_epsilon=layer_norm_epsilon,
                seed=None if seed is None else seed + block_index, dtype=dtype, name=f"stage_{i}_block_{j}",
            )(x)
            block_index += 1
        features[f"stride_{patch_size * 2 ** i}"] = x

    if features_only:
        model = functional_model(inputs, features, name)
    else:
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="norm")(x)
        if pooling == "avg":
            x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="avg_pool")(x)
        elif pooling == "max":
            x = keras.layers.GlobalMaxPooling2D(dtype=dtype, name="max_pool")(x)
        if include_top:
            x = keras.layers.Dropout(head_dropout, dtype=dtype, name="head_dropout")(x)
            # Logits in float32 under every policy (Keras' mixed-precision guide: the last layer in float32).
            x = keras.layers.Dense(num_classes, dtype="float32", name="head")(x)
            if classifier_activation is not None:
                x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
        model = functional_model(inputs, x, name)
    if weights_path is not None:
        load_weights(model, weights_path, convert_swin, "swin", allow_head_reset=True)
    return model


def _swin_builder(config_name):
    c = SWIN_CONFIGS[config_name]

    def prepare(arguments, input_shape):
        # The published 384 models use window 12; every other size the 224 models' 7.
        if arguments.get("window_size") is None:
            arguments["window_size"] = 12 if tuple(input_shape[:2]) == (384, 384) else 7
        if arguments["weights"] == "imagenet":
            arguments["weights"] = default_weights(config_name, input_shape, DEFAULT_WEIGHTS)

    return named_builder(
        config_name, SwinTransformer, c,
        f"Swin with width {c['hidden_dim']}, depths {c['depths']}, heads {c['num_heads']}, patch 4.",
        pooling="avg", example_size=64, prepare=prepare, pooling_words=(None, "avg", "max"),
        notes="\n\n    `window_size` defaults to 12 for (384, 384) inputs and 7 otherwise, as the published\n"
              "    models; `features_only=True` returns every stage's map (a backbone).",
    )


SwinT = _swin_builder("SwinT")
SwinS = _swin_builder("SwinS")
SwinB = _swin_builder("SwinB")
SwinL = _swin_builder("SwinL")
