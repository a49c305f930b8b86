"""The TensorFlow side of every export: runs only under the TensorFlow backend.

The exporter calls `run_jobs` in-process when the model was built under
TensorFlow, and in a `KERAS_BACKEND=tensorflow` subprocess (`_worker.py`) on a
`.keras` copy of the model otherwise, so JAX and PyTorch models export through
the same TensorFlow graph.
"""

import os
import re
import shutil
import tempfile
import warnings

from keras_vit.atomic_files import atomic_open
from keras_vit.export import signature
from keras_vit.export.report import ExportError, UnsupportedOpError

QUANTIZATIONS = (None, "float16", "dynamic", "int8")

# In an "int8" file these ops keep float32 inputs and outputs; the dense and convolution layers
# (FULLY_CONNECTED, CONV_2D) and the reshapes around them run in int8. XNNPACK (the LiteRT CPU
# delegate) has no int8 kernel for several of them (RSQRT, SQUARED_DIFFERENCE, GELU, SOFTMAX,
# BATCH_MATMUL of two activations, some ADDs): each such op ran on TFLite's slow reference
# kernels and cut the graph into a new delegate partition (ViT-Ti/16: 100 partitions). They are
# also where int8 loses the most: LayerNorm's variance, the softmax, GELU, the attention products
# and the residual stream's outliers. Measured on ViT-Ti/16 (README, "TFLite: int8 that XNNPACK runs").
INT8_FLOAT_OPS = (
    "ADD", "SUB", "MUL", "DIV", "NEG", "MEAN", "SUM", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "POW",
    "SOFTMAX", "GELU", "TANH", "LOGISTIC", "EXP", "BATCH_MATMUL",
)
INT8_NOTE = (
    "int8 dense and convolution layers (per-channel weights, calibrated activations); LayerNorm, softmax, GELU, "
    "attention products and residual adds in float32; float32 input and output"
)


def _tf():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("tf_conversion runs under the TensorFlow backend only.")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # no "Assets written to ..." lines for scratch SavedModels
    return tf


def _export_archive(model, input_shape=None, batch_size=None):
    """A Keras ExportArchive with one `serving_default` endpoint, batch size dynamic."""
    import keras

    tf = _tf()
    specs = signature.input_specs(model, input_shape)
    tensor_specs = [tf.TensorSpec((batch_size,) + shape[1:], dtype, name=name) for name, shape, dtype in specs]
    names = [name for name, _, _ in specs]

    def serve(*args):
        inputs = signature.pack_inputs(model, dict(zip(names, args)))
        return signature.output_dict(model(inputs, training=False))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=tensor_specs)
    return archive


def write_saved_model(model, path, input_shape=None, batch_size=None):
    """Writes `model` as a SavedModel with a `serving_default` signature at `path` (batch size None: dynamic)."""
    _export_archive(model, input_shape, batch_size).write_out(path, verbose=False)


