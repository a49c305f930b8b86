"""TFLite latency, size and top-1 agreement: float32 / dynamic-range / int8, ours and keras-hub's, side by side.

    KERAS_BACKEND=tensorflow python benchmarks/tflite_latency.py [--models vit_ti16,deit_s16,swin_t] [--runs 30]
    KERAS_BACKEND=tensorflow python benchmarks/tflite_latency.py --keras-model saved_models/vit_custom_digits.keras

With `--models` (224x224, 10 classes) the script builds our model (include_preprocessing=True,
so the files take raw pixels) and keras-hub's model of the same architecture (`ViTBackbone`,
`DeiTBackbone`, `SwinTransformerBackbone` with the same sizes, pixels in [-1, 1]); fits each
classifier head as a linear probe on digit images (no network here for ImageNet weights, and a
random head's logits are too flat for top-1 agreement to mean anything); then writes

- ours: float32, dynamic-range and int8 with `keras_vit.export.export_many` (int8 calibrated on
  `--calibration-images` digits);
- keras-hub's: the same three with `model.export(path, format="litert")`, the converter options
  passed through (`optimizations=[tf.lite.Optimize.DEFAULT]`, a `representative_dataset`).

With `--keras-model` it does the same for a trained `.keras` classifier (ours only; e.g. the
digits model of the main job or a fine-tuned ViT-Ti/16).

Each file is run on `--eval-images` held-out digits and compared with its own Keras model
(top-1 agreement = same arg-max class). Latency: LiteRT interpreter, XNNPACK, 2 threads,
batch 1; every file is loaded once and the files are run in turn (round-robin) for `--runs`
rounds after 3 warm-up calls each, so a change of machine load hits all files alike; the median
and the fastest call are reported, with the load average (`uptime`) before and after: on a busy
machine the fastest call is the steadier figure. "partitions" counts XNNPACK delegate
partitions (1 and 0 nodes "not in XNNPACK": XNNPACK runs the whole graph) and "not in XNNPACK"
the nodes left to TFLite's own kernels.
"""

import argparse
import collections
import os
import tempfile
import time

import keras
import numpy as np

import keras_vit
from keras_vit.export import ExportJob, export_many
from keras_vit.export.verification import digit_images, takes_raw_pixels
from keras_vit.models.vit.vit_model import VIT_CONFIGS

IMAGE_SIZE = 224


def vit_ti16():
    return keras_vit.ViTTi16(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10, include_preprocessing=True)


def deit_s16():
    builder = getattr(keras_vit, "DeiTS16", None)
    if builder is not None:
        return builder(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10, include_preprocessing=True,
                       distilled=True)
    return keras_vit.VisionTransformer(image_size=IMAGE_SIZE, num_classes=10, include_preprocessing=True,
                                       distilled=True, name="deit_s16_distilled", **VIT_CONFIGS["ViTS16"])


def swin_t():
    return keras_vit.SwinT(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10, include_preprocessing=True)


def hub_vit_ti16():
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), patch_size=16, num_layers=12,
                                            num_heads=3, hidden_dim=192, mlp_dim=768)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=10)


def hub_deit_s16():
    import keras_hub

    backbone = keras_hub.models.DeiTBackbone(image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), patch_size=16, num_layers=12,
                                             num_heads=6, hidden_dim=384, intermediate_dim=1536)
    return keras_hub.models.DeiTImageClassifier(backbone=backbone, num_classes=10)


def hub_swin_t():
    import keras_hub

    backbone = keras_hub.models.SwinTransformerBackbone(image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), embed_dim=96,
                                                        depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                                                        drop_path=0.0)
    return keras_hub.models.SwinTransformerImageClassifier(backbone=backbone, num_classes=10)


# key -> (title, our builder, keras-hub's builder)
MODELS = {"vit_ti16": ("ViT-Ti/16", vit_ti16, hub_vit_ti16), "deit_s16": ("DeiT-S/16", deit_s16, hub_deit_s16),
          "swin_t": ("Swin-T", swin_t, hub_swin_t)}


def classifier_heads(model):
    """The Dense layer(s) that give the logits: ours are named head*, keras-hub's is `output_dense`."""
    heads = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense) and layer.name.startswith("head")]
    return heads or [model.output_dense]


