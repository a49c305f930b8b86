"""keras_vit: vision transformers for Keras 3 on TensorFlow, JAX and PyTorch.

ViT, DeiT, TNT, Swin Transformer and DETR as functional Keras models that load the
reference implementations' weights exactly, train with `fit()` and export to
SavedModel and TFLite from any backend.

Example:
>>> import keras_vit
>>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48,
...                                     depth=2, num_heads=3, mlp_dim=192, num_classes=10)
>>> model.output_shape
(None, 10)
"""

__version__ = "0.1.0"

from keras_vit._tensorflow_logs import hidden_tensorflow_logs

# TensorFlow starts with `import keras` (TensorFlow backend) or with `keras_vit.data` (tf.data, any
# backend); its C++ start-up lines (oneDNN, CUDA drivers, CPU features) say nothing a user can act on.
# TF_CPP_MIN_LOG_LEVEL=0 shows them.
with hidden_tensorflow_logs():
    import keras  # noqa: F401

    from keras_vit import data, distribution, export, labels, layers, models, training, viz, weights
from keras_vit.data.images import load_image, with_image_resizing
from keras_vit.export import evaluate_tflite, export_saved_model, export_tflite
from keras_vit.labels import decode_detections, decode_predictions, get_class_names, with_class_names
from keras_vit.models import (
    DETR,
    ConditionalDETR,
    ConditionalDETRModel,
    ConditionalDETRResNet50,
    ConditionalDETRResNet101,
    TNT,
    DeiTB16,
    DeiTS16,
    DeiTTi16,
    DETRModel,
    DETRResNet50,
    DETRResNet101,
    ResNet,
    ResNet50,
    ResNet101,
    SwinB,
    SwinL,
    SwinS,
    SwinT,
    SwinTransformer,
    TNTB16,
    TNTS16,
    VisionTransformer,
    ViTB16,
    ViTB32,
    ViTH14,
    ViTL16,
    ViTL32,
    ViTS16,
    ViTS32,
    ViTTi16,
    distillation_heads,
)
from keras_vit.training import DistillationModel
from keras_vit.models.mae import MAEViTB16, MAEViTH14, MAEViTL16, MaskedAutoencoder
from keras_vit.models.vit import add_prompts
from keras_vit.models.loading import load_weights
