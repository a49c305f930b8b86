"""Inference and training throughput of keras_vit against the models a user would pick instead.

    KERAS_BACKEND=jax python benchmarks/throughput.py [--models vit_b16,deit_s16,swin_t,tnt_s16,detr_r50]
        [--rounds 3] [--batch-size 8] [--output results.txt] [--quick] [--scaling] [--torch-compile]

Models (fp32): ViT-B/16, DeiT-S/16, Swin-T and TNT-S/16 at 224x224 (batch `--batch-size`, 8 by
default) and DETR-R50 at 800x1066 (batch 1). Each is timed against its peers:
- keras-hub 0.32's ViT, DeiT and Swin (`*Backbone` + `*ImageClassifier`) on the same Keras backend;
- on the PyTorch backend also timm (ViT, DeiT, Swin, TNT; eager, `model.eval()` + `torch.inference_mode`
  for inference) and transformers (`DetrForObjectDetection` with transformers' own ResNet-50 backbone).
Peers are built with the same architecture and their own random initialization (no weight copy: the
speed of a dense fp32 model does not depend on its weight values). Dropout, drop-path are 0 everywhere
(DETR keeps its 0.1 dropout on both sides, auxiliary decoder losses on both sides).

How it measures:
- each implementation runs in its own subprocess (a "worker"), so its peak RSS
  (`getrusage(RUSAGE_SELF).ru_maxrss`) is its own; the parent sends the workers one round at a time,
  in turn (ours, peer 1, peer 2, ours, ...), so load changes on a shared machine hit all of them alike;
- inference = `predict_on_batch` (keras) / a `torch.inference_mode` forward (torch); training =
  `train_on_batch` with SGD(momentum 0.9) and cross-entropy (keras; DETR its own Hungarian loss) /
  forward, backward and `torch.optim.SGD(momentum=0.9)` step (torch). Keras uses its defaults for
  `jit_compile` (XLA on JAX and TensorFlow where supported, eager on PyTorch);
- `--torch-compile` (PyTorch backend): our model is compiled with `model.compile(jit_compile=True)`
  (Keras wraps its predict and train steps in `torch.compile`) and fed torch tensors (a NumPy batch
  breaks the compiled graph at its first op, Keras' input conversion); keras-hub stays eager, its
  default (with `jit_compile=True` it ran the tiny --quick ViT 160x slower than ours: not investigated);
  timm runs twice, eager (`timm`) and `torch.compile(model)` (`timm-compiled`). The warm-up (compile)
  time of every implementation is printed (`warmup s`);
- each worker warms up (compiles) before its first timed round; a round is `--steps` calls; the
  result is the median over `--rounds` rounds; ratios are keras_vit img/s / peer img/s (>1: ours faster);
- peak RSS is read after all inference rounds (inference peak) and after the training rounds;
- the f32 matmul limit: the median GFLOP/s of an n x n x n f32 matmul (n=4096) on the same backend,
  measured before and after the models (the larger is the limit);
- FLOPs per image: `torch.utils.flop_counter.FlopCounterMode` over one batch-1 forward of our model
  on the Keras PyTorch backend (in a subprocess): matmuls, convolutions and attention, 2 FLOPs per
  multiply-add, element-wise ops not counted; the CPU attention kernel gets the counter's own attention
  formula, which torch 2.13 registers only for the GPU kernels (ViT-B/16: 35.1 GFLOP). Training FLOPs are 3x
  the forward (backward = 2x forward), a stated approximation.

`--scaling` times training (and its peak RSS, fresh subprocess per size) of our ViT-B/16 at 224 and
384 and Swin-T at 224, 384 and 512, and fits the exponents of time and memory against the number of
pixels and tokens.

timm: when `import timm` fails for want of torchvision (here: only CPU torch, and torchvision's
wheel needs CUDA torch), the timm workers import `torchvision_placeholder.py` first (see its
docstring) and the results file says so. `--timm-path` puts an unpacked timm wheel on `sys.path`.
"""

import argparse
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MESSAGE_PREFIX = "@@RESULT "
DEFAULT_TIMM_PATH = "/tmp/timmpkg"

