"""The named builders of every classification family (ViTB16, DeiTS16, TNTS16, SwinT, ...):
keras.applications-style arguments over a family's generic constructor, made in one place."""


def check_input_shape(input_shape):
    """Raises unless `input_shape` is (height, width, channels)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")


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
                  notes=""):
    """A keras.applications-style builder `builder_name(input_shape=..., num_classes=..., ...)`.

    It calls `model_fn` (the family's generic constructor) with `config` (the canonical
    hyper-parameters) and the user's arguments. `weights="imagenet"` is looked up in
    `weights_table` per input size; `prepare(arguments, input_shape)` may instead apply a
    family's own rules to the keyword arguments about to be passed (DeiT's distilled
    checkpoints, Swin's window for 384 inputs). `summary` opens the docstring.

    Example:
    >>> def tiny(image_size, num_channels, num_classes, name, **unused):
    ...     return (image_size, num_classes, name)
    >>> build = named_builder("Tiny", tiny, {}, "A tiny model.", pooling="token")
    >>> build(input_shape=(32, 32, 3), num_classes=10)
    ((32, 32), 10, 'tiny')
    """

    def build(
        input_shape=(224, 224, 3),
        num_classes=1000,
        include_top=True,
        pooling=pooling,
        weights=None,
        include_preprocessing=False,
        dropout=0.0,
        drop_path_rate=0.0,
        classifier_activation=None,
        name=None,
        **kwargs,
    ):
        check_input_shape(input_shape)
        arguments = dict(
            image_size=tuple(input_shape[:2]), num_channels=input_shape[2], num_classes=num_classes,
            include_top=include_top, pooling=pooling, weights=weights, include_preprocessing=include_preprocessing,
            dropout=dropout, drop_path_rate=drop_path_rate, classifier_activation=classifier_activation, name=name,
            **config, **kwargs,
        )
        if prepare is not None:
            prepare(arguments, input_shape)
        elif weights == "imagenet":
            arguments["weights"] = default_weights(builder_name, input_shape, weights_table)
        arguments["name"] = arguments["name"] or builder_name.lower()
        return model_fn(**arguments)

    build.__name__ = build.__qualname__ = builder_name
    build.__doc__ = f"""{summary}

    Arguments as keras.applications: `input_shape` (default (224, 224, 3)),
    `num_classes`, `include_top`, `pooling` (default "{pooling}"), `weights` (None,
    "imagenet", a published name or a checkpoint file), `include_preprocessing`,
    `dropout`, `drop_path_rate`, `classifier_activation`, `name`; other keywords go to
    `{model_fn.__name__}`.{notes}

    Example (the full-width model on small images):
    >>> model = {builder_name}(input_shape=({example_size}, {example_size}, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    return build
