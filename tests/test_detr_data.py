"""Detection data: the synthetic shapes set and the COCO-format tf.data pipeline (runs on every backend)."""

import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vit.data import (
    coco_detection_dataset,
    detection_dataset_from_arrays,
    load_coco_folder,
    make_shapes_dataset,
    prepare_detection_dataset,
    validate_detection_targets,
)


def test_shapes_dataset_is_deterministic_and_valid():
    first = make_shapes_dataset(12, image_size=48, max_objects=3, seed=5)
    again = make_shapes_dataset(12, image_size=48, max_objects=3, seed=5)
    other = make_shapes_dataset(12, image_size=48, max_objects=3, seed=6)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["images"], other["images"])
    validate_detection_targets(first, num_classes=3)
    assert first["valid"].sum() > 6 and set(np.unique(first["labels"][first["valid"] > 0])) <= {0, 1, 2}
    # Held-out images are a disjoint part of the same stream.
    tail = make_shapes_dataset(4, image_size=48, max_objects=3, seed=5, start=8)
    np.testing.assert_array_equal(tail["images"], first["images"][8:])


def test_shapes_boxes_are_tight_around_the_drawn_shape():
    data = make_shapes_dataset(6, image_size=64, max_objects=3, seed=0)
    for image, boxes, valid in zip(data["images"], data["boxes"], data["valid"]):
        for (cx, cy, w, h), real in zip(boxes, valid):
            if not real:
                continue
            x0, y0 = int(round((cx - w / 2) * 64)), int(round((cy - h / 2) * 64))
            x1, y1 = int(round((cx + w / 2) * 64)), int(round((cy + h / 2) * 64))
            inside = image[y0:y1, x0:x1].reshape(-1, 3)
            # The shape's color is the most common color inside its box.
            colors, counts = np.unique(inside, axis=0, return_counts=True)
            assert counts.max() > 0.3 * len(inside)


def write_coco_folder(root):
    """A small COCO-format folder: 3 images with painted boxes, non-contiguous category ids, a crowd
    region, a box sticking out of its image (clipped), and an image without objects."""
    os.makedirs(os.path.join(root, "images"))
    specs = [  # (file, width, height, [(x, y, w, h, category, crowd)])
        ("a.png", 80, 40, [(8, 4, 24, 20, 7, 0), (50, 10, 20, 20, 3, 0), (0, 0, 10, 10, 3, 1)]),
        ("b.png", 30, 60, [(20, 40, 20, 30, 7, 0)]),  # sticks out right and bottom: clipped to 10 x 20
        ("c.png", 50, 50, []),
    ]
    images, annotations = [], []
    for image_id, (name, width, height, objects) in enumerate(specs, start=1):
        pixels = np.zeros((height, width, 3), "uint8")
        for x, y, w, h, _, crowd in objects:
            if not crowd:
                pixels[y : y + h, x : x + w] = 255
        Image.fromarray(pixels).save(os.path.join(root, "images", name))
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for x, y, w, h, category, crowd in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})  # fmt: skip
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 3, "name": "three"}, {"id": 7, "name": "seven"}]}  # fmt: skip
    path = os.path.join(root, "instances.json")
    with open(path, "w") as f:
        json.dump(coco, f)
    return os.path.join(root, "images"), path


def test_local_coco_folder_reads_boxes_and_labels(tmp_path):
    image_dir, annotations = write_coco_folder(str(tmp_path))
    dataset, info = coco_detection_dataset(image_dir=image_dir, annotation_file=annotations)
    assert info == {"num_classes": 2, "class_names": ["three", "seven"], "category_ids": [3, 7]}
    examples = list(dataset.as_numpy_iterator())
    assert [e["image"].shape for e in examples] == [(40, 80, 3), (60, 30, 3), (50, 50, 3)]
    np.testing.assert_allclose(examples[0]["boxes"], [[20 / 80, 14 / 40, 24 / 80, 20 / 40], [60 / 80, 20 / 40, 20 / 80, 20 / 40]])
    np.testing.assert_array_equal(examples[0]["labels"], [1, 0])  # category 7 -> 1, 3 -> 0; crowd skipped
    np.testing.assert_allclose(examples[1]["boxes"], [[25 / 30, 50 / 60, 10 / 30, 20 / 60]])
    assert examples[2]["boxes"].shape == (0, 4)


def box_brightness(inputs, targets, index, slot):
    """Mean pixel value inside a target box, in the pixels of the image's real (unpadded) part."""
    mask = inputs["pixel_mask"][index]
    height, width = int(mask.any(axis=1).sum()), int(mask.any(axis=0).sum())
    cx, cy, w, h = targets["boxes"][index, slot]
    x0, x1 = int(round((cx - w / 2) * width)) + 1, int(round((cx + w / 2) * width)) - 1
    y0, y1 = int(round((cy - h / 2) * height)) + 1, int(round((cy + h / 2) * height)) - 1
    return inputs["images"][index, y0:y1, x0:x1].mean()


