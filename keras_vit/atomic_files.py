"""Files written whole or not at all: a kill at any moment leaves the old file or the new one.

Everything the package writes (models saved by the CLI and the examples, results, downloads)
goes through `atomic_path`: the writer fills a temporary file in the destination's folder,
which is flushed to disk and renamed onto the destination. A rename within one file system
is atomic, so readers never see a partial or empty file; a failed or killed writer leaves at
most a hidden temporary file behind, never a damaged destination.

Example:
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "result.json")
>>> with atomic_open(path, "w") as f:
...     _ = f.write('{"accuracy": 0.98}')
>>> open(path).read()
'{"accuracy": 0.98}'
"""

import contextlib
import os
import tempfile


def _fsync_path(path):
    """Flushes a written file (or a folder's entries) to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:  # some file systems refuse to open folders; the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path` (same extension) to write to; on success the
    file is synced and renamed onto `path`, on any error it is removed and `path` is untouched.

    Example:
    >>> import keras, os, tempfile
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> with atomic_path(path) as temporary:
    ...     model.save(temporary)
    >>> sorted(os.listdir(os.path.dirname(path)))
    ['model.keras']
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    # Keras and TFLite choose a format from the extension: the temporary file keeps it.
    extension = name[name.index(".", 1):] if "." in name[1:] else ""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{extension}", dir=folder)
    os.close(descriptor)
    try:
        yield temporary
        _fsync_path(temporary)
        os.replace(temporary, path)
        _fsync_path(folder)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """`open(path, mode)` for writing, through `atomic_path`: the file appears whole or not at all."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open writes new files; mode must contain 'w', got {mode!r}.")
    with atomic_path(path) as temporary:
        with open(temporary, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def save_model(model, path):
    """`model.save(path)` through `atomic_path`: a killed save leaves the previous file intact.

    Example:
    >>> import keras, os, tempfile
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_model(model, path)
    >>> keras.saving.load_model(path).count_params()
    3
    """
    with atomic_path(path) as temporary:
        model.save(temporary)
