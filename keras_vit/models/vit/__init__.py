"""ViT (Dosovitskiy et al., 2021): the model, its named builders, checkpoint converters
(timm, transformers, Google's .npz) and published presets.

Example:
>>> from keras_vit.models.vit import ViTTi16
>>> ViTTi16(input_shape=(32, 32, 3), num_classes=10).output_shape
(None, 10)
"""

from keras_vit.models.registry import register_model
from keras_vit.models.vit.vit_model import (
    VIT_CONFIGS,
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
from keras_vit.models.vit.vit_layers import PromptTokens
from keras_vit.models.vit.vit_presets import PRESETS
from keras_vit.models.vit.vit_prompts import (
    add_prompts, count_parameters, freeze_backbone, prompt_tuning_summary, vision_transformer_config,
)
from keras_vit.weights.published import register_published

register_published(*PRESETS)
for _name, _builder in (("ViTTi16", ViTTi16), ("ViTS16", ViTS16), ("ViTS32", ViTS32), ("ViTB16", ViTB16),
                        ("ViTB32", ViTB32), ("ViTL16", ViTL16), ("ViTL32", ViTL32), ("ViTH14", ViTH14)):
    register_model(_name, _builder, "vit")
