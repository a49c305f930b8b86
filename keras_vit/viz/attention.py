"""What a model attends to, for one image: attention weights, rollout, and overlays on the photo.

- ViT and DeiT (and prompted ViT): per-head attention of the class token in a block, and
  attention rollout through all blocks. The prefix tokens (class, distillation, prompts)
  and the patch grid are read from the model (`token_layout`).
- TNT: the same, on the outer (patch-level) transformer.
- Swin: every block's window attention mapped back onto the image (`swin_attention_maps`).
- DETR: the last decoder layer's cross-attention of each predicted object, with its box
  and class (`plot_detr_attention`), as in the DETR paper's figures.

The weights come from `keras_vit.layers.attention.recorded_attention`: the model is called
once, directly, and every attention layer hands over its softmax weights; normal calls are
untouched.

Example:
>>> import numpy as np, keras_vit
>>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
>>> figure = keras_vit.viz.plot_attention(model, np.random.rand(32, 32, 3))
>>> len(figure.axes)  # photo, rollout, 3 heads
5
"""

import math

import keras
import numpy as np

from keras_vit.layers.attention import recorded_attention
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.viz._figures import draw_overlay, finish, new_figure


# ------------------------------------------------------------------------------------ inputs
def _input_size(model):
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or shape[1] is None or shape[2] is None:
        # A ViT for any size (dynamic_image_size): its canonical size, where the maps' grid is its grid_size.
        from keras_vit.layers import PositionEmbedding

        position = [layer for layer in getattr(model, "layers", []) if isinstance(layer, PositionEmbedding)]
        if position and position[0].patch_size:
            return tuple(g * position[0].patch_size for g in position[0].grid_size)
        return None
    return int(shape[1]), int(shape[2])


def _image_batch(model, images):
    """`images` as a float32 (B, H, W, C) batch at the model's input size (resized, not
    cropped, when it differs)."""
    batch = np.asarray(keras.ops.convert_to_numpy(images), "float32")
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4:
        raise ValueError(
            f"Expected one image (height, width, channels) or a batch of them, got an array of shape {batch.shape}."
        )
    size = _input_size(model)
    if size is not None and tuple(batch.shape[1:3]) != size:
        batch = keras.ops.convert_to_numpy(keras.ops.image.resize(batch, size, interpolation="bilinear"))
    return batch


def _recorded_call(model, batch):
    """Calls the model once and returns its outputs and its attention records [(layer, weights)]."""

    def call(images):
        with recorded_attention() as records:
            outputs = model(images, training=False)
        layers[:] = [layer for layer, _ in records]
        return outputs, [scores for _, scores in records]

    layers = []
    if keras.backend.backend() == "jax":
        # Eager JAX compiles every op on its own; one jitted call compiles once (the weights
        # are returned as outputs, so no tracer leaks out of the recording).
        import jax

        outputs, scores = jax.jit(call)(batch)
    else:
        outputs, scores = call(batch)
    return outputs, list(zip(layers, scores))


# ----------------------------------------------------------------------- ViT, DeiT, TNT
def _token_blocks(model):
    blocks, index = [], 0
    while True:
        try:
            blocks.append(model.get_layer(f"block_{index}"))
        except ValueError:
            break
        index += 1
    attention_layers = [getattr(block, "attn", None) or getattr(block, "attn_out", None) for block in blocks]
    if not blocks or any(layer is None for layer in attention_layers):
        family = type(model).__name__
        raise ValueError(
            f"Model {model.name!r} ({family}) has no token blocks block_0, block_1, ... with an attention layer: "
            "attention maps of tokens work on ViT, DeiT and TNT models built by keras_vit; use "
            "swin_attention_maps for Swin and plot_detr_attention for DETR."
        )
    return blocks, attention_layers


