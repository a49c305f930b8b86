"""Sample images and the comparison every export runs on the file it wrote.

The samples are real images: scikit-learn's 8x8 digits, upscaled to the model's
input size and repeated over RGB. A model that includes preprocessing
(`ImageNormalization`) gets raw pixels in [0, 255]; one that does not gets them
mapped to [-1, 1].
"""

import numpy as np

from keras_vit.export import signature

# Bounds on max |exported - Keras|, relative to max(1, max |Keras output|).
# float32 is checked in absolute terms (1e-4); int8 by top-1 agreement instead.
FLOAT32_TOLERANCE = 1e-4
RELATIVE_TOLERANCES = {"float16": 1e-2, "dynamic": 1e-1}


def takes_raw_pixels(model):
    """True when the model normalizes its own input (it holds an `ImageNormalization`)."""
    from keras_vit.layers.preprocessing import ImageNormalization

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, ImageNormalization):
            return True
        stack.extend(getattr(layer, "layers", []) or [])
    return False


def digit_images(count, height, width, raw_pixels=True, offset=0):
    """`count` digits as (count, height, width, 3) float32 images, and their labels.

    Example:
    >>> images, labels = digit_images(4, 32, 32)
    >>> images.shape, float(images.max()) <= 255.0, labels.shape
    ((4, 32, 32, 3), True, (4,))
    """
    from scipy import ndimage
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = (offset + np.arange(count)) % len(digits.images)
    small = digits.images[index].astype("float32") * (255.0 / 16.0)
    big = ndimage.zoom(small, (1, height / 8.0, width / 8.0), order=1, grid_mode=True, mode="nearest")
    big = np.clip(big, 0.0, 255.0)[..., None].repeat(3, axis=-1).astype("float32")
    if not raw_pixels:
        big = big / 127.5 - 1.0
    return big, digits.target[index]


def sample_inputs(model, count, offset=0, input_shape=None):
    """{input name: array} of `count` samples for every input of `model`.

    Images (rank 4, 3 channels) are digits; masks are ones; anything else is
    standard normal noise. Unknown spatial sizes are taken as 64.
    """
    raw = takes_raw_pixels(model)
    rng = np.random.default_rng(offset)
    samples = {}
    for name, shape, dtype in signature.input_specs(model, input_shape):
        dims = [count] + [64 if d is None else int(d) for d in shape[1:]]
        if len(dims) == 4 and dims[-1] == 3:
            value, _ = digit_images(count, dims[1], dims[2], raw_pixels=raw, offset=offset)
        elif "mask" in name:
            value = np.ones(dims)
        else:
            value = rng.standard_normal(dims)
        samples[name] = value.astype(dtype)
    return samples


def is_classification_output(name, value):
    return value.ndim >= 2 and value.shape[-1] >= 2 and "box" not in name


def compare(reference, exported):
    """Per-output max |diff| and top-1 agreement of exported outputs against the Keras ones."""
    missing = sorted(set(reference) - set(exported))
    if missing:
        raise KeyError(f"the exported file has no outputs named {missing}; it has {sorted(exported)}")
    per_output = {}
    for name, ref in reference.items():
        got = np.asarray(exported[name], dtype="float64").reshape(ref.shape)
        ref = np.asarray(ref, dtype="float64")
        entry = {"max_abs_diff": float(np.max(np.abs(got - ref))) if ref.size else 0.0,
                 "scale": float(max(1.0, np.max(np.abs(ref)))) if ref.size else 1.0}
        if is_classification_output(name, ref):
            entry["top1_agreement"] = float(np.mean(np.argmax(got, -1) == np.argmax(ref, -1)))
        per_output[name] = entry
    return per_output


def tolerance_for(quantization, per_output):
    """The bound on max |diff| for a quantization mode (None for int8)."""
    if quantization is None:
        return FLOAT32_TOLERANCE
    if quantization == "int8":
        return None
    scale = max(entry["scale"] for entry in per_output.values())
    return RELATIVE_TOLERANCES[quantization] * scale
