"""Pictures of models and training (matplotlib, PNG): attention over the photo for ViT, DeiT,
TNT, Swin and DETR, detections drawn on the photo, position-embedding similarity, training curves, MAE reconstructions.

Every `plot_*` function returns a `matplotlib.figure.Figure` (show it in a notebook with
`display(figure)`) and, with `path=`, also saves it through a temporary file renamed into
place. Needs matplotlib (`pip install 'keras-vit[viz]'`).

Example:
>>> import numpy as np, keras_vit
>>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, num_classes=10)
>>> keras_vit.viz.attention_rollout(keras_vit.viz.attention_maps(model, np.zeros((32, 32, 3))), 1, (4, 4)).shape
(1, 4, 4)
"""

from keras_vit.viz.attention import (
    attention_maps,
    attention_rollout,
    class_token_attention,
    detr_attention,
    plot_attention,
    plot_detr_attention,
    swin_attention_maps,
    token_layout,
    window_attention_to_map,
)
from keras_vit.viz.detections import plot_detections
from keras_vit.viz.history import plot_training_curves
from keras_vit.viz.position_embedding import plot_position_embedding_similarity, position_embedding_similarity
from keras_vit.viz.reconstruction import plot_mae_reconstruction
