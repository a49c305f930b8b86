"""The end of a training run: export to TFLite (float32 and int8) and score the files on the test split."""

import os

from keras_vit.export.exporter import ExportJob, export_many
from keras_vit.export.tflite import _as_arrays, evaluate_tflite


def export_and_evaluate_tflite(model, test_data, representative_data, output_stem, keras_accuracy=None,
                               quantizations=(None, "int8"), print_fn=print, progress_fn=None):
    """Exports `model` to .tflite files, runs them on the test split and prints their accuracy.

    Args:
        model: a trained classifier (any backend); best with `include_preprocessing=True`
            so the files take raw pixels like the test images.
        test_data: (images, labels) arrays or a tf.data.Dataset / iterable of batches.
        representative_data: int8 calibration inputs (e.g. the validation split).
        output_stem: path without extension: writes `<stem>.tflite` (float32) and
            `<stem>_int8.tflite`.
        keras_accuracy: the Keras model's test accuracy, printed alongside.
        progress_fn: called with a line before each slow phase (conversion and checking,
            scoring on the test split), e.g. `print`; None says nothing.

    Returns:
        {quantization or "float32": {"path", "accuracy", "file_size_bytes", "top1_agreement", "report"}}

    Example:
    >>> results = export_and_evaluate_tflite(model, data.test, data.validation,  # doctest: +SKIP
    ...                                      "saved_models/vit_digits", keras_accuracy=0.97)
    TFLite float32  saved_models/vit_digits.tflite  0.82 MB  test accuracy 0.9700 (Keras 0.9700)
    TFLite int8     saved_models/vit_digits_int8.tflite  0.25 MB  test accuracy 0.9667 (Keras 0.9700)
    """
    images, labels = _as_arrays(test_data)
    jobs = []
    for quantization in quantizations:
        suffix = "" if quantization is None else f"_{quantization}"
        rep = representative_data if quantization == "int8" else None
        jobs.append(ExportJob(model, "tflite", f"{output_stem}{suffix}.tflite", quantization, rep))
    names = " and ".join(q or "float32" for q in quantizations)
    if progress_fn is not None:
        progress_fn(f"Exporting to TFLite ({names}): converting with TensorFlow and checking each file against "
                    "the Keras model")
    reports = export_many(jobs)
    if progress_fn is not None:
        progress_fn(f"Running the .tflite files on the {len(labels)} test images")
    results = {}
    for quantization, report in zip(quantizations, reports):
        name = quantization or "float32"
        scored = evaluate_tflite(report.path, (images, labels))
        results[name] = {"path": report.path, "accuracy": scored["accuracy"], "file_size_bytes": report.file_size_bytes,
                         "top1_agreement": report.top1_agreement, "report": report}
        shown = os.path.relpath(report.path)
        shown = report.path if shown.startswith("..") else shown
        versus = f" (Keras {keras_accuracy:.4f})" if keras_accuracy is not None else ""
        print_fn(
            f"TFLite {name:<8} {shown}  {report.file_size_bytes / 1e6:.2f} MB  "
            f"test accuracy {scored['accuracy']:.4f}{versus} on {scored['num_samples']} images"
        )
    return results
