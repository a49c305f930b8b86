"""Masked-autoencoder pretraining on unlabeled digits, then learning from 10% of the labels.

The question a user with a folder of images and a few labels asks: does pretraining the
encoder on the unlabeled images first (MAE, He et al., 2022) beat training the same ViT
from scratch on the few labeled ones? And once pretrained, how much must be trained:
everything (fine-tuning), the head alone (linear probe), or prompts and head (Visual
Prompt Tuning, Jia et al., 2022)?

Per seed:
  1. MAE pretraining on all 1,797 bundled digits (8x8 grey, standardized pixels, patch 2:
     16 patches, 75% masked, normalized-pixel targets; decoder 64 wide, 1 block), labels
     never used;
  2. 10% of the train split's labels (126 images, stratified by the seed), and the same
     ViT (width 64, depth 4, 4 heads, mean pooling) trained on them for the same number of
     steps, with the same optimizer, in four ways: from scratch; MAE encoder fine-tuned
     (all weights); MAE encoder frozen, linear probe (head only); MAE encoder frozen,
     VPT-deep (prompts and head);
  3. accuracy on the 360 held-out test digits.
Then a table over the seeds: mean and spread (standard deviation) and trainable parameters.

Measured (2-core CPU shared with other jobs, TensorFlow, defaults: `--seeds 0 1 2`):

    seed                         0       1       2    mean +- std   trainable
    scratch                 0.6361  0.6306  0.6444  0.6370 +- 0.0057    136,138
    MAE + fine-tuning       0.4306  0.6278  0.4694  0.5093 +- 0.0853    136,138
    MAE + linear probe      0.1028  0.1028  0.1028  0.1028 +- 0.0000        650
    MAE + VPT-deep          0.1028  0.1028  0.1194  0.1083 +- 0.0079      1,674
    fine-tuning - scratch   -20.56   -0.28  -17.50  -12.78 points, ahead in 0 of 3

At this scale MAE does not help: fine-tuning from the MAE encoder is behind training from
scratch in all 3 seeds, and the frozen encoder's features are near chance for a linear probe
and for VPT. (About 5-6 minutes a seed here, with the machine's 2 cores shared by several
jobs: load average 7 to 12.) What was seen: after 10 epochs (150 steps) the reconstruction
loss is still falling (about 0.98 -> 0.47 on normalized pixels). In an earlier run with
pixels in [0, 1] and pixel targets (30 epochs, seed 0: fine-tuning 0.10, scratch 0.81) the
encoder's output, checked after 2 epochs, varied by about 1% across images: a 2x2 grey
patch gives a 4-value patch embedding, much weaker than MAE's fixed sine-cosine positions,
so the features say where a token is, not what it shows. Not tried for lack of CPU time: many more pretraining epochs
(the paper trains 800-1600), larger patches of upscaled digits, a lower mask ratio
(`--mask-ratio 0.5`); the digits (8x8, 1,797 images) may simply be too small for MAE.

Run (any backend):
    KERAS_BACKEND=tensorflow python examples/mae_digits.py
    python examples/mae_digits.py --seeds 0 1 2 3 4 --pretrain-epochs 200 --mask-ratio 0.5
"""

import argparse
import time

import keras
import numpy as np

import keras_vit
from keras_vit.data import load_digits

ENCODER = dict(image_size=8, patch_size=2, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128, num_channels=1)


PIXEL_MEAN, PIXEL_STD = 0.3, 0.4  # of the digits' pixels in [0, 1], rounded


def digits(split):
    """(images (N, 8, 8, 1) standardized, labels): MAE, like ViT, takes normalized pixels."""
    images, labels = load_digits(split)
    return ((images[..., None] / 255.0 - PIXEL_MEAN) / PIXEL_STD).astype("float32"), labels.astype("int32")


def few_labels(images, labels, fraction, seed):
    """A stratified `fraction` of (images, labels), chosen by `seed`."""
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in np.unique(labels):
        indices = np.flatnonzero(labels == digit)
        chosen.extend(rng.choice(indices, max(1, round(fraction * len(indices))), replace=False))
    chosen = np.sort(np.array(chosen))
    return images[chosen], labels[chosen]


