"""`keras-vit predict`: run a .keras, SavedModel or .tflite file on images; print the top classes
(or, for DETR, the boxes).

    keras-vit predict saved_models/vit_custom_digits.tflite digit.png --top-k 3
"""

import argparse
import os

from keras_vit.cli.common import NORMALIZATIONS, add_verbose_flag, load_images


def add_parser(subparsers):
    """Adds `predict`: run a .keras, SavedModel or .tflite file on images and print the top classes.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["predict", "model.tflite", "cat.jpg"]).top_k
    5
    """
    parser = subparsers.add_parser(
        "predict",
        help="run a .keras, SavedModel or .tflite file on images; print top classes (or boxes for DETR)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="a .keras file, a SavedModel directory or a .tflite file")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top-k", type=int, default=5, help="classes printed per image")
    parser.add_argument("--labels", default=None, help="text file with one class name per line")
    parser.add_argument("--normalize", choices=tuple(NORMALIZATIONS), default="none",
                        help="normalization to apply first, for models that do not include preprocessing")
    parser.add_argument("--threshold", type=float, default=0.5, help="DETR: smallest score of a printed box")
    add_verbose_flag(parser)
    parser.set_defaults(run=run)
    return parser


class _Predictor:
    """A .keras, SavedModel or .tflite file as `(images) -> {name: array}` with its image size."""

    def __init__(self, path):
        self.path = path
        if path.endswith(".tflite"):
            from keras_vit.export.litert_runtime import TFLiteRunner

            runner = TFLiteRunner(path)
            name = runner.input_names[0]
            shape = runner.input_details[name]["shape_signature"]
            self.size = (int(shape[1]), int(shape[2]))
            self.run = lambda x: runner({name: x})
        elif os.path.isdir(path):
            import tensorflow as tf

            serve = tf.saved_model.load(path).signatures["serving_default"]
            (name, spec), = serve.structured_input_signature[1].items()
            self.size = (spec.shape[1], spec.shape[2])
            self.run = lambda x: {k: v.numpy() for k, v in serve(**{name: tf.constant(x)}).items()}
        elif path.endswith(".keras"):
            import keras

            from keras_vit.export.signature import input_specs, to_numpy_dict

            model = keras.saving.load_model(path, compile=False)
            shape = input_specs(model)[0][1]
            self.size = (shape[1], shape[2])
            self.run = lambda x: to_numpy_dict(model(x, training=False))
        else:
            raise ValueError(f"{path}: expected a .keras file, a SavedModel directory or a .tflite file.")
        if None in self.size:
            self.size = (800, 800) if self.size == (None, None) else self.size
            self.size = tuple(s or 800 for s in self.size)


def run(args):
    """Runs `keras-vit predict`: prints the top classes (or DETR's boxes) for each image."""
    import numpy as np
    from scipy.special import softmax

    from keras_vit.models.detr.box_ops import box_cxcywh_to_xyxy

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such model file or directory.")
    labels = None
    if args.labels:
        with open(args.labels) as f:
            labels = [line.strip() for line in f if line.strip()]
    predictor = _Predictor(args.model)
    height, width = predictor.size
    images, sizes = load_images(args.images, height, width, args.normalize)
    outputs = predictor.run(images)

    def label(index):
        return f"{labels[index]} ({index})" if labels and index < len(labels) else f"class {index}"

    if "pred_boxes" in outputs and "logits" in outputs:  # DETR: per query, classes + "no object"
        probs = softmax(outputs["logits"], axis=-1)[..., :-1]
        for path, size, p, boxes in zip(args.images, sizes, probs, outputs["pred_boxes"]):
            print(f"{path}:")
            scores, classes = p.max(-1), p.argmax(-1)
            keep = np.argsort(-scores)
            shown = 0
            for q in keep:
                if scores[q] < args.threshold:
                    break
                # Normalized (cx, cy, w, h) to corners in pixels; `size` is PIL's (width, height).
                x0, y0, x1, y1 = box_cxcywh_to_xyxy(np.asarray(boxes[q], "float64")) * np.tile(size, 2)
                print(f"  {label(int(classes[q]))}  score {scores[q]:.3f}  box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
                shown += 1
            if not shown:
                print(f"  no box with score >= {args.threshold}")
        return 0
    logits = outputs["output_0"] if "output_0" in outputs else next(iter(outputs.values()))
    is_probability = np.all(logits >= 0) and np.allclose(logits.sum(-1), 1.0, atol=1e-3)
    probs = logits if is_probability else softmax(logits, axis=-1)
    for path, p in zip(args.images, probs):
        print(f"{path}:")
        for rank, index in enumerate(np.argsort(-p)[: args.top_k], start=1):
            print(f"  {rank}. {label(int(index))}  {p[index]:.4f}")
    return 0
