"""`keras-vit export` and `keras-vit predict`: sub-parsers for the `keras-vit` command line.

    keras-vit export --model ViTTi16 --weights vit_tiny.safetensors --format tflite --quantization int8 \\
        --representative-data digits
    keras-vit predict saved_models/vittit16.tflite cat.jpg dog.jpg --top-k 3

`add_export_parser(subparsers)` and `add_predict_parser(subparsers)` add them to
an argparse parser (the `keras-vit` entry point calls them); `main(argv)` runs
them on their own (`python -m keras_vit.export.cli export ...`).
"""

import argparse
import os
import sys

QUANTIZATION_CHOICES = ("none", "float16", "dynamic", "int8")
NORMALIZATIONS = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def add_export_parser(subparsers):
    """Adds `export`: build or load a model and write a checked SavedModel or .tflite file.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_export_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["export", "--model", "ViTTi16", "--format", "tflite"]).format
    'tflite'
    """
    parser = subparsers.add_parser(
        "export",
        help="export a model to SavedModel or TFLite, checked against the Keras model",
        description=(
            "Builds a named model (ViTTi16, SwinT, ... with --weights) or loads a .keras file, writes it as a "
            "SavedModel directory or a .tflite file (builtin ops only, optionally quantized), runs the written "
            "file on digit images and compares it with the Keras model. A failed export leaves nothing behind."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a builder of keras_vit (ViTTi16, DeiTS16, SwinT, TNTS16, DETRResNet50, ...) or a .keras file")
    parser.add_argument("--weights", default=None,
                        help="checkpoint for the builder (file or published name), or a .weights.h5 for a .keras model")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="tflite")
    parser.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default="none", help="TFLite only")
    parser.add_argument("--representative-data", default=None,
                        help="int8 calibration images: 'digits', a .npy/.npz array of (N, H, W, 3) pixels, or a folder of images")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of a builder's head (default: the builder's)")
    parser.add_argument("--image-size", type=int, default=None, help="square input size (default: the builder's)")
    parser.add_argument("--no-preprocessing", action="store_true",
                        help="builders: leave normalization to the caller (by default the file takes raw RGB pixels)")
    parser.add_argument("--min-top1-agreement", type=float, default=None,
                        help="fail unless a quantized file agrees with the Keras model's top-1 class this often")
    parser.add_argument("--output", default=None,
                        help="file or directory to write; default saved_models/<model>[_<quantization>].tflite or "
                             "saved_models/<model>_saved_model")
    parser.set_defaults(run=run_export)
    return parser