# model key -> label, image size (height, width), fixed batch size (None: --batch-size), keras-hub peer,
# torch peer ("timm" or "transformers").
MODELS = {
    "vit_b16": dict(label="ViT-B/16", size=(224, 224), batch=None, hub=True, torch_peer="timm"),
    "deit_s16": dict(label="DeiT-S/16", size=(224, 224), batch=None, hub=True, torch_peer="timm"),
    "swin_t": dict(label="Swin-T", size=(224, 224), batch=None, hub=True, torch_peer="timm"),
    "tnt_s16": dict(label="TNT-S/16", size=(224, 224), batch=None, hub=False, torch_peer="timm"),
    "detr_r50": dict(label="DETR-R50", size=(800, 1066), batch=1, hub=False, torch_peer="transformers"),
}
# Architectures: canonical and --quick (tiny, seconds). Keys shared by all implementations.
ARCHS = {
    "vit_b16": dict(patch=16, dim=768, depth=12, heads=12, mlp=3072),
    "deit_s16": dict(patch=16, dim=384, depth=12, heads=6, mlp=1536),
    "swin_t": dict(patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7),
    "tnt_s16": dict(patch=16, dim=384, inner_dim=24, depth=12, heads=6, inner_heads=4),
    "detr_r50": dict(),
}
QUICK_ARCHS = {
    "vit_b16": dict(patch=16, dim=32, depth=1, heads=2, mlp=64),
    "deit_s16": dict(patch=16, dim=32, depth=1, heads=2, mlp=64),
    "swin_t": dict(patch=4, dim=16, depths=(1, 1), heads=(1, 2), window=4),
    "tnt_s16": dict(patch=16, dim=32, inner_dim=8, depth=1, heads=2, inner_heads=2),
    "detr_r50": dict(),
}
QUICK_SIZES = {"detr_r50": (64, 64)}
QUICK_SIZE = (32, 32)
NUM_CLASSES = 1000
DETR_CLASSES = 91


# ----------------------------------------------------------------------------------------------
# Workers: one implementation of one model, driven over stdin/stdout.
# ----------------------------------------------------------------------------------------------


