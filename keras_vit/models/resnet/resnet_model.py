"""ResNet (He et al., 2016) with frozen BatchNorm: the backbone of DETR.

The torchvision / timm layout ("ResNet v1.5": the stride of a bottleneck is in
its 3x3 convolution), with torch's symmetric padding, so that DETR checkpoints
load exactly. Layer names follow torchvision: `conv1`, `bn1`, then bottlenecks
`layer{stage}_{block}` (stages 1-4), each with `conv1..3`, `bn1..3` and, where
the shape changes, `downsample_conv` / `downsample_bn`. `keras_vit.models.detr.convert_detr`
maps torchvision/timm, transformers (`ResNetConfig`) and DETR-repository names
onto these.
"""

import keras
from keras import ops

from keras_vit.layers.frozen_batch_norm import FrozenBatchNormalization

RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def _pad(x, padding):
    # torch pads symmetrically; Keras' "same" pads more at the bottom/right for even sizes.
    if padding == 0:
        return x
    return ops.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetBottleneck(keras.layers.Layer):
    """A bottleneck block: 1x1 -> 3x3 (stride, dilation) -> 1x1, plus the shortcut.

    `out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`,
    where the shortcut is `downsample_bn(downsample_conv(x))` (1x1, stride) when
    the stride or the width changes, else the identity. Batch norms are frozen.

    Example:
    >>> import numpy as np
    >>> block = ResNetBottleneck(filters=16, bottleneck_filters=4, stride=2)
    >>> tuple(block(np.zeros((1, 8, 8, 8), "float32")).shape)
    (1, 4, 4, 16)
    """

    def __init__(self, filters, bottleneck_filters, stride=1, dilation=1, use_downsample=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.bottleneck_filters = int(bottleneck_filters)
        self.stride = int(stride)
        self.dilation = int(dilation)
        self.use_downsample = use_downsample
        kw = dict(use_bias=False, padding="valid", dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv2D(self.bottleneck_filters, 1, name="conv1", **kw)
        self.bn1 = FrozenBatchNormalization(dtype=self.dtype_policy, name="bn1")
        self.conv2 = keras.layers.Conv2D(
            self.bottleneck_filters, 3, strides=self.stride, dilation_rate=self.dilation, name="conv2", **kw
        )
        self.bn2 = FrozenBatchNormalization(dtype=self.dtype_policy, name="bn2")
        self.conv3 = keras.layers.Conv2D(self.filters, 1, name="conv3", **kw)
        self.bn3 = FrozenBatchNormalization(dtype=self.dtype_policy, name="bn3")
        self.downsample_conv = None
        self.downsample_bn = None
        if use_downsample:
            self._make_downsample()

    def _make_downsample(self):
        kw = dict(use_bias=False, padding="valid", dtype=self.dtype_policy)
        self.downsample_conv = keras.layers.Conv2D(self.filters, 1, strides=self.stride, name="downsample_conv", **kw)
        self.downsample_bn = FrozenBatchNormalization(dtype=self.dtype_policy, name="downsample_bn")

    def build(self, input_shape):
        if self.use_downsample is None:  # decided by the input width when not given
            self.use_downsample = self.stride != 1 or input_shape[-1] != self.filters
            if self.use_downsample:
                self._make_downsample()
        self.use_downsample = bool(self.use_downsample)
        # Spatial sizes left unknown: conv2 sees its input after `_pad`, larger than `input_shape`.
        inner = (input_shape[0], None, None, self.bottleneck_filters)
        self.conv1.build(input_shape)
        self.bn1.build(inner)
        self.conv2.build(inner)
        self.bn2.build(inner)
        self.conv3.build(inner)
        self.bn3.build(inner[:-1] + (self.filters,))
        if self.use_downsample:
            self.downsample_conv.build(input_shape)
            self.downsample_bn.build(inner[:-1] + (self.filters,))
        self.built = True

    def call(self, inputs):
        x = ops.relu(self.bn1(self.conv1(inputs)))
        x = ops.relu(self.bn2(self.conv2(_pad(x, self.dilation))))
        x = self.bn3(self.conv3(x))
        shortcut = inputs
        if self.use_downsample:
            shortcut = self.downsample_bn(self.downsample_conv(inputs))
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size - 1) // self.stride + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "bottleneck_filters": self.bottleneck_filters,
                "stride": self.stride,
                "dilation": self.dilation,
                "use_downsample": self.use_downsample,
            }
        )
        return config


