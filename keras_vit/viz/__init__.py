"""Attention maps and attention rollout for ViT-family models."""

from keras_vit.viz.attention import attention_maps, attention_rollout