def send(message):
    sys.stdout.write(MESSAGE_PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def detr_targets_numpy(batch, seed=0):
    """Two boxes per image (cx, cy, w, h normalized) with class ids, the same for every implementation."""
    import numpy as np

    rng = np.random.default_rng(seed)
    boxes = [[[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]] for _ in range(batch)]
    labels = [list(rng.integers(0, DETR_CLASSES, size=2)) for _ in range(batch)]
    return boxes, labels


def build_keras_runner(impl, model_key, size, batch, arch, quick, torch_compile=False):
    """Returns (infer, train) closures for keras_vit or keras-hub on the current Keras backend.

    `torch_compile`: `jit_compile=True` (torch.compile on the PyTorch backend) and torch tensor inputs.
    """
    import keras
    import numpy as np

    height, width = size
    images = np.random.default_rng(0).uniform(0, 1, size=(batch, height, width, 3)).astype("float32")
    labels = np.arange(batch) % NUM_CLASSES
    optimizer = keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if impl == "keras_vit":
        import keras_vit

        if model_key in ("vit_b16", "deit_s16"):
            model = keras_vit.VisionTransformer(
                image_size=height, patch_size=arch["patch"], hidden_dim=arch["dim"], depth=arch["depth"],
                num_heads=arch["heads"], mlp_dim=arch["mlp"], num_classes=NUM_CLASSES,
                layer_norm_epsilon=1e-6)
        elif model_key == "swin_t":
            model = keras_vit.SwinTransformer(
                image_size=height, patch_size=arch["patch"], window_size=arch["window"], hidden_dim=arch["dim"],
                depths=arch["depths"], num_heads=arch["heads"], num_classes=NUM_CLASSES)
        elif model_key == "tnt_s16":
            model = keras_vit.TNT(
                image_size=height, patch_size=arch["patch"], hidden_dim=arch["dim"], inner_dim=arch["inner_dim"],
                depth=arch["depth"], num_heads=arch["heads"], inner_num_heads=arch["inner_heads"],
                num_classes=NUM_CLASSES)
        elif model_key == "detr_r50":
            from keras_vit.data.detection import pad_detection_targets

            if quick:
                cnn = keras.Sequential([
                    keras.Input((None, None, 3)),
                    keras.layers.Conv2D(8, 3, strides=4, padding="same"), keras.layers.ReLU(),
                    keras.layers.Conv2D(16, 3, strides=8, padding="same")], name="cnn")
                model = keras_vit.DETR(cnn, num_classes=DETR_CLASSES, num_queries=10, hidden_dim=16,
                                       num_encoder_layers=1, num_decoder_layers=1, num_heads=2, mlp_dim=32,
                                       input_shape=(height, width, 3))
            else:
                model = keras_vit.DETRResNet50(num_classes=DETR_CLASSES, input_shape=(height, width, 3))
            boxes, box_labels = detr_targets_numpy(batch)
            labels = pad_detection_targets(boxes, box_labels, max_boxes=2, num_classes=DETR_CLASSES)
            loss = None  # DETR's own Hungarian-matched loss
        else:
            raise ValueError(model_key)
    elif impl == "keras-hub":
        import keras_hub

        shape = (height, width, 3)
        if model_key == "vit_b16":
            backbone = keras_hub.models.ViTBackbone(
                image_shape=shape, patch_size=arch["patch"], num_layers=arch["depth"], num_heads=arch["heads"],
                hidden_dim=arch["dim"], mlp_dim=arch["mlp"])
            model = keras_hub.models.ViTImageClassifier(backbone, num_classes=NUM_CLASSES)
        elif model_key == "deit_s16":
            backbone = keras_hub.models.DeiTBackbone(
                image_shape=shape, patch_size=arch["patch"], num_layers=arch["depth"], num_heads=arch["heads"],
                hidden_dim=arch["dim"], intermediate_dim=arch["mlp"])
            model = keras_hub.models.DeiTImageClassifier(backbone, num_classes=NUM_CLASSES)
        elif model_key == "swin_t":
            backbone = keras_hub.models.SwinTransformerBackbone(
                image_shape=shape, embed_dim=arch["dim"], depths=list(arch["depths"]), num_heads=list(arch["heads"]),
                window_size=arch["window"], patch_size=arch["patch"], drop_path=0.0)
            model = keras_hub.models.SwinTransformerImageClassifier(backbone, num_classes=NUM_CLASSES)
        else:
            raise ValueError(f"keras-hub has no {model_key}")
    else:
        raise ValueError(impl)
    compile_args = dict(optimizer=optimizer)
    if loss is not None:
        compile_args["loss"] = loss
    if torch_compile:
        compile_args["jit_compile"] = True
        # Keras converts NumPy inputs inside the compiled step, where dynamo cannot trace
        # `ndarray.dtype`: that graph break would leave the forward uncompiled. A user's fit() on
        # a dataset feeds torch tensors already.
        images = keras.ops.convert_to_tensor(images)
        labels = keras.tree.map_structure(keras.ops.convert_to_tensor, labels)
    model.compile(**compile_args)
    parameters = int(sum(np.prod(v.shape) for v in model.weights))

    def infer():
        outputs = model.predict_on_batch(images)
        keras.tree.map_structure(lambda x: np.asarray(x), outputs)  # wait for the result

    def train():
        model.train_on_batch(images, labels)

    infer.model, infer.images = model, images
    return infer, train, parameters


def import_timm(timm_path):
    """Imports timm; with the torchvision placeholder if (and only if) the plain import fails."""
    if timm_path and os.path.isdir(timm_path) and timm_path not in sys.path:
        sys.path.insert(0, timm_path)
    try:
        import timm

        return timm, "timm imported as installed"
    except ImportError as error:
        if "torchvision" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.") or n.startswith("torchvision")]:
            del sys.modules[name]
    sys.path.insert(0, HERE)
    import torchvision_placeholder

    how = torchvision_placeholder.install()
    import timm

    return timm, f"timm with {how}"


def build_torch_runner(impl, model_key, size, batch, arch, quick, timm_path):
    """Returns (infer, train, parameters, note) for timm (eager), timm-compiled (torch.compile) or transformers."""
    import numpy as np
    import torch

    height, width = size
    note = ""
    images = torch.from_numpy(
        np.random.default_rng(0).uniform(0, 1, size=(batch, 3, height, width)).astype("float32"))
    labels = torch.arange(batch) % NUM_CLASSES
    if impl in ("timm", "timm-compiled"):
        timm, note = import_timm(timm_path)
        from timm.models import swin_transformer, tnt, vision_transformer

        if model_key in ("vit_b16", "deit_s16"):
            model = vision_transformer.VisionTransformer(
                img_size=height, patch_size=arch["patch"], embed_dim=arch["dim"], depth=arch["depth"],
                num_heads=arch["heads"], mlp_ratio=arch["mlp"] / arch["dim"], num_classes=NUM_CLASSES)
        elif model_key == "swin_t":
            model = swin_transformer.SwinTransformer(
                img_size=height, patch_size=arch["patch"], window_size=arch["window"], embed_dim=arch["dim"],
                depths=arch["depths"], num_heads=arch["heads"], num_classes=NUM_CLASSES)
        elif model_key == "tnt_s16":
            model = tnt.TNT(img_size=height, patch_size=arch["patch"], embed_dim=arch["dim"],
                            inner_dim=arch["inner_dim"], depth=arch["depth"], num_heads_outer=arch["heads"],
                            num_heads_inner=arch["inner_heads"], num_classes=NUM_CLASSES)
        else:
            raise ValueError(f"timm: no {model_key}")
        note += f"; timm {timm.__version__} from {os.path.dirname(timm.__file__)}"

        def loss_of(outputs):
            return torch.nn.functional.cross_entropy(outputs, labels)

        def forward(model):
            return model(images)
    elif impl == "transformers":
        import transformers
        from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

        if quick:
            backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                    out_features=["stage2"])
            config = DetrConfig(backbone_config=backbone, num_labels=DETR_CLASSES, num_queries=10, d_model=16,
                                encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                auxiliary_loss=True)
        else:
            backbone = ResNetConfig(out_features=["stage4"])  # ResNet-50 (bottleneck, depths 3-4-6-3)
            config = DetrConfig(backbone_config=backbone, num_labels=DETR_CLASSES, auxiliary_loss=True)
        model = DetrForObjectDetection(config)
        note = (f"transformers {transformers.__version__} DetrForObjectDetection, transformers' own ResNet "
                "backbone (ResNetConfig), auxiliary_loss=True")
        boxes, box_labels = detr_targets_numpy(batch)
        targets = [{"class_labels": torch.tensor(lab), "boxes": torch.tensor(box, dtype=torch.float32)}
                   for box, lab in zip(boxes, box_labels)]
        pixel_mask = torch.ones(batch, height, width, dtype=torch.long)

        def loss_of(outputs):
            return outputs.loss

        def forward(model):
            if model.training:
                return model(pixel_values=images, pixel_mask=pixel_mask, labels=targets)
            return model(pixel_values=images, pixel_mask=pixel_mask)
    else:
        raise ValueError(impl)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    parameters = int(sum(p.numel() for p in model.parameters()))
    module = model
    if impl == "timm-compiled":
        module = torch.compile(model)  # compiled on the first call of each mode (eval, train)
        note += "; torch.compile(model) (default mode, inductor)"

    def infer():
        model.eval()
        with torch.inference_mode():
            forward(module)

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_of(forward(module)).backward()
        optimizer.step()

    return infer, train, parameters, note


