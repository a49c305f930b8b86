"""Weights named as on the hub ("timm/<name>", "hf-hub:timm/<name>", "owner/repo"), through
huggingface_hub and its cache: a pre-filled cache used offline, and a local hub server whose first
downloads are cut half way (a partial file is never used)."""

import hashlib
import http.server
import os
import shutil
import threading

from huggingface_hub import constants as hub_constants  # imported now: it reads HF_HUB_OFFLINE once, at import
import numpy as np
import pytest

import keras_vit
from conftest import fixture_path, to_numpy
from keras_vit.weights import published

TINY = dict(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=192, num_classes=10)
NAME = "vit_tiny_test_fixture.in1k"  # a preset registered for these tests, as a family registers its own
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def preset():
    published.register_published(published.timm_entry(NAME, "vit", 10, 32, (0.5,) * 3, (0.5,) * 3))
    yield NAME
    del published.PUBLISHED_WEIGHTS[NAME]


@pytest.fixture
def hub_environment(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path, the package's own cache elsewhere and empty."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("KERAS_VIT_CACHE", str(tmp_path / "keras_vit_cache"))
    return tmp_path / "hf" / "hub"


def fill_hub_cache(hub_cache, repo_id, filename, source):
    """Writes `source` into a cache in huggingface_hub's layout (blobs, snapshots, refs)."""
    folder = hub_cache / ("models--" + repo_id.replace("/", "--"))
    data = open(source, "rb").read()
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snapshot = folder / "snapshots" / COMMIT / filename
    snapshot.parent.mkdir(parents=True)
    shutil.copyfile(blob, snapshot)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def reference():
    model = keras_vit.VisionTransformer(**TINY, weights=fixture_path("vit_tiny.safetensors"))
    return [to_numpy(w) for w in model.weights]


def assert_same_weights(model, reference):
    for weight, expected in zip(model.weights, reference):
        np.testing.assert_array_equal(to_numpy(weight), expected)


@pytest.mark.parametrize("spelling", ["{}", "timm/{}", "hf-hub:timm/{}"])
def test_a_prefilled_hub_cache_is_used_offline(spelling, preset, hub_environment, monkeypatch, reference):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_hub_cache(hub_environment, f"timm/{NAME}", "model.safetensors", fixture_path("vit_tiny.safetensors"))
    model = keras_vit.VisionTransformer(**TINY, weights=spelling.format(NAME))
    assert_same_weights(model, reference)


def test_a_hub_repository_not_in_the_table_is_read_from_the_cache(hub_environment, monkeypatch, reference):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_hub_cache(hub_environment, "someone/tiny-vit", "model.safetensors", fixture_path("vit_tiny.safetensors"))
    assert_same_weights(keras_vit.VisionTransformer(**TINY, weights="someone/tiny-vit"), reference)


def test_a_release_file_preset_is_read_from_the_package_cache(hub_environment, monkeypatch, reference):
    """A preset with only a `url` (a release file, no hub repository) resolves by its name."""
    name = "vit_tiny_release_file_fixture"
    hub_fields = ("repo_id", "repo_filename")
    entry = published.timm_entry(name, "vit", 10, 32, (0.5,) * 3, (0.5,) * 3)
    published.register_published({key: value for key, value in entry.items() if key not in hub_fields})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        os.makedirs(published.cache_dir())
        cached = os.path.join(published.cache_dir(), f"{name}.safetensors")
        shutil.copyfile(fixture_path("vit_tiny.safetensors"), cached)
        assert_same_weights(keras_vit.VisionTransformer(**TINY, weights=name), reference)
    finally:
        del published.PUBLISHED_WEIGHTS[name]


def test_offline_with_an_empty_cache_is_one_short_error(preset, hub_environment, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError) as error:
        keras_vit.VisionTransformer(**TINY, weights=f"timm/{NAME}")
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message and f"timm/{NAME}/resolve/main/model.safetensors" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no chained traceback
    assert len(message.splitlines()) <= 4


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """The two requests huggingface_hub makes for a file: HEAD (commit, etag, size), then GET
    (with a Range when resuming). While `cuts` > 0, a GET sends half the file and closes."""

    files = {}
    cuts = 0

    def _file(self):
        for suffix, data in self.files.items():
            if self.path.split("?")[0].endswith(suffix):
                return data
        return None

    def _headers(self, data, status=200, start=0):
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()

    def do_HEAD(self):
        data = self._file()
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self._headers(data)

    def do_GET(self):
        data = self._file()
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self._headers(data, 206 if start else 200, start)
        if type(self).cuts > 0:
            type(self).cuts -= 1
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection dies half way
            return
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.mark.skipif(hub_constants.is_offline_mode(),
                    reason="HF_HUB_OFFLINE was set when huggingface_hub was imported: no download can be tried")
def test_a_download_cut_half_way_is_never_used(preset, hub_environment, monkeypatch, reference):
    data = open(fixture_path("vit_tiny.safetensors"), "rb").read()
    _HubHandler.files = {f"/timm/{NAME}/resolve/main/model.safetensors": data}
    _HubHandler.cuts = 100  # every GET is cut until the server heals
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with pytest.raises(ConnectionError) as error:
            keras_vit.VisionTransformer(**TINY, weights=f"timm/{NAME}")
        assert error.value.__cause__ is None
        snapshots = list(hub_environment.glob("models--timm--*/snapshots/*/*"))
        assert snapshots == [], "a partial download is where the cache looks"
        _HubHandler.cuts = 0
        model = keras_vit.VisionTransformer(**TINY, weights=f"hf-hub:timm/{NAME}")
        assert_same_weights(model, reference)
        (snapshot,) = hub_environment.glob("models--timm--*/snapshots/*/model.safetensors")
        assert snapshot.read_bytes() == data
        with pytest.raises(FileNotFoundError, match="has no file"):
            keras_vit.VisionTransformer(**TINY, weights="someone/missing-repo")
    finally:
        server.shutdown()
