"""Attention maps and attention rollout for ViT-family models."""

from keras_vit.viz.attention import attention_maps, attention_rollout
from keras_vit.viz.reconstruction import plot_mae_reconstruction
