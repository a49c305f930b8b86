"""`keras-vit predict`: run a .keras, SavedModel or .tflite file on images; print the top classes
(or, for a detector, the boxes), named; `--draw DIR` also draws a detector's boxes on each image.

    keras-vit predict saved_models/vit_custom_digits.tflite digit.png --top-k 3
    keras-vit predict saved_models/detr_custom_shapes.tflite shapes.png --draw pictures/

Class names come from `--labels`, else from the model: a .keras file that keeps them
(`keras_vit.with_class_names`, as `keras-vit train` saves), the labels file next to a .tflite file or
inside a SavedModel directory (`keras_vit.labels.labels_path`), ImageNet's names for 1,000 (or
21,841) classes, COCO's for DETR's 91.
"""

import argparse
import os

from keras_vit.cli.common import NORMALIZATIONS, CommandError, add_verbose_flag, load_images


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
    parser.add_argument("--labels", default=None,
                        help="text file with one class name per line (default: the names the model keeps, the "
                             "labels file next to the export, ImageNet's for 1000 classes, COCO's for DETR)")
    parser.add_argument("--crop-mode", choices=("center", "squash"), default=None,
                        help="keep the aspect and crop the centre (published checkpoints' recipe), or resize to the "
                             "input size (keras-vit train's pipeline); default: what the .keras model keeps, else squash")
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="fraction of the resized image kept by the crop (default: the model's recipe, else 0.9 "
                             "with --crop-mode center, as the published 224 checkpoints; 1.0 otherwise)")
    parser.add_argument("--normalize", choices=tuple(NORMALIZATIONS), default="none",
                        help="normalization to apply first, for models that do not include preprocessing")
    parser.add_argument("--threshold", type=float, default=0.5, help="detectors: smallest score of a printed box")
    parser.add_argument("--draw", default=None, metavar="DIR",
                        help="detectors: also draw each image's boxes and class names over it, as "
                             "DIR/<image name>.detections.png")
    parser.add_argument("--scores", choices=("softmax", "sigmoid"), default=None,
                        help="detectors: how the logits are scored, softmax with a last no-object column (DETR) or "
                             "one sigmoid per class (Conditional DETR); default: the model's, or what the export "
                             "recorded beside the file (detection.json), else softmax")
    add_verbose_flag(parser)
    parser.set_defaults(run=run)
    return parser


class _Predictor:
    """A .keras, SavedModel or .tflite file as `(images) -> {name: array}` with its image size."""

    def __init__(self, path):
        from keras_vit.labels import labels_path, read_detection_info

        self.path = path
        self.model = None  # the Keras model, for a .keras file
        self.labels_file = None  # where an export keeps its class names
        self.detection_info = None  # an exported detector's score kind (keras_vit.labels.write_detection_info)
        if path.endswith(".tflite"):
            from keras_vit.export.litert_runtime import TFLiteRunner

            runner = TFLiteRunner(path)
            self.labels_file = labels_path(path)
            self.detection_info = read_detection_info(path)
            name = runner.input_names[0]
            shape = runner.input_details[name]["shape_signature"]
            self.size = (int(shape[1]), int(shape[2]))
            self.run = lambda x: runner({name: x})
        elif os.path.isdir(path):
            import tensorflow as tf

            serve = tf.saved_model.load(path).signatures["serving_default"]
            self.labels_file = labels_path(path)
            self.detection_info = read_detection_info(path)
            (name, spec), = serve.structured_input_signature[1].items()
            self.size = (spec.shape[1], spec.shape[2])
            self.run = lambda x: {k: v.numpy() for k, v in serve(**{name: tf.constant(x)}).items()}
        elif path.endswith(".keras"):
            import keras

            from keras_vit.export.signature import input_specs, to_numpy_dict

            model = keras.saving.load_model(path, compile=False)
            self.model = model
            shape = input_specs(model)[0][1]
            self.size = (shape[1], shape[2])
            self.run = lambda x: to_numpy_dict(model(x, training=False))
        else:
            raise ValueError(f"{path}: expected a .keras file, a SavedModel directory or a .tflite file.")
        if None in self.size and self.model is not None:  # a ViT for any size: its canonical size
            from keras_vit.layers import PositionEmbedding

            layers = [layer for layer in self.model.layers if isinstance(layer, PositionEmbedding) and layer.patch_size]
            if layers:
                self.size = tuple(g * layers[0].patch_size for g in layers[0].grid_size)
        if None in self.size:
            self.size = (800, 800) if self.size == (None, None) else self.size
            self.size = tuple(s or 800 for s in self.size)


