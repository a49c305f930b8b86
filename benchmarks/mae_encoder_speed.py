"""How much faster MAE's encoder is on the visible patches only than on every patch.

Times the forward pass of a ViT encoder (compiled, `predict_on_batch`) on all patches
against `MaskedAutoencoder.encode` on the 25% left visible by a 0.75 mask ratio
(the masking itself included), same weights, same batch; prints the median of a few
calls each and the ratio.

Run:
    KERAS_BACKEND=tensorflow python benchmarks/mae_encoder_speed.py --model ViTS16 --batch-size 8
"""

import argparse
import time

import keras
import numpy as np

import keras_vit
from keras_vit.models.vit import VIT_CONFIGS


class VisibleEncoder(keras.Model):
    """`mae.encode` as a model, so that `predict_on_batch` compiles it like the plain encoder."""

    def __init__(self, mae, **kwargs):
        super().__init__(**kwargs)
        self.mae = mae

    def call(self, images):
        latent, _, _ = self.mae.encode(self.mae.preprocess(images))
        return latent


def median_seconds(function, images, repeats):
    function(images)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(function(images))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViTS16", choices=sorted(VIT_CONFIGS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    encoder = keras_vit.VisionTransformer(image_size=args.image_size, include_top=False, pooling=None,
                                          **VIT_CONFIGS[args.model])
    mae = keras_vit.MaskedAutoencoder(encoder, decoder_depth=1, mask_ratio=args.mask_ratio, seed=0)
    visible = VisibleEncoder(mae)
    images = np.random.default_rng(0).normal(size=(args.batch_size, args.image_size, args.image_size, 3))
    images = images.astype("float32")
    every_patch = median_seconds(encoder.predict_on_batch, images, args.repeats)
    visible_only = median_seconds(visible.predict_on_batch, images, args.repeats)
    tokens = mae.num_patches
    kept = mae.masking.num_visible(tokens)
    print(f"{args.model} encoder, {args.image_size}px, batch {args.batch_size}, {keras.backend.backend()}: "
          f"all {tokens} patches {every_patch * 1000:.0f} ms, visible {kept} {visible_only * 1000:.0f} ms: "
          f"{every_patch / visible_only:.2f}x faster")


if __name__ == "__main__":
    main()
