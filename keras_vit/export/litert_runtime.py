"""Running .tflite files with the LiteRT interpreter (`ai_edge_litert`), no TensorFlow needed."""

import numpy as np

from keras_vit._tensorflow_logs import hidden_tensorflow_logs


def _interpreter(path, num_threads=None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:  # pragma: no cover - the export extra installs it
        raise ImportError("Running .tflite files needs ai-edge-litert: pip install 'keras-vit[export]'.") from error
    # LiteRT says "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when the tensors are
    # first allocated: hidden like TensorFlow's other C++ lines (TF_CPP_MIN_LOG_LEVEL=0 shows it).
    with hidden_tensorflow_logs():
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def tflite_ops(path):
    """The sorted op names in a .tflite file (e.g. ['ADD', 'BATCH_MATMUL', ...])."""
    interpreter = _interpreter(path)
    details = getattr(interpreter, "_get_ops_details", lambda: [])()
    return sorted({d["op_name"] for d in details})


def tflite_signature(path):
    """{'inputs': {name: (shape, dtype)}, 'outputs': [names]} of a file's `serving_default` signature."""
    interpreter = _interpreter(path)
    runner = interpreter.get_signature_runner()
    inputs = {
        name: (tuple(int(d) for d in detail["shape_signature"]), np.dtype(detail["dtype"]))
        for name, detail in runner.get_input_details().items()
    }
    return {"inputs": inputs, "outputs": list(runner.get_output_details())}


class TFLiteRunner:
    """Runs a .tflite file's `serving_default` signature on {input name: array}, in batches.

    The default batch size is 1, as on a phone and as `export_tflite` writes
    files by default (a static batch of 1).

    Example:
    >>> runner = TFLiteRunner("saved_models/vit.tflite", num_threads=2)  # doctest: +SKIP
    >>> runner({"images": images})["output_0"].shape  # doctest: +SKIP
    (8, 10)
    """

    def __init__(self, path, num_threads=None):
        self.path = str(path)
        self.interpreter = _interpreter(path, num_threads)
        with hidden_tensorflow_logs():
            self.runner = self.interpreter.get_signature_runner()
        self.input_details = self.runner.get_input_details()
        self._batch = None

    @property
    def input_names(self):
        return list(self.input_details)

    def _run_once(self, inputs):
        feed = {name: np.asarray(value, dtype=self.input_details[name]["dtype"]) for name, value in inputs.items()}
        return {name: np.array(value) for name, value in self.runner(**feed).items()}

    def __call__(self, inputs, batch_size=1):
        if not isinstance(inputs, dict):
            if len(self.input_names) != 1:
                raise ValueError(f"This file takes several inputs {self.input_names}; pass a dict of arrays.")
            inputs = {self.input_names[0]: inputs}
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ValueError(f"{self.path} has no inputs {unknown}; its inputs are {self.input_names}.")
        count = len(next(iter(inputs.values())))
        pieces = []
        for start in range(0, count, batch_size):
            pieces.append(self._run_once({k: v[start : start + batch_size] for k, v in inputs.items()}))
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}


def run_tflite(path, inputs, num_threads=None, batch_size=1):
    """Runs a .tflite file once on {input name: array} (or one array) and returns {output name: array}.

    Example:
    >>> outputs = run_tflite("saved_models/vit.tflite", images)  # doctest: +SKIP
    """
    return TFLiteRunner(path, num_threads)(inputs, batch_size=batch_size)