def token_layout(model):
    """`(num_prefix_tokens, grid_size)` of a ViT, DeiT or TNT model, read from its layers.

    Prefix tokens come first in the token sequence: the class token, DeiT's distillation
    token, then any prompt tokens; the patches follow in row-major order on `grid_size`.

    Example:
    >>> import keras_vit
    >>> token_layout(keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, num_classes=10, distilled=True))
    (2, (4, 4))
    """
    position = [layer for layer in model.layers if isinstance(layer, PositionEmbedding)]
    if not position:
        raise ValueError(
            f"Model {model.name!r} has no position embedding layer, so its token layout is unknown: "
            "token attention maps work on ViT, DeiT and TNT models built by keras_vit."
        )
    num_prefix = position[0].num_prefix_tokens
    for layer in model.layers:
        # Shallow prompts are inserted after the class (and distillation) tokens; deep ones replace them.
        if type(layer).__name__ == "PromptTokens" and not layer.replace:
            num_prefix += layer.num_prompts
    return num_prefix, tuple(position[0].grid_size)


def attention_maps(model, images):
    """The softmax attention of every token block, as NumPy arrays.

    Returns a list with one (batch, heads, tokens, tokens) array per block, for a ViT,
    DeiT or TNT model built by keras_vit (TNT: the outer, patch-level attention), on any
    backend. `images` is one image or a batch, at the model's input size (other sizes are
    resized) and in the scale the model takes.

    Example:
    >>> import numpy as np, keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> maps = attention_maps(model, np.zeros((1, 32, 32, 3), "float32"))
    >>> len(maps), maps[0].shape
    (2, (1, 3, 17, 17))
    """
    _, attention_layers = _token_blocks(model)
    _, records = _recorded_call(model, _image_batch(model, images))
    by_layer = {id(layer): scores for layer, scores in records}
    return [np.asarray(keras.ops.convert_to_numpy(by_layer[id(layer)]), "float32") for layer in attention_layers]


def attention_rollout(maps, num_prefix_tokens=1, grid_size=None, discard_ratio=0.0):
    """Attention rollout (Abnar and Zuidema, 2020): how much each patch feeds the class token.

    Averages heads, adds the residual path (0.5 A + 0.5 I), renormalizes and
    multiplies through the blocks. Returns (batch, patches), or
    (batch, grid_h, grid_w) when `grid_size` is given, scaled to [0, 1].
    `plot_attention` reads `num_prefix_tokens` and `grid_size` from the model
    (`token_layout`); pass them here when you work on raw maps.

    Example:
    >>> import numpy as np
    >>> maps = [np.full((1, 2, 5, 5), 0.2, "float32")]
    >>> attention_rollout(maps, grid_size=(2, 2)).shape
    (1, 2, 2)
    """
    rollout = None
    for scores in maps:
        attention = np.asarray(scores, "float32").mean(axis=1)
        if discard_ratio > 0:
            flat = attention.reshape(attention.shape[0], -1)
            cutoff = np.quantile(flat, discard_ratio, axis=1)[:, None, None]
            attention = np.where(attention < cutoff, 0.0, attention)
        identity = np.eye(attention.shape[-1], dtype=attention.dtype)
        attention = 0.5 * attention + 0.5 * identity
        attention = attention / attention.sum(axis=-1, keepdims=True)
        rollout = attention if rollout is None else attention @ rollout
    relevance = rollout[:, 0, num_prefix_tokens:]
    if grid_size is not None:
        patches = grid_size[0] * grid_size[1]
        if relevance.shape[-1] != patches:
            raise ValueError(
                f"The maps have {rollout.shape[-1]} tokens: {num_prefix_tokens} prefix tokens leave "
                f"{relevance.shape[-1]} patches, not the {grid_size[0]}x{grid_size[1]} grid's {patches}."
            )
    relevance = relevance / np.maximum(relevance.max(axis=-1, keepdims=True), 1e-12)
    if grid_size is not None:
        relevance = relevance.reshape(relevance.shape[0], grid_size[0], grid_size[1])
    return relevance


