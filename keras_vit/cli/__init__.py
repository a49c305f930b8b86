"""The `keras-vit` command line (also `python -m keras_vit`): one `main` for every command.

    keras-vit train                          # a small ViT from scratch on the bundled digits
    keras-vit train --model custom-detr      # a small DETR on the bundled synthetic shapes
    keras-vit export --model ViTTi16 --weights imagenet --format tflite
    keras-vit predict saved_models/vit_custom_digits.tflite digit.png

Each command is a module of this package (`train`, `export`, `predict`) with `add_parser(subparsers)`,
which adds its sub-parser and sets `run` (a function of the parsed arguments that returns the exit
status); `common` holds what they share. Model names come from the model registry
(`keras_vit.models.model_names()`). The backend is Keras' own choice: KERAS_BACKEND=tensorflow|jax|torch.
TensorFlow's C++ log lines are hidden unless a command gets `--verbose`.

Example:
>>> build_parser().parse_args(["train", "--model", "vitb16"]).model
'ViTB16'
"""

import argparse
import contextlib
import os

from keras_vit._tensorflow_logs import hidden_tensorflow_logs
from keras_vit.cli import export, predict, train
from keras_vit.cli.common import CommandError, report_error

COMMANDS = (train, export, predict)


def build_parser():
    """The `keras-vit` argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="Vision transformers for Keras 3 (TensorFlow, JAX, PyTorch). Set KERAS_BACKEND to pick the backend.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    """Entry point of `keras-vit` and `python -m keras_vit`; returns the exit status.

    Example:
    >>> main(["train", "--epochs", "1", "--limit", "64", "--output", "/tmp/digits.keras"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    if args.verbose:
        # TensorFlow reads this once, when it starts: it reaches TensorFlow started from here on
        # (under JAX or PyTorch, for tf.data and export) and the export subprocess.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    with contextlib.nullcontext() if args.verbose else hidden_tensorflow_logs():
        try:
            return args.run(args)
        except (CommandError, ValueError, OSError, RuntimeError) as error:
            report_error(args.command, error)
            return 1


__all__ = ["build_parser", "main", "CommandError"]
