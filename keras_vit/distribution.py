"""Layout maps for `keras.distribution.ModelParallel`: which weights are split over a "model" axis.

Every family's transformer blocks are split the way Megatron-LM splits them: the first projection of
attention (q, k, v) and of the MLP (fc1) is split by its output columns, the second (attention's output
projection, fc2) by its input rows, so each device holds 1/N of every block and the activations between
the two projections stay split. Biases of the column-split layers are split with them; everything else
(embeddings, norms, heads, Swin's bias tables, DETR's CNN backbone) is replicated. Batches are split over
the other mesh axis ("batch").

Keras' `ModelParallel` works on the JAX backend only (Keras 3.15: the TensorFlow backend's
`distribution_lib` is an unfinished DTensor prototype, the PyTorch backend has none).

Example:
>>> import keras, keras_vit
>>> mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
>>> layout_map = get_layout_map("vit", mesh)
>>> layout_map[".*attn/qkv/kernel"].axes
(None, 'model')
"""

import re

import keras

MODEL_AXIS = "model"

# Per family: (path pattern, which dimension is split). "columns" splits a kernel's last (output)
# dimension and the bias with it; "rows" splits the kernel's input dimension and replicates the bias.
# Patterns are matched in full against `variable.path` (keras.distribution.LayoutMap uses re.fullmatch).
_VIT_BLOCKS = (
    (r".*attn/qkv/(kernel|bias)", "columns"),
    (r".*attn/proj/kernel", "rows"),
    (r".*mlp/fc1/(kernel|bias)", "columns"),
    (r".*mlp/fc2/kernel", "rows"),
)
FAMILY_RULES = {
    "vit": _VIT_BLOCKS,
    "deit": _VIT_BLOCKS,
    "mae": _VIT_BLOCKS,
    "swin": _VIT_BLOCKS,  # the same names; patch merging, bias tables and norms stay replicated
    "tnt": (
        # the inner (pixel) and outer (patch) transformers of each block
        (r".*attn_(in|out)/(qk|v)/(kernel|bias)", "columns"),
        (r".*attn_(in|out)/proj/kernel", "rows"),
        (r".*mlp(_in)?/fc1/(kernel|bias)", "columns"),
        (r".*mlp(_in)?/fc2/kernel", "rows"),
    ),
    "detr": (
        # encoder and decoder self-attention, decoder cross-attention, and the FFNs
        (r".*(self|cross)_attn/(q|k|v)_proj/(kernel|bias)", "columns"),
        (r".*(self|cross)_attn/out_proj/kernel", "rows"),
        (r".*(encoder|decoder)_\d+/linear1/(kernel|bias)", "columns"),
        (r".*(encoder|decoder)_\d+/linear2/kernel", "rows"),
    ),
}
# Conditional DETR: DETR's encoder, and decoder attentions whose queries and keys are projected from
# content and positions apart (summed, or concatenated per head: heads stay whole in each column split).
_CONDITIONAL_PROJECTIONS = (r".*(self|cross)_attn/(q_content|q_pos|k_content|k_pos|q_pos_sine)_proj/(kernel|bias)",
                            "columns")
FAMILY_RULES["conditional_detr"] = (_CONDITIONAL_PROJECTIONS,) + FAMILY_RULES["detr"]


def _axes(kind, name, model_axis):
    if name == "bias":
        return (model_axis,)
    return (model_axis, None) if kind == "rows" else (None, model_axis)


def _family_of(model):
    """The families whose rules match at least one weight of `model`."""
    paths = [variable.path for variable in model.weights]
    # Conditional DETR is told from DETR by its own projections (the rest of its rules are DETR's).
    distinctive = {**FAMILY_RULES, "conditional_detr": (_CONDITIONAL_PROJECTIONS,)}
    found = [family for family in ("tnt", "conditional_detr", "detr", "vit")
             if any(re.fullmatch(pattern, path) for pattern, _ in distinctive[family] for path in paths)]
    if not found:
        raise ValueError(
            f"Model {model.name!r} has no weights that keras_vit knows how to split (attention and MLP "
            f"kernels of ViT, DeiT, MAE, Swin, TNT, DETR or Conditional DETR); pass a family name ({sorted(FAMILY_RULES)}) "
            "or build a keras.distribution.LayoutMap by hand."
        )
    return found[0]


