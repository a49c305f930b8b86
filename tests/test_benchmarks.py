"""benchmarks/throughput.py runs end to end (--quick: tiny models) and prints what it promises.

The script starts its own subprocesses with the backend it is given, so one run covers it: the
tests run once, on the PyTorch backend, where every peer takes part (keras-hub and timm), and are
skipped on the others (a backend-independent subprocess test). The run is module-scoped: a handful
of subprocesses (matmul limit, FLOP count, one worker per implementation), DeiT-S/16's tiny stand-in.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import BACKEND

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "throughput.py")
TIMM_PATH = os.environ.get("TIMM_PATH", "/tmp/timmpkg")
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def timm_available():
    return importlib.util.find_spec("timm") is not None or os.path.isdir(os.path.join(TIMM_PATH, "timm"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if BACKEND != "torch":
        pytest.skip("backend-independent subprocess test: runs once, on the torch backend (every peer there)")
    if importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras-hub is not installed (pip install keras-vit[bench]): the benchmark's peer is missing")
    output = tmp_path_factory.mktemp("throughput") / "results.txt"
    command = [sys.executable, SCRIPT, "--quick", "--models", "deit_s16", "--rounds", "1", "--batch-size", "2",
               "--matmul-repeats", "1", "--output", str(output)]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=REPO)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, output.read_text()


def ratio(stdout, peer, mode):
    match = re.search(rf"^RATIO deit_s16 {mode} keras_vit/{peer} = {NUMBER}x$", stdout, re.M)
    assert match, f"no {mode} ratio against {peer} in:\n{stdout}"
    return float(match.group(1))


def test_ratios_against_keras_hub_parse(run):
    stdout, _ = run
    for mode in ("inference", "training"):
        assert ratio(stdout, "keras-hub", mode) > 0


def test_ratios_against_timm_parse_on_torch(run):
    if not timm_available():
        pytest.skip(f"timm is not importable and no unpacked timm at TIMM_PATH={TIMM_PATH}")
    stdout, _ = run
    for mode in ("inference", "training"):
        assert ratio(stdout, "timm", mode) > 0
    assert "timm with torchvision placeholder" in stdout or "timm imported as installed" in stdout


def test_table_rows_and_limit_parse(run):
    stdout, _ = run
    limit = re.search(rf"^LIMIT f32 matmul {BACKEND}: {NUMBER} GFLOP/s", stdout, re.M)
    assert limit and float(limit.group(1)) > 0, stdout
    for impl in ("keras_vit", "keras-hub"):
        row = re.search(rf"^deit_s16 +{impl} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} ", stdout, re.M)
        assert row, f"no table row for {impl} in:\n{stdout}"
        infer, train, infer_rss, train_rss = map(float, row.groups())
        assert infer > 0 and train > 0 and 0 < infer_rss <= train_rss
    assert re.search(rf"^FLOPS deit_s16 32x32: {NUMBER} GFLOP", stdout, re.M), stdout


def test_results_file_states_machine_backend_versions_and_load(run):
    stdout, written = run
    assert written.strip() == stdout.strip()
    for needed in ("machine: ", " cores", f"backend: {BACKEND}", "keras-hub 0.32", "load average before: ",
                   "load average after: ", "weights: ", "QUICK mode"):
        assert needed in written, needed
