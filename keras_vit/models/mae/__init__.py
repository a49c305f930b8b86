"""Masked autoencoders (He et al., 2022): self-supervised pretraining of a ViT encoder.

`MaskedAutoencoder(encoder)` pretrains a `keras_vit.VisionTransformer` on unlabeled
images with `fit()`; `MAEViTB16`/`MAEViTL16`/`MAEViTH14` build the official
architectures and load the published checkpoints (official and transformers layouts).

Example:
>>> import keras_vit
>>> encoder = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, include_top=False, pooling=None)
>>> keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2).num_patches
16
"""

from keras_vit.models.mae.mae_layers import (
    MAEDecoder,
    RandomPatchMasking,
    patchify,
    sincos_position_embedding,
    unpatchify,
)
from keras_vit.models.mae.mae_model import MAEViTB16, MAEViTH14, MAEViTL16, MaskedAutoencoder
from keras_vit.models.mae.mae_presets import PRESETS
from keras_vit.weights.published import register_published

register_published(*PRESETS)