def worker_main(args):
    import numpy as np  # noqa: F401  (imported before the backend, like a user would)

    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    arch = (QUICK_ARCHS if args.quick else ARCHS)[args.model]
    size = tuple(args.size)
    note = ""
    start = time.perf_counter()
    try:
        if args.worker in ("keras_vit", "keras-hub"):
            import keras

            if keras.backend.backend() == "torch":
                import torch

                torch.set_num_threads(args.threads or os.cpu_count())
            infer, train, parameters = build_keras_runner(args.worker, args.model, size, args.batch, arch,
                                                          args.quick,
                                                          torch_compile=args.torch_compile and args.worker == "keras_vit")
            note = f"keras {keras.__version__} {keras.backend.backend()}"
            if args.torch_compile and args.worker == "keras_vit":
                note += ", jit_compile=True (torch.compile), torch tensor inputs"
            if args.worker == "keras-hub":
                import keras_hub

                note = f"keras-hub {keras_hub.__version__}, " + note
        else:
            import torch

            torch.set_num_threads(args.threads or os.cpu_count())
            infer, train, parameters, note = build_torch_runner(args.worker, args.model, size, args.batch, arch,
                                                                args.quick, args.timm_path)
    except Exception as error:  # reported to the parent, which prints it and goes on without this worker
        send({"status": "error", "error": f"{type(error).__name__}: {error}"})
        return
    send({"status": "ready", "parameters": parameters, "note": note, "build_s": time.perf_counter() - start,
          "rss_mib": current_rss_mib()})
    warmed = set()
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "quit":
            break
        if command[0] == "rss":
            send({"peak_rss_mib": peak_rss_mib(), "rss_mib": current_rss_mib()})
            continue
        mode, steps = command[0], int(command[1])
        function = infer if mode == "infer" else train
        try:
            if mode not in warmed:
                start = time.perf_counter()
                # The first call compiles; under torch.compile the second training call compiles again
                # (the gradients that were None on the first step exist now, a guard dynamo checks).
                for _ in range(2 if mode == "train" else 1):
                    function()
                warmed.add(mode)
                warmup = time.perf_counter() - start
            else:
                warmup = 0.0
            start = time.perf_counter()
            for _ in range(steps):
                function()
            send({"seconds": time.perf_counter() - start, "warmup_s": warmup})
        except Exception as error:
            send({"status": "error", "error": f"{type(error).__name__}: {error}"})


