"""Bad inputs a user can give: DETR targets that are wrong, batches of 0 images.

Each gets one ValueError that says what is wrong and what to do, raised on the host before a
backend traces a step (so it is the same on TensorFlow, JAX and PyTorch), naming the image as the
user counts it.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.data.detection import (
    check_detection_targets,
    detection_dataset_from_arrays,
    pad_detection_targets,
    prepare_detection_dataset,
)

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def detr():
    from keras_vit.models.detr.detr_model import DETR

    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 8, strides=8)], name="cnn")
    model = DETR(
        cnn, num_classes=NUM_CLASSES, num_queries=4, hidden_dim=8, num_encoder_layers=1, num_decoder_layers=2,
        num_heads=2, mlp_dim=16, dropout=0.0, input_shape=(16, 16, 3),
    )  # fmt: skip
    model.compile(optimizer="sgd")
    return model


def _targets(batch=3):
    boxes = [[[0.5, 0.5, 0.2, 0.2]] for _ in range(batch)]
    return pad_detection_targets(boxes, [[1]] * batch, max_boxes=2)


def _images(batch=3):
    return np.zeros((batch, 16, 16, 3), "float32")


def _untouched(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]


@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "test_on_batch"])
def test_bad_box_names_the_image_as_given(detr, entry):
    targets = _targets()
    targets["boxes"][1, 0] = [0.5, 0.5, 1.5, 0.2]  # image 1 (of 3); the loss repeats targets per layer
    before = _untouched(detr)
    call = getattr(detr, entry)
    kwargs = {"verbose": 0} if entry in ("fit", "evaluate") else {}
    with pytest.raises(ValueError, match=r"\(image 1, box 0\) is outside \[0, 1\]"):
        call(_images(), targets, **kwargs)
    for old, new in zip(before, detr.trainable_variables):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def test_bad_validation_targets_are_checked_before_training(detr):
    targets = _targets()
    bad = _targets()
    bad["labels"][2, 0] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"label 3 \(image 2, box 0\).*num_classes=3"):
        detr.fit(_images(), targets, validation_data=(_images(), bad), verbose=0)


def test_targets_without_valid_say_what_to_pass(detr):
    targets = _targets()
    del targets["valid"]
    with pytest.raises(ValueError, match="missing 'valid'.*pad_detection_targets"):
        detr.fit(_images(), targets, verbose=0)


def test_labels_and_boxes_of_different_lengths(detr):
    targets = _targets()
    targets["labels"] = targets["labels"][:, :1]
    with pytest.raises(ValueError, match=r"'labels' \(3, 1\) and 'boxes' \(3, 2, 4\) disagree"):
        detr.train_on_batch(_images(), targets)


def test_ragged_targets_and_wrong_image_count():
    with pytest.raises(ValueError, match="not a rectangular array.*pad_detection_targets"):
        check_detection_targets({"boxes": [[[0.5, 0.5, 0.2, 0.2]], []], "labels": [[1], []], "valid": [[1], []]})
    with pytest.raises(ValueError, match="Got 2 images but targets for 3 images"):
        check_detection_targets(_targets(3), num_images=2)
    with pytest.raises(ValueError, match="must be a dict"):
        check_detection_targets([np.zeros((1, 1, 4))])
    targets = _targets(1)
    targets["labels"] = targets["labels"].astype("float32") + 0.5
    with pytest.raises(ValueError, match="integer class indices"):
        check_detection_targets(targets)


def test_compiled_step_guard_for_targets_without_valid(detr):
    # A dataset is not checked at the entry point; the step's trace-time guard names the key.
    dataset = tf.data.Dataset.from_tensor_slices((_images(2), {k: v for k, v in _targets(2).items() if k != "valid"}))
    with pytest.raises(ValueError, match=r"missing \['valid'\]"):
        detr.fit(dataset.batch(2), verbose=0)


def test_dataset_pipeline_names_the_example():
    boxes = np.full((3, 1, 4), 0.25, "float32")
    boxes[2, 0] = [0.5, 0.5, 0.0, 0.2]
    raw = detection_dataset_from_arrays(np.zeros((3, 8, 8, 3), "uint8"), boxes, np.zeros((3, 1)))
    batches = prepare_detection_dataset(raw, 8, max_boxes=2, batch_size=3, num_classes=NUM_CLASSES)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Example 2 of the dataset.*\(box 0\) has a non-positive"):
        next(iter(batches))


# ----------------------------------------------------------------------------- 0 images
EMPTY = r"got a batch of 0 images \(input shape \(0, 16, 16, 3\)\); pass at least one image"


@pytest.mark.parametrize("entry", ["call", "predict", "predict_on_batch", "evaluate", "fit"])
def test_detr_batch_of_zero_images(detr, entry):
    images = _images(0)
    if entry == "call":
        run = lambda: detr(images)  # noqa: E731
    elif entry in ("predict", "predict_on_batch"):
        run = lambda: getattr(detr, entry)(images)  # noqa: E731
    else:
        run = lambda: getattr(detr, entry)(images, _targets(0), verbose=0)  # noqa: E731
    with pytest.raises(ValueError, match="DETR " + EMPTY):
        run()


def _tiny(family):
    from keras_vit.models import SwinTransformer, TNT, VisionTransformer

    if family == "vit":
        return VisionTransformer(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2, mlp_dim=16,
                                 num_classes=3)  # fmt: skip
    if family == "deit":  # a distilled ViT, as DeiTS16 & co. build it
        return VisionTransformer(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2, mlp_dim=16,
                                 num_classes=3, distilled=True)  # fmt: skip
    if family == "swin":
        return SwinTransformer(image_size=16, patch_size=4, hidden_dim=8, depths=(1,), num_heads=(2,), window_size=2,
                               num_classes=3)  # fmt: skip
    return TNT(image_size=16, patch_size=8, hidden_dim=8, inner_dim=4, depth=1, num_heads=2, inner_num_heads=2,
               num_classes=3)  # fmt: skip


@pytest.mark.parametrize("family", ["vit", "deit", "swin", "tnt"])
def test_vit_family_batch_of_zero_images(family):
    model = _tiny(family)
    with pytest.raises(ValueError, match=EMPTY):
        model(_images(0))
    with pytest.raises(ValueError, match=EMPTY):
        model.predict_on_batch(_images(0))


def test_non_finite_box_and_repeated_rows_name_the_image():
    from keras_vit.data.detection import check_target_arrays

    targets = _targets(2)
    targets["boxes"][1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\(image 1, box 0\) is not finite"):
        check_detection_targets(targets)
    # The set loss repeats each image's targets once per decoder layer (here 3): row 3 is image 1.
    repeated = {key: np.repeat(value, 3, axis=0) for key, value in targets.items()}
    with pytest.raises(ValueError, match=r"\(image 1, box 0\) is not finite"):
        check_target_arrays(repeated["boxes"], repeated["labels"], repeated["valid"], rows_per_image=3)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"image": _images(2)}, r"dict with keys 'images' and optionally 'pixel_mask'; got keys \['image'\]"),
        (_images(2)[0], r"must be \(batch, height, width, channels\), got shape \(16, 16, 3\)"),
    ],
    ids=["misspelled key", "one image without its batch axis"],
)
def test_detr_inputs_checked_before_the_backbone_is_built(detr, inputs, message):
    with pytest.raises(ValueError, match=message):
        detr.predict_on_batch(inputs)


def test_save_model_names_the_users_path(tmp_path):
    from keras_vit.atomic_files import save_model

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"model: the file name must end in \.keras"):
        save_model(model, str(tmp_path / "model"))
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        save_model(model, str(tmp_path / "afile" / "model.keras"))
    assert sorted(os.listdir(tmp_path)) == ["afile"]
