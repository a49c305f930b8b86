"""`keras-vit train`: build a model, train it, evaluate it on held-out data, save it (and export it).

    keras-vit train                                   # a small ViT from scratch on the bundled digits
    keras-vit train --model custom-swin --epochs 5    # a small Swin, same data
    keras-vit train --model ViTS16 --dataset tfds:cifar10 --weights imagenet --epochs 3
    keras-vit train --model custom-detr               # a small DETR on the bundled synthetic shapes
    keras-vit train --model custom-conditional-detr   # a small Conditional DETR (sigmoid focal loss), same data
    keras-vit train --model DETRResNet50 --image-size 128 --epochs 10

`--model` takes any name of the model registry (`keras_vit.models.model_names()`: ViT, DeiT, TNT
and Swin classifiers, DETR detectors) or a small configurable model `custom` (ViT, the default),
`custom-deit`, `custom-tnt`, `custom-swin`, `custom-detr`, `custom-conditional-detr`, sized by --patch-size, --hidden-dim,
--depth, --num-heads and --mlp-dim. Classifiers train on `--dataset` (default the bundled digits);
detectors train with DETR's set loss on the bundled synthetic shapes (`keras_vit.cli.train_detr`).
"""

import os
import time

from keras_vit.atomic_files import save_model
from keras_vit.cli.common import (
    CommandError,
    add_verbose_flag,
    model_name_type,
    positive_int,
    progress,
)

# The small configurable models. Each family reads the same five flags; the values here are the
# defaults. `custom` learns the 8x8 digits (upscaled to 32x32, 4x4 patches: 64 tokens of width 64)
# from scratch in about a minute on a CPU.
ARCHITECTURE_FLAGS = ("patch_size", "hidden_dim", "depth", "num_heads", "mlp_dim")
CUSTOM_MODELS = {
    "custom": ("vit", dict(patch_size=4, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128)),
    "custom-deit": ("deit", dict(patch_size=4, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128)),
    "custom-tnt": ("tnt", dict(patch_size=8, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128)),
    "custom-swin": ("swin", dict(patch_size=2, hidden_dim=32, depth=2, num_heads=2, mlp_dim=64)),
    "custom-detr": ("detr", dict(hidden_dim=64, depth=3, num_heads=4, mlp_dim=256)),
    "custom-conditional-detr": ("conditional_detr", dict(hidden_dim=64, depth=3, num_heads=4, mlp_dim=256)),
}
DETECTOR_FAMILIES = ("detr", "conditional_detr")
DEFAULT_CUSTOM_IMAGE_SIZE = 32
DETECTION_IMAGE_SIZE = 64  # the synthetic shapes are drawn at this size unless --image-size says otherwise
MAX_DEFAULT_WARMUP_EPOCHS = 3.0
DEFAULT_WARMUP_FRACTION = 0.15

# Defaults that differ between classification and detection (DETR's recipe, scaled to small models).
TASK_DEFAULTS = {
    "classification": dict(dataset="digits", epochs=20, batch_size=64, learning_rate=2e-3, weight_decay=0.05,
                           label_smoothing=0.1),
    "detection": dict(dataset="shapes", epochs=30, batch_size=32, learning_rate=5e-4, weight_decay=1e-4),
}


