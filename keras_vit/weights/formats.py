"""Reading checkpoint files into {name: numpy array}, the format found from content.

Formats: safetensors, torch pickles (`.pth`/`.bin`, zip or legacy), NumPy `.npz`
(Google's original ViT checkpoints), and Keras' own `.weights.h5`/`.keras`.
"""

import json
import os
import struct
import zipfile

import numpy as np

SAFETENSORS = "safetensors"
TORCH = "torch"
NPZ = "npz"
KERAS_H5 = "keras_h5"
KERAS_ARCHIVE = "keras_archive"

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class CheckpointFormatError(ValueError):
    """The file is not a checkpoint keras_vit can read."""


def detect_format(path):
    """The format of the checkpoint at `path`, read from its first bytes.

    Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, a=np.zeros(2))
    >>> detect_format(path)
    'npz'
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No checkpoint file at {path!r}. Pass the path of a downloaded checkpoint "
            "(.safetensors, .pth, .bin, .npz, .weights.h5, .keras) or a published weights name."
        )
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_HDF5_MAGIC):
        return KERAS_H5
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as error:
            raise CheckpointFormatError(f"{path!r} looks like a zip archive but is corrupt: {error}.") from error
        if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
            return KERAS_ARCHIVE
        if any(n.endswith("data.pkl") for n in names):
            return TORCH
        if names and all(n.endswith(".npy") for n in names):
            return NPZ
        raise CheckpointFormatError(f"{path!r} is a zip archive, but not a .npz, torch or .keras file.")
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len < os.path.getsize(path):
            return SAFETENSORS
    if head[:1] == b"\x80":  # a pickle: torch's legacy (pre-1.6) format
        return TORCH
    raise CheckpointFormatError(
        f"Cannot tell the format of {path!r}: it is not safetensors, a torch pickle, .npz, "
        "or a Keras weights file. Is the file complete (not an HTML error page or a partial download)?"
    )


def _read_safetensors(path):
    from safetensors import numpy as st_numpy

    try:
        return dict(st_numpy.load_file(path))
    except (TypeError, ValueError):
        pass
    # bfloat16 tensors have no NumPy dtype: widen them to float32 by hand.
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    widths = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I8": "i1", "U8": "u1", "BOOL": "?"}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif info["dtype"] in widths:
            array = np.frombuffer(raw, dtype=widths[info["dtype"]])
        else:
            raise CheckpointFormatError(f"Unsupported safetensors dtype {info['dtype']} for {name!r} in {path!r}.")
        tensors[name] = array.reshape(info["shape"]).copy()
    return tensors


def _read_torch(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading the torch checkpoint {path!r} needs PyTorch: `pip install torch` "
            "(or convert it to .safetensors first)."
        ) from error
    import argparse
    import contextlib

    # Training scripts (e.g. Conditional DETR's main.py) save their argparse Namespace beside the
    # weights; weights_only refuses any class it is not told about.
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        with allow([argparse.Namespace]) if allow else contextlib.nullcontext():
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointFormatError(f"torch could not read {path!r}: {error}") from error
    # Official repositories wrap the state dict: {"model": ...} (DeiT, DETR), {"state_dict": ...}.
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    tensors = {}
    for name, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach()
            if value.dtype == torch.bfloat16:
                value = value.float()
            tensors[name] = value.numpy()
    return tensors


def _read_npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def read_checkpoint(path):
    """Reads a state-dict-like checkpoint into `(format, {name: np.ndarray})`.

    Keras weights files are not read here (they load through Keras itself);
    for them the dict is None.

    Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, a=np.zeros(2))
    >>> fmt, tensors = read_checkpoint(path)
    >>> fmt, sorted(tensors)
    ('npz', ['a'])
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    try:
        if fmt == SAFETENSORS:
            return fmt, _read_safetensors(path)
        if fmt == TORCH:
            return fmt, _read_torch(path)
        if fmt == NPZ:
            return fmt, _read_npz(path)
    except (CheckpointFormatError, ImportError):
        raise
    except Exception as error:  # each reader has its own error types (SafetensorError, UnpicklingError...)
        raise CheckpointFormatError(f"{path!r} is a {fmt} file but could not be read: {error}") from error
    return fmt, None