def matmul_worker(args):
    """Median GFLOP/s of an n x n x n f32 matmul on the current Keras backend's own library."""
    import numpy as np
    import keras

    n = args.matmul_size
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((n, n)).astype("float32") for _ in range(2))
    if backend == "jax":
        import jax

        a, b = jax.device_put(a_np), jax.device_put(b_np)
        matmul = jax.jit(lambda x, y: x @ y)

        def run():
            matmul(a, b).block_until_ready()
    elif backend == "tensorflow":
        import tensorflow as tf

        a, b = tf.constant(a_np), tf.constant(b_np)
        matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y), jit_compile=True)

        def run():
            matmul(a, b).numpy()
    else:
        import torch

        torch.set_num_threads(args.threads or os.cpu_count())
        a, b = torch.from_numpy(a_np), torch.from_numpy(b_np)

        def run():
            torch.matmul(a, b)

    run()
    times = []
    for _ in range(args.matmul_repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    send({"gflops": 2 * n**3 / statistics.median(times) / 1e9, "n": n, "backend": backend})


def flops_worker(args):
    """FLOPs of one batch-1 forward of our model, counted on the Keras PyTorch backend."""
    import keras
    import numpy as np
    import torch
    from torch.utils import flop_counter
    from torch.utils.flop_counter import FlopCounterMode

    # torch 2.13's counter has formulas for the CUDA attention kernels but not for the CPU one that
    # keras.ops.dot_product_attention runs here: count it like them (QK^T and AV, 2 FLOPs per MAC).
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None and cpu_attention.default not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(cpu_attention)(
            lambda query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs:
            flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))

    assert keras.backend.backend() == "torch"
    arch = (QUICK_ARCHS if args.quick else ARCHS)[args.model]
    infer, _, _ = build_keras_runner("keras_vit", args.model, tuple(args.size), 1, arch, args.quick)
    counter = FlopCounterMode(display=False)
    # Grad mode on: under no_grad, torch's module tracker fails on DETR's query embedding (a parameter
    # returned as is); the forward's FLOPs are the same either way.
    with counter:
        infer.model(infer.images, training=False)
    send({"flops": counter.get_total_flops()})


# ----------------------------------------------------------------------------------------------
# Parent: starts the workers, alternates rounds, prints and writes the results.
# ----------------------------------------------------------------------------------------------


