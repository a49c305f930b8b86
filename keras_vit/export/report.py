"""What an export wrote and how closely the written file matches the Keras model."""

import dataclasses


class ExportError(RuntimeError):
    """An export could not be written or did not pass its check; no file was left behind."""


class UnsupportedOpError(ExportError):
    """The model needs TensorFlow ops that TFLite's builtin op set does not have (Flex/custom ops)."""


class ExportVerificationError(ExportError):
    """The written file ran, but its outputs differ from the Keras model's beyond the tolerance."""


ERROR_TYPES = {cls.__name__: cls for cls in (ExportError, UnsupportedOpError, ExportVerificationError)}


@dataclasses.dataclass
class ExportReport:
    """The result of one export, with the check the exporter ran on the written file.

    Reads like a dict too (`report["max_abs_diff"]`), and `to_dict()` gives a plain one.

    Fields:
        path: the file (TFLite) or directory (SavedModel) written.
        format: "saved_model" or "tflite".
        quantization: None, "float16", "dynamic" or "int8".
        source_backend: the Keras backend the model was built under.
        max_abs_diff: largest |exported - Keras| over all outputs and samples.
        tolerance: the bound `max_abs_diff` was checked against (None for int8,
            which is checked by top-1 agreement).
        top1_agreement: fraction of samples whose arg-max class is the same as the
            Keras model's (classification outputs; per query for DETR), or None.
        num_samples: how many images were compared (digits, upscaled to RGB).
        file_size_bytes: size of the file, or of the SavedModel directory.
        input_names, output_names: the serving signature.
        input_pixels: "raw RGB in [0, 255]" when the model normalizes its input.
        platforms: where the artifact runs.
        ops: the TFLite op names in the file (all builtin).
        notes: anything else worth knowing (e.g. int8 ops left in float).

    Example:
    >>> report = ExportReport(path="m.tflite", format="tflite", max_abs_diff=2e-6, tolerance=1e-4)
    >>> report["max_abs_diff"] <= report["tolerance"]
    True
    """

    path: str
    format: str
    quantization: str = None
    source_backend: str = None
    max_abs_diff: float = None
    tolerance: float = None
    top1_agreement: float = None
    num_samples: int = 0
    file_size_bytes: int = 0
    input_names: tuple = ()
    output_names: tuple = ()
    input_pixels: str = None
    platforms: tuple = ()
    ops: tuple = ()
    per_output: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        quant = self.quantization or "float32"
        parts = [f"{self.format} ({quant}) -> {self.path}", f"{self.file_size_bytes / 1e6:.2f} MB"]
        if self.max_abs_diff is not None:
            bound = f" (tolerance {self.tolerance:g})" if self.tolerance is not None else ""
            parts.append(f"max |diff| vs Keras {self.max_abs_diff:.3g}{bound}")
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.1%} on {self.num_samples} digits")
        return ", ".join(parts)
