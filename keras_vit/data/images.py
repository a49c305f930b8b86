"""Any image in: photos of any size, aspect and pixel format brought to a model's input as the
checkpoint's evaluation recipe says (timm's eval transform: resize keeping the aspect so that the
shorter side is `size / crop_pct`, antialiased with the recipe's interpolation, then a centre crop).

- one image or a few, from a path, a `PIL.Image` or a NumPy array: `load_image(image, model)`;
- in a tf.data pipeline: `dataset.map(lambda x: resize_and_center_crop(x, 224))`;
- inside the model, for export with a fixed frame size: `keras_vit.layers.ResizeAndCenterCrop`.

Pixel formats (what `load_image` does with them, documented and tested):
- grey (PIL "L", "1", or an (H, W) / (H, W, 1) array): the grey value is repeated over R, G and B;
- RGBA, LA, palette with transparency: the alpha channel is dropped (the colour values are kept as they
  are, as PIL's `convert("RGB")` and timm's loader do), CMYK/YCbCr: converted to RGB by PIL;
- 16-bit (PNG "I;16", a uint16 array; Pillow's 32-bit "I" or int arrays when a value exceeds 255):
  scaled to [0, 255] as `value * 255 / 65535`;
- float arrays are taken to be pixels in [0, 255] already; other dtypes are refused;
- an image smaller than the model's input, even smaller than one patch, is upscaled like any other;
- a file that is not an image raises `ValueError` naming it.

The result is float32 RGB in [0, 255], what models built with `include_preprocessing=True` take.

Example:
>>> import numpy as np
>>> batch = load_image(np.zeros((300, 451, 3), "uint8"), image_size=32)
>>> batch.shape, batch.dtype
((1, 32, 32, 3), dtype('float32'))
"""

import os

import numpy as np

from keras_vit.layers.preprocessing import (
    DEFAULT_CROP_PCT,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
    resize_and_crop_geometry,
)

_PIL_FILTERS = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST"}


def image_recipe(weights=None, image_size=None):
    """The evaluation recipe of a published checkpoint: `{"image_size", "crop_pct", "interpolation",
    "mean", "std"}`, from the package's presets (timm's pretrained_cfg).

    With `weights=None`, the recipe that every published classifier of `image_size` shares (timm's:
    bicubic, crop_pct 0.9 at 224 and 1.0 at 384), or timm's defaults (bicubic, 0.9) if they differ.

    Example:
    >>> image_recipe("vit_base_patch16_384.augreg_in21k_ft_in1k")["crop_pct"]
    1.0
    >>> image_recipe(image_size=224)["crop_pct"]
    0.9
    """
    from keras_vit.weights.published import PUBLISHED_WEIGHTS

    if weights is not None:
        name = str(weights)
        for prefix in ("hf-hub:", "timm/"):
            name = name[len(prefix):] if name.startswith(prefix) else name
        if name not in PUBLISHED_WEIGHTS:
            raise ValueError(f"Unknown checkpoint {weights!r}: use one of keras_vit.weights.published_names().")
        entry = PUBLISHED_WEIGHTS[name]
        return {"image_size": entry["image_size"], "crop_pct": entry.get("crop_pct", DEFAULT_CROP_PCT),
                "interpolation": entry.get("interpolation", DEFAULT_INTERPOLATION),
                "mean": entry["mean"], "std": entry["std"]}
    size = image_size if image_size is None or isinstance(image_size, int) else max(image_size)
    recipes = {(e["crop_pct"], e["interpolation"]) for e in PUBLISHED_WEIGHTS.values()
               if "crop_pct" in e and e["image_size"] == size}
    crop_pct, interpolation = recipes.pop() if len(recipes) == 1 else (DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION)
    return {"image_size": image_size, "crop_pct": crop_pct, "interpolation": interpolation, "mean": None, "std": None}


def _model_image_size(model):
    shape = model.input_shape
    if isinstance(shape, dict):
        shape = shape.get("images", next(iter(shape.values())))
    if isinstance(shape, list):
        shape = shape[0]
    if shape[1] is None or shape[2] is None:
        raise ValueError(f"{model.name} takes images of any size; pass image_size=(height, width) to load_image.")
    return (int(shape[1]), int(shape[2]))


