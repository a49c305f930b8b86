"""The `keras-vit` command line (also `python -m keras_vit`).

    keras-vit train                      # a small ViT from scratch on the embedded digits
    keras-vit train --model ViTS16 --dataset tfds:cifar10 --image-size 224 --epochs 10
    keras-vit train --dataset folder:path/to/images --image-size 64

The backend is Keras' own choice: set KERAS_BACKEND=tensorflow|jax|torch.

Subcommands are added by functions `add_<name>_parser(subparsers)` that make a sub-parser and set
its `run` default to a function of the parsed arguments (see `add_train_parser`); `build_parser`
calls them.
"""

import argparse
import os
import sys
import time

# The default `train` model: a small ViT that learns the 8x8 digits from scratch in a few minutes on a
# CPU. 8x8 digits upscaled to 32x32 and cut into 4x4 patches give 64 tokens of width 64.
DEFAULT_CUSTOM_VIT = dict(patch_size=4, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128)
DEFAULT_CUSTOM_IMAGE_SIZE = 32
DEFAULT_NAMED_IMAGE_SIZE = 224
CUSTOM_FLAGS = ("patch_size", "hidden_dim", "depth", "num_heads", "mlp_dim")
MODEL_NAMES = ("ViTTi16", "ViTS16", "ViTS32", "ViTB16", "ViTB32", "ViTL16", "ViTL32", "ViTH14")


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


def _model_name(value):
    """argparse type: a named ViT, matched case-insensitively, or "custom"."""
    names = {name.lower(): name for name in MODEL_NAMES + ("custom",)}
    key = value.lower().replace("-", "").replace("_", "").replace("/", "")
    if key not in names:
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; choose one of {', '.join(MODEL_NAMES)} or custom")
    return names[key]


def _positive_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def add_train_parser(subparsers):
    """Adds `train`: build a ViT, train it on a dataset, evaluate it on the test split, save it.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_train_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["train", "--epochs", "2"]).epochs
    2
    """
    parser = subparsers.add_parser(
        "train",
        help="train a ViT on a dataset (default: the embedded digits) and save it",
        description=(
            "Builds a named ViT (ViTTi16 ... ViTH14) or a custom one, trains it with AdamW and a warmup + "
            "cosine learning-rate schedule, evaluates it on the test split and saves it as a .keras file. "
            "With no arguments: a small ViT from scratch on scikit-learn's handwritten digits (shipped "
            "with the package, no download)."
        ),
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=_model_name, default="custom",
                       help=f"{', '.join(MODEL_NAMES)}, or custom (set by the flags below) (default: %(default)s)")
    model.add_argument("--patch-size", type=_positive_int, help=f"custom ViT patch size (default {DEFAULT_CUSTOM_VIT['patch_size']})")
    model.add_argument("--hidden-dim", type=_positive_int, help=f"custom ViT width (default {DEFAULT_CUSTOM_VIT['hidden_dim']})")
    model.add_argument("--depth", type=_positive_int, help=f"custom ViT blocks (default {DEFAULT_CUSTOM_VIT['depth']})")
    model.add_argument("--num-heads", type=_positive_int, help=f"custom ViT heads (default {DEFAULT_CUSTOM_VIT['num_heads']})")
    model.add_argument("--mlp-dim", type=_positive_int, help=f"custom ViT MLP width (default {DEFAULT_CUSTOM_VIT['mlp_dim']})")
    model.add_argument("--image-size", type=_positive_int,
                       help=f"input size (default {DEFAULT_CUSTOM_IMAGE_SIZE} for custom, {DEFAULT_NAMED_IMAGE_SIZE} for named models)")
    model.add_argument("--pooling", choices=("token", "gap"), default="token", help="class token or mean of the patch tokens (default: %(default)s)")
    model.add_argument("--weights", default=None,
                       help="start from a checkpoint (a file or a published name); the head is re-initialized for the dataset's classes")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout rate (default: %(default)s)")
    model.add_argument("--drop-path-rate", type=float, default=0.1, help="stochastic depth rate of the last block (default: %(default)s)")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="digits", help="digits, tfds:NAME (e.g. tfds:cifar10) or folder:PATH (PATH/<split>/<class>/<image>) (default: %(default)s)")
    data.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder (tfds: datasets)")
    data.add_argument("--limit", type=_positive_int, default=None, help="use at most this many examples per split (quick runs)")
    data.add_argument("--randaugment", action="store_true", help="Keras RandAugment on the training images")
    data.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="MixUp alpha (0: off) (default: %(default)s)")
    data.add_argument("--cutmix", type=float, default=0.0, metavar="FACTOR", help="CutMix factor (0: off) (default: %(default)s)")
    data.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing (default: %(default)s)")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=_positive_int, default=20, help="training epochs (default: %(default)s)")
    training.add_argument("--batch-size", type=_positive_int, default=64, help="examples per batch (default: %(default)s)")
    training.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate (AdamW) (default: %(default)s)")
    training.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    training.add_argument("--warmup-epochs", type=float, default=3.0, help="linear warmup before the cosine decay (default: %(default)s)")
    training.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and augmentation (default: %(default)s)")
    training.add_argument("--threads", type=_positive_int, default=None,
                          help="CPU threads per op (torch and tensorflow backends); 1 is often faster for small models on a busy CPU")
    training.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras verbosity: 1 shows progress bars (default: %(default)s)")
    training.add_argument("--output", default=None, help="where to save the model (.keras); default saved_models/<model>_<dataset>.keras")
    training.add_argument("--no-export", action="store_true",
                          help="skip the final TFLite export (float32 and int8) and its test-split accuracy")
    parser.set_defaults(run=run_train)
    return parser


