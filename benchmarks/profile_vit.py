"""Where ViT-B/16 inference spends its time: keras_vit against keras-hub 0.32, same backend.

    KERAS_BACKEND=torch python benchmarks/profile_vit.py [--batch-size 2] [--image-size 224]
    KERAS_BACKEND=jax   python benchmarks/profile_vit.py
    KERAS_BACKEND=tensorflow python benchmarks/profile_vit.py

- PyTorch backend: `torch.profiler` over `predict_on_batch` (after a warm-up call); prints each model's
  top aten ops by self CPU time, the share of matmul-like ops (addmm/mm/bmm/linear/attention kernels)
  and of copies/transposes (copy_/contiguous/clone/permute).
- JAX backend: the optimized HLO of the jitted forward (`stateless_call`), counted by op kind
  (dot, transpose, copy, fusion, erf/exponential): what XLA runs after fusion; plus the median time.
- TensorFlow backend: the median time of `predict_on_batch` (XLA), and the op kinds of the traced graph.
Both models: same architecture (patch 16, width 768, depth 12, 12 heads, MLP 3072), own random weights.
"""

import argparse
import collections
import os
import re
import statistics
import time

import keras
import numpy as np

import keras_vit


def build(which, image_size):
    if which == "keras_vit":
        return keras_vit.ViTB16(input_shape=(image_size, image_size, 3), num_classes=1000)
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(image_shape=(image_size, image_size, 3), patch_size=16, num_layers=12,
                                            num_heads=12, hidden_dim=768, mlp_dim=3072)
    return keras_hub.models.ViTImageClassifier(backbone, num_classes=1000)


def median_seconds(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


MATMUL = re.compile(r"addmm|\bmm\b|bmm|linear|matmul|scaled_dot_product|baddbmm|einsum|conv")
MOVES = re.compile(r"copy_|contiguous|clone|permute|transpose|_to_copy|cat\b|unbind|split|reshape|view")


def profile_torch(model, images):
    import torch
    from torch.profiler import ProfilerActivity, profile

    model.predict_on_batch(images)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.predict_on_batch(images)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if MATMUL.search(e.key))
    moves = sum(e.self_cpu_time_total for e in events if MOVES.search(e.key))
    lines = [f"  aten self CPU total {total / 1e3:.0f} ms: matmul-like {100 * matmul / total:.0f}%, "
             f"copies/layout {100 * moves / total:.0f}%"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        lines.append(f"    {e.key:<48} {e.count:>5} calls {e.self_cpu_time_total / 1e3:>9.1f} ms "
                     f"{100 * e.self_cpu_time_total / total:>5.1f}%")
    del torch
    return lines


def profile_jax(model, images):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    compiled = jax.jit(forward).lower(trainable, non_trainable, images).compile()
    text = compiled.as_text()
    kinds = collections.Counter()
    for match in re.finditer(r"= \S+ (\w[\w-]*)\(", text):
        kinds[match.group(1)] += 1
    top = ", ".join(f"{k} {kinds[k]}" for k in ("dot", "convolution", "transpose", "copy", "fusion", "erf",
                                                 "exponential", "reduce", "custom-call") if kinds[k])
    seconds = median_seconds(lambda: compiled(trainable, non_trainable, images).block_until_ready(), 3)
    return [f"  optimized HLO ops (all computations): {top}", f"  jitted forward: {seconds * 1000:.0f} ms"]


def profile_tensorflow(model, images):
    import tensorflow as tf

    seconds = median_seconds(lambda: model.predict_on_batch(images), 3)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(images.shape, tf.float32)).graph
    kinds = collections.Counter(op.type for op in graph.get_operations())
    top = ", ".join(f"{k} {v}" for k, v in kinds.most_common(12))
    return [f"  predict_on_batch (XLA): {seconds * 1000:.0f} ms", f"  traced graph op kinds: {top}"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count())
    images = np.random.default_rng(0).uniform(0, 1, (args.batch_size, args.image_size, args.image_size, 3))
    images = images.astype("float32")
    print(f"ViT-B/16 inference profile, {backend}, batch {args.batch_size}, {args.image_size}px, "
          f"load average {os.getloadavg()[0]:.2f}")
    for which in ("keras_vit", "keras-hub"):
        model = build(which, args.image_size)
        profiler = {"torch": profile_torch, "jax": profile_jax, "tensorflow": profile_tensorflow}[backend]
        print(which)
        for line in profiler(model, images):
            print(line)
        del model


if __name__ == "__main__":
    main()