def _as_rgb_array(image, name):
    """One image as an (H, W, 3) uint8 or float32 array, converted as the module docstring says."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such image file.")
        try:
            with Image.open(path) as opened:
                opened.load()
                return _as_rgb_array(opened, path)
        except UnidentifiedImageError:
            raise ValueError(f"{path}: not an image file that Pillow can read (PNG, JPEG, BMP, WebP, ...).") from None
    if isinstance(image, Image.Image):
        if image.mode.startswith("I;16"):
            pixels = np.asarray(image).astype("uint16")  # 16-bit: scaled below
        elif image.mode == "I":
            pixels = np.asarray(image)
        elif image.mode == "F":
            pixels = np.asarray(image, dtype="float32")
        else:
            return np.asarray(image.convert("RGB"))  # grey repeated, alpha dropped, CMYK/palette converted
    else:
        pixels = np.asarray(image)
    if pixels.dtype == np.bool_ or not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating)):
        raise ValueError(f"{name}: pixels of dtype {pixels.dtype} are not an image; use uint8, uint16 or float.")
    if pixels.ndim == 3 and pixels.shape[-1] in (1, 3, 4):
        pixels = pixels[..., :3] if pixels.shape[-1] != 1 else pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(
            f"{name}: expected one image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got an array of shape "
            f"{pixels.shape}; pass a batch as a list of images."
        )
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"{name}: the image is empty ({pixels.shape[0]}x{pixels.shape[1]} pixels).")
    if pixels.dtype == np.uint8:
        return pixels
    # uint16 pixels are 16-bit; wider integers (Pillow's "I") are taken as 16-bit when they exceed 255.
    if pixels.dtype == np.uint16 or (np.issubdtype(pixels.dtype, np.integer) and pixels.max() > 255):
        return pixels.astype("float32") * (255.0 / 65535.0)
    return pixels.astype("float32")


def _resize_and_crop(pixels, image_size, crop_pct, interpolation, crop_mode="center"):
    from PIL import Image

    height, width = pixels.shape[:2]
    if crop_mode == "squash":  # timm's "squash": both sides to size / crop_pct, the aspect not kept
        new_h, new_w = int(image_size[0] / crop_pct), int(image_size[1] / crop_pct)
        top, left = int(round((new_h - image_size[0]) / 2.0)), int(round((new_w - image_size[1]) / 2.0))
    else:
        (new_h, new_w), (top, left) = resize_and_crop_geometry(height, width, image_size, crop_pct)
    resample = getattr(Image, _PIL_FILTERS[interpolation])
    if pixels.dtype == np.uint8:  # the RGB path of timm's loader, exactly
        resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), resample), dtype="float32")
    else:  # 16-bit or float pixels keep their precision: each channel as a float image
        resized = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c])).resize((new_w, new_h), resample))
                            for c in range(3)], axis=-1).astype("float32")
    return resized[top : top + image_size[0], left : left + image_size[1]]


def load_image(images, model=None, image_size=None, crop_pct=None, interpolation=None, weights=None,
               crop_mode=None):
    """One image or a list of images, of any size and pixel format, as the batch a model takes.

    Each image (a file path, a `PIL.Image` or a NumPy array) is made RGB (see the module's docstring for
    grey, RGBA, 16-bit and float pixels), resized keeping its aspect so that it covers
    `image_size / crop_pct`, with `interpolation`, antialiased (Pillow), and centre-cropped to
    `image_size`: timm's evaluation transform. `model.predict(load_image("photo.jpg", model))` then
    works for any photo with a model built with `include_preprocessing=True`.

    Args:
        images: a path, `PIL.Image` or array, or a list of them.
        model: the model whose input size to use (or give `image_size`).
        image_size: int or (height, width); default the model's input size.
        crop_pct: the fraction of the resized image kept; default the checkpoint's (`weights`), the
            model's own (a model trained by `keras-vit train` keeps how its images were resized), or
            `image_recipe(image_size=...)`'s.
        interpolation: "bicubic", "bilinear" or "nearest"; default as `crop_pct`.
        weights: a published checkpoint's name whose recipe to follow.
        crop_mode: "center" (keep the aspect, crop the centre) or "squash" (timm's: resize both sides to
            `image_size / crop_pct`, the aspect not kept, then crop); default as `crop_pct`, else "center".

    Returns:
        float32 array (N, height, width, 3), RGB pixels in [0, 255].

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    >>> photo = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype="uint8")
    >>> batch = load_image(photo, model)  # then model.predict(batch)
    >>> batch.shape
    (1, 32, 32, 3)
    """
    if model is None and image_size is None:
        raise ValueError("load_image needs the model (or image_size=) to know the input size.")
    size = _model_image_size(model) if image_size is None else image_size
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    recipe = image_recipe(weights) if weights is not None else image_recipe(image_size=size if size[0] == size[1] else size)
    if weights is None and model is not None:
        from keras_vit.labels import get_image_recipe

        recipe.update(get_image_recipe(model) or {})  # how the model was trained (keras-vit train)
    crop_pct = recipe["crop_pct"] if crop_pct is None else crop_pct
    interpolation = recipe["interpolation"] if interpolation is None else interpolation
    crop_mode = recipe.get("crop_mode", "center") if crop_mode is None else crop_mode
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    if crop_mode not in ("center", "squash"):
        raise ValueError(f"crop_mode must be 'center' or 'squash', got {crop_mode!r}.")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError("load_image got an empty list of images.")
    batch = []
    for index, image in enumerate(items):
        name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"image {index}"
        batch.append(_resize_and_crop(_as_rgb_array(image, name), size, crop_pct, interpolation, crop_mode))
    return np.stack(batch)


def to_rgb_float(image):
    """One image (H, W) or (H, W, C) with C 1, 3 or 4, any numeric dtype, as float32 RGB in [0, 255] (TensorFlow).

    Grey is repeated over RGB, alpha dropped, uint16 scaled by 255 / 65535.

    Example:
    >>> import numpy as np
    >>> rgb = to_rgb_float(np.full((2, 2), 65535, "uint16"))
    >>> tuple(rgb.shape), float(rgb[0, 0, 1])
    ((2, 2, 3), 255.0)
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    scale = 255.0 / 65535.0 if image.dtype == tf.uint16 else 1.0
    image = tf.cast(image, tf.float32) * scale
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    channels = image.shape[-1]
    if channels == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif channels == 4:
        image = image[..., :3]
    elif channels != 3:
        raise ValueError(f"Images must have 1, 3 or 4 channels (grey, RGB, RGBA); got {channels}.")
    return image


