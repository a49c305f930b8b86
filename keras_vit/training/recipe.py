"""The DeiT training recipe (Touvron et al., 2021, and facebookresearch/deit `main.py`) as reusable parts.

- `deit_optimizer`: AdamW, lr 5e-4 x batch / 512, weight decay 0.05 except on
  norms, biases, tokens and position embeddings (`no_weight_decay_variables`),
  linear warm-up then cosine decay (`warmup_cosine_schedule`), optionally an
  exponential moving average of the weights (Keras' `use_ema`).
- `deit_loss`: cross-entropy on soft labels with label smoothing 0.1.
- `DeiTAugmentation`: RandAugment, random erasing, then MixUp or CutMix with
  soft labels, from Keras core layers; `AugmentedBatches` feeds it to `fit()`.
- Stochastic depth is the models' `drop_path_rate` (0.1 in the recipe).

Every number of the recipe is in `DEIT_RECIPE`.
"""

import math

import keras
import numpy as np
from keras import ops

DEIT_RECIPE = {
    "base_learning_rate": 5e-4,  # for a batch of 512, scaled linearly with the batch
    "reference_batch_size": 512,
    "weight_decay": 0.05,
    "epochs": 300,
    "warmup_epochs": 5,
    "warmup_learning_rate": 1e-6,
    "min_learning_rate": 1e-5,
    "adam_epsilon": 1e-8,
    "label_smoothing": 0.1,
    "randaugment_num_ops": 2,
    "randaugment_magnitude": 9,  # of 10 (timm "rand-m9-mstd0.5-inc1")
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
    "mixup_cutmix_switch_probability": 0.5,
    "random_erasing_probability": 0.25,
    "drop_path_rate": 0.1,
    "ema_momentum": 0.99996,
}


def scaled_learning_rate(batch_size, base_learning_rate=DEIT_RECIPE["base_learning_rate"],
                         reference_batch_size=DEIT_RECIPE["reference_batch_size"]):
    """DeiT's linear scaling rule: `base_learning_rate * batch_size / 512`.

    Example:
    >>> scaled_learning_rate(1024)
    0.001
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    return base_learning_rate * batch_size / reference_batch_size


def warmup_cosine_schedule(peak_learning_rate, total_steps, warmup_steps,
                           warmup_learning_rate=DEIT_RECIPE["warmup_learning_rate"],
                           min_learning_rate=DEIT_RECIPE["min_learning_rate"]):
    """Linear warm-up from `warmup_learning_rate` to the peak, then cosine decay to `min_learning_rate`.

    A `keras.optimizers.schedules.CosineDecay` (per optimizer step): the cosine
    runs over the `total_steps - warmup_steps` steps after the warm-up.

    Example:
    >>> schedule = warmup_cosine_schedule(1e-3, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(10)), 6), round(float(schedule(100)), 6)
    (0.001, 1e-05)
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"Need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}.")
    if not 0 <= min_learning_rate <= peak_learning_rate:
        raise ValueError(f"min_learning_rate {min_learning_rate} must be in [0, peak {peak_learning_rate}].")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=warmup_learning_rate if warmup_steps else peak_learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=min_learning_rate / peak_learning_rate,
        warmup_target=peak_learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def _token_and_position_layers():
    from keras_vit.layers.position_embedding import PositionEmbedding
    from keras_vit.layers.tokens import ClassToken

    return (ClassToken, PositionEmbedding)


# Variables with these names are excluded too (timm's `no_weight_decay()` of the families).
NO_WEIGHT_DECAY_NAMES = ("cls_token", "dist_token", "pos_embed", "position_embedding",
                         "absolute_pos_embed", "relative_position_bias_table")