def ResNet(
    depths=(3, 4, 6, 3),
    widths=(256, 512, 1024, 2048),
    stem_width=64,
    bottleneck_ratio=4,
    dilation=False,
    input_shape=(None, None, 3),
    include_top=False,
    num_classes=1000,
    pooling=None,
    include_preprocessing=False,
    trainable_stem=True,
    dtype=None,
    name="resnet",
):
    """A bottleneck ResNet with frozen BatchNorm, as a functional `keras.Model`.

    Args:
        depths: blocks per stage (ResNet-50: 3, 4, 6, 3; ResNet-101: 3, 4, 23, 3).
        widths: output channels per stage; a block's inner width is width / `bottleneck_ratio`.
        stem_width: channels of the 7x7 stem convolution.
        dilation: DETR's DC5 variant: the last stage keeps stride 16 and dilates its
            3x3 convolutions by 2 instead (its first block keeps dilation 1, as in
            torchvision and timm).
        input_shape: (height, width, channels); None sizes accept any image size.
        include_top: add global average pooling and the `fc` classifier; else the
            model returns the last feature map (B, H/32, W/32, widths[-1]).
        pooling: with `include_top=False`: None (the map), "avg" or "max".
        include_preprocessing: take RGB in [0, 255] and apply ImageNet normalization.
        trainable_stem: False freezes the stem and the first stage, as DETR trains
            its backbone.

    Example:
    >>> import numpy as np
    >>> model = ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16)
    >>> tuple(model(np.zeros((1, 64, 96, 3), "float32")).shape)
    (1, 2, 3, 128)
    """
    if len(depths) != len(widths):
        raise ValueError(f"depths {depths} and widths {widths} need one entry per stage.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
    inputs = keras.Input(tuple(input_shape), name="images", dtype=dtype)
    x = inputs
    if include_preprocessing:
        from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImageNormalization

        x = ImageNormalization(IMAGENET_MEAN, IMAGENET_STD, dtype=dtype, name="preprocessing")(x)
    x = keras.layers.ZeroPadding2D(3, dtype=dtype, name="conv1_pad")(x)
    conv1 = keras.layers.Conv2D(stem_width, 7, strides=2, use_bias=False, dtype=dtype, name="conv1")
    bn1 = FrozenBatchNormalization(dtype=dtype, name="bn1")
    x = keras.layers.ReLU(dtype=dtype, name="relu")(bn1(conv1(x)))
    # Zero padding equals torch's -inf padding here: the input is >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, dtype=dtype, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, dtype=dtype, name="maxpool")(x)
    frozen = [conv1, bn1]
    channels = stem_width
    current_dilation = 1
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        stride = 1 if stage == 0 else 2
        block_dilation = current_dilation
        if dilation and stage == len(depths) - 1:
            current_dilation *= stride
            stride = 1
        for block in range(depth):
            block_stride = stride if block == 0 else 1
            layer = ResNetBottleneck(
                width,
                width // bottleneck_ratio,
                stride=block_stride,
                dilation=block_dilation if block == 0 else current_dilation,
                use_downsample=block_stride != 1 or channels != width,
                dtype=dtype,
                name=f"layer{stage + 1}_{block}",
            )
            x = layer(x)
            channels = width
            if stage == 0:
                frozen.append(layer)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="avgpool")(x)
        x = keras.layers.Dense(num_classes, dtype=dtype, name="fc")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="avgpool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(dtype=dtype, name="maxpool_global")(x)
    model = keras.Model(inputs, x, name=name)
    if not trainable_stem:
        for layer in frozen:
            layer.trainable = False
    return model


def _builder(variant):
    depths = RESNET_DEPTHS[variant]

    def build(
        input_shape=(None, None, 3),
        include_top=False,
        num_classes=1000,
        pooling=None,
        dilation=False,
        include_preprocessing=False,
        trainable_stem=True,
        name=None,
        **kwargs,
    ):
        return ResNet(
            depths=depths,
            dilation=dilation,
            input_shape=input_shape,
            include_top=include_top,
            num_classes=num_classes,
            pooling=pooling,
            include_preprocessing=include_preprocessing,
            trainable_stem=trainable_stem,
            name=name or variant,
            **kwargs,
        )

    label = {"resnet50": "ResNet50", "resnet101": "ResNet101"}[variant]
    build.__name__ = build.__qualname__ = label
    build.__doc__ = f"""{label} ({'-'.join(map(str, depths))} bottlenecks, widths 256-2048) with frozen BatchNorm.

    Returns the stride-32 feature map (B, H/32, W/32, 2048) by default
    (`include_top=False`), the backbone of `DETR{label}`; `dilation=True` gives the
    stride-16 DC5 map. Other arguments as `ResNet`.

    Example:
    >>> model = {label}()
    >>> model.output_shape
    (None, None, None, 2048)
    """
    return build


ResNet50 = _builder("resnet50")
ResNet101 = _builder("resnet101")
