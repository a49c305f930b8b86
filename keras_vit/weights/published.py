"""The table of published checkpoints, and downloading them into a cache."""

import os

from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD

_TIMM_HUB = "https://huggingface.co/timm/{name}/resolve/main/model.safetensors"


def _timm(name, family, num_classes, image_size, mean, std):
    return {
        "name": name,
        "family": family,
        "url": _TIMM_HUB.format(name=name),
        "filename": f"{name}.safetensors",
        "num_classes": num_classes,
        "image_size": image_size,
        "mean": mean,
        "std": std,
    }


# timm hub names -> what each checkpoint is. Families add their entries here.
PUBLISHED_WEIGHTS = {}


def register_published(*entries):
    for entry in entries:
        PUBLISHED_WEIGHTS[entry["name"]] = entry


_VIT = [
    ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_tiny_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_small_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_small_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_small_patch32_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_small_patch32_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_224.orig_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch16_384.orig_in21k_ft_in1k", 1000, 384),
    ("vit_base_patch32_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_base_patch32_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_large_patch16_224.augreg_in21k_ft_in1k", 1000, 224),
    ("vit_large_patch16_384.augreg_in21k_ft_in1k", 1000, 384),
    ("vit_large_patch32_384.orig_in21k_ft_in1k", 1000, 384),
    ("vit_huge_patch14_224.orig_in21k", 0, 224),
]
register_published(*(_timm(n, "vit", c, s, INCEPTION_MEAN, INCEPTION_STD) for n, c, s in _VIT))

# The entry maker, for families that register their checkpoints from their own modules (DeiT).
timm_entry = _timm


def cache_dir():
    """Where downloaded checkpoints are kept: $KERAS_VIT_CACHE or ~/.keras/keras_vit."""
    return os.environ.get("KERAS_VIT_CACHE", os.path.join(os.path.expanduser("~"), ".keras", "keras_vit"))


def published_names(family=None):
    """The names accepted as `weights=`, optionally for one family.

    Example:
    >>> "vit_base_patch16_224.augreg2_in21k_ft_in1k" in published_names("vit")
    True
    """
    return sorted(n for n, e in PUBLISHED_WEIGHTS.items() if family is None or e["family"] == family)


def fetch_published(name):
    """The local path of published checkpoint `name`, downloading it once if needed.

    Raises a `ConnectionError` naming the file to fetch by hand when there is no network.
    """
    entry = PUBLISHED_WEIGHTS[name]
    directory = cache_dir()
    path = os.path.join(directory, entry["filename"])
    if os.path.isfile(path):
        return path
    os.makedirs(directory, exist_ok=True)
    import keras

    try:
        return keras.utils.get_file(fname=entry["filename"], origin=entry["url"], cache_dir=directory, cache_subdir=".")
    except Exception as error:  # urllib raises URLError, HTTPError, TimeoutError...
        partial = path + ".part"
        for leftover in (path, partial):
            if os.path.exists(leftover) and not os.path.getsize(leftover):
                os.remove(leftover)
        raise ConnectionError(
            f"Could not download the weights {name!r} ({error}). With no network, download\n"
            f"  {entry['url']}\n"
            f"by hand, put it at {path} (or anywhere), and pass weights=\"{path}\"."
        ) from error

# TNT (timm >= 1.0.16 layout, which matches the official weights); inputs normalized with mean = std = 0.5.
register_published(
    _timm("tnt_s_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD),
    _timm("tnt_b_patch16_224.in1k", "tnt", 1000, 224, INCEPTION_MEAN, INCEPTION_STD),
)
# Swin (timm hub layout; ImageNet mean/std). 22k-only checkpoints have 21841 classes.
_SWIN = [
    ("swin_tiny_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_tiny_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_tiny_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_small_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_small_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_small_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_base_patch4_window7_224.ms_in1k", 1000, 224),
    ("swin_base_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_base_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_base_patch4_window12_384.ms_in1k", 1000, 384),
    ("swin_base_patch4_window12_384.ms_in22k_ft_in1k", 1000, 384),
    ("swin_base_patch4_window12_384.ms_in22k", 21841, 384),
    ("swin_large_patch4_window7_224.ms_in22k_ft_in1k", 1000, 224),
    ("swin_large_patch4_window7_224.ms_in22k", 21841, 224),
    ("swin_large_patch4_window12_384.ms_in22k_ft_in1k", 1000, 384),
    ("swin_large_patch4_window12_384.ms_in22k", 21841, 384),
]
register_published(*(_timm(n, "swin", c, s, IMAGENET_MEAN, IMAGENET_STD) for n, c, s in _SWIN))