def add_parser(subparsers):
    """Adds `train` to the `keras-vit` sub-parsers.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="keras-vit")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "--model", "swin-t", "--epochs", "2"])
    >>> args.model, args.epochs
    ('SwinT', 2)
    """
    from keras_vit.models import model_names

    classifiers, detectors = model_names(task="classification"), model_names(task="detection")
    parser = subparsers.add_parser(
        "train",
        help="train a classifier (ViT, DeiT, TNT, Swin) or a DETR detector and save it",
        description=(
            "Builds a registered model or a small custom one, trains it (classifiers: AdamW with a warm-up + "
            "cosine schedule on --dataset; DETR: its set loss and recipe optimizer on synthetic shapes), "
            "evaluates it on held-out data (accuracy; COCO mAP@0.5 for DETR) and saves it as a .keras file. "
            "Classifiers are then exported to TFLite (float32 and int8) and the files scored. With no "
            "arguments: a small ViT from scratch on scikit-learn's handwritten digits (shipped with the "
            "package, no download)."
        ),
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", type=model_name_type(extra=tuple(CUSTOM_MODELS)), default="custom",
        help=f"classifiers: {', '.join(classifiers)}; detectors: {', '.join(detectors)}; or a small model set by "
             "the flags below: custom (ViT), custom-deit (with a distillation token), custom-tnt, custom-swin "
             "(2 stages, window 4), custom-detr and custom-conditional-detr (a 4-conv CNN backbone) (default: %(default)s)",
    )
    for flag, meaning in (("patch_size", "patch size"), ("hidden_dim", "width (DETR: d_model)"),
                          ("depth", "blocks (Swin: per stage; DETR: encoder and decoder layers)"),
                          ("num_heads", "attention heads (Swin: of the first stage)"),
                          ("mlp_dim", "MLP width (DETR: FFN width)")):
        defaults = "/".join(str(config[flag]) for _, config in CUSTOM_MODELS.values() if flag in config)
        model.add_argument("--" + flag.replace("_", "-"), type=positive_int,
                           help=f"custom models: {meaning} (default {defaults} for {_names_having(flag)})")
    model.add_argument("--image-size", type=positive_int,
                       help=f"square input size (default: {DEFAULT_CUSTOM_IMAGE_SIZE} for custom classifiers, "
                            f"{DETECTION_IMAGE_SIZE} for detectors on the shapes, the registry's size (224) for "
                            "named classifiers)")
    model.add_argument("--pooling", choices=("token", "avg", "max"), default=None,
                       help="classifiers: class token, mean or maximum of the patch tokens (default: the family's; "
                            "Swin: avg)")
    model.add_argument("--weights", default=None,
                       help="start from a checkpoint: imagenet (coco for DETR), a published name or a file; the "
                            "head is re-initialized for the dataset's classes")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout rate (default: %(default)s)")
    model.add_argument("--drop-path-rate", type=float, default=0.1,
                       help="classifiers: stochastic depth rate of the last block (default: %(default)s)")
    model.add_argument("--queries", type=positive_int, default=10,
                       help="detectors: object queries (at least the most objects in an image) (default: %(default)s)")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=None,
                      help="classifiers: digits, tfds:NAME (e.g. tfds:cifar10) or folder:PATH "
                           "(PATH/<split>/<class>/<image>) (default digits); detectors: shapes (default)")
    data.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder (tfds: datasets)")
    data.add_argument("--limit", type=positive_int, default=None,
                      help="use at most this many examples per split (quick runs); detectors: shape images "
                           "(default 4096 training, 256 held out)")
    data.add_argument("--randaugment", action="store_true", help="classifiers: Keras RandAugment on the training images")
    data.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="classifiers: MixUp alpha (0: off) (default: %(default)s)")
    data.add_argument("--cutmix", type=float, default=0.0, metavar="FACTOR", help="classifiers: CutMix factor (0: off) (default: %(default)s)")
    data.add_argument("--label-smoothing", type=float, default=None, help="classifiers: label smoothing (default 0.1)")

    training = parser.add_argument_group("training")
    classification, detection = TASK_DEFAULTS["classification"], TASK_DEFAULTS["detection"]
    training.add_argument("--epochs", type=positive_int, default=None,
                          help=f"training epochs (default {classification['epochs']}; detectors {detection['epochs']})")
    training.add_argument("--batch-size", type=positive_int, default=None,
                          help=f"examples per batch (default {classification['batch_size']}; detectors {detection['batch_size']})")
    training.add_argument("--learning-rate", type=float, default=None,
                          help=f"peak learning rate, AdamW (default {classification['learning_rate']}; detectors "
                               f"{detection['learning_rate']}, the backbone at a tenth of it)")
    training.add_argument("--weight-decay", type=float, default=None,
                          help=f"AdamW weight decay (default {classification['weight_decay']}; detectors {detection['weight_decay']})")
    training.add_argument("--warmup-epochs", type=float, default=None,
                          help=f"classifiers: linear warm-up before the cosine decay (default {DEFAULT_WARMUP_FRACTION * 100:.0f}%% "
                               f"of --epochs, at most {MAX_DEFAULT_WARMUP_EPOCHS:g})")
    training.add_argument("--eval-every", type=positive_int, default=5,
                          help="detectors: held-out COCO mAP after every this many epochs (default: %(default)s)")
    training.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and augmentation (default: %(default)s)")
    training.add_argument("--threads", type=positive_int, default=None,
                          help="CPU threads per op (torch and tensorflow backends); 1 is often faster for small models on a busy CPU")
    training.add_argument("--progress", choices=("bar", "epoch", "none"), default="bar",
                          help="Keras' progress display: a bar per epoch, one line per epoch, or none (default: %(default)s)")
    training.add_argument("--resume", action="store_true",
                          help="continue a killed run from its last completed epoch (every run backs up its weights and "
                               "optimizer after each epoch to <output>.backup/, deleted when training completes); classifiers: "
                               "the same final weights as an uninterrupted run with the same flags (without --randaugment, "
                               "--mixup, --cutmix, whose random streams restart); DETR: close, not equal (its shuffle and flips restart)")
    training.add_argument("--output", default=None, help="where to save the model (.keras); default saved_models/<model>_<dataset>.keras")
    training.add_argument("--no-export", action="store_true",
                          help="classifiers: skip the final TFLite export (float32 and int8) and its test-split accuracy")
    add_verbose_flag(parser)
    parser.set_defaults(run=run)
    return parser