class Worker:
    """A worker subprocess (one implementation of one model) and its line protocol."""

    def __init__(self, impl, model_key, size, batch, args, backend, log_dir):
        self.impl, self.model_key = impl, model_key
        command = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--model", model_key,
                   "--size", str(size[0]), str(size[1]), "--batch", str(batch), "--timm-path", args.timm_path,
                   "--threads", str(args.threads)]
        if args.quick:
            command.append("--quick")
        if args.torch_compile:
            command.append("--torch-compile")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.log_path = os.path.join(log_dir, f"{model_key}-{impl}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env, cwd=tempfile.gettempdir())
        self.error = None

    def receive(self):
        for line in self.process.stdout:
            if line.startswith(MESSAGE_PREFIX):
                return json.loads(line[len(MESSAGE_PREFIX):])
        self.log.flush()
        with open(self.log_path) as log:
            tail = log.read()[-1500:]
        return {"status": "error", "error": f"worker exited (code {self.process.wait()}): {tail}"}

    def ask(self, command):
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"status": "error", "error": "worker is gone"}
        return self.receive()

    def close(self):
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_once(mode, model_key, size, args, backend):
    """One message from a one-shot worker (matmul or flops)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--model", model_key, "--size",
               str(size[0]), str(size[1]), "--matmul-size", str(args.matmul_size), "--threads", str(args.threads)]
    if args.quick:
        command.append("--quick")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    for line in result.stdout.splitlines():
        if line.startswith(MESSAGE_PREFIX):
            return json.loads(line[len(MESSAGE_PREFIX):])
    return {"status": "error", "error": result.stderr[-1500:]}


def peers_for(model_key, backend, torch_compile=False):
    spec = MODELS[model_key]
    peers = []
    if spec["hub"]:
        peers.append("keras-hub")
    if backend == "torch":
        peers.append(spec["torch_peer"])
        if torch_compile and spec["torch_peer"] == "timm":
            peers.append("timm-compiled")
    return peers


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
            cpuinfo.seek(0)
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
        avx = ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags)
    except OSError:
        avx = ""
    try:
        with open("/proc/meminfo") as meminfo:
            memory_gib = int(meminfo.readline().split()[1]) / 2**20
    except OSError:
        memory_gib = float("nan")
    return f"{cpu}, {os.cpu_count()} cores ({avx or 'no AVX2/AVX-512 flag'}), {memory_gib:.0f} GiB RAM"


def versions(backend):
    import importlib.metadata as metadata

    found = [f"python {platform.python_version()}"]
    for name in ("keras", "tensorflow", "jax", "jaxlib", "torch", "keras-hub", "transformers", "numpy"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def load_average():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def median(values):
    return statistics.median(values) if values else float("nan")


def benchmark_models(args, backend, out, flops, limits):
    """Runs the alternating rounds; returns {model: {impl: result}} and prints each model's results when done."""
    log_dir = tempfile.mkdtemp(prefix="throughput-logs-")
    results = {}
    for model_key in args.models:
        spec = MODELS[model_key]
        size = QUICK_SIZES.get(model_key, QUICK_SIZE) if args.quick else spec["size"]
        batch = spec["batch"] or args.batch_size
        impls = ["keras_vit"] + peers_for(model_key, backend, args.torch_compile)
        out(f"\n{spec['label']} {size[0]}x{size[1]}, batch {batch}: {', '.join(impls)}")
        workers = []
        for impl in impls:  # started one after the other: the builds do not compete for the cores
            worker = Worker(impl, model_key, size, batch, args, backend, log_dir)
            ready = worker.receive()
            if ready.get("status") != "ready":
                out(f"  {impl}: could not be built: {ready.get('error')}")
                worker.close()
                continue
            worker.info = ready
            worker.times = {"infer": [], "train": []}
            worker.warmup = {}
            worker.peak = {}
            out(f"  {impl}: {ready['parameters']:,} parameters, built in {ready['build_s']:.1f} s; {ready['note']}")
            workers.append(worker)
        for mode in ("infer", "train"):
            if mode == "train" and args.inference_only:
                break
            for round_index in range(args.rounds):
                for worker in workers if round_index % 2 == 0 else workers[::-1]:
                    if worker.error:
                        continue
                    reply = worker.ask(f"{mode} {args.steps}")
                    if "seconds" not in reply:
                        worker.error = reply.get("error")
                        out(f"  {worker.impl} {mode}: failed: {worker.error}")
                        continue
                    worker.times[mode].append(reply["seconds"])
                    if reply.get("warmup_s"):
                        worker.warmup[mode] = reply["warmup_s"]
            for worker in workers:
                if not worker.error:
                    worker.peak[mode] = worker.ask("rss").get("peak_rss_mib")
        results[model_key] = {}
        for worker in workers:
            entry = {"batch": batch, "size": size, "parameters": worker.info["parameters"], "note": worker.info["note"],
                     "peak_rss_mib": worker.peak, "error": worker.error, "warmup_s": worker.warmup}
            for mode in ("infer", "train"):
                times = worker.times[mode]
                entry[mode] = batch * args.steps / median(times) if times else float("nan")
                entry[mode + "_rounds"] = [batch * args.steps / t for t in times]
            results[model_key][worker.impl] = entry
            worker.close()
        report_models({model_key: results[model_key]}, flops, max(limits, default=float("nan")), out,
                      heading=f"{spec['label']} done (limit so far: the matmul before)")
    return results


def fmt(value, digits=1):
    return "n/a" if value != value else f"{value:.{digits}f}"