def fit_linear_probe(model, images, labels):
    """Sets the model's head(s) to a logistic regression on the features they see; returns its train accuracy."""
    from sklearn.linear_model import LogisticRegression

    heads = classifier_heads(model)
    features = keras.Model(model.inputs, [head.input for head in heads])
    values = features.predict(images, batch_size=16, verbose=0)
    values = values if isinstance(values, list) else [values]
    pooled = np.mean(values, axis=0)  # the distilled model averages its two heads
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(pooled, labels)
    for head in heads:
        head.kernel.assign(probe.coef_.T.astype("float32"))
        head.bias.assign(probe.intercept_.astype("float32"))
    return probe.score(pooled, labels)


def model_pixels(model, images):
    """Raw [0, 255] pixels for a model that normalizes them itself, [-1, 1] otherwise (keras-hub without a preprocessor)."""
    return images if takes_raw_pixels(model) else images / 127.5 - 1.0


def xnnpack_partitions(path):
    """(number of XNNPACK partitions, Counter of op names XNNPACK left to TFLite's kernels).

    A node is left out when one of its outputs is read by a node that runs (a delegate partition, another
    left-out node, or the graph's output) and no partition produces it. Walks the graph backwards.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=2)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    produced_by_partition = {t for n in partitions for t in n["outputs"]}
    needed = {t for n in partitions for t in n["inputs"]} | {d["index"] for d in interpreter.get_output_details()}
    left_out = collections.Counter()
    for node in reversed([n for n in nodes if n["op_name"] != "DELEGATE"]):
        if any(t in needed and t not in produced_by_partition for t in node["outputs"]):
            left_out[node["op_name"]] += 1
            needed.update(t for t in node["inputs"] if t >= 0)
    return len(partitions), left_out


def run_file(path, images):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=2).get_signature_runner()
    name = list(runner.get_input_details())[0]
    outputs = [next(iter(runner(**{name: images[i : i + 1]}).values())) for i in range(len(images))]
    return np.concatenate(outputs)


def round_robin_latency(paths, runs):
    """{path: (median ms, fastest ms)} for {path: input}: each file loaded once, then run in turn for `runs` rounds (XNNPACK, 2 threads, batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for path, pixels in paths.items():
        runner = Interpreter(model_path=path, num_threads=2).get_signature_runner()
        name = list(runner.get_input_details())[0]
        feed = {name: pixels}
        for _ in range(3):
            runner(**feed)
        runners[path] = (runner, feed)
    times = {path: [] for path in paths}
    for _ in range(runs):
        for path, (runner, feed) in runners.items():
            start = time.perf_counter()
            runner(**feed)
            times[path].append((time.perf_counter() - start) * 1000)
    return {path: (float(np.median(values)), float(np.min(values))) for path, values in times.items()}


def load_average():
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def export_hub(model, folder, key, calibration):
    """keras-hub's own LiteRT export (Keras' `model.export(format="litert")`): float32, dynamic, int8.

    Returns ({variant: path} of the files that were written and that LiteRT's interpreter can run,
    {variant: why not} of the others).
    """
    import tensorflow as tf

    def representative_dataset():
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    options = {"float32": {}, "dynamic": {"optimizations": [tf.lite.Optimize.DEFAULT]},
               "int8": {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative_dataset}}
    paths, failures = {}, {}
    for variant, kwargs in options.items():
        path = os.path.join(folder, f"{key}_keras_hub_{variant}.tflite")
        try:  # e.g. keras-hub's Swin: tf.roll is a Flex (select TensorFlow) op, which LiteRT alone does not run
            model.export(path, format="litert", verbose=False, **kwargs)
            run_file(path, calibration[:1])  # a Flex op fails only when the signature runs
            paths[variant] = path
        except Exception as error:  # noqa: BLE001 - reported in the table, the other files still run
            failures[variant] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"
            print(f"keras-hub {key} {variant}: not run ({failures[variant]})", flush=True)
    return paths, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_ti16,deit_s16,swin_t")
    parser.add_argument("--keras-model", default=None, help="a trained .keras classifier to export and time instead")
    parser.add_argument("--no-keras-hub", action="store_true", help="skip keras-hub's files")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--probe-images", type=int, default=200)
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.output_dir or tempfile.mkdtemp(prefix="tflite_latency_")
    keras.utils.set_random_seed(0)
    load_before = load_average()
    print(f"load average before: {load_before}", flush=True)
    rows, failed = [], []
    if args.keras_model:
        plan = [("trained", os.path.basename(args.keras_model), lambda: keras.saving.load_model(args.keras_model),
                 None)]
    else:
        plan = [(key,) + MODELS[key] for key in args.models.split(",")]
    for key, title, ours, hub in plan:
        start = time.time()
        models = {"keras_vit": ours()}
        if hub is not None and not args.no_keras_hub:
            models["keras-hub"] = hub()
        height, width = models["keras_vit"].input_shape[1:3]
        calibration, _ = digit_images(args.calibration_images, height, width, offset=0)
        evaluation, _ = digit_images(args.eval_images, height, width, offset=1797 - args.eval_images)
        files = {}  # (source, variant) -> (path, model)
        for source, model in models.items():
            if args.keras_model is None:
                probe_images, probe_labels = digit_images(args.probe_images, height, width, offset=300)
                accuracy = fit_linear_probe(model, model_pixels(model, probe_images), probe_labels)
                print(f"{title} ({source}): {model.count_params() / 1e6:.1f} M parameters, linear-probe train "
                      f"accuracy {accuracy:.3f}", flush=True)
            if source == "keras_vit":
                jobs = [ExportJob(model, "tflite", os.path.join(folder, f"{key}_{variant}.tflite"),
                                  None if variant == "float32" else variant,
                                  calibration if variant == "int8" else None)
                        for variant in ("float32", "dynamic", "int8")]
                for report in export_many(jobs):
                    files[(source, report.quantization or "float32")] = (report.path, model)
            else:
                hub_paths, hub_failures = export_hub(model, folder, key, model_pixels(model, calibration))
                for variant, path in hub_paths.items():
                    files[(source, variant)] = (path, model)
                failed.extend((title, source, variant, why) for variant, why in hub_failures.items())
        references = {source: keras.ops.convert_to_numpy(
            model.predict(model_pixels(model, evaluation), batch_size=16, verbose=0)) for source, model in models.items()}
        latency = round_robin_latency({path: model_pixels(model, evaluation[:1]) for path, model in files.values()},
                                      args.runs)
        float_ms = {source: latency[files[(source, "float32")][0]][0] for source in models if (source, "float32") in files}
        for (source, variant), (path, model) in files.items():
            got = run_file(path, model_pixels(model, evaluation))
            reference = references[source]
            agreement = float(np.mean(got.argmax(-1) == reference.argmax(-1)))
            partitions, left_out = xnnpack_partitions(path)
            median_ms, fastest_ms = latency[path]
            rows.append((title, source, variant, os.path.getsize(path) / 1e6, median_ms, fastest_ms,
                         median_ms / float_ms.get(source, float("nan")), agreement, float(np.abs(got - reference).max()),
                         partitions, sum(left_out.values()), dict(left_out)))
        for row in rows[-len(files):]:  # printed now too, so that a later model's failure loses nothing
            print(f"  {row[1]} {row[2]}: median {row[4]:.2f} ms, fastest {row[5]:.2f} ms, top-1 agree {row[7]:.1%}, "
                  f"max |diff| {row[8]:.3g}, {row[9]} partitions, {row[10]} nodes not in XNNPACK {row[11]}", flush=True)
        print(f"{title}: done in {time.time() - start:.0f} s", flush=True)
        del models
        keras.utils.clear_session()

    print(f"\nTFLite (ai-edge-litert, XNNPACK, 2 threads, batch 1, round-robin median and fastest of {args.runs}) "
          f"on {os.cpu_count()}-core CPU, load average (1, 5, 15 min) {load_before} before, {load_average()} after; "
          f"top-1 agreement and max |diff| of each file vs its own Keras model on {args.eval_images} held-out digits")
    header = (f"{'model':<26}{'export':<11}{'file':<9}{'MB':>7}{'median ms':>11}{'min ms':>9}{'vs f32':>8}"
              f"{'top-1 agree':>13}"
              f"{'max |diff|':>12}{'partitions':>12}{'not in XNNPACK':>16}")
    print(header)
    print("-" * len(header))
    for title, source, variant, size, ms, fastest, ratio, agreement, diff, partitions, left, _ in rows:
        print(f"{title:<26}{source:<11}{variant:<9}{size:>7.2f}{ms:>11.2f}{fastest:>9.2f}{ratio:>8.2f}"
              f"{agreement:>13.1%}"
              f"{diff:>12.3g}{partitions:>12}{left:>16}")
    for title, source, variant, why in failed:
        print(f"{title:<26}{source:<11}{variant:<9} not run: {why}")
    print("\nops XNNPACK left to TFLite's kernels:")
    for title, source, variant, *_, left_out in rows:
        if left_out:
            print(f"  {title} {source} {variant}: {left_out}")


if __name__ == "__main__":
    main()