def pretrain(all_images, seed, epochs, batch_size, args):
    keras.utils.set_random_seed(seed)
    encoder = keras_vit.VisionTransformer(**ENCODER, include_top=False, pooling=None, name="encoder")
    mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=64, decoder_depth=1, decoder_num_heads=4,
                                      mask_ratio=args.mask_ratio, norm_pix_loss=True, seed=seed)
    steps = epochs * int(np.ceil(len(all_images) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=2e-3, warmup_steps=steps // 20)
    mae.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05, beta_2=0.95))
    history = mae.fit(all_images, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
    return mae, history.history["loss"]


def train_classifier(model, images, labels, test, steps, learning_rate, batch_size, seed):
    keras.utils.set_random_seed(seed)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    repeats = int(np.ceil(steps * batch_size / len(images)))
    x, y = np.concatenate([images] * repeats), np.concatenate([labels] * repeats)
    order = np.random.default_rng(seed).permutation(len(x))[: steps * batch_size]
    model.fit(x[order], y[order], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return model.evaluate(*test, batch_size=360, verbose=0)[1]


def run_seed(seed, args, all_images, train, test):
    started = time.time()
    mae, losses = pretrain(all_images, seed, args.pretrain_epochs, args.batch_size, args)
    images, labels = few_labels(*train, args.label_fraction, seed)
    train_args = dict(images=images, labels=labels, test=test, steps=args.finetune_steps,
                      batch_size=min(args.batch_size, 32), seed=seed)
    results = {}
    keras.utils.set_random_seed(seed)
    scratch = keras_vit.VisionTransformer(**ENCODER, num_classes=10, pooling="gap", name="scratch")
    results["scratch"] = (train_classifier(scratch, learning_rate=args.lr, **train_args),
                          keras_vit.models.vit.count_parameters(scratch.trainable_weights))
    finetuned = mae.to_vision_transformer(num_classes=10, pooling="gap")
    results["MAE + fine-tuning"] = (train_classifier(finetuned, learning_rate=args.lr, **train_args),
                                    keras_vit.models.vit.count_parameters(finetuned.trainable_weights))
    probe = mae.to_vision_transformer(num_classes=10, pooling="gap")
    for layer in probe.layers:
        layer.trainable = layer.name == "head"
    results["MAE + linear probe"] = (train_classifier(probe, learning_rate=args.frozen_lr, **train_args),
                                     keras_vit.models.vit.count_parameters(probe.trainable_weights))
    prompted = keras_vit.add_prompts(mae.to_vision_transformer(num_classes=10, pooling="gap"),
                                     args.num_prompts, deep=True, verbose=False)
    results["MAE + VPT-deep"] = (train_classifier(prompted, learning_rate=args.frozen_lr, **train_args),
                                 keras_vit.models.vit.count_parameters(prompted.trainable_weights))
    print(f"seed {seed}: {len(images)} labeled images, MAE loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
          + ", ".join(f"{k} {v[0]:.4f}" for k, v in results.items()) + f" ({time.time() - started:.0f} s)",
          flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, whole-model training")
    parser.add_argument("--frozen-lr", type=float, default=1e-2, help="peak learning rate, linear probe and VPT")
    parser.add_argument("--num-prompts", type=int, default=4)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    args = parser.parse_args(argv)

    train, test = digits("train"), digits("test")
    all_images = np.concatenate([digits(split)[0] for split in ("train", "validation", "test")])
    per_seed = [run_seed(seed, args, all_images, train, test) for seed in args.seeds]

    names = list(per_seed[0])
    header = f"{'seed':<22}" + "".join(f"{s:>8}" for s in args.seeds) + "    mean +- std   trainable"
    lines = [header]
    for name in names:
        accuracies = np.array([r[name][0] for r in per_seed])
        lines.append(f"{name:<22}" + "".join(f"{a:8.4f}" for a in accuracies)
                     + f"  {accuracies.mean():.4f} +- {accuracies.std():.4f}  {per_seed[0][name][1]:>9,}")
    gains = np.array([r["MAE + fine-tuning"][0] - r["scratch"][0] for r in per_seed]) * 100
    lines.append(f"{'fine-tuning - scratch':<22}" + "".join(f"{g:+8.2f}" for g in gains)
                 + f"  {gains.mean():+.2f} points, ahead in {int((gains > 0).sum())} of {len(gains)}")
    print("\n".join(lines))
    return per_seed


if __name__ == "__main__":
    main()