def report_models(results, flops, limit, out, heading="all models"):
    out(f"\n{heading}: img/s = median over rounds; RSS = peak resident memory of that implementation's own process")
    out("GFLOP/s = img/s x FLOPs per image (training: 3x the forward); 'of limit' = that / the f32 matmul limit")
    out("warmup s = the untimed first call(s) before the timed rounds (inference: 1 call, training: 2), compiling included")
    out(f"{'model':<10} {'implementation':<13} {'infer img/s':>11} {'train img/s':>11} {'infer RSS MiB':>13} "
        f"{'train RSS MiB':>13} {'infer GFLOP/s':>13} {'of limit':>8} {'train GFLOP/s':>13} {'of limit':>8} "
        f"{'infer warmup s':>14} {'train warmup s':>14}")
    for model_key, by_impl in results.items():
        for impl, entry in by_impl.items():
            gflop = flops.get(model_key, float("nan"))
            achieved = entry["infer"] * gflop
            achieved_train = entry["train"] * 3 * gflop
            out(f"{model_key:<10} {impl:<13} {fmt(entry['infer'], 2):>11} {fmt(entry['train'], 2):>11} "
                f"{fmt(entry['peak_rss_mib'].get('infer', float('nan')), 0):>13} "
                f"{fmt(entry['peak_rss_mib'].get('train', float('nan')), 0):>13} {fmt(achieved, 1):>13} "
                f"{fmt(100 * achieved / limit, 0) + '%':>8} {fmt(achieved_train, 1):>13} "
                f"{fmt(100 * achieved_train / limit, 0) + '%':>8} "
                f"{fmt(entry.get('warmup_s', {}).get('infer', float('nan')), 1):>14} "
                f"{fmt(entry.get('warmup_s', {}).get('train', float('nan')), 1):>14}")
    out("ratios: keras_vit img/s / peer img/s (>1: keras_vit faster)")
    for model_key, by_impl in results.items():
        ours = by_impl.get("keras_vit")
        if ours is None:
            continue
        for impl, entry in by_impl.items():
            if impl == "keras_vit":
                continue
            for mode, name in (("infer", "inference"), ("train", "training")):
                ratio = ours[mode] / entry[mode] if entry[mode] == entry[mode] and entry[mode] else float("nan")
                out(f"RATIO {model_key} {name} keras_vit/{impl} = {fmt(ratio, 2)}x")