def class_token_attention(maps, num_prefix_tokens, grid_size, block=-1):
    """The class token's attention to the patches in one block, per head:
    (batch, heads, grid_h, grid_w), each head scaled to [0, 1].

    Example:
    >>> import numpy as np
    >>> maps = [np.full((1, 2, 5, 5), 0.2, "float32")]
    >>> class_token_attention(maps, 1, (2, 2)).shape
    (1, 2, 2, 2)
    """
    scores = np.asarray(maps[block], "float32")[:, :, 0, num_prefix_tokens:]
    batch, heads, patches = scores.shape
    if patches != grid_size[0] * grid_size[1]:
        raise ValueError(
            f"{patches} patch tokens after {num_prefix_tokens} prefix tokens do not fill a "
            f"{grid_size[0]}x{grid_size[1]} grid."
        )
    scores = scores / np.maximum(scores.max(axis=-1, keepdims=True), 1e-12)
    return scores.reshape(batch, heads, grid_size[0], grid_size[1])


# --------------------------------------------------------------------------------- Swin
def _swin_blocks(model):
    blocks = [layer for layer in model.layers if type(layer).__name__ == "SwinBlock"]
    if not blocks:
        raise ValueError(f"Model {model.name!r} has no SwinBlock layers: swin_attention_maps works on Swin models.")
    return blocks


