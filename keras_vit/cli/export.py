"""`keras-vit export`: build a registered model (or load a .keras file) and write a checked
SavedModel directory or .tflite file.

    keras-vit export --model ViTTi16 --weights vit_tiny.safetensors --format tflite --quantization int8 \\
        --representative-data digits
    keras-vit export --model saved_models/vit_custom_digits.keras --format saved_model
"""

import argparse
import os

from keras_vit.cli.common import (
    add_verbose_flag,
    images_in_folder,
    load_images,
    progress,
    registered_names,
    resolve_model_name,
)

QUANTIZATION_CHOICES = ("none", "float16", "dynamic", "int8")


def add_parser(subparsers):
    """Adds `export`: build or load a model and write a checked SavedModel or .tflite file.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["export", "--model", "ViTTi16", "--format", "tflite"]).format
    'tflite'
    """
    from keras_vit.models import model_names

    parser = subparsers.add_parser(
        "export",
        help="export a model to SavedModel or TFLite, checked against the Keras model",
        description=(
            "Builds a registered model (ViTTi16, SwinT, ... with --weights) or loads a .keras file, writes it as a "
            "SavedModel directory or a .tflite file (builtin ops only, optionally quantized), runs the written "
            "file on digit images and compares it with the Keras model. A failed export leaves nothing behind."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help=f"a registered model ({', '.join(model_names())}; any case) or a .keras file")
    parser.add_argument("--weights", default=None,
                        help="checkpoint for the builder (file or published name), or a .weights.h5 for a .keras model")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="tflite")
    parser.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default="none", help="TFLite only")
    parser.add_argument("--representative-data", default=None,
                        help="int8 calibration images: 'digits', a .npy/.npz array of (N, H, W, 3) pixels, or a folder of images")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of a builder's head (default: the builder's)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input size (default: the registry's for the model: 224, DETR 800)")
    parser.add_argument("--no-preprocessing", action="store_true",
                        help="builders: leave normalization to the caller (by default the file takes raw RGB pixels)")
    parser.add_argument("--min-top1-agreement", type=float, default=None,
                        help="fail unless a quantized file agrees with the Keras model's top-1 class this often")
    parser.add_argument("--output", default=None,
                        help="file or directory to write; default saved_models/<model>[_<quantization>].tflite or "
                             "saved_models/<model>_saved_model")
    add_verbose_flag(parser)
    parser.set_defaults(run=run)
    return parser


def _load_or_build(args):
    import keras

    if args.model.endswith(".keras"):
        if not os.path.exists(args.model):
            raise FileNotFoundError(f"--model {args.model}: no such file.")
        model = keras.saving.load_model(args.model, compile=False)
        if args.weights:
            model.load_weights(args.weights)
        name = os.path.splitext(os.path.basename(args.model))[0]
        return model, name
    from keras_vit.models import get_model_spec

    try:
        spec = get_model_spec(resolve_model_name(args.model))
    except argparse.ArgumentTypeError:
        raise ValueError(
            f"--model {args.model!r} is neither a .keras file nor a keras_vit builder; registered models: "
            f"{', '.join(registered_names())}."
        ) from None
    image_size = args.image_size or spec.default_input_size
    kwargs = {"weights": args.weights, "input_shape": (image_size, image_size, 3)}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if not args.no_preprocessing:
        kwargs["include_preprocessing"] = True
    progress(f"Building {spec.name} at {image_size}x{image_size}" + (f" with the weights {args.weights}" if args.weights else ""))
    return spec.builder(**kwargs), spec.name.lower()


def _representative(spec, height, width):
    from keras_vit.export.verification import digit_images

    if spec is None:
        raise ValueError("--quantization int8 needs --representative-data ('digits', a .npy/.npz file or an image folder).")
    if spec == "digits":
        return digit_images(100, height, width, raw_pixels=True)[0]
    if os.path.isdir(spec):
        files = images_in_folder(spec)[:200]
        if not files:
            raise ValueError(f"--representative-data {spec}: no images in that folder.")
        return load_images(files, height, width)[0]
    if spec.endswith((".npy", ".npz")):
        import numpy as np

        data = np.load(spec)
        return data if spec.endswith(".npy") else data[data.files[0]]
    raise ValueError(f"--representative-data {spec!r}: expected 'digits', a .npy/.npz file or a folder of images.")


def run(args):
    """Runs `keras-vit export` with parsed arguments; returns the exit status."""
    from keras_vit.export import export_saved_model, export_tflite
    from keras_vit.export.signature import input_specs

    quantization = None if args.quantization == "none" else args.quantization
    if args.format == "saved_model" and quantization:
        raise ValueError("--quantization applies to --format tflite only.")
    model, name = _load_or_build(args)
    if args.format == "saved_model":
        output = args.output or os.path.join("saved_models", f"{name}_saved_model")
        progress(f"Writing the SavedModel {output} and checking it against the Keras model")
        report = export_saved_model(model, output)
    else:
        output = args.output or os.path.join("saved_models", f"{name}{'_' + quantization if quantization else ''}.tflite")
        representative = None
        if quantization == "int8":
            shape = input_specs(model)[0][1]
            representative = _representative(args.representative_data, shape[1], shape[2])
        progress(f"Converting to TFLite{' (' + quantization + ')' if quantization else ''} with TensorFlow and "
                 "checking the file against the Keras model")
        report = export_tflite(model, output, quantization, representative, min_top1_agreement=args.min_top1_agreement)
    print(report)
    print(f"Input: {', '.join(report.input_names)} ({report.input_pixels}); outputs: {', '.join(report.output_names)}")
    print(f"Runs on: {', '.join(report.platforms)}")
    for note in report.notes:
        print(f"Note: {note}")
    return 0