def scaling(args, backend, out):
    """Training time and peak RSS of our ViT-B/16 and Swin-T against image size, one fresh process per size."""
    cases = [("vit_b16", s) for s in (args.scaling_sizes_vit)] + [("swin_t", s) for s in args.scaling_sizes_swin]
    log_dir = tempfile.mkdtemp(prefix="throughput-scaling-")
    rows = []
    for model_key, side in cases:
        size = (side, side)
        worker = Worker("keras_vit", model_key, size, args.batch_size, args, backend, log_dir)
        ready = worker.receive()
        if ready.get("status") != "ready":
            out(f"  {model_key} {side}: could not be built: {ready.get('error')}")
            worker.close()
            continue
        times = []
        for _ in range(args.rounds):
            reply = worker.ask(f"train {args.steps}")
            if "seconds" not in reply:
                out(f"  {model_key} {side}: failed: {reply.get('error')}")
                break
            times.append(reply["seconds"] / args.steps)
        memory = worker.ask("rss")
        worker.close()
        if not times:
            continue
        patch = (QUICK_ARCHS if args.quick else ARCHS)[model_key]["patch"]
        tokens = (side // patch) ** 2 + (1 if model_key == "vit_b16" else 0)
        rows.append(dict(model=model_key, side=side, pixels=side * side, tokens=tokens, step_s=median(times),
                         peak_mib=memory.get("peak_rss_mib"), built_mib=ready["rss_mib"]))
        out(f"  {model_key} {side}x{side}: {tokens} tokens, {median(times):.2f} s per training step "
            f"(batch {args.batch_size}), peak RSS {memory.get('peak_rss_mib', float('nan')):.0f} MiB "
            f"(after build {ready['rss_mib']:.0f} MiB)")
    return rows


def fit_exponent(xs, ys):
    import numpy as np

    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def report_scaling(rows, out):
    out("\nscaling exponents (least squares of log y on log x; 1 = linear, 2 = quadratic)")
    for model_key, x_name in (("vit_b16", "tokens"), ("swin_t", "pixels")):
        selected = [r for r in rows if r["model"] == model_key]
        if len(selected) < 2:
            continue
        xs = [r[x_name] for r in selected]
        time_exponent = fit_exponent(xs, [r["step_s"] for r in selected])
        memory_exponent = fit_exponent(xs, [max(r["peak_mib"] - r["built_mib"], 1.0) for r in selected])
        out(f"SCALING {model_key} vs {x_name}: training time exponent {fmt(time_exponent, 2)}, "
            f"training memory (peak RSS minus RSS after build) exponent {fmt(memory_exponent, 2)}")
    out("  (ViT's attention is quadratic in tokens but its linear layers are linear: at width 768 and "
        "197-577 tokens attention is a small share, so the total grows less than quadratically. Swin's "
        "windowed attention is linear in pixels.)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1, help="calls per timed round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny architectures and images: a smoke test")
    parser.add_argument("--scaling", action="store_true", help="also training time/memory vs image size")
    parser.add_argument("--scaling-only", action="store_true", help="only the --scaling part")
    parser.add_argument("--inference-only", action="store_true")
    parser.add_argument("--output", help="also write the results to this file")
    parser.add_argument("--timm-path", default=os.environ.get("TIMM_PATH", DEFAULT_TIMM_PATH),
                        help="a directory holding an unpacked timm (put first on sys.path if it exists)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: all cores)")
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--torch-compile", action="store_true",
                        help="PyTorch backend: Keras models with jit_compile=True (torch.compile), and timm "
                             "compiled too (timm-compiled) besides timm eager")
    # Internal: worker processes.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {', '.join(MODELS)}")
    if args.rounds < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--rounds, --steps and --batch-size must be at least 1")
    if args.quick:
        args.matmul_size = min(args.matmul_size, 256)
        args.scaling_sizes_vit, args.scaling_sizes_swin = (32, 48), (32, 64)
    else:
        args.scaling_sizes_vit, args.scaling_sizes_swin = (224, 384), (224, 384, 512)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "matmul":
        return matmul_worker(args)
    if args.worker == "flops":
        return flops_worker(args)
    if args.worker:
        return worker_main(args)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if args.torch_compile and backend != "torch":
        raise SystemExit(f"--torch-compile is for the PyTorch backend (KERAS_BACKEND=torch); this run is {backend}. "
                         "On JAX and TensorFlow Keras compiles with XLA by default.")
    lines = []

    def out(text=""):
        print(text, flush=True)
        lines.append(text)

    out(f"keras_vit throughput benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    out(f"command: KERAS_BACKEND={backend} python benchmarks/{os.path.basename(__file__)} "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    out(f"machine: {machine_description()}")
    out(f"backend: {backend}; versions: {versions(backend)}")
    out(f"threads: torch {args.threads or os.cpu_count()} intra-op; TensorFlow, XLA: their defaults (all cores)")
    if args.torch_compile:
        out("torch.compile: keras_vit jit_compile=True; keras-hub eager (its default); timm both eager and "
            "torch.compile(model)")
    out(f"load average before: {load_average()}")
    out("weights: every implementation its own random initialization, same architecture (no weight copy)")
    if args.quick:
        out("QUICK mode: tiny architectures and images; the numbers say nothing about real speed")

    limits = []
    limit_reply = run_once("matmul", "vit_b16", (1, 1), args, backend)
    if "gflops" in limit_reply:
        limits.append(limit_reply["gflops"])
        out(f"f32 matmul ({args.matmul_size}^3, {backend}) before: {limit_reply['gflops']:.1f} GFLOP/s")
    else:
        out(f"f32 matmul failed: {limit_reply.get('error')}")

    flops = {}
    if not args.no_flops and not args.scaling_only:
        for model_key in args.models:
            size = QUICK_SIZES.get(model_key, QUICK_SIZE) if args.quick else MODELS[model_key]["size"]
            reply = run_once("flops", model_key, size, args, "torch")
            if "flops" in reply:
                flops[model_key] = reply["flops"] / 1e9
                out(f"FLOPS {model_key} {size[0]}x{size[1]}: {flops[model_key]:.2f} GFLOP per image forward "
                    "(torch FlopCounterMode on our model, Keras PyTorch backend)")
            else:
                out(f"FLOPS {model_key}: count failed: {reply.get('error')}")

    results = {} if args.scaling_only else benchmark_models(args, backend, out, flops, limits)
    rows = scaling(args, backend, out) if (args.scaling or args.scaling_only) else []

    limit_reply = run_once("matmul", "vit_b16", (1, 1), args, backend)
    if "gflops" in limit_reply:
        limits.append(limit_reply["gflops"])
        out(f"f32 matmul ({args.matmul_size}^3, {backend}) after: {limit_reply['gflops']:.1f} GFLOP/s")
    limit = max(limits) if limits else float("nan")
    out(f"LIMIT f32 matmul {backend}: {fmt(limit, 1)} GFLOP/s (the larger of before/after)")
    if results:
        report_models(results, flops, limit, out)
    if rows:
        report_scaling(rows, out)
    out(f"\nload average after: {load_average()}")
    if args.output:
        with open(args.output, "w") as output:
            output.write("\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
