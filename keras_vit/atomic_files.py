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
import errno
import glob
import os
import shutil
import tempfile
import uuid


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


def _current_umask():
    try:  # Linux says it without changing it (os.umask can only read it by setting it)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path, temporary):
    """The permissions `path` should end with: those of the file it replaces, else what `open()` would
    give a new file (0o666 less the umask). mkstemp makes its file 0o600, private to its owner, which a
    saved model, an export or a result must not be."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        default = 0o777 if os.path.isdir(temporary) else 0o666
        return default & ~_current_umask()


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
    parent = folder
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"Cannot write {path}: {parent} is a file, not a folder. Choose another path.")
    os.makedirs(folder, exist_ok=True)
    # Keras and TFLite choose a format from the extension: the temporary file keeps it.
    extension = name[name.index(".", 1):] if "." in name[1:] else ""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{extension}", dir=folder)
    os.close(descriptor)
    try:
        yield temporary
        _fsync_path(temporary)
        os.chmod(temporary, _mode_for(path, temporary))
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
    if not os.fspath(path).endswith((".keras", ".h5")):
        # Checked here: Keras' own message would name the temporary file, not `path`.
        raise ValueError(
            f"Cannot save a model to {path}: the file name must end in .keras (the native Keras format) "
            "or .h5; use keras_vit.export_saved_model for a SavedModel."
        )
    with atomic_path(path) as temporary:
        model.save(temporary)


def replace_directory(source, path, attempts=100):
    """Renames the complete directory `source` onto `path`, replacing the directory there.

    A directory cannot be renamed onto a non-empty one, so the previous one is first renamed
    aside (`<path>.old-*`) and removed after; `source` must be in `path`'s folder (one file
    system). Two processes replacing the same path at the same moment can interleave those two
    renames: the loser's rename fails (ENOTEMPTY, EEXIST) or finds the previous directory already
    gone; it then moves the winner's directory aside and tries again, so the last writer wins,
    `path` always ends as one complete directory and each process removes the `.old-*` it made.

    Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for version in ("1", "2"):
    ...     new = os.path.join(folder, ".export.tmp")
    ...     os.makedirs(new)
    ...     with open(os.path.join(new, "version"), "w") as f:
    ...         _ = f.write(version)
    ...     replace_directory(new, os.path.join(folder, "export"))
    >>> os.listdir(folder), open(os.path.join(folder, "export", "version")).read()
    (['export'], '2')
    """
    olds = []
    try:
        for _ in range(attempts):
            if os.path.exists(path):
                old = f"{path}.old-{uuid.uuid4().hex[:8]}"
                try:
                    os.replace(path, old)
                    olds.append(old)
                except FileNotFoundError:  # another writer moved it aside first
                    pass
            try:
                os.replace(source, path)
                _fsync_path(os.path.dirname(os.path.abspath(path)))
                # `.old-*` left by a writer killed between its two renames: garbage now that a
                # complete directory is in place (a live writer's rmtree of its own tolerates this).
                olds.extend(glob.glob(glob.escape(path) + ".old-*"))
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.isdir(path):
                    raise
                # Another writer put its directory in between: move it aside and try again.
        raise OSError(
            f"Could not replace {path}: other processes kept writing there for {attempts} attempts. "
            "Write to different paths, or one at a time."
        )
    finally:
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
