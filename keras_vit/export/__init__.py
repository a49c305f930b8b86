"""Export to SavedModel and TFLite (LiteRT) from any Keras backend, checked against the model.

Example:
>>> import keras_vit
>>> model = keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=1,
...                                     num_heads=3, mlp_dim=96, num_classes=10)
>>> keras_vit.export_tflite(model, "/tmp/vit.tflite").max_abs_diff < 1e-4  # doctest: +SKIP
True
"""

from keras_vit.export.exporter import ExportJob, export_many
from keras_vit.export.litert_runtime import TFLiteRunner, run_tflite
from keras_vit.export.report import ExportError, ExportReport, ExportVerificationError, UnsupportedOpError
from keras_vit.export.saved_model import export_saved_model
from keras_vit.export.tflite import evaluate_tflite, export_tflite
from keras_vit.export.deployment import export_and_evaluate_tflite