@pytest.mark.parametrize("training", [False, True])
def test_pipeline_resizes_pads_flips_and_masks_consistently(tmp_path, training):
    image_dir, annotations = write_coco_folder(str(tmp_path))
    dataset, info = load_coco_folder(image_dir, annotations)
    batches = prepare_detection_dataset(
        dataset, image_size=(64, 64), max_boxes=4, batch_size=3, num_classes=info["num_classes"],
        training=training, scale_range=(0.5, 1.0), seed=3, drop_remainder=False,
    )  # fmt: skip
    for _ in range(3 if training else 1):  # several random flips / scales
        for inputs, targets in batches.as_numpy_iterator():
            assert inputs["images"].shape == (3, 64, 64, 3) and inputs["pixel_mask"].shape == (3, 64, 64)
            assert targets["boxes"].shape == (3, 4, 4) and targets["labels"].dtype == np.int32
            counts = targets["valid"].sum(axis=1)
            np.testing.assert_array_equal(sorted(counts), [0, 1, 2])  # training shuffles the images
            image_with = {int(count): i for i, count in enumerate(counts)}
            # The real part keeps each image's aspect ratio; padding is black and masked out.
            mask = inputs["pixel_mask"] > 0
            assert np.all(inputs["images"][~mask] == 0)
            if not training:
                np.testing.assert_array_equal(
                    [[m.any(1).sum(), m.any(0).sum()] for m in mask], [[32, 64], [64, 32], [64, 64]]
                )
            for count, slot in ((2, 0), (2, 1), (1, 0)):  # boxes land on the painted rectangles
                assert box_brightness(inputs, targets, image_with[count], slot) > 200


def test_pipeline_flips_boxes_with_the_image():
    images = np.zeros((8, 20, 40, 3), "uint8")
    images[:, 5:15, 2:10] = 255
    raw = detection_dataset_from_arrays(images, np.tile([[[6 / 40, 0.5, 8 / 40, 0.5]]], (8, 1, 1)), np.zeros((8, 1)))
    ds = prepare_detection_dataset(raw, (20, 40), max_boxes=2, batch_size=8, training=True,
                                   scale_range=(1.0, 1.0), seed=0)  # fmt: skip
    inputs, targets = next(ds.as_numpy_iterator())
    assert set(np.round(targets["boxes"][:, 0, 0].astype(float), 3).tolist()) == {0.15, 0.85}  # both flipped and not
    for index in range(8):
        assert box_brightness(inputs, targets, index, 0) > 200


def test_training_pipeline_passes_do_not_depend_on_an_iterator_started_and_dropped():
    # A peek (next(iter(dataset))) starts the prefetch, which runs on in the background until the iterator is
    # dropped: with a random state shared between iterators, the next pass's flips depended on how far it got.
    data = make_shapes_dataset(64, 16, max_objects=2, seed=0)

    def passes(pause):
        dataset = prepare_detection_dataset(
            detection_dataset_from_arrays(data["images"], data["boxes"], data["labels"], data["valid"]), (16, 16),
            max_boxes=2, batch_size=8, training=True, scale_range=(0.5, 1.0), shuffle_buffer=64, seed=1,
        )  # fmt: skip
        first = [batch[0]["images"] for batch in dataset.as_numpy_iterator()]
        peek = iter(dataset)
        next(peek)
        time.sleep(pause)  # the dropped iterator's prefetch runs ahead meanwhile
        del peek
        return first, [batch[0]["images"] for batch in dataset.as_numpy_iterator()]

    (first, second), (first_again, second_again) = passes(0.0), passes(0.5)
    for batch, batch_again in zip(first + second, first_again + second_again):
        np.testing.assert_array_equal(batch_again, batch)
    assert not np.array_equal(np.sort(np.concatenate(first).ravel()), np.sort(np.concatenate(second).ravel()))  # new draws


@pytest.mark.parametrize(
    "box, label, message",
    [
        ([0.5, 0.5, 1.4, 0.2], 0, "outside \\[0, 1\\]"),
        ([0.5, 0.5, 0.0, 0.2], 0, "non-positive width or height"),
        ([0.5, 0.5, 0.2, 0.2], 3, "num_classes=3"),
    ],
)
def test_pipeline_rejects_bad_targets(box, label, message):
    raw = detection_dataset_from_arrays(np.zeros((1, 8, 8, 3), "uint8"), [[box]], [[label]])
    batches = prepare_detection_dataset(raw, 8, max_boxes=2, batch_size=1, num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        next(iter(batches))


def test_coco_folder_errors_are_clear(tmp_path):
    image_dir, annotations = write_coco_folder(str(tmp_path))
    with open(annotations) as f:
        coco = json.load(f)
    coco["annotations"][0]["category_id"] = 99
    bad = str(tmp_path / "bad.json")
    with open(bad, "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match="category_id 99"):
        load_coco_folder(image_dir, bad)
    os.remove(os.path.join(image_dir, "c.png"))
    with pytest.raises(ValueError, match="c.png does not exist"):
        load_coco_folder(image_dir, annotations)


def test_tfds_coco_without_data_names_the_local_alternative(tmp_path):
    # No network here: with download=False and an empty data_dir, tfds cannot provide COCO.
    with pytest.raises(RuntimeError, match="image_dir=..., annotation_file=..."):
        coco_detection_dataset("validation", data_dir=str(tmp_path), download=False)