def add_predict_parser(subparsers):
    """Adds `predict`: run a .keras, SavedModel or .tflite file on images and print the top classes.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_predict_parser(parser.add_subparsers(dest="command"))
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
    parser.set_defaults(run=run_predict)
    return parser


# --- export -----------------------------------------------------------------------------------


def _load_or_build(args):
    import keras

    import keras_vit

    if args.model.endswith(".keras"):
        if not os.path.exists(args.model):
            raise FileNotFoundError(f"--model {args.model}: no such file.")
        model = keras.saving.load_model(args.model, compile=False)
        if args.weights:
            model.load_weights(args.weights)
        name = os.path.splitext(os.path.basename(args.model))[0]
        return model, name
    builder = getattr(keras_vit, args.model, None)
    if builder is None or not callable(builder) or args.model.startswith("_"):
        known = sorted(n for n in dir(keras_vit) if n[:1].isupper() and callable(getattr(keras_vit, n)))
        raise ValueError(f"--model {args.model!r} is neither a .keras file nor a keras_vit builder ({', '.join(known)}).")
    kwargs = {"weights": args.weights}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.image_size is not None:
        kwargs["input_shape"] = (args.image_size, args.image_size, 3)
    if not args.no_preprocessing:
        kwargs["include_preprocessing"] = True
    return builder(**kwargs), args.model.lower()


def _images_in_folder(folder):
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".webp")))
    return [os.path.join(folder, name) for name in names]


def _representative(spec, height, width):
    from keras_vit.export.verification import digit_images

    if spec is None:
        raise ValueError("--quantization int8 needs --representative-data ('digits', a .npy/.npz file or an image folder).")
    if spec == "digits":
        return digit_images(100, height, width, raw_pixels=True)[0]
    if os.path.isdir(spec):
        files = _images_in_folder(spec)[:200]
        if not files:
            raise ValueError(f"--representative-data {spec}: no images in that folder.")
        return load_images(files, height, width)[0]
    if spec.endswith((".npy", ".npz")):
        import numpy as np

        data = np.load(spec)
        return data if spec.endswith(".npy") else data[data.files[0]]
    raise ValueError(f"--representative-data {spec!r}: expected 'digits', a .npy/.npz file or a folder of images.")


def run_export(args):
    """Runs `keras-vit export` with parsed arguments; returns the exit status."""
    from keras_vit.export import export_saved_model, export_tflite
    from keras_vit.export.signature import input_specs

    quantization = None if args.quantization == "none" else args.quantization
    if args.format == "saved_model" and quantization:
        raise ValueError("--quantization applies to --format tflite only.")
    model, name = _load_or_build(args)
    if args.format == "saved_model":
        output = args.output or os.path.join("saved_models", f"{name}_saved_model")
        report = export_saved_model(model, output)
    else:
        output = args.output or os.path.join("saved_models", f"{name}{'_' + quantization if quantization else ''}.tflite")
        representative = None
        if quantization == "int8":
            shape = input_specs(model)[0][1]
            representative = _representative(args.representative_data, shape[1], shape[2])
        report = export_tflite(model, output, quantization, representative, min_top1_agreement=args.min_top1_agreement)
    print(report)
    print(f"Input: {', '.join(report.input_names)} ({report.input_pixels}); outputs: {', '.join(report.output_names)}")
    print(f"Runs on: {', '.join(report.platforms)}")
    for note in report.notes:
        print(f"Note: {note}")
    return 0


# --- predict ----------------------------------------------------------------------------------


def load_images(paths, height, width, normalize="none"):
    """(N, height, width, 3) float32 RGB pixels in [0, 255] (or normalized), and each image's (width, height)."""
    import numpy as np
    from PIL import Image

    images, sizes = [], []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such image file.")
        with Image.open(path) as image:
            image = image.convert("RGB")
            sizes.append(image.size)
            images.append(np.asarray(image.resize((width, height), Image.BILINEAR), dtype="float32"))
    images = np.stack(images)
    stats = NORMALIZATIONS[normalize]
    if stats is not None:
        mean, std = (np.asarray(s, "float32") for s in stats)
        images = (images / 255.0 - mean) / std
    return images, sizes


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


def _softmax(logits):
    import numpy as np

    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def run_predict(args):
    """Runs `keras-vit predict`: prints the top classes (or DETR's boxes) for each image."""
    import numpy as np

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
        probs = _softmax(outputs["logits"])[..., :-1]
        for path, size, p, boxes in zip(args.images, sizes, probs, outputs["pred_boxes"]):
            print(f"{path}:")
            scores, classes = p.max(-1), p.argmax(-1)
            keep = np.argsort(-scores)
            shown = 0
            for q in keep:
                if scores[q] < args.threshold:
                    break
                cx, cy, w, h = boxes[q]
                x0, y0, x1, y1 = ((cx - w / 2) * size[0], (cy - h / 2) * size[1], (cx + w / 2) * size[0], (cy + h / 2) * size[1])
                print(f"  {label(int(classes[q]))}  score {scores[q]:.3f}  box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
                shown += 1
            if not shown:
                print(f"  no box with score >= {args.threshold}")
        return 0
    logits = outputs["output_0"] if "output_0" in outputs else next(iter(outputs.values()))
    is_probability = np.all(logits >= 0) and np.allclose(logits.sum(-1), 1.0, atol=1e-3)
    probs = logits if is_probability else _softmax(logits)
    for path, p in zip(args.images, probs):
        print(f"{path}:")
        for rank, index in enumerate(np.argsort(-p)[: args.top_k], start=1):
            print(f"  {rank}. {label(int(index))}  {p[index]:.4f}")
    return 0


def main(argv=None):
    """Runs `export` or `predict` without the rest of the `keras-vit` command line."""
    parser = argparse.ArgumentParser(prog="keras-vit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_export_parser(subparsers)
    add_predict_parser(subparsers)
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