def _class_names(args, predictor, num_classes):
    """The names of the model's classes (see the module docstring), or None."""
    from keras_vit.labels import _resolve_names, get_class_names, read_labels_file

    if args.labels:
        try:
            return read_labels_file(args.labels, num_classes)
        except FileNotFoundError:
            raise CommandError(f"--labels {args.labels}: no such file.") from None
        except ValueError as error:
            raise CommandError(f"--labels: {error}") from None
    if predictor.model is not None and get_class_names(predictor.model) is not None:
        return get_class_names(predictor.model)
    if predictor.labels_file and os.path.exists(predictor.labels_file):
        try:
            return read_labels_file(predictor.labels_file, num_classes)
        except ValueError as error:
            raise CommandError(str(error)) from None
    names = _resolve_names(None, num_classes)
    return None if names[0] == "class 0" else names


def run(args):
    """Runs `keras-vit predict`: prints the top classes (or a detector's boxes) for each image, named."""
    import numpy as np
    from scipy.special import softmax

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such model file or directory.")
    predictor = _Predictor(args.model)
    height, width = predictor.size
    # Resized as the flags say, else as the .keras model says it was trained (keras-vit train keeps it),
    # else to the input size (the training pipeline's way).
    from keras_vit.labels import get_image_recipe

    recipe = (get_image_recipe(predictor.model) if predictor.model is not None else None) or {}
    crop_mode = args.crop_mode or recipe.get("crop_mode", "squash")
    crop_pct = args.crop_pct or (recipe.get("crop_pct") if crop_mode == recipe.get("crop_mode") else None)
    crop_pct = crop_pct or (0.9 if crop_mode == "center" else 1.0)
    interpolation = recipe.get("interpolation") or ("bicubic" if crop_mode == "center" else "bilinear")
    images, sizes = load_images(args.images, height, width, args.normalize, crop_mode, crop_pct, interpolation)
    outputs = predictor.run(images)

    if "pred_boxes" in outputs and "logits" in outputs:
        return _report_detections(args, predictor, outputs, sizes)
    logits = outputs["output_0"] if "output_0" in outputs else next(iter(outputs.values()))
    labels = _class_names(args, predictor, logits.shape[-1])
    is_probability = np.all(logits >= 0) and np.allclose(logits.sum(-1), 1.0, atol=1e-3)
    probs = logits if is_probability else softmax(logits, axis=-1)
    for path, p in zip(args.images, probs):
        print(f"{path}:")
        for rank, index in enumerate(np.argsort(-p)[: args.top_k], start=1):
            print(f"  {rank}. {_label(labels, int(index))}  {p[index]:.4f}")
    return 0


def _detection_scores(args, predictor):
    """How the detector's logits are scored: `--scores`, else the Keras model's kind, else what its
    export recorded beside the file, else softmax (DETR, and DETR exports older than that file)."""
    if args.scores:
        return args.scores
    if predictor.model is not None:
        return getattr(predictor.model, "SCORES", "softmax")
    return (predictor.detection_info or {}).get("scores", "softmax")


def _report_detections(args, predictor, outputs, sizes):
    """Prints each image's boxes (pixels of the original image), named and scored as the detector
    scores them, best first; with `--draw DIR`, also draws them over the image as a PNG."""
    import numpy as np

    from keras_vit.labels import _post_processor

    scores = _detection_scores(args, predictor)
    # softmax (DETR): classes + a last "no object" column; sigmoid (Conditional DETR): one per class.
    num_classes = outputs["logits"].shape[-1] - (1 if scores == "softmax" else 0)
    labels = _class_names(args, predictor, num_classes)
    post_process = _post_processor(scores, predictor.model)
    # `sizes` are PIL's (width, height); post-processing takes (height, width).
    detections = post_process(outputs, [(h, w) for w, h in sizes], threshold=args.threshold)
    for path, found in zip(args.images, detections):
        print(f"{path}:")
        order = np.argsort(-np.asarray(found["scores"], "float64"), kind="stable")
        for i in order:
            x0, y0, x1, y1 = (float(v) for v in found["boxes"][i])
            label = int(found["labels"][i])
            print(f"  {_label(labels, label)}  score {float(found['scores'][i]):.3f}  "
                  f"box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
        if not len(order):
            print(f"  no box with score >= {args.threshold}")
        if args.draw:
            print(f"  drawn: {_draw_detections(args.draw, path, found, labels)}")
    return 0


def _draw_detections(folder, image_path, found, labels):
    """Saves `found` drawn over the image at `image_path` as `folder/<image name>.detections.png`."""
    from keras_vit.data.images import _as_rgb_array
    from keras_vit.viz import plot_detections

    os.makedirs(folder, exist_ok=True)
    name = os.path.splitext(os.path.basename(image_path))[0]
    out = os.path.join(folder, f"{name}.detections.png")
    names = [_label(labels, int(label)) for label in found["labels"]]
    plot_detections(_as_rgb_array(image_path, image_path), {**found, "names": names}, path=out, title=image_path)
    return out


def _label(labels, index):
    return f"{labels[index]} ({index})" if labels else f"class {index}"
