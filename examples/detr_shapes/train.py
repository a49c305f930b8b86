"""Trains a small DETR from scratch on the synthetic shapes dataset and reports COCO mAP.

    KERAS_BACKEND=jax python examples/detr_shapes/train.py            # ~ the README's run
    KERAS_BACKEND=torch python examples/detr_shapes/train.py --epochs 2 --train-images 512   # a smoke run
    KERAS_BACKEND=jax python examples/detr_shapes/train.py --resume   # continue a killed run
    KERAS_BACKEND=jax python examples/detr_shapes/train.py --epochs 10 --lr-drop-epoch 8   # 10x lower after epoch 8
    KERAS_BACKEND=jax python examples/detr_shapes/train.py --epochs 10 --warmup-epochs 1 --cosine \
        --tune-images 256 --val-images 0   # choose a recipe on the tuning split, held-out set untouched

The dataset (keras_vit.data.shapes) draws circles, rectangles and triangles in random colors on
random textures, with their exact boxes; training and held-out images come from disjoint index
ranges of the same seeded stream, so every run sees the same data. The model is DETR with a small
CNN backbone (stride 8), trained with DETR's set loss (Hungarian matching, auxiliary losses) and
recipe optimizer (AdamW, backbone at a 10x lower rate, gradients clipped at global norm 0.1). The
learning rate is constant unless `--lr-drop-epoch N` is given: then it is multiplied by `--lr-drop-factor`
(0.1) after N epochs, as DETR's recipe does after 400 of 500 epochs; or `--warmup-epochs` (a linear
ramp) and `--cosine` (a cosine decay to 0 at the last step) shape it.

Recipes are chosen on a tuning split (`--tune-images N`: images 2,000,000.. of the same stream, disjoint
from the training images 0.. and the held-out images 1,000,000..), not on the held-out set;
`--val-images 0` leaves the held-out set out of a run altogether.
"""

import argparse
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from keras_vit.atomic_files import atomic_open
from keras_vit.data import SHAPES_CLASS_NAMES, detection_dataset_from_arrays, make_shapes_dataset
from keras_vit.data import prepare_detection_dataset
from keras_vit.layers.denoising import Denoising
from keras_vit.models.conditional_detr.conditional_detr_model import ConditionalDETR
from keras_vit.models.detr.detr_model import DETR
from keras_vit.training import AtomicBackupAndRestore, COCOMetricsCallback, detr_optimizer, evaluate_coco
from keras_vit.training import read_backup_epoch

HELD_OUT_START = 10**6  # held-out images: 1,000,000 .. of the seed's stream
TUNE_START = 2 * 10**6  # tuning split: 2,000,000 .. (training uses 0 .. train_images - 1)


