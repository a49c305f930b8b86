"""`export_tflite` (builtin ops only, optionally quantized) and `evaluate_tflite`."""

import numpy as np

from keras_vit.export.exporter import ExportJob, export_many
from keras_vit.export.litert_runtime import TFLiteRunner


def export_tflite(model, path, quantization=None, representative_data=None, min_top1_agreement=None,
                  input_shape=None, batch_size=1, num_samples=None):
    """Writes `model` as a .tflite (LiteRT) file that uses builtin TFLite ops only.

    Args:
        model: a Keras model built under TensorFlow, JAX or PyTorch.
        path: the .tflite file to write (its directory is created).
        quantization: None (float32), "float16" (float16 weights), "dynamic"
            (int8 weights, activations quantized at run time) or "int8" (weights and
            activations int8, calibrated on `representative_data`; float32 input and
            output so the file still takes pixels).
        representative_data: for "int8" (required): about 100 typical inputs, as an
            array, a dict of arrays, an iterable of batches or a tf.data.Dataset.
        min_top1_agreement: fail unless the file's top-1 class matches the Keras
            model's on at least this fraction of the digit images.
        input_shape: (height, width, channels) for a model built for any image
            size (DETR); a .tflite file has a fixed image size.
        batch_size: the file's batch size: 1 (default, as on a phone) gives a
            static graph without shape ops; None a dynamic batch, which XNNPACK
            (ai-edge-litert 2.3.0) sometimes runs wrongly after the first call.

    When the model includes preprocessing (`include_preprocessing=True`) the file
    takes raw RGB pixels in [0, 255]. If a layer needs an op outside TFLite's builtin
    set (a Flex op), the export fails with `UnsupportedOpError` naming the op. The
    file is written next to `path`, run with the LiteRT interpreter on digit images
    and compared with the Keras model: float32 within 1e-4; float16 within 1e-2 and
    dynamic within 1e-1 of max(1, |largest output|); int8 reported as top-1
    agreement. Only a file that passes replaces `path`.

    Returns:
        An `ExportReport`.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
    ...                                     num_heads=3, mlp_dim=96, num_classes=10,
    ...                                     include_preprocessing=True)
    >>> report = keras_vit.export_tflite(model, "/tmp/vit.tflite")  # doctest: +SKIP
    >>> report.input_pixels  # doctest: +SKIP
    'raw RGB in [0, 255]'
    """
    job = ExportJob(model, "tflite", path, quantization, representative_data, min_top1_agreement, input_shape,
                    batch_size)
    return export_many([job], num_samples=num_samples)[0]


def _as_arrays(data):
    """(images, labels) from (images, labels) arrays or an iterable / tf.data.Dataset of batches."""
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        return np.asarray(data[0]), np.asarray(data[1])
    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    images, labels = [], []
    for x, y in data:
        images.append(np.asarray(x))
        labels.append(np.asarray(y))
    return np.concatenate(images), np.concatenate(labels)


def evaluate_tflite(path, data, batch_size=1, num_threads=None):
    """Top-1 accuracy of a classifier .tflite file on labelled images.

    Args:
        path: the .tflite file.
        data: (images, labels) arrays, or an iterable / tf.data.Dataset of
            (images, labels) batches; labels are class indices or one-hot.

    Returns:
        dict with `accuracy`, `num_samples` and `path`.

    Example:
    >>> result = evaluate_tflite("saved_models/vit.tflite", (x_test, y_test))  # doctest: +SKIP
    >>> print(f"{result['accuracy']:.3f}")  # doctest: +SKIP
    0.975
    """
    images, labels = _as_arrays(data)
    if labels.ndim == 2:
        labels = labels.argmax(-1)
    runner = TFLiteRunner(path, num_threads)
    outputs = runner(images.astype("float32"), batch_size=batch_size)
    logits = outputs["output_0"] if "output_0" in outputs else next(iter(outputs.values()))
    predictions = logits.argmax(-1)
    return {"accuracy": float(np.mean(predictions == labels.reshape(-1))), "num_samples": int(len(labels)),
            "path": str(path)}
