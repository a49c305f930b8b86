"""Two processes exporting to the same SavedModel path at the same moment.

The install step (`keras_vit.atomic_files.replace_directory`: rename the previous export aside, rename the new one in) races when two
processes run it together; the result must be one complete export, no raw OSError and no
`.old-*` directory left behind.
"""

import os
import subprocess
import sys
import textwrap
import time

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOMIC_FILES = os.path.join(REPO, "keras_vit", "atomic_files.py")

# Each writer installs many complete directories (three files that name the writer) onto one path;
# both start when the test says "go", once both are ready.
INSTALL_WRITER = textwrap.dedent(
    """
    import importlib.util, os, sys, time
    # The module by its file: it needs only the standard library, so the writers start at once.
    spec = importlib.util.spec_from_file_location("atomic_files", sys.argv[4])
    atomic_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic_files)
    path, writer, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    folder, name = os.path.split(path)
    open(path + f".ready-{writer}", "w").close()
    while not os.path.exists(path + ".go"):
        time.sleep(0.001)
    for i in range(rounds):
        temp = os.path.join(folder, f".{name}.tmp-{writer}-{i}")
        os.makedirs(os.path.join(temp, "variables"))
        for part in ("saved_model.pb", "fingerprint.pb", os.path.join("variables", "variables.index")):
            with open(os.path.join(temp, part), "w") as f:
                f.write(f"{writer}-{i}")
        atomic_files.replace_directory(temp, path)
    """
)


def _run_together(scripts, timeout, ready_files=(), go_file=None):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    processes = [
        subprocess.Popen([sys.executable, "-c", *script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)  # fmt: skip
        for script in scripts
    ]
    if go_file:
        deadline = time.time() + timeout
        while not all(os.path.exists(f) for f in ready_files) and time.time() < deadline:
            if any(p.poll() is not None for p in processes):
                break
            time.sleep(0.01)
        for ready in ready_files:
            if os.path.exists(ready):
                os.remove(ready)
        open(go_file, "w").close()
    outputs = [process.communicate(timeout=timeout) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]


def _assert_one_complete_export(folder, name, parts):
    assert sorted(os.listdir(folder)) == [name], "leftover .old-* or temporary directories"
    contents = set()
    for part in parts:
        with open(os.path.join(folder, name, part)) as f:
            contents.add(f.read())
    assert len(contents) == 1, f"the export mixes files of different writers: {contents}"


def test_two_processes_replacing_one_directory(tmp_path):
    path = str(tmp_path / "sm")
    writers = ("a", "b")
    _run_together(
        [(INSTALL_WRITER, path, writer, "200", ATOMIC_FILES) for writer in writers], timeout=120,
        ready_files=[f"{path}.ready-{w}" for w in writers], go_file=path + ".go",
    )  # fmt: skip
    os.remove(path + ".go")
    _assert_one_complete_export(
        str(tmp_path), "sm", ["saved_model.pb", "fingerprint.pb", os.path.join("variables", "variables.index")]
    )


def test_a_writer_killed_between_its_renames_leaves_nothing_behind(tmp_path):
    from keras_vit.atomic_files import replace_directory

    # Killed after renaming the previous export aside, before renaming its own in.
    os.makedirs(tmp_path / "sm.old-0badc0de" / "variables")
    (tmp_path / ".sm.tmp-next").mkdir()
    (tmp_path / ".sm.tmp-next" / "saved_model.pb").write_text("next")
    replace_directory(str(tmp_path / ".sm.tmp-next"), str(tmp_path / "sm"))
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    assert (tmp_path / "sm" / "saved_model.pb").read_text() == "next"


EXPORT_WRITER = textwrap.dedent(
    """
    import sys, time
    import keras_vit
    path, start = sys.argv[1], float(sys.argv[2])
    model = keras_vit.VisionTransformer(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2,
                                        mlp_dim=16, num_classes=3)
    while time.time() < start:
        time.sleep(0.001)
    print(keras_vit.export_saved_model(model, path, num_samples=2).max_abs_diff)
    """
)


@pytest.mark.slow  # two export subprocesses: about a minute on two busy cores
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel export runs on TensorFlow (other backends hand it to a TensorFlow subprocess); "
    "the race itself is tested on every backend above",
)
def test_two_concurrent_saved_model_exports(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "sm")
    start = time.time() + 15.0
    _run_together([(EXPORT_WRITER, path, str(start)) for _ in range(2)], timeout=900)
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures["serving_default"](images=tf.zeros((1, 16, 16, 3)))
    assert tuple(outputs["output_0"].shape) == (1, 3)