def _names_having(flag):
    return "/".join(name for name, (_, config) in CUSTOM_MODELS.items() if flag in config)


def model_family_and_task(name):
    """(family, task) of a registered name or a custom model.

    Example:
    >>> model_family_and_task("custom-swin"), model_family_and_task("DETRResNet50")
    (('swin', 'classification'), ('detr', 'detection'))
    """
    if name in CUSTOM_MODELS:
        family = CUSTOM_MODELS[name][0]
        return family, "detection" if family in DETECTOR_FAMILIES else "classification"
    from keras_vit.models import get_model_spec

    spec = get_model_spec(name)
    return spec.family, spec.task


def default_warmup_epochs(epochs):
    """The warm-up when --warmup-epochs is not given: 15% of training, at most 3 epochs.

    Example:
    >>> default_warmup_epochs(20), default_warmup_epochs(1)
    (3.0, 0.15)
    """
    return min(MAX_DEFAULT_WARMUP_EPOCHS, DEFAULT_WARMUP_FRACTION * epochs)


def learning_rate_schedule(learning_rate, epochs, steps_per_epoch, warmup_epochs=None):
    """Linear warm-up to `learning_rate`, then cosine decay to 0 at the end of training.

    The warm-up is `default_warmup_epochs(epochs)` unless given, and always ends before the
    last step: with `--epochs 1` it is the first 15% of the epoch, so the run trains at a
    useful rate for most of its steps.

    Example:
    >>> schedule = learning_rate_schedule(2e-3, epochs=1, steps_per_epoch=20)
    >>> schedule.warmup_steps, round(float(schedule(3)), 6)
    (3, 0.002)
    """
    import keras

    total_steps = steps_per_epoch * epochs
    warmup_epochs = default_warmup_epochs(epochs) if warmup_epochs is None else warmup_epochs
    warmup_steps = min(int(warmup_epochs * steps_per_epoch), total_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def dataset_slug(source):
    """A file-name-safe name of a dataset source ("tfds:cifar10" -> "tfds_cifar10")."""
    kind, _, location = source.partition(":")
    if not location:
        return kind
    name = os.path.basename(os.path.normpath(location)) if kind == "folder" else location.split("/")[0].split(":")[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{kind}_{name}")


def architecture(args, family):
    """The custom model's architecture flags (defaults filled in), or None for a registered model;
    raises for flags that the model does not take."""
    overrides = {flag: getattr(args, flag) for flag in ARCHITECTURE_FLAGS if getattr(args, flag) is not None}
    if args.model not in CUSTOM_MODELS:
        if overrides:
            flags = ", ".join("--" + f.replace("_", "-") for f in overrides)
            raise CommandError(
                f"{flags} set a custom architecture; drop --model {args.model} (or use --model "
                f"{'custom' if family == 'vit' else 'custom-' + family.replace('_', '-')}) to use them."
            )
        return None
    defaults = CUSTOM_MODELS[args.model][1]
    unknown = [f for f in overrides if f not in defaults]
    if unknown:
        raise CommandError(f"--{unknown[0].replace('_', '-')} does not apply to --model {args.model}.")
    config = dict(defaults, **overrides)
    if config["hidden_dim"] % config["num_heads"] != 0:
        raise CommandError(f"--hidden-dim {config['hidden_dim']} is not divisible by --num-heads {config['num_heads']}.")
    return config


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


def keras_verbosity(args):
    """Keras' `verbose=` for --progress."""
    return {"bar": 1, "epoch": 2, "none": 0}[args.progress]


def output_path(args, model_name, dataset):
    """--output, or saved_models/<model>_<dataset>.keras."""
    output = args.output or os.path.join("saved_models", f"{model_name}_{dataset_slug(dataset)}.keras")
    if not output.endswith(".keras"):
        raise CommandError(f"--output {output!r} must end with .keras (Keras' model format).")
    return output


def backup_callbacks(args, output, shuffle_epoch=None):
    """The callbacks that make a run resumable: the epoch-seeded shuffle, the atomic per-epoch backup in
    `<output>.backup/` (restored with --resume, else a stale one is removed), and a test-only kill."""
    import shutil

    from keras_vit.training import AtomicBackupAndRestore, read_backup_epoch

    backup_dir = os.path.splitext(output)[0] + ".backup"
    completed = read_backup_epoch(backup_dir) if os.path.isdir(backup_dir) else None
    if args.resume and completed is not None:
        print(f"Resuming from the backup in {backup_dir} after epoch {completed} of {args.epochs}.", flush=True)
    elif args.resume:
        print(f"--resume: no backup in {backup_dir}; training from the start.", flush=True)
    elif os.path.isdir(backup_dir):
        print(f"Removing the backup of an earlier run in {backup_dir} (pass --resume to continue it).", flush=True)
        shutil.rmtree(backup_dir)
    callbacks = ([shuffle_epoch] if shuffle_epoch is not None else []) + [AtomicBackupAndRestore(backup_dir)]
    kill_after = os.environ.get("KERAS_VIT_TEST_KILL_AFTER_EPOCH")
    if kill_after:  # tests: a hard kill (no clean-up) right after an epoch's backup
        callbacks.append(_KillAfterEpoch(int(kill_after)))
    return callbacks


def _kill_after_epoch_class():
    import signal

    import keras

    class KillAfterEpoch(keras.callbacks.Callback):
        def __init__(self, epochs):
            super().__init__()
            self.epochs = epochs

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == self.epochs:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterEpoch


def _KillAfterEpoch(epochs):
    return _kill_after_epoch_class()(epochs)


def run(args):
    """Runs `keras-vit train` with parsed arguments; returns the exit status."""
    start = time.time()
    family, task = model_family_and_task(args.model)
    for name, value in TASK_DEFAULTS[task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("mixup", "cutmix", "label_smoothing", "dropout", "drop_path_rate"):
        if (getattr(args, name) or 0) < 0:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 0.")
    config = architecture(args, family)
    if task == "detection":
        from keras_vit.cli.train_detr import train_detr

        return train_detr(args, family, config, start)
    return train_classifier(args, family, config, start)


def build_classifier(args, family, config, image_size, num_classes):
    """The classifier to train: a registered builder at `image_size`, or a custom model of `family`."""
    pooling = args.pooling
    if family == "swin" and pooling == "token":
        raise CommandError("--pooling token: Swin has no class token; it pools with avg.")
    options = dict(num_classes=num_classes, weights=args.weights, include_preprocessing=True, dropout=args.dropout,
                   drop_path_rate=args.drop_path_rate, seed=args.seed)
    if pooling is not None:
        options["pooling"] = pooling
    if config is None:
        from keras_vit.models import get_model_spec

        return get_model_spec(args.model).builder(input_shape=(image_size, image_size, 3), **options)
    if image_size % config["patch_size"] != 0:
        fixed = max(config["patch_size"], round(image_size / config["patch_size"]) * config["patch_size"])
        raise CommandError(
            f"--image-size {image_size} is not a multiple of the patch size {config['patch_size']}; use e.g. --image-size {fixed}."
        )
    name = f"{family}_custom"
    if family in ("vit", "deit"):
        from keras_vit.models import VisionTransformer

        return VisionTransformer(image_size=image_size, distilled=family == "deit", name=name, **options, **config)
    width, heads = config["hidden_dim"], config["num_heads"]
    if family == "tnt":
        from keras_vit.models import TNT

        inner_dim = max(width // 4, 1)  # pixel width; TNT-S has 1/16 of 384, a small model needs a larger share
        return TNT(image_size=image_size, patch_size=config["patch_size"], hidden_dim=width, inner_dim=inner_dim,
                   depth=config["depth"], num_heads=heads, inner_num_heads=2 if inner_dim % 2 == 0 else 1,
                   mlp_dim=config["mlp_dim"], name=name, **options)
    from keras_vit.models import SwinTransformer

    first_stage = image_size // config["patch_size"]
    return SwinTransformer(image_size=image_size, patch_size=config["patch_size"], window_size=min(4, first_stage),
                           hidden_dim=width, depths=(config["depth"],) * 2, num_heads=(heads, 2 * heads),
                           mlp_ratio=config["mlp_dim"] / width, name=name, **options)


def train_classifier(args, family, config, start):
    """Trains, evaluates, saves and exports a classifier; returns the exit status."""
    if config is None:
        from keras_vit.models import get_model_spec

        image_size = args.image_size or get_model_spec(args.model).default_input_size
        model_name = args.model.lower()
    else:
        image_size = args.image_size or DEFAULT_CUSTOM_IMAGE_SIZE
        model_name = f"{family}_custom"
    output = output_path(args, model_name, args.dataset)

    import keras

    if args.threads is not None:
        _set_threads(keras.backend.backend(), args.threads)

    from keras_vit.data import ShuffleEpoch, load_classification_data

    keras.utils.set_random_seed(args.seed)
    # Each epoch's order depends on the seed and the epoch alone, so a resumed run sees the same batches.
    shuffle_epoch = ShuffleEpoch()
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
        shuffle_epoch=shuffle_epoch,
    )
    if data.num_examples["train"] < args.batch_size:
        raise CommandError(
            f"The training split has {data.num_examples['train']} examples, fewer than --batch-size {args.batch_size}; "
            "lower --batch-size."
        )
    if args.weights:
        progress(f"Building {args.model} with the weights {args.weights}")
    model = build_classifier(args, family, config, image_size, data.num_classes)
    # The model keeps its class names (the dataset's folder or tfds label names) and how its images were
    # resized, through the .keras file and into the .tflite files' labels files.
    from keras_vit.data.classification import PIPELINE_IMAGE_RECIPE
    from keras_vit.labels import with_class_names

    model = with_class_names(model, data.class_names, image_recipe=PIPELINE_IMAGE_RECIPE)
    schedule = learning_rate_schedule(args.learning_rate, args.epochs, data.steps_per_epoch, args.warmup_epochs)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay, global_clipnorm=1.0)
    if data.one_hot:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    described = ", ".join(f"{k} {v}" for k, v in config.items()) if config else "canonical configuration"
    print(
        f"Training {model_name} ({described}, image {image_size}x{image_size}, {model.count_params():,} parameters) "
        f"on {args.dataset} ({data.num_examples['train']} train / {data.num_examples['validation']} validation / "
        f"{data.num_examples['test']} test images, {data.num_classes} classes) for {args.epochs} epochs "
        f"({schedule.warmup_steps} of {schedule.warmup_steps + schedule.decay_steps} steps warming up) "
        f"on the {keras.backend.backend()} backend.",
        flush=True,
    )
    verbose = keras_verbosity(args)
    # The datasets shuffle themselves (tf.data); shuffle=False stops Keras warning that it cannot.
    model.fit(data.train, validation_data=data.validation, epochs=args.epochs, shuffle=False, verbose=verbose,
              callbacks=backup_callbacks(args, output, shuffle_epoch))
    results = model.evaluate(data.test, return_dict=True, verbose=verbose)

    # Written to a temporary file and renamed: a kill mid-save keeps the previous model.
    save_model(model, output)
    print(f"Test accuracy: {results['accuracy']:.4f} ({data.num_examples['test']} test images, split {data.splits['test']!r})")
    print(f"Model saved to: {os.path.abspath(output)}")
    if not args.no_export:
        # Ship it: float32 and int8 .tflite files next to the .keras file, each checked against the model,
        # then run on the test split (int8 calibrated on the validation split).
        from keras_vit.export import export_and_evaluate_tflite

        export_and_evaluate_tflite(model, data.test, data.validation, os.path.splitext(output)[0],
                                   keras_accuracy=results["accuracy"], progress_fn=progress)
    print(f"Total time: {time.time() - start:.0f} s")
    return 0

