"""`keras-vit train` for detectors: DETR with its set loss on the bundled synthetic shapes.

The shapes (`keras_vit.data.make_shapes_dataset`: circles, rectangles and triangles on random
textures, exact boxes) are drawn from one seeded stream, training and held-out images from
disjoint index ranges, as `examples/detr_shapes/train.py` does. The model is a registered DETR
builder (DETRResNet50, ...) or `custom-detr`: DETR on a 4-conv CNN backbone of stride 8.
Training uses DETR's recipe optimizer (`keras_vit.training.detr_optimizer`: AdamW, the backbone
at a tenth of the learning rate, gradients clipped at global norm 0.1); the held-out score is
COCO mAP@0.5 (`keras_vit.training.evaluate_coco`, pycocotools).
"""

import os
import time

from keras_vit.atomic_files import save_model
from keras_vit.cli.common import CommandError, progress
from keras_vit.cli.train import (
    DETECTION_IMAGE_SIZE,
    _set_threads,
    backup_callbacks,
    keras_verbosity,
    output_path,
)

DEFAULT_TRAIN_IMAGES = 4096
DEFAULT_HELD_OUT_IMAGES = 256
MAX_OBJECTS = 3  # shapes per image
HELD_OUT_START = 10**6  # held-out images come from this index of the seeded stream on