def small_cnn(width=64):
    """A 4-conv backbone with stride 8: 64x64 images -> an 8x8 feature map."""
    layers = []
    for filters, stride in ((width // 2, 2), (width, 2), (width, 1), (2 * width, 2)):
        layers += [
            keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    return keras.Sequential([keras.Input((None, None, 3))] + layers, name="cnn")


def step_learning_rate(learning_rate, steps_per_epoch, drop_epoch=None, drop_factor=0.1):
    """The learning rate, or a schedule that multiplies it by `drop_factor` once `drop_epoch` epochs are done.

    The optimizer evaluates a schedule at its iteration count (restored with its state on `--resume`), and
    PiecewiseConstantDecay keeps the first value up to and including the boundary step: the boundary is the
    last step of epoch `drop_epoch`, so every step of the epochs after it runs at the dropped rate.

    >>> schedule = step_learning_rate(1e-3, steps_per_epoch=4, drop_epoch=2)
    >>> [round(float(keras.ops.convert_to_numpy(schedule(step))), 6) for step in (0, 7, 8, 11)]
    [0.001, 0.001, 0.0001, 0.0001]
    >>> step_learning_rate(1e-3, steps_per_epoch=4)
    0.001
    """
    if drop_epoch is None:
        return learning_rate
    if drop_epoch < 1 or steps_per_epoch < 1:
        raise ValueError(f"--lr-drop-epoch must be at least 1 (got {drop_epoch}) and an epoch needs at least one "
                         f"step (got {steps_per_epoch}: are there fewer training images than --batch-size?).")
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries=[drop_epoch * steps_per_epoch - 1], values=[learning_rate, learning_rate * drop_factor])


class WarmupCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warmup to `learning_rate`, then constant or (`cosine=True`) a cosine decay to 0.

    Step s (counted from 0) of the warmup runs at `learning_rate * (s + 1) / warmup_steps`, so the first
    step already learns and step `warmup_steps - 1` runs at the full rate; with `cosine`, the rate then
    follows `0.5 * (1 + cos(pi * t))`, t going from 0 after the warmup to 1 at `total_steps`.

    >>> schedule = WarmupCosineSchedule(1e-3, warmup_steps=4, total_steps=12, cosine=True)
    >>> [round(float(keras.ops.convert_to_numpy(schedule(step))), 6) for step in (0, 3, 8, 12)]
    [0.00025, 0.001, 0.0005, 0.0]
    """

    def __init__(self, learning_rate, warmup_steps=0, total_steps=None, cosine=False):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.cosine = bool(cosine)
        if self.cosine and (self.total_steps is None or self.total_steps <= self.warmup_steps):
            raise ValueError(f"A cosine decay needs more steps ({total_steps}) than the warmup ({warmup_steps}).")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = keras.ops.convert_to_tensor(self.learning_rate, "float32")
        if self.warmup_steps:
            rate = rate * keras.ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        if self.cosine:
            progress = keras.ops.clip((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "cosine": self.cosine}  # fmt: skip


def recipe_learning_rate(args, steps_per_epoch):
    """The learning rate (float or schedule) that train.py's flags ask for."""
    if args.lr_drop_epoch is not None and (args.warmup_epochs or args.cosine):
        raise ValueError("--lr-drop-epoch is a step schedule of its own: use it without --warmup-epochs and --cosine.")
    if args.warmup_epochs < 0:
        raise ValueError(f"--warmup-epochs must be >= 0 (got {args.warmup_epochs}).")
    if args.warmup_epochs or args.cosine:
        return WarmupCosineSchedule(
            args.learning_rate, warmup_steps=round(args.warmup_epochs * steps_per_epoch),
            total_steps=args.epochs * steps_per_epoch, cosine=args.cosine,
        )  # fmt: skip
    return step_learning_rate(args.learning_rate, steps_per_epoch, args.lr_drop_epoch, args.lr_drop_factor)


def describe_schedule(learning_rate):
    """The schedule as json: a constant rate, PiecewiseConstantDecay's boundaries (optimizer steps) and values,
    or the warmup / cosine schedule's settings."""
    if isinstance(learning_rate, keras.optimizers.schedules.PiecewiseConstantDecay):
        config = learning_rate.get_config()
        return {"boundaries": [int(b) for b in config["boundaries"]], "values": [float(v) for v in config["values"]]}
    if isinstance(learning_rate, WarmupCosineSchedule):
        return learning_rate.get_config()
    return {"constant": float(learning_rate)}


def shapes_splits(args):
    """Training, held-out and tuning images: disjoint index ranges of the seed's stream (None when 0 images)."""
    def split(count, start):
        return make_shapes_dataset(count, args.image_size, 3, seed=args.seed, start=start) if count else None

    return split(args.train_images, 0), split(args.val_images, HELD_OUT_START), split(args.tune_images, TUNE_START)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("detr", "conditional-detr"), default="detr",
                        help="plain DETR (softmax classes, learned queries) or Conditional DETR (sigmoid focal "
                             "classes, conditional spatial queries); the same backbone and transformer sizes")
    parser.add_argument("--denoising", action="store_true",
                        help="add DN-DETR's denoising queries in training (5 groups, label noise 0.2, box noise 0.4)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=4096)
    parser.add_argument("--val-images", type=int, default=256,
                        help="held-out images (indices 1,000,000..); 0: no held-out evaluation")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--backbone-learning-rate", type=float, default=5e-5)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--lr-drop-epoch", type=int, default=None,
                        help="multiply the learning rates (backbone too) by --lr-drop-factor after this many epochs "
                             "(default: constant rates)")
    parser.add_argument("--lr-drop-factor", type=float, default=0.1)
    parser.add_argument("--warmup-epochs", type=float, default=0.0,
                        help="ramp both rates up linearly over this many epochs (default: none)")
    parser.add_argument("--cosine", action="store_true",
                        help="after the warmup, decay both rates along a cosine to 0 at the last step")
    parser.add_argument("--tune-images", type=int, default=0,
                        help="also evaluate (every --eval-every epochs) on this many tuning images, drawn from "
                             "indices 2,000,000.. of the stream: disjoint from training and held-out images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--output", default=None, help="write the final metrics (json) here")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run from its last completed epoch (weights and optimizer are backed up "
                             "after every epoch to <output>.backup/, or detr_shapes.backup/ without --output)")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    max_objects = 3

    start = time.time()
    train, val, tune = shapes_splits(args)
    print(f"generated {args.train_images} training, {args.val_images} held-out and {args.tune_images} tuning "
          f"images in {time.time() - start:.1f}s")  # fmt: skip
    num_classes = len(SHAPES_CLASS_NAMES)
    size = (args.image_size, args.image_size)
    train_ds = prepare_detection_dataset(
        detection_dataset_from_arrays(train["images"], train["boxes"], train["labels"], train["valid"]),
        size, max_boxes=max_objects, batch_size=args.batch_size, num_classes=num_classes,
        training=True, scale_range=(1.0, 1.0), shuffle_buffer=2048, seed=args.seed,
    )  # fmt: skip

    def evaluation_dataset(data):
        return None if data is None else prepare_detection_dataset(
            detection_dataset_from_arrays(data["images"], data["boxes"], data["labels"], data["valid"]),
            size, max_boxes=max_objects, batch_size=64, num_classes=num_classes,
        )  # fmt: skip

    val_ds, tune_ds = evaluation_dataset(val), evaluation_dataset(tune)

    detector = {"detr": DETR, "conditional-detr": ConditionalDETR}[args.model]
    model = detector(
        small_cnn(), num_classes=num_classes, num_queries=args.queries, hidden_dim=64,
        num_encoder_layers=2, num_decoder_layers=3, num_heads=4, mlp_dim=256, dropout=0.0,
        include_preprocessing=True, input_shape=(args.image_size, args.image_size, 3),
        denoising=Denoising(groups=5, label_noise=0.2, box_noise=0.4) if args.denoising else None,
    )  # fmt: skip
    print(f"{detector.__name__}{' + denoising' if args.denoising else ''}: {model.count_params():,} parameters, "
          f"backend {keras.backend.backend()}")
    steps_per_epoch = args.train_images // args.batch_size  # the training batches drop the remainder
    learning_rate = recipe_learning_rate(args, steps_per_epoch)
    optimizer = detr_optimizer(
        model, learning_rate=learning_rate,
        # The backbone follows the schedule (warmup, cosine or drop) at this fixed fraction of its rate.
        backbone_learning_rate_multiplier=args.backbone_learning_rate / args.learning_rate,
        weight_decay=1e-4, clipnorm=0.1,
    )  # fmt: skip
    # The matching runs on the host (scipy): no XLA on TensorFlow.
    model.compile(optimizer=optimizer, jit_compile=keras.backend.backend() == "jax")
    # Training time, loss and learning rate per epoch (the rate at the epoch's first step, read from the
    # optimizer, so a resumed run shows the rate it really used); the clock stops before the COCO evaluation.
    epoch_log, epoch_start = [], {}
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_start.update(
            time=time.time(), learning_rate=float(keras.ops.convert_to_numpy(optimizer.learning_rate))),
        on_epoch_end=lambda epoch, logs: epoch_log.append({
            "epoch": epoch + 1, "loss": float(logs["loss"]), "learning_rate": epoch_start["learning_rate"],
            "train_minutes": (epoch_log[-1]["train_minutes"] if epoch_log else 0.0)
            + (time.time() - epoch_start["time"]) / 60}),
    )  # fmt: skip
    # The tuning split first: with both, the progress bar's val_* are the held-out set's (the last to log).
    tune_coco = COCOMetricsCallback(tune_ds, frequency=args.eval_every) if tune_ds is not None else None
    coco = COCOMetricsCallback(val_ds, frequency=args.eval_every) if val_ds is not None else None
    callbacks = [clock] + [c for c in (tune_coco, coco) if c is not None]
    # Backed up after every epoch (atomically); --resume restores the last backup. The data order and flips
    # are not replayed, so a resumed run is close to, not equal to, an uninterrupted one.
    backup_dir = os.path.splitext(args.output)[0] + ".backup" if args.output else "detr_shapes.backup"
    if os.path.isdir(backup_dir) and not args.resume:
        shutil.rmtree(backup_dir)
    elif args.resume:
        print(f"resuming after epoch {read_backup_epoch(backup_dir)} from {backup_dir}"
              if read_backup_epoch(backup_dir) else f"no backup in {backup_dir}: training from the start")
    callbacks.append(AtomicBackupAndRestore(backup_dir))
    start = time.time()
    model.fit(train_ds, epochs=args.epochs, callbacks=callbacks, verbose=1)
    train_time = time.time() - start
    print(f"training {train_time / 60:.1f} min")
    results = {}
    for key, name, dataset in (("tune_metrics", "tuning", tune_ds), ("metrics", "held-out", val_ds)):
        if dataset is not None:
            results[key] = evaluate_coco(model, dataset)
            print(f"{name} COCO mAP@[.5:.95] {results[key]['mAP']:.3f}  mAP@0.5 {results[key]['mAP50']:.3f}  "
                  f"mAP@0.75 {results[key]['mAP75']:.3f}")  # fmt: skip
    if args.output:
        with atomic_open(args.output, "w") as f:
            json.dump({"backend": keras.backend.backend(), "train_minutes": train_time / 60,
                       "args": vars(args), "learning_rate_schedule": describe_schedule(learning_rate),
                       **results, "history": coco.history if coco else [],
                       "tune_history": tune_coco.history if tune_coco else [], "epochs": epoch_log}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
