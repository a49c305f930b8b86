"""TFLite latency and file size of ViT-Ti/16, DeiT-S/16 and Swin-T: float32 vs dynamic-range vs int8.

    KERAS_BACKEND=tensorflow python benchmarks/tflite_latency.py [--models vit_ti16,deit_s16,swin_t] [--runs 20]

For each model (224x224, 10 classes, include_preprocessing=True so the files
take raw pixels) the script:
1. fits the classifier head as a linear probe on digit images (no network here to
   fetch ImageNet weights, and a random head's logits are too flat for top-1
   agreement to mean anything), then
2. exports float32, dynamic-range and int8 .tflite files in one `export_many` call
   (int8 calibrated on 100 digits), each checked against the Keras model on 64
   other digits (top-1 agreement = same arg-max class as the Keras model), and
3. times batch-1 inference with the LiteRT interpreter (XNNPACK, 2 threads):
   median and 90th percentile over `--runs` invocations after 3 warm-up runs.
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np

import keras_vit
from keras_vit.export import ExportJob, export_many
from keras_vit.export.verification import digit_images
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


MODELS = {"vit_ti16": ("ViT-Ti/16", vit_ti16), "deit_s16": ("DeiT-S/16 distilled", deit_s16),
          "swin_t": ("Swin-T", swin_t)}


def fit_linear_probe(model, images, labels):
    """Sets the model's head(s) to a logistic regression on the features they see; returns its train accuracy."""
    from sklearn.linear_model import LogisticRegression

    heads = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense) and layer.name.startswith("head")]
    features = keras.Model(model.input, [head.input for head in heads])
    values = features.predict(images, batch_size=16, verbose=0)
    values = values if isinstance(values, list) else [values]
    pooled = np.mean(values, axis=0)  # the distilled model averages its two heads
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(pooled, labels)
    for head in heads:
        head.kernel.assign(probe.coef_.T.astype("float32"))
        head.bias.assign(probe.intercept_.astype("float32"))
    return probe.score(pooled, labels)


def latency_ms(path, image, runs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=2)  # XNNPACK is the default CPU delegate
    run = interpreter.get_signature_runner()
    for _ in range(3):
        run(images=image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(images=image)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_ti16,deit_s16,swin_t")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--probe-images", type=int, default=200)
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.output_dir or tempfile.mkdtemp(prefix="tflite_latency_")
    keras.utils.set_random_seed(0)
    train_images, train_labels = digit_images(args.probe_images, IMAGE_SIZE, IMAGE_SIZE, offset=0)
    representative, _ = digit_images(100, IMAGE_SIZE, IMAGE_SIZE, offset=1000)
    rows = []
    for key in args.models.split(","):
        title, factory = MODELS[key]
        if key == "swin_t" and not hasattr(keras_vit, "SwinT"):
            print(f"{title}: not available on this branch (keras_vit.SwinT missing); skipped")
            continue
        start = time.time()
        model = factory()
        probe_accuracy = fit_linear_probe(model, train_images, train_labels)
        jobs = [ExportJob(model, "tflite", os.path.join(folder, f"{key}.tflite")),
                ExportJob(model, "tflite", os.path.join(folder, f"{key}_dynamic.tflite"), "dynamic"),
                ExportJob(model, "tflite", os.path.join(folder, f"{key}_int8.tflite"), "int8", representative)]
        reports = export_many(jobs)
        image = representative[:1]
        for report in reports:
            median, p90 = latency_ms(report.path, image, args.runs)
            rows.append((title, report.quantization or "float32", report.file_size_bytes / 1e6, median, p90,
                         report.top1_agreement, report.max_abs_diff, report.num_samples))
        print(f"{title}: {model.count_params() / 1e6:.1f} M parameters, linear-probe train accuracy "
              f"{probe_accuracy:.3f}, done in {time.time() - start:.0f} s", flush=True)
        del model
        keras.utils.clear_session()

    print(f"\nTFLite (ai-edge-litert, XNNPACK, 2 threads, batch 1, {IMAGE_SIZE}x{IMAGE_SIZE}) on "
          f"{os.cpu_count()}-core CPU (load average {os.getloadavg()[0]:.1f} at the end); "
          f"Keras backend {keras.backend.backend()}")
    header = f"{'model':<22}{'file':<10}{'size MB':>9}{'median ms':>11}{'p90 ms':>9}{'top-1 agree':>13}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    for title, variant, size, median, p90, agreement, diff, count in rows:
        agree = f"{agreement:.1%}" if agreement is not None else "-"
        print(f"{title:<22}{variant:<10}{size:>9.2f}{median:>11.1f}{p90:>9.1f}{agree:>13}{diff:>12.3g}")
    print(f"(top-1 agreement and max |diff|: the file vs the Keras model on {rows[0][-1] if rows else 0} digit images)")


if __name__ == "__main__":
    main()