def cnn_backbone(width):
    """A 4-conv backbone of stride 8 (64x64 images -> an 8x8 map of 2 * width channels).

    Example:
    >>> cnn_backbone(16).compute_output_shape((None, 64, 64, 3))
    (None, 8, 8, 32)
    """
    import keras

    layers = []
    for filters, stride in ((width // 2, 2), (width, 2), (width, 1), (2 * width, 2)):
        layers += [
            keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    return keras.Sequential([keras.Input((None, None, 3))] + layers, name="cnn")


def build_detector(args, config, image_size, class_names):
    """A registered DETR builder, or DETR on `cnn_backbone` sized by the custom flags, keeping `class_names`."""
    options = dict(num_classes=len(class_names), class_names=class_names, num_queries=args.queries, weights=args.weights, dropout=args.dropout,
                   include_preprocessing=True, input_shape=(image_size, image_size, 3))
    if config is None:
        from keras_vit.models import get_model_spec

        return get_model_spec(args.model).builder(**options)
    from keras_vit.models import DETR, ConditionalDETR

    detector = ConditionalDETR if args.model == "custom-conditional-detr" else DETR
    return detector(cnn_backbone(config["hidden_dim"]), hidden_dim=config["hidden_dim"],
                    num_encoder_layers=config["depth"], num_decoder_layers=config["depth"],
                    num_heads=config["num_heads"], mlp_dim=config["mlp_dim"], name=custom_detector_name(args.model),
                    **options)


def custom_detector_name(model):
    """The model (and output file) name of a custom detector: `detr_custom`, `conditional_detr_custom`.

    Example:
    >>> custom_detector_name("custom-conditional-detr")
    'conditional_detr_custom'
    """
    return "conditional_detr_custom" if model == "custom-conditional-detr" else "detr_custom"


def train_detr(args, family, config, start):
    """Trains, evaluates (held-out COCO mAP) and saves a DETR; returns the exit status."""
    if args.dataset != "shapes":
        raise CommandError(
            f"--dataset {args.dataset!r}: detectors train on the bundled synthetic shapes (--dataset shapes); for "
            "COCO, build the data with keras_vit.data.coco_detection_dataset in Python."
        )
    classification_only = [f"--{name}" for name in ("randaugment", "mixup", "cutmix") if getattr(args, name)]
    classification_only += ["--label-smoothing"] if args.label_smoothing is not None else []
    classification_only += ["--warmup-epochs"] if args.warmup_epochs is not None else []
    classification_only += ["--pooling"] if args.pooling is not None else []
    if classification_only:
        raise CommandError(f"{', '.join(classification_only)} apply to classifiers, not to --model {args.model}.")
    if args.queries < MAX_OBJECTS:
        raise CommandError(f"--queries {args.queries}: the shapes have up to {MAX_OBJECTS} objects per image; "
                           f"use at least {MAX_OBJECTS} queries.")
    image_size = args.image_size or DETECTION_IMAGE_SIZE
    train_images = min(DEFAULT_TRAIN_IMAGES, args.limit or DEFAULT_TRAIN_IMAGES)
    held_out_images = min(DEFAULT_HELD_OUT_IMAGES, args.limit or DEFAULT_HELD_OUT_IMAGES)
    if train_images < args.batch_size:
        raise CommandError(f"--limit {train_images} gives fewer training images than --batch-size {args.batch_size}; "
                           "lower --batch-size.")
    model_name = custom_detector_name(args.model) if config is not None else args.model.lower()
    output = output_path(args, model_name, args.dataset)

    import keras

    if args.threads is not None:
        _set_threads(keras.backend.backend(), args.threads)

    from keras_vit.data import (
        SHAPES_CLASS_NAMES,
        detection_dataset_from_arrays,
        make_shapes_dataset,
        prepare_detection_dataset,
    )
    from keras_vit.training import COCOMetricsCallback, detr_optimizer, evaluate_coco

    keras.utils.set_random_seed(args.seed)
    progress(f"Drawing {train_images} training and {held_out_images} held-out shape images of {image_size}x{image_size}")
    train = make_shapes_dataset(train_images, image_size, MAX_OBJECTS, seed=args.seed)
    held_out = make_shapes_dataset(held_out_images, image_size, MAX_OBJECTS, seed=args.seed, start=HELD_OUT_START)
    num_classes = len(SHAPES_CLASS_NAMES)
    size = (image_size, image_size)

    def pipeline(arrays, training):
        dataset = detection_dataset_from_arrays(arrays["images"], arrays["boxes"], arrays["labels"], arrays["valid"])
        return prepare_detection_dataset(
            dataset, size, max_boxes=MAX_OBJECTS, batch_size=args.batch_size, num_classes=num_classes,
            training=training, scale_range=(1.0, 1.0), shuffle_buffer=2048, seed=args.seed,
        )

    train_data, held_out_data = pipeline(train, training=True), pipeline(held_out, training=False)
    if args.weights:
        progress(f"Building {args.model} with the weights {args.weights}")
    model = build_detector(args, config, image_size, SHAPES_CLASS_NAMES)
    optimizer = detr_optimizer(model, learning_rate=args.learning_rate, backbone_learning_rate=args.learning_rate / 10,
                               weight_decay=args.weight_decay, clipnorm=0.1)
    # The matching runs on the host (scipy): XLA only where the backend compiles around it (JAX).
    model.compile(optimizer=optimizer, jit_compile=keras.backend.backend() == "jax")

    if config is not None:
        described = (f"width {config['hidden_dim']}, {config['depth']} encoder and decoder layers, "
                     f"{config['num_heads']} heads, FFN {config['mlp_dim']}, CNN backbone")
    else:
        described = "canonical configuration"
    print(
        f"Training {model_name} ({described}, {args.queries} queries, image {image_size}x{image_size}, "
        f"{model.count_params():,} parameters) on shapes ({train_images} train / {held_out_images} held-out images, "
        f"{num_classes} classes: {', '.join(SHAPES_CLASS_NAMES)}) for {args.epochs} epochs on the "
        f"{keras.backend.backend()} backend.",
        flush=True,
    )
    callbacks = [COCOMetricsCallback(held_out_data, frequency=args.eval_every)] if args.epochs >= args.eval_every else []
    # Per-epoch backups, restored by --resume. The shapes pipeline's shuffle and flips are not replayed on
    # resume (its random state starts afresh): a resumed DETR run is close to, not equal to, an uninterrupted one.
    callbacks += backup_callbacks(args, output)
    # The dataset shuffles itself (tf.data); shuffle=False stops Keras warning that it cannot.
    model.fit(train_data, epochs=args.epochs, callbacks=callbacks, shuffle=False, verbose=keras_verbosity(args))

    progress(f"Scoring the {held_out_images} held-out images (COCO mAP, pycocotools)")
    metrics = evaluate_coco(model, held_out_data)
    # Written to a temporary file and renamed: a kill mid-save keeps the previous model.
    save_model(model, output)
    print(f"Held-out mAP@0.5: {metrics['mAP50']:.4f} (mAP@[.5:.95] {metrics['mAP']:.4f}, mAP@0.75 "
          f"{metrics['mAP75']:.4f}; {held_out_images} images)")
    print(f"Model saved to: {os.path.abspath(output)}")
    print(f"Total time: {time.time() - start:.0f} s")
    return 0
