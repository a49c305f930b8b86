"""The ViT paper's position-embedding figure: how similar each patch's learned position
embedding is to every other patch's (cosine similarity), one small map per patch."""

import keras
import numpy as np

from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.viz._figures import finish, new_figure


def position_embedding_similarity(model):
    """Cosine similarity between the patches' position embeddings: (grid_h, grid_w, grid_h,
    grid_w), where [i, j] is the map of patch (i, j) against every patch. Prefix tokens
    (class, distillation) are left out. Works on any model with a `PositionEmbedding`
    layer (ViT, DeiT, TNT).

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, num_classes=10)
    >>> similarity = position_embedding_similarity(model)
    >>> similarity.shape, round(float(similarity[1, 2, 1, 2]), 4)
    ((4, 4, 4, 4), 1.0)
    """
    layers = [layer for layer in model.layers if isinstance(layer, PositionEmbedding)]
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no learned position embedding (a PositionEmbedding layer): the "
            "similarity figure works on ViT, DeiT and TNT models."
        )
    layer = layers[0]
    embedding = np.asarray(keras.ops.convert_to_numpy(layer.embedding), "float32")[0, layer.num_prefix_tokens:]
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=-1, keepdims=True), 1e-12)
    height, width = layer.grid_size
    return (unit @ unit.T).reshape(height, width, height, width)


def plot_position_embedding_similarity(model, path=None, dpi=100):
    """Draws `position_embedding_similarity` as the ViT paper does (its Figure 7, center):
    a grid of patches, each showing its similarity to all patches (yellow: similar).
    Returns the `Figure`; `path` also saves it.

    Example:
    >>> import os, tempfile, keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "position_embedding.png")
    >>> figure = plot_position_embedding_similarity(model, path=path, dpi=40)
    >>> len(figure.axes), os.path.exists(path)
    (17, True)
    """
    similarity = position_embedding_similarity(model)
    height, width = similarity.shape[:2]
    panel = min(0.6, 6.0 / max(height, width))
    figure, axes = new_figure(height, width, panel_inches=panel)
    for i in range(height):
        for j in range(width):
            image = axes[i, j].imshow(similarity[i, j], cmap="viridis", vmin=-1.0, vmax=1.0)
    figure.suptitle("Position embedding similarity", fontsize=9)
    figure.tight_layout()
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="cosine similarity")
    return finish(figure, path, dpi, layout=False)
