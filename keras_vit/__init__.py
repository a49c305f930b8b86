"""keras_vit: vision transformers for Keras 3 on TensorFlow, JAX and PyTorch.

Example:
>>> import keras_vit
>>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48,
...                                     depth=2, num_heads=3, mlp_dim=192, num_classes=10)
>>> model.output_shape
(None, 10)
"""

__version__ = "0.1.0"

from keras_vit import layers
from keras_vit import weights
from keras_vit.models import (
    VisionTransformer,
    ViTB16,
    ViTB32,
    ViTH14,
    ViTL16,
    ViTL32,
    ViTS16,
    ViTS32,
    ViTTi16,
)
from keras_vit.models.deit import DeiTB16, DeiTS16, DeiTTi16, distillation_heads
from keras_vit import training
from keras_vit.training import DistillationModel
