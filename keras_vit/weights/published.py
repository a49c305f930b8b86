"""The table of published checkpoints, and downloading them into a cache.

The table starts empty: each family's package (`keras_vit/models/<family>/`) registers its
own presets from its `__init__`, so that importing `keras_vit` fills it once.
"""

import os

_TIMM_HUB = "https://huggingface.co/timm/{name}/resolve/main/model.safetensors"
_HUB_FILE = "https://huggingface.co/{name}/resolve/main/{filename}"


def timm_entry(name, family, num_classes, image_size, mean, std, **extra):
    """A preset entry for a checkpoint on timm's hub page (repository `timm/<name>`, `model.safetensors`).

    Example:
    >>> entry = timm_entry("vit_tiny_patch16_224.augreg_in21k_ft_in1k", "vit", 1000, 224, (0.5,) * 3, (0.5,) * 3)
    >>> entry["repo_id"], entry["repo_filename"]
    ('timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k', 'model.safetensors')
    """
    return {
        "name": name,
        "family": family,
        "repo_id": f"timm/{name}",
        "repo_filename": "model.safetensors",
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
    >>> entry = hub_entry("facebook/detr-resnet-50", "detr", "pytorch_model.bin", 91, None, (0.5,) * 3, (0.5,) * 3)
    >>> entry["repo_id"], entry["repo_filename"]
    ('facebook/detr-resnet-50', 'pytorch_model.bin')
    """
    extension = os.path.splitext(filename)[1]
    return {
        "name": name,
        "family": family,
        "repo_id": name,
        "repo_filename": filename,
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
    """Adds preset entries (from `timm_entry`/`hub_entry`) to the table; a family's `__init__` calls it.

    Example:
    >>> register_published(timm_entry("my_vit.example", "vit", 10, 32, (0.5,) * 3, (0.5,) * 3))
    >>> "my_vit.example" in published_names("vit")
    True
    >>> del PUBLISHED_WEIGHTS["my_vit.example"]
    """
    for entry in entries:
        PUBLISHED_WEIGHTS[entry["name"]] = entry


def cache_dir():
    """The package's own, older download folder: $KERAS_VIT_CACHE or ~/.keras/keras_vit.

    Checkpoints found there are still used; new downloads go to the Hugging Face cache.

    Example:
    >>> os.path.basename(cache_dir()) in ("keras_vit", os.path.basename(os.environ.get("KERAS_VIT_CACHE", "")))
    True
    """
    return os.environ.get("KERAS_VIT_CACHE", os.path.join(os.path.expanduser("~"), ".keras", "keras_vit"))


def published_names(family=None):
    """The names accepted as `weights=`, optionally for one family.

    Example:
    >>> "vit_base_patch16_224.augreg2_in21k_ft_in1k" in published_names("vit")
    True
    """
    return sorted(n for n, e in PUBLISHED_WEIGHTS.items() if family is None or e["family"] == family)


def hub_name(weights):
    """`(published name or None, hub repository or None)` for a `weights=` string as copied from the hub.

    `"timm/<name>"` and `"hf-hub:timm/<name>"` (timm's own spelling) name timm's repository
    `timm/<name>`; `"owner/repo"` a repository of the hub. The published name is the table's key
    when the table has it.

    Example:
    >>> hub_name("hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
    ('vit_base_patch16_224.augreg2_in21k_ft_in1k', 'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k')
    >>> hub_name("facebook/detr-resnet-50")
    ('facebook/detr-resnet-50', 'facebook/detr-resnet-50')
    >>> hub_name("mae_visualize_vit_base")  # a release file: no hub repository
    ('mae_visualize_vit_base', None)
    >>> hub_name("model.safetensors")
    (None, None)
    """
    name = weights[len("hf-hub:"):] if weights.startswith("hf-hub:") else weights
    if name in PUBLISHED_WEIGHTS:
        # Entries with only a `url` (release files) have no hub repository.
        return name, PUBLISHED_WEIGHTS[name].get("repo_id")
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or name.startswith((".", "~")) or os.path.splitext(name)[1] in _FILE_SUFFIXES:
        return None, None
    if parts[0] == "timm" and parts[1] in PUBLISHED_WEIGHTS:
        return parts[1], name
    return None, name


_FILE_SUFFIXES = (".safetensors", ".pth", ".bin", ".npz", ".h5", ".keras", ".pt")


def _environment_true(name):
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_download(repo_id, filename, description=None):
    """The local path of `filename` of hub repository `repo_id`, through `huggingface_hub`.

    Files go to the Hugging Face cache that timm and transformers share ($HF_HUB_CACHE, or
    $HF_HOME/hub, or ~/.cache/huggingface/hub), read when this is called; a file already there
    is used without a network. `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) never asks the
    network, and `HF_ENDPOINT` points at a mirror. huggingface_hub downloads into a temporary
    file and moves it into place when complete, so a killed download is never used. When the
    file cannot be had, one `ConnectionError` (no network or offline) or `FileNotFoundError`
    (no such repository or file) says what to do, without a chained traceback.

    Example (offline, with an empty cache):
    >>> import tempfile
    >>> os.environ["HF_HUB_OFFLINE"], saved = "1", os.environ.get("HF_HUB_OFFLINE")
    >>> os.environ["HF_HUB_CACHE"], saved_cache = tempfile.mkdtemp(), os.environ.get("HF_HUB_CACHE")
    >>> try:
    ...     hub_download("timm/not_downloaded_yet", "model.safetensors")
    ... except ConnectionError as error:
    ...     print(str(error).splitlines()[0])
    ... finally:
    ...     _ = [os.environ.pop(k) if v is None else os.environ.update({k: v})
    ...          for k, v in (("HF_HUB_OFFLINE", saved), ("HF_HUB_CACHE", saved_cache))]
    Cannot get the weights 'timm/not_downloaded_yet': offline (HF_HUB_OFFLINE is set) and not in the Hugging Face cache.
    """
    try:
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError:
        raise ImportError(
            f"Downloading {repo_id!r} needs huggingface_hub: `pip install huggingface_hub`, or download "
            f"https://huggingface.co/{repo_id}/resolve/main/{filename} by hand and pass its path as weights=."
        ) from None
    description = description or repo_id
    url = f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{repo_id}/resolve/main/{filename}"
    hf_cache = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    # The environment now, or as huggingface_hub read it when first imported (it never reads it again).
    offline = (_environment_true("HF_HUB_OFFLINE") or _environment_true("TRANSFORMERS_OFFLINE")
               or constants.is_offline_mode())
    by_hand = (f"Download\n  {url}\nby hand (on a machine with a network) and pass its path as weights=, "
               "or fill the Hugging Face cache there (`hf download " + repo_id + " " + filename + "`).")
    problem = None
    try:
        return huggingface_hub.hf_hub_download(
            repo_id, filename, cache_dir=hf_cache, local_files_only=offline,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError):
        problem = FileNotFoundError(
            f"No weights {description!r}: not a local file, and the hub repository {repo_id!r} has no file {filename!r} "
            "(or is private). Check the name on its hub page (timm's names: weights=\"timm/<name>\")."
        )
    except errors.LocalEntryNotFoundError:
        why = "offline (HF_HUB_OFFLINE is set)" if offline else "no network"
        problem = ConnectionError(
            f"Cannot get the weights {description!r}: {why} and not in the Hugging Face cache.\n{by_hand}")
    except Exception as error:  # noqa: BLE001 - connection refused, timeouts, a download cut short (httpx types)
        problem = ConnectionError(
            f"Cannot get the weights {description!r}: the download failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}).\n{by_hand}")
    raise problem from None


def fetch_published(name):
    """The local path of published checkpoint `name`, downloading it once if needed.

    A file in the package's older cache (`cache_dir()`) is used as it is; otherwise the hub
    repository's file comes through `hub_download` (the Hugging Face cache). An entry with only a
    `url` (no hub repository) is downloaded with `keras.utils.get_file` into `cache_dir()`.

    Example:
    >>> PUBLISHED_WEIGHTS["facebook/detr-resnet-50"]["repo_filename"]
    'pytorch_model.bin'
    """
    entry = PUBLISHED_WEIGHTS[name]
    directory = cache_dir()
    path = os.path.join(directory, entry["filename"])
    if os.path.isfile(path):
        return path
    if entry.get("repo_id"):
        return hub_download(entry["repo_id"], entry["repo_filename"], description=name)
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
        ) from None