def _dataset_slug(source):
    kind, _, location = source.partition(":")
    if not location:
        return kind
    name = os.path.basename(os.path.normpath(location)) if kind == "folder" else location.split("/")[0].split(":")[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{kind}_{name}")


def _model_config(args):
    """The model's name and keyword arguments for `VisionTransformer`, from the flags."""
    from keras_vit.models.vit.vit_model import VIT_CONFIGS

    overrides = {flag: getattr(args, flag) for flag in CUSTOM_FLAGS if getattr(args, flag) is not None}
    if args.model == "custom":
        config = dict(DEFAULT_CUSTOM_VIT, **overrides)
        image_size = args.image_size or DEFAULT_CUSTOM_IMAGE_SIZE
    else:
        if overrides:
            flags = ", ".join("--" + f.replace("_", "-") for f in overrides)
            raise CommandError(f"{flags} set a custom architecture; drop --model {args.model} (or use --model custom) to use them.")
        config = dict(VIT_CONFIGS[args.model])
        image_size = args.image_size or DEFAULT_NAMED_IMAGE_SIZE
    if image_size % config["patch_size"] != 0:
        fixed = max(config["patch_size"], round(image_size / config["patch_size"]) * config["patch_size"])
        raise CommandError(
            f"--image-size {image_size} is not a multiple of the patch size {config['patch_size']}; use e.g. --image-size {fixed}."
        )
    if config["hidden_dim"] % config["num_heads"] != 0:
        raise CommandError(f"--hidden-dim {config['hidden_dim']} is not divisible by --num-heads {config['num_heads']}.")
    return config, image_size


def _set_threads(backend, threads):
    """Caps the CPU threads of one op. On a shared CPU, OpenMP threads that wait for each other
    spin: a small model trains many times faster on torch with one thread there."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError as error:  # TensorFlow's runtime had already started
            raise CommandError(f"--threads: TensorFlow's threads are already set ({error}).") from None
    else:
        raise CommandError(f"--threads applies to the torch and tensorflow backends, not {backend}; on JAX set XLA_FLAGS.")


def run_train(args):
    """Runs `keras-vit train` with parsed arguments; returns the exit status."""
    start = time.time()
    for name in ("mixup", "cutmix", "label_smoothing", "dropout", "drop_path_rate"):
        if getattr(args, name) < 0:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 0.")
    config, image_size = _model_config(args)
    model_name = args.model.lower() if args.model != "custom" else "vit_custom"
    output = args.output or os.path.join("saved_models", f"{model_name}_{_dataset_slug(args.dataset)}.keras")
    if not output.endswith(".keras"):
        raise CommandError(f"--output {output!r} must end with .keras (Keras' model format).")

    import keras

    if args.threads is not None:
        _set_threads(keras.backend.backend(), args.threads)

    from keras_vit.data import load_classification_data
    from keras_vit.models.vit.vit_model import VisionTransformer

    keras.utils.set_random_seed(args.seed)
    data = load_classification_data(
        args.dataset,
        image_size=image_size,
        batch_size=args.batch_size,
        randaugment=args.randaugment,
        mixup=args.mixup or False,
        cutmix=args.cutmix or False,
        label_smoothing=args.label_smoothing,
        limit=args.limit,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    if data.num_examples["train"] < args.batch_size:
        raise CommandError(
            f"The training split has {data.num_examples['train']} examples, fewer than --batch-size {args.batch_size}; "
            "lower --batch-size."
        )
    model = VisionTransformer(
        image_size=image_size,
        num_classes=data.num_classes,
        pooling=args.pooling,
        weights=args.weights,
        include_preprocessing=True,
        dropout=args.dropout,
        drop_path_rate=args.drop_path_rate,
        seed=args.seed,
        name=model_name,
        **config,
    )
    steps_per_epoch = data.steps_per_epoch
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = min(int(args.warmup_epochs * steps_per_epoch), total_steps - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else args.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=args.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay, global_clipnorm=1.0)
    if data.one_hot:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    described = ", ".join(f"{k} {v}" for k, v in config.items())
    print(
        f"Training {model_name} ({described}, image {image_size}x{image_size}, {model.count_params():,} parameters) "
        f"on {args.dataset} ({data.num_examples['train']} train / {data.num_examples['validation']} validation / "
        f"{data.num_examples['test']} test images, {data.num_classes} classes) for {args.epochs} epochs "
        f"on the {keras.backend.backend()} backend.",
        flush=True,
    )
    # The datasets shuffle themselves (tf.data); shuffle=False stops Keras warning that it cannot.
    model.fit(data.train, validation_data=data.validation, epochs=args.epochs, shuffle=False, verbose=args.verbose)
    results = model.evaluate(data.test, return_dict=True, verbose=args.verbose)

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    model.save(output)
    print(f"Test accuracy: {results['accuracy']:.4f} ({data.num_examples['test']} test images, split {data.splits['test']!r})")
    print(f"Model saved to: {os.path.abspath(output)}")
    if not args.no_export:
        # Ship it: float32 and int8 .tflite files next to the .keras file, each checked against the model,
        # then run on the test split (int8 calibrated on the validation split).
        from keras_vit.export import export_and_evaluate_tflite

        export_and_evaluate_tflite(model, data.test, data.validation, os.path.splitext(output)[0],
                                   keras_accuracy=results["accuracy"])
    print(f"Total time: {time.time() - start:.0f} s")
    return 0


def build_parser():
    """The `keras-vit` argument parser with every subcommand.

    Example:
    >>> build_parser().parse_args(["train", "--model", "vitb16"]).model
    'ViTB16'
    """
    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="Vision transformers for Keras 3 (TensorFlow, JAX, PyTorch). Set KERAS_BACKEND to pick the backend.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(subparsers)
    from keras_vit.export.cli import add_export_parser, add_predict_parser

    add_export_parser(subparsers)
    add_predict_parser(subparsers)
    # More subcommands: add_<name>_parser(subparsers) here.
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
    try:
        return args.run(args)
    except (CommandError, ValueError, OSError, RuntimeError) as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
