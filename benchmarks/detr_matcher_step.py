"""Training step time of a tiny DETR with the Hungarian matching in keras.ops against scipy on the host.

For the current backend, builds a small DETR (the test suite's kind of size unless flags say otherwise),
and times `train_on_batch` with `HungarianMatcher(solver="keras")` and `solver="scipy"`, same weights,
same batch: TensorFlow with and without XLA (scipy cannot run under XLA), JAX jit (scipy through
`jax.pure_callback`), PyTorch eager. Prints the median of a few steps after two warm-up steps.

Run:
    KERAS_BACKEND=tensorflow python benchmarks/detr_matcher_step.py
    KERAS_BACKEND=jax python benchmarks/detr_matcher_step.py --queries 100 --boxes 20
"""

import argparse
import time

import keras
import numpy as np

import keras_vit
from keras_vit.data.detection import pad_detection_targets
from keras_vit.training import DETRLoss, HungarianMatcher


def build(args):
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)], name="cnn")
    return keras_vit.DETR(cnn, num_classes=args.classes, num_queries=args.queries, hidden_dim=32,
                          num_encoder_layers=1, num_decoder_layers=2, num_heads=2, mlp_dim=64, dropout=0.0)


def data(args):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(args.batch_size, args.image_size, args.image_size, 3)).astype("float32")
    counts = rng.integers(0, args.boxes + 1, args.batch_size)
    boxes = [[[*rng.uniform(0.3, 0.7, 2), 0.2, 0.2] for _ in range(n)] for n in counts]
    labels = [rng.integers(0, args.classes, n).tolist() for n in counts]
    return images, pad_detection_targets(boxes, labels, max_boxes=args.boxes, num_classes=args.classes)


def median_step_seconds(model, images, targets, repeats):
    for _ in range(2):  # compile and warm up
        model.train_on_batch(images, targets)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--boxes", type=int, default=4, help="target slots per image (padded)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    backend = keras.backend.backend()
    images, targets = data(args)
    runs = [("keras", False), ("scipy", False)]
    if backend == "tensorflow":
        runs.insert(0, ("keras", True))  # XLA: the keras.ops solver only
    weights = None
    print(f"backend={backend} batch={args.batch_size} image={args.image_size} queries={args.queries} "
          f"target slots={args.boxes}")
    for solver, xla in runs:
        model = build(args)
        weights = weights or model.get_weights()
        model.set_weights(weights)
        loss = DETRLoss(args.classes, matcher=HungarianMatcher(solver=solver))
        compile_args = {"jit_compile": xla} if backend == "tensorflow" else {}
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss, **compile_args)
        seconds = median_step_seconds(model, images, targets, args.repeats)
        where = "XLA" if xla else {"tensorflow": "tf.function", "jax": "jax.jit", "torch": "eager"}[backend]
        print(f"  solver={solver:6s} {where:12s} {seconds * 1000:8.1f} ms/step")


if __name__ == "__main__":
    main()
