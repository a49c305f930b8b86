"""DeiT (Touvron et al., 2021): ViTs with a distillation token; builders and presets.

A DeiT is a `keras_vit.VisionTransformer` (`distilled=True` adds the distillation token),
so it loads through ViT's converter. Training with a teacher: `keras_vit.DistillationModel`.

Example:
>>> from keras_vit.models.deit import DeiTTi16
>>> DeiTTi16(input_shape=(32, 32, 3), num_classes=10, distilled=True).output_shape
(None, 10)
"""

from keras_vit.models.deit.deit_model import DEIT_CONFIGS, DeiTB16, DeiTS16, DeiTTi16, distillation_heads
from keras_vit.models.deit.deit_presets import PRESETS
from keras_vit.models.registry import register_model
from keras_vit.weights.published import register_published

register_published(*PRESETS)
for _name, _builder in (("DeiTTi16", DeiTTi16), ("DeiTS16", DeiTS16), ("DeiTB16", DeiTB16)):
    register_model(_name, _builder, "deit")
