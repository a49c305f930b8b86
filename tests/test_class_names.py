"""Class names: the shipped ImageNet and COCO names, decode_predictions / decode_detections, and a
model that keeps its names through .keras files, exports and `keras-vit predict`."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import to_numpy

import keras_vit
from keras_vit.cli import main
from keras_vit.labels import dataset_class_names, get_image_recipe, labels_path, read_labels_file

NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def named_model():
    model = keras_vit.VisionTransformer(image_size=16, patch_size=8, hidden_dim=16, depth=1, num_heads=2,
                                        mlp_dim=32, num_classes=3, include_preprocessing=True, name="tiny_named")
    recipe = {"crop_mode": "squash", "crop_pct": 1.0, "interpolation": "bilinear"}
    return model, keras_vit.with_class_names(model, NAMES, image_recipe=recipe)


def test_shipped_names_are_the_published_lists():
    imagenet = dataset_class_names("imagenet1k")
    assert len(imagenet) == 1000 and imagenet[0] == "tench" and imagenet[281] == "tabby" and imagenet[999] == "toilet tissue"
    assert dataset_class_names("imagenet1k", full=True)[281] == "tabby, tabby cat"
    assert len(dataset_class_names("imagenet22k")) == 21841
    coco = dataset_class_names("coco")
    assert len(coco) == 91 and (coco[1], coco[17], coco[90]) == ("person", "cat", "toothbrush")
    assert coco[0] == coco[12] == "N/A"  # ids COCO does not use keep their place
    with pytest.raises(ValueError, match="Unknown class names 'imagenet21k'"):
        dataset_class_names("imagenet21k")


def test_decode_predictions():
    logits = np.full((2, 1000), -5.0, "float32")
    logits[0, 281], logits[1, 0] = 5.0, 5.0
    first, second = keras_vit.decode_predictions(logits, top=3)
    assert [entry[:2] for entry in first][:1] == [(281, "tabby")] and second[0][:2] == (0, "tench")
    assert len(first) == 3 and first[0][2] > 0.9 and first[0][2] >= first[1][2]
    probs = np.array([[0.2, 0.5, 0.3]])
    assert keras_vit.decode_predictions(probs, top=2, class_names=NAMES) == [[(1, "square", 0.5), (2, "triangle", 0.3)]]
    assert keras_vit.decode_predictions(probs, top=1) == [[(1, "class 1", 0.5)]]
    with pytest.raises(ValueError, match="2 class names for predictions of 3 classes"):
        keras_vit.decode_predictions(probs, class_names=["a", "b"])


def test_decode_detections_names_coco_classes():
    logits = np.full((1, 3, 92), -9.0, "float32")
    logits[0, 0, 1], logits[0, 1, 17], logits[0, 2, 91] = 9.0, 8.0, 9.0  # person, cat, no object
    boxes = np.tile(np.array([0.5, 0.5, 0.2, 0.4], "float32"), (1, 3, 1))
    result, = keras_vit.decode_detections({"logits": logits, "pred_boxes": boxes}, [(100, 200)])
    assert result["names"] == ["person", "cat"] and result["labels"].tolist() == [1, 17]
    np.testing.assert_allclose(result["boxes"][0], [80, 30, 120, 70], atol=1e-4)
    shapes = keras_vit.decode_detections({"logits": logits[..., :4], "pred_boxes": boxes}, [(10, 10)],
                                         threshold=0.0, class_names=NAMES)
    assert set(shapes[0]["names"]) <= set(NAMES)


def test_model_keeps_names_through_keras_file(named_model, tmp_path):
    model, named = named_model
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    assert keras_vit.get_class_names(model) is None and keras_vit.get_class_names(named) == NAMES
    path = str(tmp_path / "named.keras")
    named.save(path)
    loaded = keras.saving.load_model(path)
    assert keras_vit.get_class_names(loaded) == NAMES and get_image_recipe(loaded)["crop_mode"] == "squash"
    # The names layer leaves the logits as they are: the loaded named model equals the plain one.
    logits = to_numpy(loaded.predict_on_batch(images))
    np.testing.assert_allclose(logits, to_numpy(model.predict_on_batch(images)), atol=1e-6)
    top = keras_vit.decode_predictions(logits, top=1, class_names=loaded)
    assert top[0][0][1] == NAMES[int(np.argmax(logits[0]))]
    # Weights saved before the names were attached still load (the names layer has no weights).
    weights = str(tmp_path / "plain.weights.h5")
    model.save_weights(weights)
    again = keras_vit.with_class_names(model, ["a", "b", "c"])
    again.load_weights(weights)
    assert keras_vit.get_class_names(again) == ("a", "b", "c")  # renaming replaces the old names
    assert len(again.layers) == len(named.layers)


def test_names_must_match_the_head(named_model, tmp_path):
    model, _ = named_model
    with pytest.raises(ValueError, match="2 class names for tiny_named, whose head has 3 classes"):
        keras_vit.with_class_names(model, ["a", "b"])
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\n\n")
    with pytest.raises(ValueError, match="has 2 class names but the model predicts 3 classes"):
        read_labels_file(str(path), num_classes=3)


def test_export_ships_labels_and_predict_prints_names(named_model, tmp_path, monkeypatch, capsys):
    _, named = named_model
    monkeypatch.chdir(tmp_path)
    photo = np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype="uint8")
    Image.fromarray(photo).save("photo.png")
    named.save("named.keras")
    keras_vit.export_tflite(named, "named.tflite")
    assert labels_path("named.tflite") == "named.labels.txt"
    assert open("named.labels.txt").read().split() == list(NAMES)
    for artifact in ("named.keras", "named.tflite"):
        assert main(["predict", artifact, "photo.png", "--top-k", "3"]) == 0
        out = capsys.readouterr().out
        assert all(f"{name} (" in out for name in NAMES), (artifact, out)
    # A labels file whose length differs from the head: one clear line, no traceback.
    with open("two.txt", "w") as f:
        f.write("cat\ndog\n")
    assert main(["predict", "named.tflite", "photo.png", "--labels", "two.txt"]) == 1
    assert "two.txt has 2 class names but the model predicts 3 classes" in capsys.readouterr().err
    # A file that is not an image.
    with open("notes.png", "w") as f:
        f.write("not a picture")
    assert main(["predict", "named.keras", "notes.png"]) == 1
    assert "notes.png: not an image file" in capsys.readouterr().err
    assert not os.path.exists(".named.tflite.tmp")


@pytest.fixture(scope="module")
def tiny_detr():
    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8)], name="cnn")
    return keras_vit.models.DETR(cnn, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
                                 num_decoder_layers=1, num_heads=2, mlp_dim=32, auxiliary_outputs=False,
                                 include_preprocessing=True, input_shape=(32, 32, 3), name="tiny_detr")


def test_detr_keeps_names_through_keras_file_and_predict(tiny_detr, tmp_path, monkeypatch, capsys):
    from keras_vit.cli.train_detr import build_detector
    from keras_vit.data import SHAPES_CLASS_NAMES
    from keras_vit.labels import write_labels_file

    model = tiny_detr
    assert keras_vit.get_class_names(model) is None and "class_names" in model.get_config()
    with pytest.raises(ValueError, match="2 class names for tiny_detr, whose class head has 3 classes"):
        keras_vit.with_class_names(model, ["a", "b"])
    assert keras_vit.with_class_names(model, NAMES) is model and model.class_names == NAMES
    monkeypatch.chdir(tmp_path)
    model.save("detr.keras")
    loaded = keras.saving.load_model("detr.keras", compile=False)
    assert keras_vit.get_class_names(loaded) == NAMES and loaded.class_names == NAMES
    logits = np.full((1, 2, 4), -9.0, "float32")
    logits[0, 0, 2], logits[0, 1, 0] = 9.0, 9.0  # "triangle", "circle" (the model's outputs' layout)
    outputs = {"logits": logits, "pred_boxes": np.full((1, 2, 4), 0.5, "float32")}
    detections, = keras_vit.decode_detections(outputs, [(32, 32)], class_names=loaded)
    assert detections["names"] == ["triangle", "circle"]
    assert open(write_labels_file(loaded, "detr.tflite")).read().split() == list(NAMES)
    # `keras-vit predict` names the boxes (threshold 0: the untrained head's scores are low).
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype="uint8")).save("photo.png")
    assert main(["predict", "detr.keras", "photo.png", "--threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert any(f"{name} (" in out for name in NAMES) and "class " not in out, out
    # The training CLI's detector keeps the shapes' names.
    args = type("Args", (), dict(model="custom-detr", queries=3, weights=None, dropout=0.0))()
    config = dict(hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    assert build_detector(args, config, 32, SHAPES_CLASS_NAMES).class_names == SHAPES_CLASS_NAMES


# --- Conditional DETR: sigmoid scores, one column per class, no "no object" column --------------


@pytest.fixture(scope="module")
def tiny_conditional_detr():
    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8)], name="cnn")
    model = keras_vit.ConditionalDETR(cnn, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
                                      num_decoder_layers=1, num_heads=2, mlp_dim=32, dropout=0.0,
                                      auxiliary_outputs=False, include_preprocessing=True,
                                      input_shape=(32, 32, 3), class_names=NAMES, name="tiny_conditional_detr")
    # Spread the class scores (the untrained head's are all near the 1% prior) so their ranking is clear.
    bias = model.class_embed.bias
    bias.assign(np.array([1.0, -0.5, 0.25], "float32"))
    return model


def _printed_detections(out):
    """`keras-vit predict`'s box lines as (name, score, box) tuples."""
    import re

    found = re.findall(r"  (\w+) \((\d)\)  score ([\d.]+)  box \[([-\d]+), ([-\d]+), ([-\d]+), ([-\d]+)\]", out)
    return [(name, float(score), tuple(int(v) for v in box)) for name, _, score, *box in found]


