"""Top-1 agreement of a trained ViT-Ti/16 with its float32, dynamic-range and int8 TFLite files.

    KERAS_BACKEND=tensorflow python benchmarks/tflite_digits_vit_ti.py [--image-size 64] [--epochs 15]

Trains `keras_vit.ViTTi16` (patch 16, width 192, depth 12, 3 heads) on scikit-learn's 8x8 digits
upsampled to `--image-size` (the first 1797 - `--eval-images` digits), from random weights (no
network here for ImageNet weights), saves it as a `.keras` file, then runs
`benchmarks/tflite_latency.py --keras-model` on it: that script exports the three files with
`keras_vit.export.export_many` (int8 calibrated on training digits) and prints each file's top-1
agreement with the Keras model, max |diff|, size, latency and XNNPACK partitions on the last
`--eval-images` digits, which the model was not trained on.

A benchmark, not a test: the training takes minutes on a 2-core CPU.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import keras_vit
from keras_vit.export.verification import digit_images

NUM_DIGITS = 1797  # scikit-learn's digits


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=64, help="digits are upsampled from 8x8 to this size")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--eval-images", type=int, default=500, help="held out: the last digits of the set")
    parser.add_argument("--runs", type=int, default=20, help="latency rounds passed to tflite_latency.py")
    parser.add_argument("--output-dir", default=None, 
                        help="where the .keras and .tflite files go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.output_dir or tempfile.mkdtemp(prefix="tflite_digits_vit_ti_")
    os.makedirs(folder, exist_ok=True)
    size = args.image_size
    keras.utils.set_random_seed(0)
    train_images, train_labels = digit_images(NUM_DIGITS - args.eval_images, size, size, offset=0)
    test_images, test_labels = digit_images(args.eval_images, size, size, offset=NUM_DIGITS - args.eval_images)

    model = keras_vit.ViTTi16(input_shape=(size, size, 3), num_classes=10, include_preprocessing=True)
    steps = args.epochs * int(np.ceil(len(train_images) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - steps // 10, warmup_target=args.learning_rate,
                                                      warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    history = model.fit(train_images, train_labels, batch_size=args.batch_size, epochs=args.epochs, verbose=2,
                        validation_data=(test_images, test_labels))
    print(f"ViT-Ti/16 at {size}x{size} ({model.count_params() / 1e6:.2f} M parameters), {args.epochs} epochs on "
          f"{len(train_images)} digits in {time.time() - start:.0f} s (backend {keras.backend.backend()}, load average "
          f"{os.getloadavg()[0]:.1f}): train accuracy {history.history['accuracy'][-1]:.3f}, held-out accuracy "
          f"{history.history['val_accuracy'][-1]:.3f} on {len(test_images)} digits", flush=True)
    path = os.path.join(folder, f"vit_ti16_digits_{size}.keras")
    model.save(path)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tflite_latency.py")
    command = [sys.executable, script, "--keras-model", path, "--eval-images", str(args.eval_images),
               "--runs", str(args.runs), "--output-dir", folder]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
