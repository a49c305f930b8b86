"""Writes SavedModel and TFLite files from a model of any backend, checks them, installs them.

Every job is written to a temporary path in its destination's directory, run on
sample digits and compared with the Keras model; only a file that passes
replaces the destination (`os.replace`), so a failed export never leaves a
half-written file or destroys an older good one. Under the TensorFlow backend
the files are written in-process; under JAX and PyTorch the model is saved as
`.keras` and all jobs for it run in one TensorFlow-backend subprocess.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import keras
import numpy as np

from keras_vit.atomic_files import replace_directory
from keras_vit.export import signature, verification
from keras_vit.export.litert_runtime import run_tflite, tflite_ops
from keras_vit.export.report import ERROR_TYPES, ExportError, ExportReport, ExportVerificationError

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "dynamic", "int8")
SAVED_MODEL_PLATFORMS = ("cpu", "gpu", "tpu")
SAVED_MODEL_NOTE = (
    "plain TensorFlow graph (built under the TensorFlow backend, no XLA custom calls): "
    "TF Serving and tf.saved_model.load run it on CPU and GPU, and on TPU through TensorFlow's TPU runtime"
)
TFLITE_PLATFORMS = ("litert-cpu-xnnpack", "android", "ios", "linux")
MAX_REPRESENTATIVE_SAMPLES = 200
DYNAMIC_BATCH_NOTE = (
    "dynamic batch size: under XNNPACK (ai-edge-litert 2.3.0) files with a dynamic batch sometimes give wrong "
    "outputs after the first invocation (upstream; cf. google-ai-edge/LiteRT#1043); the default batch_size=1 "
    "gives a static graph that does not"
)


@dataclasses.dataclass
class ExportJob:
    """One file to write: `model` to `path` as `format` ("saved_model" or "tflite").

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
    ...                                     num_heads=3, mlp_dim=96, num_classes=10)
    >>> jobs = [ExportJob(model, "saved_model", "/tmp/vit_sm"), ExportJob(model, "tflite", "/tmp/vit.tflite")]
    >>> reports = export_many(jobs)  # doctest: +SKIP
    """

    model: object
    format: str
    path: str
    quantization: str = None
    representative_data: object = None
    min_top1_agreement: float = None
    input_shape: tuple = None
    batch_size: int = 1


def _check_job(job):
    if job.format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {job.format!r}.")
    if job.quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {job.quantization!r}.")
    if job.format == "saved_model" and job.quantization is not None:
        raise ValueError("SavedModel export writes float32 only; quantization applies to TFLite.")
    if job.quantization == "int8" and job.representative_data is None:
        raise ValueError(
            "int8 quantization calibrates activation ranges and needs representative_data: "
            "about 100 typical inputs, e.g. export_tflite(model, path, 'int8', representative_data=images)."
        )
    if not isinstance(job.model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(job.model).__name__}.")
    path = os.path.abspath(os.fspath(job.path))
    if job.format == "tflite" and os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give a .tflite file path.")
    if job.format == "saved_model" and os.path.isfile(path):
        raise ValueError(f"{path} is a file; a SavedModel is a directory, give a directory path.")
    if job.input_shape is not None:
        job.input_shape = tuple(int(d) for d in job.input_shape)
    specs = signature.input_specs(job.model, job.input_shape)
    if job.format == "tflite":
        for name, shape, _ in specs:
            if any(d is None for d in shape[1:]):
                raise ValueError(
                    f"Input '{name}' of {job.model.name} has an unknown size {shape}; a .tflite file needs a fixed "
                    "one: pass input_shape=(height, width, 3)."
                )
    return path


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def representative_arrays(model, data, limit=MAX_REPRESENTATIVE_SAMPLES):
    """{input name: (N, ...) array} from an array, a dict, a list/iterable of batches or a tf.data.Dataset.

    Batches may be (inputs, labels) pairs; labels are dropped. At most `limit` samples are kept.
    """
    names = [name for name, _, _ in signature.input_specs(model)]

    def as_dict(batch):
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and not isinstance(batch[0], (int, float)):
            batch = batch[0]  # (inputs, labels)
        if isinstance(batch, dict):
            return {signature._clean(k): _numpy(v) for k, v in batch.items()}
        if len(names) != 1:
            raise ValueError(f"The model has inputs {names}; give representative data as dicts of arrays.")
        return {names[0]: _numpy(batch)}

    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    if isinstance(data, dict) or hasattr(data, "shape"):
        batches = [as_dict(data)]
    else:
        batches, count = [], 0
        for batch in data:
            batch = as_dict(batch)
            if next(iter(batch.values())).ndim == len(signature.input_specs(model)[0][1]) - 1:
                batch = {k: v[None] for k, v in batch.items()}  # a single sample
            batches.append(batch)
            count += len(next(iter(batch.values())))
            if count >= limit:
                break
    if not batches:
        raise ValueError("representative_data is empty.")
    arrays = {}
    for name, _, dtype in signature.input_specs(model):
        if name not in batches[0]:
            raise ValueError(f"representative_data has no '{name}' input (it has {sorted(batches[0])}).")
        arrays[name] = np.concatenate([b[name] for b in batches])[:limit].astype(dtype)
    return arrays


def _temp_path(path):
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    return os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:8]}")


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def _install(temp, path):
    """Moves a verified temp file or directory onto `path`, replacing what was there."""
    if os.path.isdir(temp):
        replace_directory(temp, path)
    else:
        os.replace(temp, path)


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def _custom_modules(model):
    modules, stack = set(), [model]
    while stack:
        layer = stack.pop()
        modules.add(type(layer).__module__)
        stack.extend(getattr(layer, "_layers", None) or getattr(layer, "layers", None) or [])
    return sorted(m for m in modules if not m.startswith(("keras.", "keras_vit", "builtins", "__main__")))


def _run_in_subprocess(models, jobs, timeout):
    """Saves the models as .keras and runs tf_conversion.run_jobs in a TensorFlow-backend subprocess."""
    workdir = tempfile.mkdtemp(prefix="keras_vit_export_")
    try:
        request = {"models": [], "jobs": [], "modules": sorted({m for model in models for m in _custom_modules(model)})}
        for i, model in enumerate(models):
            path = os.path.join(workdir, f"model_{i}.keras")
            model.save(path)
            request["models"].append(path)
        for i, job in enumerate(jobs):
            entry = {k: job[k] for k in ("model", "format", "path", "quantization", "input_shape", "batch_size")}
            for key in ("representative", "samples"):
                if job.get(key) is not None:
                    entry[key] = f"{key}_{i}.npz"
                    np.savez(os.path.join(workdir, entry[key]), **job[key])
            request["jobs"].append(entry)
        with open(os.path.join(workdir, "request.json"), "w") as f:
            json.dump(request, f)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        paths = [package_root] + [p for p in sys.path if p and os.path.isdir(p)]
        env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=os.pathsep.join(paths),
                   TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        try:
            process = subprocess.run(
                [sys.executable, "-m", "keras_vit.export._worker", workdir],
                env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"The TensorFlow export worker took longer than {timeout} s.") from None
        result_path = os.path.join(workdir, "result.json")
        if process.returncode != 0 or not os.path.exists(result_path):
            tail = (process.stderr or process.stdout or "")[-3000:]
            raise ExportError(f"The TensorFlow export worker failed (exit code {process.returncode}):\n{tail}")
        with open(result_path) as f:
            results = json.load(f)["results"]
        for result in results:
            if result.get("outputs"):
                with np.load(os.path.join(workdir, result["outputs"])) as data:
                    result["outputs"] = {k: data[k] for k in data.files}
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def export_many(jobs, num_samples=None, raise_errors=True, timeout=1800):
    """Writes several exports at once (one TensorFlow subprocess for all), each checked.

    Args:
        jobs: `ExportJob`s.
        num_samples: digits compared per model (default 16; 64 when a job is int8).
        raise_errors: raise the first failure; if False, failed jobs give their
            exception in place of a report (the other jobs are still installed).

    Returns:
        One `ExportReport` (or exception) per job, in order.
    """
    paths = [_check_job(job) for job in jobs]
    models, model_index = [], {}
    for job in jobs:
        if id(job.model) not in model_index:
            model_index[id(job.model)] = len(models)
            models.append(job.model)
    # One sample set and reference per (model, input shape); 64 digits when a job is int8.
    variant_of, samples, references = {}, [], []
    for job in jobs:
        key = (id(job.model), job.input_shape)
        if key not in variant_of:
            variant_of[key] = len(samples)
            wants_int8 = any(j.quantization == "int8" for j in jobs if (id(j.model), j.input_shape) == key)
            count = num_samples or (64 if wants_int8 else 16)
            inputs = verification.sample_inputs(job.model, count, input_shape=job.input_shape)
            samples.append(inputs)
            outputs = job.model(signature.pack_inputs(job.model, inputs), training=False)
            references.append(signature.to_numpy_dict(outputs))

    temps = [_temp_path(path) for path in paths]
    requests = []
    for job, temp in zip(jobs, temps):
        v = variant_of[(id(job.model), job.input_shape)]
        rep = None if job.representative_data is None else representative_arrays(job.model, job.representative_data)
        requests.append({"model": model_index[id(job.model)], "variant": v, "format": job.format, "path": temp,
                         "quantization": job.quantization, "input_shape": job.input_shape, "representative": rep,
                         "batch_size": job.batch_size if job.format == "tflite" else None,
                         "samples": samples[v] if job.format == "saved_model" else None})
    try:
        if keras.backend.backend() == "tensorflow":
            from keras_vit.export import tf_conversion

            results = tf_conversion.run_jobs(models, requests)
        else:
            results = _run_in_subprocess(models, requests, timeout)
        reports = []
        for job, path, temp, request, result in zip(jobs, paths, temps, requests, results):
            try:
                reports.append(_finish(job, path, temp, request, result, samples, references))
            except Exception as error:
                _remove(temp)
                if raise_errors:
                    raise
                reports.append(error)
        return reports
    finally:
        for temp in temps:
            _remove(temp)


def _finish(job, path, temp, request, result, samples, references):
    """Checks one written file against the Keras outputs and installs it."""
    if not result["ok"]:
        raise ERROR_TYPES.get(result["type"], ExportError)(result["message"])
    m = request["variant"]
    ops = ()
    if job.format == "tflite":
        ops = tuple(tflite_ops(temp))
        bad = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
        if bad:
            raise ERROR_TYPES["UnsupportedOpError"](f"The .tflite file holds non-builtin ops {bad}.")
        outputs = run_tflite(temp, samples[m], batch_size=job.batch_size or 1)
    else:
        outputs = result["outputs"]
    per_output = verification.compare(references[m], outputs)
    max_diff = max(entry["max_abs_diff"] for entry in per_output.values())
    agreements = [e["top1_agreement"] for e in per_output.values() if "top1_agreement" in e]
    agreement = min(agreements) if agreements else None
    tolerance = verification.tolerance_for(job.quantization, per_output)
    quant = job.quantization or "float32"
    if tolerance is not None and not max_diff <= tolerance:
        raise ExportVerificationError(
            f"The {quant} {job.format} file differs from the Keras model by up to {max_diff:.3g} "
            f"(tolerance {tolerance:.3g}) on {len(next(iter(samples[m].values())))} digit images; "
            f"per output: {per_output}. Nothing was written to {path}."
        )
    if job.min_top1_agreement is not None and (agreement is None or agreement < job.min_top1_agreement):
        raise ExportVerificationError(
            f"The {quant} {job.format} file agrees with the Keras model's top-1 class on {agreement} of the "
            f"digit images, below min_top1_agreement={job.min_top1_agreement}. Nothing was written to {path}."
        )
    backend = keras.backend.backend()
    notes = list(result.get("notes", []))
    if job.format == "saved_model":
        platforms = SAVED_MODEL_PLATFORMS
        notes.append(SAVED_MODEL_NOTE + (f"; exported from the {backend} backend" if backend != "tensorflow" else ""))
    else:
        platforms = TFLITE_PLATFORMS
        if job.batch_size is None:
            notes.append(DYNAMIC_BATCH_NOTE)
    report = ExportReport(
        path=path,
        format=job.format,
        quantization=job.quantization,
        source_backend=backend,
        max_abs_diff=max_diff,
        tolerance=tolerance,
        top1_agreement=agreement,
        num_samples=len(next(iter(samples[m].values()))),
        file_size_bytes=_size(temp),
        input_names=tuple(samples[m]),
        output_names=tuple(references[m]),
        input_pixels="raw RGB in [0, 255]" if verification.takes_raw_pixels(job.model) else "normalized",
        platforms=platforms,
        ops=ops,
        per_output=per_output,
        notes=tuple(notes),
    )
    _install(temp, path)
    # A model that keeps its class names (keras_vit.with_class_names; a DETR's class_names) ships them next to the file.
    from keras_vit.labels import write_detection_info, write_labels_file

    write_labels_file(job.model, path)
    # A detector records how its logits are scored (DETR softmax + "no object", Conditional DETR sigmoid).
    write_detection_info(job.model, path)
    return report
