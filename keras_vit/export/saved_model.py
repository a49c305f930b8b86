"""`export_saved_model`: a TensorFlow SavedModel from a model of any Keras backend."""

from keras_vit.export.exporter import ExportJob, export_many


def export_saved_model(model, path, input_shape=None, num_samples=None):
    """Writes `model` as a SavedModel directory with a `serving_default` signature.

    The signature takes the model's inputs by name (`images`, plus `pixel_mask`
    for DETR models that take one) with a dynamic batch size and returns a dict
    (`output_0`, or the model's output keys, e.g. `logits` and `pred_boxes`).
    Works from the TensorFlow, JAX and PyTorch backends: other backends save the
    model as `.keras` and rebuild it in a TensorFlow-backend subprocess, so the
    artifact is a plain TensorFlow graph that serves on CPU, GPU and TPU
    (`report.platforms`). The directory is written next to `path`, loaded back
    and run on digit images, compared with the Keras model (max |diff| <= 1e-4),
    and only then moved onto `path`; on any failure `path` is left as it was.

    `input_shape` (height, width, channels) fixes the image size of a model built
    for any size (DETR); by default the model's own input shape is kept.

    Returns:
        An `ExportReport` (max_abs_diff, platforms, path, ...).

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
    ...                                     num_heads=3, mlp_dim=96, num_classes=10)
    >>> report = keras_vit.export_saved_model(model, "/tmp/vit_saved_model")  # doctest: +SKIP
    >>> report.max_abs_diff < 1e-4  # doctest: +SKIP
    True
    """
    return export_many([ExportJob(model, "saved_model", path, input_shape=input_shape)], num_samples=num_samples)[0]
