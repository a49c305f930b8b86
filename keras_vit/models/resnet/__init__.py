"""ResNet with frozen BatchNorm, DETR's backbone (torchvision/timm layout).

Example:
>>> from keras_vit.models.resnet import ResNet50
>>> ResNet50(input_shape=(64, 64, 3)).output_shape
(None, 2, 2, 2048)
"""

from keras_vit.models.resnet.resnet_model import ResNet, ResNet50, ResNet101, ResNetBottleneck