def no_weight_decay_variables(model):
    """The trainable variables that get no weight decay in DeiT.

    As timm's `param_groups_weight_decay`: every variable of rank <= 1 (biases,
    norm scales and offsets), and the class/distillation tokens and position
    embeddings (the `ClassToken` and `PositionEmbedding` layers, and variables
    whose path names one of `NO_WEIGHT_DECAY_NAMES`).

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 192, num_classes=10)
    >>> sorted(v.path for v in no_weight_decay_variables(model) if len(v.shape) > 1)
    ['cls_token/token', 'pos_embed/embedding']
    """
    token_layers = _token_and_position_layers()
    excluded = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, token_layers):
            excluded.update(id(v) for v in layer.trainable_variables)
    variables = []
    for variable in model.trainable_variables:
        if (len(variable.shape) <= 1 or id(variable) in excluded
                or any(name in variable.path for name in NO_WEIGHT_DECAY_NAMES)):
            variables.append(variable)
    return variables


def deit_optimizer(model, batch_size, steps_per_epoch, epochs=DEIT_RECIPE["epochs"],
                   warmup_epochs=DEIT_RECIPE["warmup_epochs"], base_learning_rate=DEIT_RECIPE["base_learning_rate"],
                   weight_decay=DEIT_RECIPE["weight_decay"], use_ema=False,
                   ema_momentum=DEIT_RECIPE["ema_momentum"], **adamw_kwargs):
    """AdamW with DeiT's learning rate, schedule and weight-decay exclusions for `model`.

    `use_ema=True` keeps an exponential moving average of the weights
    (momentum 0.99996 per step in DeiT; use a smaller one for short runs), which
    Keras copies into the model at the end of `fit()`. Pass the optimizer to
    `model.compile` (or to a `DistillationModel` around `model`).

    Example:
    >>> import keras_vit
    >>> model = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 192, num_classes=10)
    >>> optimizer = deit_optimizer(model, batch_size=256, steps_per_epoch=100, epochs=30, warmup_epochs=2)
    >>> round(float(optimizer.learning_rate), 7)  # step 0 of the warm-up
    1e-06
    """
    peak = scaled_learning_rate(batch_size, base_learning_rate)
    # The warm-up start and the final rate are not scaled with the batch; keep them below a small peak.
    schedule = warmup_cosine_schedule(peak, epochs * steps_per_epoch, warmup_epochs * steps_per_epoch,
                                      warmup_learning_rate=min(DEIT_RECIPE["warmup_learning_rate"], peak),
                                      min_learning_rate=min(DEIT_RECIPE["min_learning_rate"], peak))
    adamw_kwargs.setdefault("epsilon", DEIT_RECIPE["adam_epsilon"])
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, use_ema=use_ema,
                                       ema_momentum=ema_momentum, **adamw_kwargs)
    optimizer.exclude_from_weight_decay(var_list=no_weight_decay_variables(model))
    return optimizer


def deit_loss(label_smoothing=DEIT_RECIPE["label_smoothing"]):
    """Cross-entropy on (soft, one-hot) labels and logits, with label smoothing.

    Smoothing MixUp/CutMix labels this way equals timm's (mix the smoothed one-hot labels).

    Example:
    >>> import numpy as np
    >>> loss = deit_loss()
    >>> round(float(loss(np.eye(3)[:1], np.zeros((1, 3), "float32"))), 4)  # uniform logits: log 3
    1.0986
    """
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)


