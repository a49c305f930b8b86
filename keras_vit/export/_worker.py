"""Subprocess entry: `KERAS_BACKEND=tensorflow python -m keras_vit.export._worker WORKDIR`.

Reads WORKDIR/request.json (written by `keras_vit.export.exporter`), loads each
`.keras` model under the TensorFlow backend, writes every requested file and
answers in WORKDIR/result.json (SavedModel outputs in WORKDIR/outputs_{i}.npz).
"""

import importlib
import json
import os
import sys


def _load_arrays(workdir, name):
    import numpy as np

    if name is None:
        return None
    with np.load(os.path.join(workdir, name)) as data:
        return {key: data[key] for key in data.files}


def main(workdir):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    with open(os.path.join(workdir, "request.json")) as f:
        request = json.load(f)
    for module in request.get("modules", []):
        try:  # modules that define the model's custom layers, so the .keras file loads
            importlib.import_module(module)
        except Exception as error:
            print(f"keras_vit export worker: could not import {module}: {error}", file=sys.stderr)

    import keras
    import numpy as np

    import keras_vit  # noqa: F401  (registers the package's layers)
    from keras_vit.export import tf_conversion

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("the export worker must run with KERAS_BACKEND=tensorflow")

    models, load_errors = [], []
    for path in request["models"]:
        try:
            models.append(keras.saving.load_model(path, compile=False))
            load_errors.append(None)
        except Exception as error:
            models.append(None)
            load_errors.append(
                f"Could not rebuild the model under the TensorFlow backend ({type(error).__name__}: {error}). "
                "Custom layers must be registered with keras.saving.register_keras_serializable in an "
                "importable module (not __main__)."
            )
    jobs, results, index_of = [], [None] * len(request["jobs"]), []
    for i, job in enumerate(request["jobs"]):
        if load_errors[job["model"]]:
            results[i] = {"ok": False, "type": "ExportError", "message": load_errors[job["model"]]}
            continue
        job = dict(job)
        job["representative"] = _load_arrays(workdir, job.get("representative"))
        job["samples"] = _load_arrays(workdir, job.get("samples"))
        jobs.append(job)
        index_of.append(i)
    for i, result in zip(index_of, tf_conversion.run_jobs(models, jobs)):
        outputs = result.pop("outputs", None)
        if outputs is not None:
            result["outputs"] = f"outputs_{i}.npz"
            np.savez(os.path.join(workdir, result["outputs"]), **outputs)
        results[i] = result
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump({"results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1])