def test_conditional_detr_decodes_and_predicts_with_its_own_post_processing(tiny_conditional_detr, tmp_path,
                                                                           monkeypatch, capsys):
    from keras_vit.cli.common import load_images

    model = tiny_conditional_detr
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype="uint8")).save("photo.png")
    images, sizes = load_images(["photo.png"], 32, 32, "none", "squash", 1.0, "bilinear")
    outputs = {k: to_numpy(v) for k, v in model(images).items()}
    expected, = model.post_process_detections(outputs, [(40, 50)], threshold=0.0)
    assert len(expected["scores"]) == 12  # every (query, class) pair: 4 queries x 3 classes
    for kwargs in ({"class_names": model}, {"class_names": NAMES, "scores": "sigmoid"}):
        decoded, = keras_vit.decode_detections(outputs, [(40, 50)], threshold=0.0, **kwargs)
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(decoded[key], expected[key])
        assert decoded["names"] == [NAMES[i] for i in expected["labels"]]
    # Read as DETR's softmax with a "no object" column, the names would not fit: a clear error, not wrong boxes.
    with pytest.raises(ValueError, match="scores='sigmoid' for Conditional DETR"):
        keras_vit.decode_detections(outputs, [(40, 50)], class_names=NAMES)
    # `keras-vit predict` on the .keras file prints the same detections.
    model.save("cdetr.keras")
    assert main(["predict", "cdetr.keras", "photo.png", "--threshold", "0"]) == 0
    printed = _printed_detections(capsys.readouterr().out)
    assert [name for name, _, _ in printed] == [NAMES[i] for i in expected["labels"]]
    np.testing.assert_allclose([s for _, s, _ in printed], expected["scores"], atol=5e-4)
    np.testing.assert_allclose([b for _, _, b in printed], expected["boxes"], atol=0.51)
    # `--draw DIR`: the same detections drawn over the photo, one PNG per image.
    assert main(["predict", "cdetr.keras", "photo.png", "--threshold", "0.5", "--draw", "drawn"]) == 0
    assert "drawn: drawn/photo.detections.png" in capsys.readouterr().out
    with Image.open("drawn/photo.detections.png") as picture:
        assert picture.format == "PNG" and picture.size[0] >= 400


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="one export check, on TensorFlow (export from every backend is DETR's)")
def test_exported_conditional_detr_predicts_and_draws_the_keras_models_detections(tiny_conditional_detr, tmp_path,
                                                                                 monkeypatch, capsys):
    """TFLite file and SavedModel directory: each carries detection.json (sigmoid scores) and the names,
    and `keras-vit predict --draw` on it prints the Keras model's detections and draws them as a PNG."""
    import json

    from keras_vit.export import ExportJob, export_many
    from keras_vit.labels import detection_info_path

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype="uint8")).save("photo.png")
    exports = ("cdetr.tflite", "cdetr_saved_model")
    export_many([ExportJob(tiny_conditional_detr, "tflite", "cdetr.tflite"),
                 ExportJob(tiny_conditional_detr, "saved_model", "cdetr_saved_model")], num_samples=1)
    assert detection_info_path("cdetr_saved_model") == os.path.join("cdetr_saved_model", "detection.json")
    for path in exports:
        assert json.load(open(detection_info_path(path))) == {"scores": "sigmoid", "num_classes": 3}
        assert read_labels_file(labels_path(path)) == NAMES
    tiny_conditional_detr.save("cdetr.keras")
    printed, drawn = {}, {}
    for path in ("cdetr.keras", *exports):
        folder = f"drawn_{os.path.splitext(path)[0]}"
        assert main(["predict", path, "photo.png", "--threshold", "0", "--draw", folder]) == 0
        out = capsys.readouterr().out
        printed[path] = _printed_detections(out)
        drawn[path] = os.path.join(folder, "photo.detections.png")
        assert f"drawn: {drawn[path]}" in out
    keras_found = sorted(printed["cdetr.keras"], key=lambda d: (d[0], d[2]))
    for path in exports:
        assert len(printed[path]) == 12, path  # 4 queries x 3 sigmoid classes: scored as sigmoids, not softmax
        found = sorted(printed[path], key=lambda d: (d[0], d[2]))
        assert [(n, b) for n, _, b in keras_found] == [(n, b) for n, _, b in found] or np.allclose(
            [b for _, _, b in keras_found], [b for _, _, b in found], atol=1)
        assert [n for n, _, _ in keras_found] == [n for n, _, _ in found]
        np.testing.assert_allclose([s for _, s, _ in keras_found], [s for _, s, _ in found], atol=2e-3)
    # The same picture with no box (no sigmoid score reaches 1): the drawn PNGs differ from it by their boxes.
    assert main(["predict", "cdetr.tflite", "photo.png", "--threshold", "1", "--draw", "undrawn"]) == 0
    assert "no box with score >= 1" in capsys.readouterr().out
    with Image.open(os.path.join("undrawn", "photo.detections.png")) as picture:
        undrawn = np.asarray(picture.convert("RGB"), "int16")
    for path in exports:
        with Image.open(drawn[path]) as picture:
            assert picture.format == "PNG"
            pixels = np.asarray(picture.convert("RGB"), "int16")
        assert pixels.shape == undrawn.shape, path
        assert np.mean(np.any(pixels != undrawn, axis=-1)) > 0.001, f"{path}: no box drawn"