class DeiTAugmentation:
    """DeiT's augmentation of a batch: RandAugment, random erasing, MixUp or CutMix.

    Call it on a batch of RGB images in [0, 255] (B, H, W, 3) and integer labels
    (B,); it returns the augmented images (float32, same range) and soft labels
    (B, num_classes), each row summing to 1. Per batch, CutMix is used with
    probability `switch_probability`, else MixUp (timm's "batch" mode). Built on
    `keras.layers.RandAugment`, `RandomErasing`, `MixUp` and `CutMix`, so it runs
    on every backend; call it eagerly (e.g. through `AugmentedBatches`).

    Args:
        num_classes: number of classes of the soft labels.
        magnitude: RandAugment magnitude out of 10 (Keras `factor` = magnitude / 10).
        num_ops: RandAugment operations per image.
        random_erasing: probability that an image gets one erased rectangle
            (2%-33% of its area, filled with noise); 0 disables it.
        mixup_alpha, cutmix_alpha: Beta(alpha, alpha) mixing; 0 disables each.
        switch_probability: probability of CutMix when both are on.
        seed: seed of every random choice.

    Example:
    >>> import numpy as np
    >>> augment = DeiTAugmentation(num_classes=10, seed=0)
    >>> images, labels = augment(np.zeros((4, 32, 32, 3), "float32"), np.arange(4))
    >>> tuple(labels.shape)
    (4, 10)
    """

    def __init__(self, num_classes, magnitude=DEIT_RECIPE["randaugment_magnitude"],
                 num_ops=DEIT_RECIPE["randaugment_num_ops"],
                 random_erasing=DEIT_RECIPE["random_erasing_probability"],
                 mixup_alpha=DEIT_RECIPE["mixup_alpha"], cutmix_alpha=DEIT_RECIPE["cutmix_alpha"],
                 switch_probability=DEIT_RECIPE["mixup_cutmix_switch_probability"], seed=None):
        if not 0 <= random_erasing <= 1 or not 0 <= switch_probability <= 1:
            raise ValueError("random_erasing and switch_probability are probabilities in [0, 1].")
        if not 0 <= magnitude <= 10:
            raise ValueError(f"magnitude is out of 10 (timm's scale), got {magnitude}.")
        self.num_classes = int(num_classes)
        self.switch_probability = float(switch_probability)
        self._rng = np.random.default_rng(seed)
        seeds = [None if seed is None else seed + i for i in range(4)]
        self.rand_augment = (
            keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=magnitude / 10, seed=seeds[0])
            if num_ops > 0 and magnitude > 0 else None
        )
        # A (p, p) factor makes the probability exactly p (a single float samples it from [0, p]).
        self.random_erasing = (
            keras.layers.RandomErasing(factor=(random_erasing, random_erasing), scale=(0.02, 1 / 3),
                                       value_range=(0, 255), seed=seeds[1])
            if random_erasing > 0 else None
        )
        self.mixup = keras.layers.MixUp(alpha=mixup_alpha, seed=seeds[2]) if mixup_alpha > 0 else None
        # CutMix's `factor` is the range its Beta parameter is drawn from; (a, a) fixes it to a.
        self.cutmix = (
            keras.layers.CutMix(factor=(min(cutmix_alpha, 1.0), min(cutmix_alpha, 1.0)), seed=seeds[3])
            if cutmix_alpha > 0 else None
        )

    def __call__(self, images, labels):
        images = ops.cast(images, "float32")
        labels = ops.convert_to_tensor(labels)
        if len(labels.shape) == 1:
            labels = ops.one_hot(ops.cast(labels, "int32"), self.num_classes)
        labels = ops.cast(labels, "float32")
        if self.rand_augment is not None:
            images = ops.cast(self.rand_augment(images, training=True), "float32")
        if self.random_erasing is not None:
            images = self.random_erasing(images, training=True)
        mixer = self.mixup
        if self.cutmix is not None and (mixer is None or self._rng.uniform() < self.switch_probability):
            mixer = self.cutmix
        if mixer is not None:
            mixed = mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return ops.clip(images, 0.0, 255.0), labels  # mixing may round a hair outside [0, 255]


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled batches of `(images, labels)` passed through an augmentation, for `fit()`.

    Each epoch reshuffles; the augmentation (e.g. `DeiTAugmentation`) is applied
    to every batch, so `fit()` sees fresh augmentations on any backend.

    Example:
    >>> import numpy as np
    >>> batches = AugmentedBatches(np.zeros((10, 32, 32, 3)), np.arange(10) % 3,
    ...                            batch_size=4, augmentation=DeiTAugmentation(3, seed=0), seed=0)
    >>> len(batches), tuple(batches[0][1].shape)
    (3, (4, 3))
    """

    def __init__(self, images, labels, batch_size, augmentation, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = np.asarray(images), np.asarray(labels)
        self.batch_size = int(batch_size)
        self.augmentation = augmentation
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(self.images))

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        images, labels = self.augmentation(self.images[rows], self.labels[rows])
        return ops.convert_to_numpy(images), ops.convert_to_numpy(labels)

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.images))