def layout_rules(family, model_axis=MODEL_AXIS):
    """`{path pattern: axes}` of one family, e.g. `{".*attn/qkv/kernel": (None, "model"), ...}`.

    Args:
        family: "vit", "deit", "mae", "swin", "tnt", "detr" or "conditional_detr".
        model_axis: the name of the mesh axis that weights are split over.

    Example:
    >>> layout_rules("detr")[".*(self|cross)_attn/out_proj/kernel"]
    ('model', None)
    """
    if family not in FAMILY_RULES:
        raise ValueError(f"Unknown family {family!r}: use one of {sorted(FAMILY_RULES)}.")
    rules = {}
    for pattern, kind in FAMILY_RULES[family]:
        # A pattern ending in (kernel|bias) becomes two keys, one per layout.
        if pattern.endswith("(kernel|bias)"):
            stem = pattern[: -len("(kernel|bias)")]
            rules[stem + "kernel"] = _axes(kind, "kernel", model_axis)
            rules[stem + "bias"] = _axes(kind, "bias", model_axis)
        else:
            rules[pattern] = _axes(kind, "kernel", model_axis)
    return rules


def get_layout_map(model_or_family, device_mesh, model_axis=MODEL_AXIS):
    """A `keras.distribution.LayoutMap` for `ModelParallel`: attention and MLP weights split over
    `model_axis` of `device_mesh`, every other weight replicated.

    Build the model inside the distribution (after `keras.distribution.set_distribution`, or in its
    `scope()`) so its weights are created split. Given a built model, the map is checked against it:
    every split dimension must divide by the size of `model_axis` (e.g. heads x head size, the MLP width).

    Args:
        model_or_family: a family name ("vit", "deit", "mae", "swin", "tnt", "detr",
            "conditional_detr"), or a built
            keras_vit model (its family is found from its weights' names).
        device_mesh: a `keras.distribution.DeviceMesh` with an axis named `model_axis`.
        model_axis: the mesh axis the weights are split over.

    Returns:
        A `keras.distribution.LayoutMap`.

    Example:
    >>> import keras
    >>> mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
    >>> layout_map = get_layout_map("swin", mesh)
    >>> layout_map["stage_0_block_0/mlp/fc2/kernel"].axes, layout_map["head/kernel"]
    (('model', None), None)
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"The device mesh has axes {tuple(device_mesh.axis_names)}; it needs one named {model_axis!r} "
            f"to split the weights over (e.g. DeviceMesh((2, 4), ('batch', '{model_axis}'), devices))."
        )
    model = None if isinstance(model_or_family, str) else model_or_family
    family = model_or_family if model is None else _family_of(model)
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in layout_rules(family, model_axis).items():
        layout_map[pattern] = axes
    if model is not None:
        _check_divisible(model, layout_map, device_mesh, model_axis)
    return layout_map


def _check_divisible(model, layout_map, device_mesh, model_axis):
    size = device_mesh.shape[list(device_mesh.axis_names).index(model_axis)]
    for variable in model.weights:
        layout = layout_map[variable.path]
        if layout is None:
            continue
        dimension = layout.axes.index(model_axis)
        if variable.shape[dimension] % size:
            raise ValueError(
                f"{variable.path} has shape {tuple(variable.shape)}: its dimension {dimension} "
                f"({variable.shape[dimension]}) does not divide by the {size} devices of the {model_axis!r} axis. "
                f"Use a {model_axis!r} axis size that divides the model's widths and head counts."
            )