def window_attention_to_map(scores, block, batch_size):
    """One Swin block's window attention mapped back onto its feature map.

    `scores` (batch * windows, heads, N, N) as `WindowAttention` computes them; each
    token's value is the attention it receives, averaged over the queries of its window.
    The windows are put back in place, the padding cropped and the cyclic shift undone,
    giving (batch, heads, height, width) on the block's `input_resolution`.

    Example:
    >>> import numpy as np
    >>> from keras_vit.models.swin import SwinBlock
    >>> block = SwinBlock(hidden_dim=8, num_heads=2, input_resolution=(4, 4), window_size=2)
    >>> window_attention_to_map(np.full((4, 2, 4, 4), 0.25), block, batch_size=1).shape
    (1, 2, 4, 4)
    """
    received = np.asarray(keras.ops.convert_to_numpy(scores), "float32").mean(axis=2)  # (B*nW, heads, N)
    heads = received.shape[1]
    (height, width), (window_h, window_w) = block.padded_resolution, block.window_size
    # NumPy inverse of `window_partition` (windows row-major per image, tokens row-major per window).
    merged = received.reshape(-1, height // window_h, width // window_w, heads, window_h, window_w)
    merged = merged.transpose(0, 1, 4, 2, 5, 3).reshape(-1, height, width, heads)
    merged = merged[:batch_size, : block.input_resolution[0], : block.input_resolution[1]]
    # The block rolled its input by -shift before cutting windows: roll back.
    merged = np.roll(merged, block.shift_size, axis=(1, 2))
    return np.transpose(np.asarray(merged, "float32"), (0, 3, 1, 2))


def swin_attention_maps(model, images):
    """Every Swin block's window attention on the image: a list of (batch, heads, height,
    width) arrays on each block's feature map (see `window_attention_to_map`), in block order.

    Example:
    >>> import numpy as np, keras_vit
    >>> model = keras_vit.SwinTransformer(image_size=32, patch_size=4, hidden_dim=16, depths=(2,),
    ...                                   num_heads=(2,), window_size=4, num_classes=3)
    >>> [m.shape for m in swin_attention_maps(model, np.zeros((32, 32, 3), "float32"))]
    [(1, 2, 8, 8), (1, 2, 8, 8)]
    """
    blocks = _swin_blocks(model)
    batch = _image_batch(model, images)
    _, records = _recorded_call(model, batch)
    by_layer = {id(layer): scores for layer, scores in records}
    return [window_attention_to_map(by_layer[id(block.attn)], block, len(batch)) for block in blocks]


def _resize_nearest(heat_map, size):
    rows = (np.arange(size[0]) * heat_map.shape[-2]) // size[0]
    columns = (np.arange(size[1]) * heat_map.shape[-1]) // size[1]
    return heat_map[..., rows[:, None], columns[None, :]]


def _unit(heat_map):
    heat_map = heat_map - heat_map.min()
    return heat_map / max(float(heat_map.max()), 1e-12)


# --------------------------------------------------------------------------------- plots
def _panel_grid(count, max_columns=6):
    columns = min(count, max_columns)
    return math.ceil(count / columns), columns


def plot_attention(model, image, path=None, block=-1, dpi=100, title=None):
    """The attention of one image as heat maps over the photo; returns the `Figure`.

    Panels: the photo, the whole model's map, then one map per head of `block`.
    ViT, DeiT, TNT: rollout through all blocks, then the class token's attention in
    `block` per head (prefix tokens read from the model). Swin: the mean over all blocks
    of the window attention each token receives (upsampled to the first stage's grid),
    then `block`'s heads. DETR: see `plot_detr_attention` (called for DETR models).
    `image` (H, W, C) in the scale the model takes (resized to its input size if it
    differs); `path` also saves the figure (PNG, `dpi` dots per inch).

    Example:
    >>> import os, tempfile, numpy as np, keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 2, 96, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "attention.png")
    >>> figure = plot_attention(model, np.random.rand(32, 32, 3), path=path, dpi=50)
    >>> os.path.exists(path), [axis.get_title() for axis in figure.axes]
    (True, ['image', 'rollout', 'block 0, head 0', 'block 0, head 1'])
    """
    if hasattr(model, "decoder_layers"):
        return plot_detr_attention(model, image, path=path, dpi=dpi)
    batch = _image_batch(model, image)[:1]
    if any(type(layer).__name__ == "SwinBlock" for layer in model.layers):
        maps = swin_attention_maps(model, batch)
        finest = maps[0].shape[-2:]
        whole = _unit(np.mean([_unit(_resize_nearest(m[0].mean(axis=0), finest)) for m in maps], axis=0))
        heads = np.stack([_unit(h) for h in maps[block][0]])
        whole_title = "mean of all blocks"
    else:
        num_prefix, grid = token_layout(model)
        maps = attention_maps(model, batch)
        whole = attention_rollout(maps, num_prefix, grid)[0]
        heads = class_token_attention(maps, num_prefix, grid, block)[0]
        whole_title = "rollout"
    block_index = block % len(maps)
    rows, columns = _panel_grid(2 + len(heads))
    figure, axes = new_figure(rows, columns)
    photo = batch[0]
    draw_overlay(axes.flat[0], photo, np.zeros((1, 1)), title="image", alpha=0.0)
    draw_overlay(axes.flat[1], photo, whole, title=whole_title)
    for head, heat_map in enumerate(heads):
        draw_overlay(axes.flat[2 + head], photo, heat_map, title=f"block {block_index}, head {head}")
    for axis in axes.flat[2 + len(heads):]:
        figure.delaxes(axis)
    if title:
        figure.suptitle(title, fontsize=9)
    return finish(figure, path, dpi)


def _factor_grid(num_keys, image_shape):
    """(h, w) with h * w = num_keys and h / w closest to the image's aspect."""
    aspect = image_shape[0] / image_shape[1]
    pairs = [(h, num_keys // h) for h in range(1, num_keys + 1) if num_keys % h == 0]
    return min(pairs, key=lambda pair: abs(math.log(pair[0] / pair[1]) - math.log(aspect)))


def _class_name(class_names, index):
    if class_names is None:
        return f"class {index}"
    try:
        return str(class_names[index])
    except (IndexError, KeyError):
        return f"class {index}"


def detr_attention(model, image, threshold=0.7, max_objects=4):
    """DETR's predicted objects and the last decoder layer's cross-attention of each.

    Returns a dict: `queries` (the kept object queries, most confident first), `labels`,
    `scores`, `boxes` (cx, cy, w, h relative to the image) and `heat_maps` (objects, h, w)
    on the backbone's feature map (mean over heads, each scaled to [0, 1]). Objects whose
    best class probability (no-object excluded) passes `threshold` are kept, at most
    `max_objects`; when none does, the `max_objects` most confident.

    Example:
    >>> import keras, numpy as np
    >>> from keras_vit.models import DETRModel
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = DETRModel(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
    ...                   num_decoder_layers=1, num_heads=4, mlp_dim=64)
    >>> found = detr_attention(model, np.zeros((32, 48, 3), "float32"), max_objects=2)
    >>> found["heat_maps"].shape
    (2, 4, 6)
    """
    batch = _image_batch(model, image)[:1]
    outputs, records = _recorded_call(model, batch)
    by_layer = {id(layer): scores for layer, scores in records}
    cross = np.asarray(keras.ops.convert_to_numpy(by_layer[id(model.decoder_layers[-1].cross_attn)]), "float32")
    logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), "float32")[0]
    boxes = np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), "float32")[0]
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    scores, labels = probabilities[:, :-1].max(-1), probabilities[:, :-1].argmax(-1)
    order = np.argsort(-scores, kind="stable")
    kept = [q for q in order if scores[q] > threshold][:max_objects] or list(order[:max_objects])
    height, width = _factor_grid(cross.shape[-1], batch.shape[1:3])
    heat_maps = cross[0].mean(axis=0)[kept].reshape(len(kept), height, width)
    return {
        "queries": np.asarray(kept), "labels": labels[kept], "scores": scores[kept], "boxes": boxes[kept],
        "heat_maps": np.stack([_unit(h) for h in heat_maps]),
    }


