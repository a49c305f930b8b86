"""In-model preprocessing, so an exported model takes raw RGB pixels."""

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@keras.saving.register_keras_serializable(package="keras_vit")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to `(x / 255 - mean) / std`.

    Put in front of a model (`include_preprocessing=True`) so that the model, and
    any SavedModel or .tflite file exported from it, takes raw camera pixels and
    applies the normalization its weights were trained with.

    Example:
    >>> import numpy as np
    >>> norm = ImageNormalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> float(norm(np.full((1, 2, 2, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=1.0 / 255.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.scale = float(scale)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} must have the same length.")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        inv_std = ops.convert_to_tensor([1.0 / s for s in self.std], dtype=self.compute_dtype)
        return (x * self.scale - mean) * inv_std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std), "scale": self.scale})
        return config


# timm's eval transform: resize the shorter side to floor(size / crop_pct), then a centre crop of `size`.
DEFAULT_CROP_PCT = 0.9
DEFAULT_INTERPOLATION = "bicubic"
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def resize_and_crop_geometry(height, width, image_size, crop_pct=DEFAULT_CROP_PCT):
    """Where timm's eval transform takes an image of `height` x `width` to: `(resized (h, w), crop
    offset (top, left))`, the crop being `image_size` (an int or (height, width)).

    The image is scaled, keeping its aspect, so that it covers `image_size / crop_pct` (the side that
    decides is `floor(size / crop_pct)` exactly, the other `int(...)` as torchvision's `Resize`), then the
    centre `image_size` is cut out, offsets rounded as torchvision's `CenterCrop`.

    Example:
    >>> resize_and_crop_geometry(300, 451, 224, crop_pct=0.875)
    ((256, 384), (16, 80))
    """
    target_h, target_w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}.")
    if height < 1 or width < 1:
        raise ValueError(f"The image is empty ({height}x{width} pixels).")
    cover_h, cover_w = int(target_h / crop_pct), int(target_w / crop_pct)
    if cover_h / height >= cover_w / width:
        new_h, new_w = cover_h, max(target_w, int(cover_h * width / height))
    else:
        new_h, new_w = max(target_h, int(cover_w * height / width)), cover_w
    top, left = int(round((new_h - target_h) / 2.0)), int(round((new_w - target_w) / 2.0))
    return (new_h, new_w), (top, left)


@keras.saving.register_keras_serializable(package="keras_vit")
class ResizeAndCenterCrop(keras.layers.Layer):
    """Brings images of one fixed size (a camera's frames) to the model's `image_size` as the
    checkpoint's evaluation recipe does: resize keeping the aspect to `image_size / crop_pct`
    (antialiased, `interpolation` as timm's pretrained config says), then a centre crop; with
    `crop_mode="squash"` both sides are resized to `image_size / crop_pct` (the aspect not kept), as
    `keras-vit train`'s pipeline does with crop_pct 1.0.

    Put in front of a model (`keras_vit.with_image_resizing(model, input_shape)`) so that an exported
    SavedModel or .tflite file takes frames of `input_shape` directly. The input's height and width
    must be known when the layer is built (Keras resizes to static sizes on every backend); for images
    of varying sizes use `keras_vit.load_image` or `keras_vit.data.resize_and_center_crop` in tf.data.

    Example:
    >>> import numpy as np
    >>> layer = ResizeAndCenterCrop(image_size=32, crop_pct=0.875)
    >>> tuple(layer(np.zeros((1, 48, 64, 3), "float32")).shape)
    (1, 32, 32, 3)
    """

    def __init__(self, image_size, crop_pct=DEFAULT_CROP_PCT, interpolation=DEFAULT_INTERPOLATION, crop_mode="center",
                 **kwargs):
        super().__init__(**kwargs)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size = (int(size[0]), int(size[1]))
        self.crop_pct = float(crop_pct)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
        self.interpolation = interpolation
        if crop_mode not in ("center", "squash"):
            raise ValueError(f"crop_mode must be 'center' or 'squash', got {crop_mode!r}.")
        self.crop_mode = crop_mode
        resize_and_crop_geometry(1, 1, self.image_size, self.crop_pct)  # checks crop_pct

    def build(self, input_shape):
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                f"ResizeAndCenterCrop needs a fixed input height and width, got {tuple(input_shape)}: build the "
                "model for the size of your frames, or resize images of varying size before the model with "
                "keras_vit.load_image (one image) or keras_vit.data.resize_and_center_crop (tf.data)."
            )
        super().build(input_shape)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if self.crop_mode == "squash":
            new_h, new_w = (int(side / self.crop_pct) for side in self.image_size)
            top, left = int(round((new_h - self.image_size[0]) / 2.0)), int(round((new_w - self.image_size[1]) / 2.0))
        else:
            (new_h, new_w), (top, left) = resize_and_crop_geometry(height, width, self.image_size, self.crop_pct)
        x = ops.cast(inputs, self.compute_dtype)
        if (new_h, new_w) != (height, width):
            x = ops.image.resize(x, (new_h, new_w), interpolation=self.interpolation, antialias=True)
        return x[:, top : top + self.image_size[0], left : left + self.image_size[1], :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.image_size, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": list(self.image_size), "crop_pct": self.crop_pct,
                       "interpolation": self.interpolation, "crop_mode": self.crop_mode})
        return config
