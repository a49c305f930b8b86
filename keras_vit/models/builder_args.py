"""Argument handling shared by the named builders of every family (ViTB16, SwinT, TNTS16, ...)."""


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
