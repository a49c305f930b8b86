"""Trains a small DETR from scratch on the synthetic shapes dataset and reports COCO mAP.

    KERAS_BACKEND=jax python examples/detr_shapes/train.py            # ~ the README's run
    KERAS_BACKEND=torch python examples/detr_shapes/train.py --epochs 2 --train-images 512   # a smoke run
    KERAS_BACKEND=jax python examples/detr_shapes/train.py --resume   # continue a killed run
    KERAS_BACKEND=jax python examples/detr_shapes/train.py --epochs 10 --lr-drop-epoch 8   # 10x lower after epoch 8

The dataset (keras_vit.data.shapes) draws circles, rectangles and triangles in random colors on
random textures, with their exact boxes; training and held-out images come from disjoint index
ranges of the same seeded stream, so every run sees the same data. The model is DETR with a small
CNN backbone (stride 8), trained with DETR's set loss (Hungarian matching, auxiliary losses) and
recipe optimizer (AdamW, backbone at a 10x lower rate, gradients clipped at global norm 0.1). The
learning rate is constant unless `--lr-drop-epoch N` is given: then it is multiplied by `--lr-drop-factor`
(0.1) after N epochs, as DETR's recipe does after 400 of 500 epochs.
"""

import argparse
import json
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


def describe_schedule(learning_rate):
    """The schedule as json: a constant rate, or PiecewiseConstantDecay's boundaries (optimizer steps) and values."""
    if isinstance(learning_rate, keras.optimizers.schedules.PiecewiseConstantDecay):
        config = learning_rate.get_config()
        return {"boundaries": [int(b) for b in config["boundaries"]], "values": [float(v) for v in config["values"]]}
    return {"constant": float(learning_rate)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("detr", "conditional-detr"), default="detr",
                        help="plain DETR (softmax classes, learned queries) or Conditional DETR (sigmoid focal "
                             "classes, conditional spatial queries); the same backbone and transformer sizes")
    parser.add_argument("--denoising", action="store_true",
                        help="add DN-DETR's denoising queries in training (5 groups, label noise 0.2, box noise 0.4)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=4096)
    parser.add_argument("--val-images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--backbone-learning-rate", type=float, default=5e-5)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--lr-drop-epoch", type=int, default=None,
                        help="multiply the learning rates (backbone too) by --lr-drop-factor after this many epochs "
                             "(default: constant rates)")
    parser.add_argument("--lr-drop-factor", type=float, default=0.1)
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
    train = make_shapes_dataset(args.train_images, args.image_size, max_objects, seed=args.seed)
    val = make_shapes_dataset(args.val_images, args.image_size, max_objects, seed=args.seed, start=10**6)
    print(f"generated {args.train_images} training and {args.val_images} held-out images "
          f"in {time.time() - start:.1f}s")  # fmt: skip
    num_classes = len(SHAPES_CLASS_NAMES)
    size = (args.image_size, args.image_size)
    train_ds = prepare_detection_dataset(
        detection_dataset_from_arrays(train["images"], train["boxes"], train["labels"], train["valid"]),
        size, max_boxes=max_objects, batch_size=args.batch_size, num_classes=num_classes,
        training=True, scale_range=(1.0, 1.0), shuffle_buffer=2048, seed=args.seed,
    )  # fmt: skip
    val_ds = prepare_detection_dataset(
        detection_dataset_from_arrays(val["images"], val["boxes"], val["labels"], val["valid"]),
        size, max_boxes=max_objects, batch_size=64, num_classes=num_classes,
    )  # fmt: skip

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
    learning_rate = step_learning_rate(args.learning_rate, steps_per_epoch, args.lr_drop_epoch, args.lr_drop_factor)
    optimizer = detr_optimizer(
        model, learning_rate=learning_rate, backbone_learning_rate=args.backbone_learning_rate,
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
    coco = COCOMetricsCallback(val_ds, frequency=args.eval_every)
    callbacks = [clock, coco]
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
    metrics = evaluate_coco(model, val_ds)
    print(f"held-out COCO mAP@[.5:.95] {metrics['mAP']:.3f}  mAP@0.5 {metrics['mAP50']:.3f}  "
          f"mAP@0.75 {metrics['mAP75']:.3f}  (training {train_time / 60:.1f} min)")  # fmt: skip
    if args.output:
        with atomic_open(args.output, "w") as f:
            json.dump({"backend": keras.backend.backend(), "train_minutes": train_time / 60,
                       "args": vars(args), "learning_rate_schedule": describe_schedule(learning_rate),
                       "metrics": metrics,
                       "history": coco.history, "epochs": epoch_log}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
