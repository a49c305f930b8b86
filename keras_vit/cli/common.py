"""What the `keras-vit` commands share: argument types, model names from the registry, the
`--verbose` flag, images from files, and the one-line error type.

Example:
>>> resolve_model_name("vit-ti16")
'ViTTi16'
>>> resolve_model_name("swint", task="classification")
'SwinT'
"""

import argparse
import os
import sys
import time

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
NORMALIZATIONS = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


def positive_int(value):
    """argparse type: an integer >= 1.

    Example:
    >>> positive_int("3")
    3
    """
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _key(name):
    return name.lower().replace("-", "").replace("_", "").replace("/", "")


def registered_names(task=None):
    """The registry's builder names (`keras_vit.models.model_names`), optionally of one task."""
    from keras_vit.models import model_names

    return model_names(task=task)


def resolve_model_name(value, task=None, extra=()):
    """The registered builder name (or one of `extra`) that `value` means, ignoring case, "-",
    "_" and "/"; raises `argparse.ArgumentTypeError` listing the names otherwise."""
    names = list(registered_names(task)) + list(extra)
    by_key = {_key(name): name for name in names}
    if _key(value) not in by_key:
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; choose one of {', '.join(names)}")
    return by_key[_key(value)]


def model_name_type(task=None, extra=()):
    """argparse type for `--model`: a registered name (see `resolve_model_name`) or one of `extra`."""

    def parse(value):
        return resolve_model_name(value, task, extra)

    parse.__name__ = "model name"  # argparse names the type in its messages
    return parse


def add_verbose_flag(parser):
    """`-v`/`--verbose`: TensorFlow's C++ log lines, hidden by default, reach stderr.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_verbose_flag(parser)
    >>> parser.parse_args(["-v"]).verbose
    True
    """
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="show TensorFlow's C++ log lines (hidden by default; those printed when TensorFlow starts "
             "under the TensorFlow backend show with TF_CPP_MIN_LOG_LEVEL=0 in the environment)",
    )


def progress(message):
    """Prints one line saying what the command is doing now (for phases that take a while)."""
    print(f"{message}...", flush=True)


class Timer:
    """Seconds since it was made: `f"done in {timer}"`."""

    def __init__(self):
        self.start = time.time()

    def __str__(self):
        return f"{time.time() - self.start:.0f} s"


def images_in_folder(folder):
    """The image files of a folder, sorted by name."""
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(folder, name) for name in names]


def load_images(paths, height, width, normalize="none", crop_mode="squash", crop_pct=1.0, interpolation="bilinear"):
    """(N, height, width, 3) float32 RGB pixels in [0, 255] (or normalized), and each image's (width, height).

    Resized as `keras_vit.load_image` does with `crop_mode`, `crop_pct` and `interpolation` (the default:
    to the size, as the training pipeline does). Grey, RGBA and 16-bit images are converted as
    `keras_vit.data.images` documents; a file that is not an image is a `ValueError` naming it.
    """
    import numpy as np

    from keras_vit.data.images import _as_rgb_array, load_image

    pixels = [_as_rgb_array(path, path) for path in paths]
    sizes = [(image.shape[1], image.shape[0]) for image in pixels]
    images = load_image(pixels, image_size=(height, width), crop_mode=crop_mode, crop_pct=crop_pct,
                        interpolation=interpolation)
    stats = NORMALIZATIONS[normalize]
    if stats is not None:
        mean, std = (np.asarray(s, "float32") for s in stats)
        images = (images / 255.0 - mean) / std
    return images, sizes


def report_error(command, error):
    """Prints `keras-vit COMMAND: error: ...` as one line on stderr."""
    print(f"keras-vit {command}: error: {error}", file=sys.stderr)