def run_saved_model(path, inputs):
    """Runs the `serving_default` signature of a SavedModel on {name: array}."""
    tf = _tf()
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    outputs = fn(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def unsupported_ops_message(text):
    """Names the non-builtin TensorFlow ops (and where they come from) in a converter error, or None."""
    if not re.search(r"Flex ops|Custom ops|neither a custom op nor a flex op|select TensorFlow op", text):
        return None
    ops = set(re.findall(r"'(tf\.\w+)' op is neither", text))
    for line in re.findall(r"(?:Flex|Custom) ops: ([^\n]+)", text):
        ops.update("tf." + op.strip().removeprefix("Flex") for op in line.split(",") if op.strip())
    places = []
    for place in re.findall(r'fused\["([^"]+)"', text):
        place = place.rstrip(":")
        if place not in places:
            places.append(place)
    where = f" (at {', '.join(places[:5])})" if places else ""
    return (
        f"TFLite's builtin op set has no kernel for {', '.join(sorted(ops)) or 'some ops'}{where}. "
        "These would need Flex (select TensorFlow) ops, which the mobile runtime does not run. "
        "Rewrite that part of the model with ops TFLite supports (see DESIGN.md, 'Export-friendly code')."
    )


def _converter(saved_model_dir, quantization, representative, int8_ops):
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        names = list(representative)
        count = len(representative[names[0]])

        def dataset():
            for i in range(count):
                yield {name: representative[name][i : i + 1] for name in names}

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = int8_ops
    return converter


def _int8_content(saved_model_dir, representative):
    """Calibrates on `representative`, then quantizes all but `INT8_FLOAT_OPS` (per-channel weights).

    This is what `tf.lite.experimental.QuantizationDebugger` does for its selectively
    quantized models (calibrate only, then the MLIR quantizer with a deny-list of ops);
    the converter has no public switch for it.
    """
    from tensorflow.lite.python import convert

    tf = _tf()
    converter = _converter(saved_model_dir, "int8", representative, [tf.lite.OpsSet.TFLITE_BUILTINS])
    converter._experimental_calibrate_only = True
    calibrated = _convert(converter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert.mlir_quantize(calibrated, disable_per_channel=False, fully_quantize=False,
                                         denylisted_ops=list(INT8_FLOAT_OPS))
    except Exception as error:  # the quantizer raises ConverterError and RuntimeError
        raise ExportError(f"TFLite int8 quantization failed: {_short(error)}") from None


def _convert(converter):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as error:  # the converter raises ConverterError and RuntimeError
        message = unsupported_ops_message(str(error))
        if message:
            raise UnsupportedOpError(message) from None
        raise ExportError(f"TFLite conversion failed: {_short(error)}") from None


def write_tflite(model, path, quantization=None, representative=None, input_shape=None, batch_size=1):
    """Converts `model` to a builtin-ops-only .tflite file at `path`; returns notes.

    int8 quantizes the dense and convolution layers (int8 activations, per-channel
    int8 weights, calibrated on `representative`) and keeps `INT8_FLOAT_OPS`
    (LayerNorm, softmax, GELU, attention products, residual adds) in float32, so
    that XNNPACK runs the whole file; input and output stay float32.
    `batch_size` 1 (the default) gives a static graph; None a
    dynamic batch, whose shape ops (SHAPE, GATHER, PACK ...) XNNPACK in
    ai-edge-litert 2.3.0 sometimes runs wrongly after the first invocation.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}.")
    notes = []
    scratch = tempfile.mkdtemp(prefix="keras_vit_export_")
    try:
        write_saved_model(model, os.path.join(scratch, "saved_model"), input_shape, batch_size)
        saved = os.path.join(scratch, "saved_model")
        if quantization == "int8":
            content = _int8_content(saved, representative)
            notes.append(INT8_NOTE)
        else:
            content = _convert(_converter(saved, quantization, None, None))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with atomic_open(path, "wb") as f:
        f.write(content)
    return notes


def _short(error, limit=2000):
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + " ..."


def run_jobs(models, jobs):
    """Writes every job's file; returns one result dict per job, never raising.

    models: list of Keras models (TensorFlow backend). jobs: dicts with `model`
    (index), `format`, `path` (where to write), `quantization`, `representative`
    ({name: array} or None) and `samples` ({name: array}, SavedModel only).
    A result is {"ok": True, "notes": [...], "outputs": {...} or None} or
    {"ok": False, "type": error class name, "message": ...}.
    """
    results = []
    for job in jobs:
        model = models[job["model"]]
        try:
            if job["format"] == "saved_model":
                write_saved_model(model, job["path"], job.get("input_shape"))
                outputs = run_saved_model(job["path"], job["samples"])
                results.append({"ok": True, "notes": [], "outputs": outputs})
            else:
                notes = write_tflite(model, job["path"], job.get("quantization"), job.get("representative"),
                                     job.get("input_shape"), job.get("batch_size", 1))
                results.append({"ok": True, "notes": notes, "outputs": None})
        except ExportError as error:
            results.append({"ok": False, "type": type(error).__name__, "message": str(error)})
        except Exception as error:  # reported to the caller, who cleans up and raises
            results.append({"ok": False, "type": "ExportError", "message": _short(error)})
    return results
