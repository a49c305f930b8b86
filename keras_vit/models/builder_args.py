"""The named builders of every classification family (ViTB16, DeiTS16, TNTS16, SwinT, ...):
keras.applications-style arguments over a family's generic constructor, made in one place.

The same words in every family: `input_shape=None` is the canonical size, `input_tensor` is
used as the model's input, `classes` is another name of `num_classes`, and `pooling` is
None, "avg", "max" or "token" (the class token, where the family has one). The older word
"gap" of ViT, DeiT and TNT still means "avg", with a DeprecationWarning.
"""

import warnings

POOLING_WORDS = (None, "avg", "max", "token")
_OLD_POOLING_WORDS = {"gap": "avg"}


def pooling_word(pooling, owner, allowed=POOLING_WORDS, stacklevel=3):
    """`pooling` in the shared vocabulary: an old word becomes its new one with a DeprecationWarning
    at the user's line (`stacklevel` 3: the caller of the function that calls this one); a word
    not in `allowed` is one clear error (`allowed=None`: only translate, the family checks).

    Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     pooling_word("gap", "VisionTransformer")
    'avg'
    >>> pooling_word("token", "SwinTransformer", allowed=(None, "avg", "max"))
    Traceback (most recent call last):
    ...
    ValueError: SwinTransformer: pooling must be one of None, 'avg', 'max', got 'token'.
    """
    if isinstance(pooling, str) and pooling in _OLD_POOLING_WORDS:
        new = _OLD_POOLING_WORDS[pooling]
        warnings.warn(
            f"{owner}: pooling={pooling!r} is now called pooling={new!r} (the word of keras.applications and "
            "of every family here); the old word will be removed.",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        pooling = new
    if allowed is not None and pooling not in allowed:
        words = ", ".join(repr(w) for w in allowed)
        raise ValueError(f"{owner}: pooling must be one of {words}, got {pooling!r}.")
    return pooling


def check_input_shape(input_shape, owner="The model", fixed_size=True):
    """Raises unless `input_shape` is (height, width, channels), with a fixed height and width
    when `fixed_size` (every family but DETR, which takes any size).

    Example:
    >>> check_input_shape((None, None, 3), "ViTB16")
    Traceback (most recent call last):
    ...
    ValueError: ViTB16 needs a fixed input size, got input_shape=(None, None, 3): its position embeddings (or windows) are made for one grid of patches. Pass input_shape=(height, width, 3), e.g. (224, 224, 3); weights made at another size are resampled to it when the model is built. Images of other sizes: resize them to that size.
    """
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    if fixed_size and any(size is None for size in input_shape):
        raise ValueError(
            f"{owner} needs a fixed input size, got input_shape={tuple(input_shape)!r}: its position embeddings "
            "(or windows) are made for one grid of patches. Pass input_shape=(height, width, 3), e.g. (224, 224, 3); "
            "weights made at another size are resampled to it when the model is built. Images of other sizes: "
            "resize them to that size."
        )


def classes_alias(num_classes, classes, owner, default=1000):
    """`num_classes`, or `classes` (keras.applications' name) when that is given.

    Example:
    >>> classes_alias(1000, 10, "ViTB16")
    10
    """
    if classes is None:
        return num_classes
    if num_classes != default and num_classes != classes:
        raise TypeError(f"{owner}: pass num_classes or classes (the same thing), not both.")
    return classes


def model_inputs(input_tensor, input_shape, dtype, owner):
    """The model's input: `input_tensor` (a Keras tensor, as keras.applications takes) or a new
    `keras.Input(input_shape, name="images")`.

    Example:
    >>> import keras
    >>> model_inputs(None, (32, 32, 3), None, "ViT").shape
    (None, 32, 32, 3)
    """
    import keras

    if input_tensor is None:
        return keras.Input(input_shape, name="images", dtype=dtype)
    if not keras.backend.is_keras_tensor(input_tensor):
        raise TypeError(
            f"{owner}: input_tensor must be a Keras tensor (keras.Input(...) or a layer's output), got "
            f"{type(input_tensor).__name__}. To run the model on data, call the model on it instead."
        )
    if tuple(input_tensor.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{owner}: input_tensor has shape {tuple(input_tensor.shape)}, but the model is built for "
            f"(None, {', '.join(map(str, input_shape))}); pass input_shape=None or the tensor's shape."
        )
    return input_tensor


def functional_model(inputs, outputs, name):
    """`keras.Model` from `inputs` (the `keras.Input` or an `input_tensor` with its own inputs) to `outputs`."""
    import keras

    sources = keras.utils.get_source_inputs(inputs)
    return keras.Model(sources[0] if len(sources) == 1 else sources, outputs, name=name)


def default_weights(config_name, input_shape, table, variant=(), description=""):
    """The published checkpoint that `weights="imagenet"` means for a builder and input size.

    `table` maps (config_name, size, *variant) to a published name; DeiT's variant is
    (distilled,). Raises a clear error naming the sizes that have weights.

    Example:
    >>> table = {("ViTB16", 224): "vit_base_patch16_224.augreg2_in21k_ft_in1k"}
    >>> default_weights("ViTB16", (224, 224, 3), table)
    'vit_base_patch16_224.augreg2_in21k_ft_in1k'
    """
    key = (config_name, input_shape[0], *variant)
    if key in table and input_shape[0] == input_shape[1]:
        return table[key]
    sizes = {k[1]: name for k, name in table.items() if k[0] == config_name and tuple(k[2:]) == tuple(variant)}
    hint = f", or pass weights='{sizes[min(sizes)]}' to resample them to your size" if sizes else ""
    raise ValueError(
        f"{config_name}{description} has ImageNet weights for square inputs of {sorted(sizes)}; "
        f"pass one of those{hint}."
    )


def named_builder(builder_name, model_fn, config, summary, pooling, example_size=224, prepare=None, weights_table=None,
                  notes="", default_size=224, pooling_words=POOLING_WORDS, any_size=False):
    """A keras.applications-style builder `builder_name(input_shape=..., num_classes=..., ...)`.

    It calls `model_fn` (the family's generic constructor) with `config` (the canonical
    hyper-parameters) and the user's arguments. `weights="imagenet"` is looked up in
    `weights_table` per input size; `prepare(arguments, input_shape)` may instead apply a
    family's own rules to the keyword arguments about to be passed (DeiT's distilled
    checkpoints, Swin's window for 384 inputs). `summary` opens the docstring. With `any_size`
    (ViT, DeiT), `input_shape=(None, None, channels)` builds `model_fn(dynamic_image_size=True)` with
    its position embeddings stored for `default_size` (and `weights="imagenet"` at that size).

    Example:
    >>> def tiny(image_size, num_channels, num_classes, name, **unused):  # a family's generic constructor
    ...     return (image_size, num_classes, name)
    >>> build = named_builder("Tiny", tiny, {}, "A tiny model.", pooling="token")
    >>> build(input_shape=(32, 32, 3), num_classes=10)
    ((32, 32), 10, 'tiny')
    """

    def build(
        input_shape=None,
        num_classes=1000,
        include_top=True,
        pooling=pooling,
        weights=None,
        include_preprocessing=False,
        dropout=0.0,
        drop_path_rate=0.0,
        classifier_activation=None,
        name=None,
        input_tensor=None,
        classes=None,
        **kwargs,
    ):
        num_classes = classes_alias(num_classes, classes, builder_name)
        pooling = pooling_word(pooling, builder_name, allowed=None)  # the family says which words it has
        if input_shape is None:
            input_shape = (tuple(input_tensor.shape[1:]) if input_tensor is not None
                           else (default_size, default_size, 3))
        dynamic = any_size and len(input_shape) == 3 and input_shape[0] is None and input_shape[1] is None
        if dynamic:  # any size: the position embeddings are stored for the canonical size
            kwargs["dynamic_image_size"] = True
            input_shape = (default_size, default_size, input_shape[2])
        check_input_shape(input_shape, builder_name)
        arguments = dict(
            image_size=tuple(input_shape[:2]), num_channels=input_shape[2], num_classes=num_classes,
            include_top=include_top, pooling=pooling, weights=weights, include_preprocessing=include_preprocessing,
            dropout=dropout, drop_path_rate=drop_path_rate, classifier_activation=classifier_activation, name=name,
            input_tensor=input_tensor, **{**config, **kwargs},
        )
        if prepare is not None:
            prepare(arguments, input_shape)
        elif weights == "imagenet":
            arguments["weights"] = default_weights(builder_name, input_shape, weights_table)
        arguments["name"] = arguments["name"] or builder_name.lower()
        return model_fn(**arguments)

    build.__name__ = build.__qualname__ = builder_name
    any_size_note = "; (None, None, 3): any size, see `dynamic_image_size`" if any_size else ""
    build.__doc__ = f"""{summary}

    Arguments as keras.applications: `input_shape` (None: ({default_size}, {default_size}, 3){any_size_note}),
    `input_tensor` (a Keras tensor to use as the input), `num_classes` (or `classes`),
    `include_top`, `pooling` ({", ".join(repr(w) for w in pooling_words)}; default {pooling!r}),
    `weights` (None, "imagenet", a published name, a hub name such as "timm/<name>", or a
    checkpoint file), `include_preprocessing`, `dropout`, `drop_path_rate`,
    `classifier_activation`, `name`; other keywords go to `{model_fn.__name__}`.{notes}

    Example (the full-width model on small images):
    >>> model = {builder_name}(input_shape=({example_size}, {example_size}, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    return build