def resize_and_center_crop(image, image_size, crop_pct=DEFAULT_CROP_PCT, interpolation=DEFAULT_INTERPOLATION):
    """timm's evaluation resize and centre crop of one image in a tf.data pipeline (any size, TensorFlow).

    `image` is (H, W, C) with C 1, 3 or 4 (grey repeated, alpha dropped), any numeric dtype (uint16 scaled
    by 255 / 65535); returns float32 (height, width, 3) RGB in [0, 255]. Resizing is TensorFlow's,
    antialiased, so it differs from Pillow's by a few levels.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> images = tf.data.Dataset.from_tensors(np.zeros((300, 451, 3), "uint8"))
    >>> tuple(next(iter(images.map(lambda x: resize_and_center_crop(x, 32)))).shape)
    (32, 32, 3)
    """
    import tensorflow as tf

    target_h, target_w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    resize_and_crop_geometry(1, 1, (target_h, target_w), crop_pct)  # checks crop_pct
    image = to_rgb_float(image)
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cover_h, cover_w = float(int(target_h / crop_pct)), float(int(target_w / crop_pct))
    by_height = cover_h / height >= cover_w / width
    new_h = tf.where(by_height, cover_h, tf.maximum(float(target_h), tf.floor(cover_w * height / width)))
    new_w = tf.where(by_height, tf.maximum(float(target_w), tf.floor(cover_h * width / height)), cover_w)
    new_h, new_w = tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method=interpolation, antialias=True)
    top = tf.cast(tf.round((new_h - target_h) / 2), tf.int32)
    left = tf.cast(tf.round((new_w - target_w) / 2), tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, target_h, target_w)


def with_image_resizing(model, input_shape, crop_pct=None, interpolation=None, weights=None):
    """`model` behind a `ResizeAndCenterCrop` layer: a model (and a SavedModel or .tflite file exported
    from it) that takes frames of `input_shape` (height, width, 3), e.g. a camera's, and resizes and crops
    them inside as `load_image` does (recipe from `weights`, the model, or `image_recipe`). The class
    names the model keeps (`keras_vit.with_class_names`) are kept.

    Example:
    >>> import keras
    >>> inputs = keras.Input((32, 32, 3))
    >>> model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs)))
    >>> camera_model = with_image_resizing(model, (300, 451, 3))  # then camera_model.predict(frames)
    >>> camera_model.input_shape, camera_model.output_shape
    ((None, 300, 451, 3), (None, 10))
    """
    import keras

    from keras_vit.labels import get_class_names, get_image_recipe, with_class_names
    from keras_vit.layers.preprocessing import ResizeAndCenterCrop

    size = _model_image_size(model)
    recipe = image_recipe(weights) if weights is not None else image_recipe(image_size=size)
    if weights is None:
        recipe.update(get_image_recipe(model) or {})
    inputs = keras.Input(tuple(input_shape), name="images")
    resize = ResizeAndCenterCrop(size, crop_pct=recipe["crop_pct"] if crop_pct is None else crop_pct,
                                 interpolation=interpolation or recipe["interpolation"],
                                 crop_mode=recipe.get("crop_mode", "center"), name="resize_and_center_crop")
    resized = keras.Model(inputs, model(resize(inputs)), name=f"{model.name}_resizing")
    names = get_class_names(model)
    return resized if names is None else with_class_names(resized, names, image_recipe=get_image_recipe(model))
