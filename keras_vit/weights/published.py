"""The table of published checkpoints, and downloading them into a cache.

The table starts empty: each family's package (`keras_vit/models/<family>/`) registers its
own presets from its `__init__`, so that importing `keras_vit` fills it once.
"""

import os

_TIMM_HUB = "https://huggingface.co/timm/{name}/resolve/main/model.safetensors"
_HUB_FILE = "https://huggingface.co/{name}/resolve/main/{filename}"


def timm_entry(name, family, num_classes, image_size, mean, std, **extra):
    """A preset entry for a checkpoint on timm's hub page (`model.safetensors`).

    Example:
    >>> timm_entry("vit_tiny_patch16_224.augreg_in21k_ft_in1k", "vit", 1000, 224, (0.5,) * 3, (0.5,) * 3)["filename"]
    'vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors'
    """
    return {
        "name": name,
        "family": family,
        "url": _TIMM_HUB.format(name=name),
        "filename": f"{name}.safetensors",
        "num_classes": num_classes,
        "image_size": image_size,
        "mean": mean,
        "std": std,
        **extra,
    }


def hub_entry(name, family, filename, num_classes, image_size, mean, std, **extra):
    """A preset entry for a file of a model-hub repository `name` ("owner/repo").

    Example:
    >>> hub_entry("facebook/detr-resnet-50", "detr", "pytorch_model.bin", 91, None, (0.5,) * 3, (0.5,) * 3)["filename"]
    'facebook--detr-resnet-50.bin'
    """
    extension = os.path.splitext(filename)[1]
    return {
        "name": name,
        "family": family,
        "url": _HUB_FILE.format(name=name, filename=filename),
        "filename": name.replace("/", "--") + extension,
        "num_classes": num_classes,
        "image_size": image_size,
        "mean": mean,
        "std": std,
        **extra,
    }


# Published names -> what each checkpoint is; filled by the families' `__init__`.
PUBLISHED_WEIGHTS = {}


def register_published(*entries):
    """Adds preset entries (from `timm_entry`/`hub_entry`) to the table; a family's `__init__` calls it."""
    for entry in entries:
        PUBLISHED_WEIGHTS[entry["name"]] = entry


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
    import keras

    from keras_vit.atomic_files import atomic_path

    try:
        # Downloaded under a temporary name and renamed when complete: a killed download never
        # leaves a partial file where the cache looks.
        with atomic_path(path) as temporary:
            os.remove(temporary)  # get_file takes an existing file for a finished download
            keras.utils.get_file(fname=os.path.basename(temporary), origin=entry["url"], cache_dir=directory,
                                 cache_subdir=".")
        return path
    except Exception as error:  # urllib raises URLError, HTTPError, TimeoutError...
        raise ConnectionError(
            f"Could not download the weights {name!r} ({error}). With no network, download\n"
            f"  {entry['url']}\n"
            f"by hand, put it at {path} (or anywhere), and pass weights=\"{path}\"."
        ) from error