def plot_detr_attention(model, image, path=None, threshold=0.7, max_objects=4, class_names=None, dpi=100):
    """DETR's figure: the photo with the predicted boxes, then for each predicted object the
    last decoder layer's cross-attention over the photo, with its box, class and score.

    `class_names`: a list (or dict) from class index to name; by default the model's
    `class_names` attribute if it has one, else "class i". Returns the `Figure`; `path`
    also saves it. See `detr_attention` for which objects are shown.

    Example:
    >>> import keras, numpy as np
    >>> from keras_vit.models import DETRModel
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = DETRModel(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
    ...                   num_decoder_layers=1, num_heads=4, mlp_dim=64)
    >>> figure = plot_detr_attention(model, np.zeros((32, 48, 3), "float32"), max_objects=2,
    ...                              class_names=["cat", "dog", "bird"])
    >>> len(figure.axes)
    3
    """
    class_names = class_names if class_names is not None else getattr(model, "class_names", None)
    photo = _image_batch(model, image)[0]
    found = detr_attention(model, photo, threshold=threshold, max_objects=max_objects)
    height, width = photo.shape[:2]
    figure, axes = new_figure(1, 1 + len(found["queries"]), panel_inches=2.4)
    draw_overlay(axes[0, 0], photo, np.zeros((1, 1)), title="predictions", alpha=0.0)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:cyan"]
    for i, (query, label, score, box, heat_map) in enumerate(
        zip(found["queries"], found["labels"], found["scores"], found["boxes"], found["heat_maps"])
    ):
        color = colors[i % len(colors)]
        name = f"{_class_name(class_names, int(label))} {score:.2f}"
        draw_overlay(axes[0, 1 + i], photo, heat_map, title=f"query {int(query)}: {name}")
        for axis in (axes[0, 0], axes[0, 1 + i]):
            _draw_box(axis, box, width, height, color, name if axis is axes[0, 0] else None)
    return finish(figure, path, dpi)


def _draw_box(axis, box, width, height, color, label=None):
    from matplotlib.patches import Rectangle

    cx, cy, w, h = (float(v) for v in box)
    left, top = (cx - w / 2) * width, (cy - h / 2) * height
    axis.add_patch(Rectangle((left, top), w * width, h * height, fill=False, edgecolor=color, linewidth=1.5))
    if label:
        axis.text(left, top, label, color="white", fontsize=6, va="bottom",
                  bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "edgecolor": "none"})
