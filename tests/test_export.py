"""Export: every family, from every backend, to SavedModel and TFLite, each file run and compared.

All exports of this module run in one `export_many` call (one TensorFlow
subprocess under JAX and PyTorch), in a module fixture; the tests then read the
reports and run the written files again on fresh inputs.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops

from conftest import BACKEND, to_numpy

import keras_vit
from keras_vit.export import ExportJob, ExportReport, UnsupportedOpError, export_many, run_tflite
from keras_vit.export.litert_runtime import tflite_signature
from keras_vit.export.verification import digit_images, sample_inputs


# --- tiny models, one factory per family ------------------------------------------------------


def tiny_vit():
    return keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=96,
                                       num_classes=10, include_preprocessing=True, name="tiny_vit")


def tiny_deit():
    return keras_vit.VisionTransformer(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=96,
                                       num_classes=10, distilled=True, name="tiny_deit")


def tiny_swin():
    return keras_vit.SwinTransformer(image_size=64, patch_size=4, window_size=4, hidden_dim=32, depths=(2, 2, 2),
                                     num_heads=(2, 4, 8), num_classes=10, include_preprocessing=True, name="tiny_swin")


def tiny_tnt():
    return keras_vit.TNT(image_size=32, patch_size=16, hidden_dim=64, inner_dim=16, depth=2, inner_num_heads=2,
                         num_heads=4, num_classes=10, include_preprocessing=True, name="tiny_tnt")


def tiny_detr():
    from keras_vit.models.resnet.resnet_model import ResNet

    backbone = ResNet(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, name="tiny_resnet")
    return keras_vit.DETR(backbone, num_classes=5, num_queries=8, hidden_dim=32, num_encoder_layers=1,
                          num_decoder_layers=2, num_heads=4, mlp_dim=64, dropout=0.0, name="tiny_detr",
                          # Denoising is training-only: the exported file must compute what Keras does.
                          denoising=keras_vit.training.Denoising(groups=2))


# family -> (factory, builder name that must exist, export keyword arguments)
FAMILIES = {
    "vit": (tiny_vit, "VisionTransformer", {}),
    "deit_distilled": (tiny_deit, "VisionTransformer", {}),
    "swin": (tiny_swin, "SwinTransformer", {}),
    "tnt": (tiny_tnt, "TNT", {}),
    "detr": (tiny_detr, "DETR", {"input_shape": (64, 64, 3)}),
}


@keras.saving.register_keras_serializable(package="keras_vit_tests")
class InverseErf(keras.layers.Layer):
    """A layer whose op (tf.math.erfinv) has no TFLite builtin kernel."""

    def call(self, x):
        return ops.erfinv(ops.tanh(x) * 0.5)


def model_with_flex_op():
    inputs = keras.Input((8, 8, 3), name="images")
    x = keras.layers.Flatten()(InverseErf(name="inverse_erf")(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(x), name="needs_flex")


QUANTIZATIONS = ("float16", "dynamic", "int8")


# --- one export run for the whole module ------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = str(tmp_path_factory.mktemp("exports"))
    models, jobs, keys = {}, [], []
    for family in FAMILIES:
        factory, _, kwargs = FAMILIES[family]
        models[family] = factory()
        for fmt, suffix in (("saved_model", "_saved_model"), ("tflite", ".tflite")):
            jobs.append(ExportJob(models[family], fmt, os.path.join(folder, family + suffix), **kwargs))
            keys.append((family, fmt))
    vit = models["vit"]
    representative, _ = digit_images(32, 32, 32, offset=500)
    for quantization in QUANTIZATIONS if BACKEND == "tensorflow" else ():
        path = os.path.join(folder, f"vit_{quantization}.tflite")
        rep = representative if quantization == "int8" else None
        jobs.append(ExportJob(vit, "tflite", path, quantization, rep, min_top1_agreement=0.75))
        keys.append(("vit", quantization))
    # A SavedModel directory and a .tflite file that already exist.
    os.makedirs(os.path.join(folder, "vit_saved_model"))
    with open(os.path.join(folder, "vit_saved_model", "old.txt"), "w") as f:
        f.write("old")
    with open(os.path.join(folder, "needs_flex.tflite"), "wb") as f:
        f.write(b"old file")
    models["needs_flex"] = model_with_flex_op()
    jobs.append(ExportJob(models["needs_flex"], "tflite", os.path.join(folder, "needs_flex.tflite")))
    keys.append(("needs_flex", "tflite"))

    results = export_many(jobs, raise_errors=False)
    return {"folder": folder, "models": models, "results": dict(zip(keys, results))}


def _report(exported, key):
    result = exported["results"][key]
    if isinstance(result, Exception):
        raise result
    assert isinstance(result, ExportReport)
    return result


def _keras_outputs(model, images):
    outputs = model(images, training=False)
    if isinstance(outputs, dict):
        return {k: to_numpy(v) for k, v in outputs.items()}
    return {"output_0": to_numpy(outputs)}


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_exports_and_runs(exported, family, fmt):
    report = _report(exported, (family, fmt))
    model = exported["models"][family]
    assert report.max_abs_diff <= 1e-4, report.per_output
    assert report.source_backend == BACKEND
    assert os.path.exists(report.path)
    # Run the written file again, on other images (the SavedModel with a batch of 3: its batch is dynamic).
    kwargs = FAMILIES[family][2]
    images = sample_inputs(model, 3, offset=1000, input_shape=kwargs.get("input_shape"))["images"]
    expected = _keras_outputs(model, images)
    if fmt == "tflite":
        assert not [op for op in report.ops if op.startswith("Flex") or op == "CUSTOM"]
        assert tflite_signature(report.path)["inputs"]["images"][0][0] == 1  # a static batch of 1
        got = run_tflite(report.path, {"images": images})
    else:
        import tensorflow as tf

        serve = tf.saved_model.load(report.path).signatures["serving_default"]
        assert serve.structured_input_signature[1]["images"].shape[0] is None  # dynamic batch
        got = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, err_msg=f"{family} {fmt} {name}")


def test_saved_model_serves_cpu_gpu_tpu_and_replaced_old_directory(exported):
    report = _report(exported, ("vit", "saved_model"))
    assert set(report.platforms) == {"cpu", "gpu", "tpu"}
    assert os.path.exists(os.path.join(report.path, "saved_model.pb"))
    assert not os.path.exists(os.path.join(report.path, "old.txt"))  # the verified export replaced it
    assert report.input_pixels == "raw RGB in [0, 255]"


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_quantized_tflite_is_checked_and_smaller(exported, quantization):
    if BACKEND != "tensorflow":
        pytest.skip("backend-independent: from JAX and PyTorch the model reaches the converter as a .keras file "
                    "in a TensorFlow subprocess (checked per family above), so quantization is checked in the "
                    "TensorFlow run only")
    float32 = _report(exported, ("vit", "tflite"))
    report = _report(exported, ("vit", quantization))
    assert report.quantization == quantization
    assert report.top1_agreement >= 0.75 and report.num_samples == 64
    if quantization == "int8":
        assert report.tolerance is None  # checked by top-1 agreement instead
        assert "QUANTIZE" in report.ops
    else:
        assert report.max_abs_diff <= report.tolerance
    assert report.file_size_bytes < 0.7 * float32.file_size_bytes
    # The file still takes raw pixels (float32 input) and gives float32 logits.
    images, _ = digit_images(2, 32, 32, offset=1500)
    out = run_tflite(report.path, images)["output_0"]
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_flex_op_fails_loudly_and_keeps_the_old_file(exported):
    error = exported["results"][("needs_flex", "tflite")]
    assert isinstance(error, UnsupportedOpError), error
    assert "Erfinv" in str(error) and "builtin" in str(error)
    with open(os.path.join(exported["folder"], "needs_flex.tflite"), "rb") as f:
        assert f.read() == b"old file"
    leftovers = [name for name in os.listdir(exported["folder"]) if ".tmp-" in name or ".old-" in name]
    assert leftovers == []


def test_int8_needs_representative_data(tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        keras_vit.export_tflite(tiny_vit(), str(tmp_path / "m.tflite"), quantization="int8")
    assert os.listdir(tmp_path) == []


def test_bad_quantization_and_format_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="quantization must be one of"):
        keras_vit.export_tflite(tiny_vit(), str(tmp_path / "m.tflite"), quantization="int4")
    with pytest.raises(ValueError, match="quantization applies to TFLite"):
        export_many([ExportJob(tiny_vit(), "saved_model", str(tmp_path / "sm"), "float16")])


def test_evaluate_tflite_matches_keras_accuracy(exported):
    report = _report(exported, ("vit", "tflite"))
    model = exported["models"]["vit"]
    images, labels = digit_images(40, 32, 32, offset=300)
    keras_accuracy = float(np.mean(to_numpy(model(images)).argmax(-1) == labels))
    result = keras_vit.evaluate_tflite(report.path, (images, labels))
    assert result["num_samples"] == 40
    assert result["accuracy"] == pytest.approx(keras_accuracy, abs=1.0 / 40)
