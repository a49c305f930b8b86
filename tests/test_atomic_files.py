"""Files the package writes appear whole or not at all, also when the writer is killed."""

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import keras
import numpy as np
import pytest

from conftest import BACKEND
from keras_vit.atomic_files import atomic_open, save_model

# The kill tests start other Python processes; what they test does not depend on the backend.
subprocess_test = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="backend-independent file writing; the kill tests run once, in the TensorFlow run"
)


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("new, half")
            raise RuntimeError("the writer fails half way")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_save_model_replaces_the_file_whole(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    save_model(model, path)
    save_model(model, path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.layers[0].kernel),
                                  keras.ops.convert_to_numpy(model.layers[0].kernel))
    assert os.listdir(tmp_path) == ["model.keras"]


_SAVE_LOOP = textwrap.dedent(
    """
    import json, sys, keras
    from keras_vit.atomic_files import atomic_open, save_model
    path, kind = sys.argv[1], sys.argv[2]
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(64)])
    print("ready", flush=True)
    for step in range(10 ** 6):
        if kind == "keras":
            save_model(model, path)
        else:
            with atomic_open(path, "w") as f:
                json.dump({"step": step, "values": list(range(20000))}, f)
    """
)


@subprocess_test
@pytest.mark.parametrize("kind", ["keras", "json"])
def test_a_writer_killed_at_any_moment_leaves_a_whole_file(tmp_path, kind):
    path = str(tmp_path / ("model.keras" if kind == "keras" else "result.json"))
    rng = np.random.default_rng(0)
    for attempt in range(3):
        child = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, path, kind], stdout=subprocess.PIPE,
                                 env={**os.environ, "KERAS_BACKEND": "tensorflow"})
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + float(rng.uniform(0.0, 1.0)))  # several saves in, killed mid-write
        child.send_signal(signal.SIGKILL)
        child.wait()
        if kind == "keras":
            assert keras.saving.load_model(path).count_params() == 64 * 256 + 256 + 256 * 64 + 64
        else:
            with open(path) as f:
                assert len(json.load(f)["values"]) == 20000
        # A killed writer may leave its hidden temporary file, never a damaged destination.
        assert all(name == os.path.basename(path) or name.startswith(".") for name in os.listdir(tmp_path))


class _SlowFileHandler(http.server.BaseHTTPRequestHandler):
    """Serves `body` in small pieces, slowly, so that a download can be killed half way."""

    def __init__(self, body, *args, **kwargs):
        self.body = body
        super().__init__(*args, **kwargs)

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            for start in range(0, len(self.body), 4096):
                self.wfile.write(self.body[start:start + 4096])
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


_DOWNLOAD = textwrap.dedent(
    """
    import sys
    from keras_vit.weights import published
    # An entry with only a url (no hub repository) downloads through keras.utils.get_file.
    published.register_published({**published.timm_entry("test_model.v1", "vit", 10, 32, (0.5,) * 3, (0.5,) * 3),
                                  "url": sys.argv[1], "repo_id": None})
    print(published.fetch_published("test_model.v1"), flush=True)
    """
)


@subprocess_test
def test_a_download_killed_half_way_is_never_used(tmp_path):
    body = os.urandom(400_000)  # about 1 s at the handler's pace
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_SlowFileHandler, body))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/model.safetensors"
    cache = tmp_path / "cache"
    env = {**os.environ, "KERAS_VIT_CACHE": str(cache), "KERAS_BACKEND": "tensorflow"}
    target = cache / "test_model.v1.safetensors"
    try:
        child = subprocess.Popen([sys.executable, "-c", _DOWNLOAD, url], env=env, stdout=subprocess.PIPE)
        deadline = time.time() + 120
        # Wait until the download has started: its hidden temporary file exists in the cache.
        while not (cache.exists() and any(cache.glob(".*"))) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not target.exists(), "a partial download was left where the cache looks"
        done = subprocess.run([sys.executable, "-c", _DOWNLOAD, url], env=env, capture_output=True, timeout=900)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert target.read_bytes() == body
    finally:
        server.shutdown()


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    # mkstemp's temporary file is private (0o600); the renamed file must not be: a model or an export
    # is read by other users and services. New files get 0o666 less the umask, replaced files keep theirs.
    previous = os.umask(0o022)
    try:
        new = tmp_path / "new.json"
        with atomic_open(new, "w") as f:
            f.write("{}")
        assert oct(os.stat(new).st_mode & 0o777) == oct(0o644)
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        os.chmod(kept, 0o640)
        with atomic_open(kept, "w") as f:
            f.write("new")
        assert oct(os.stat(kept).st_mode & 0o777) == oct(0o640) and kept.read_text() == "new"
    finally:
        os.umask(previous)
