"""A synthetic detection dataset: colored shapes with known boxes on textured backgrounds.

Small enough to train a detector from scratch on a CPU in minutes, hard enough that it must
actually learn: the backgrounds are random textures (smooth noise, stripes, checkers), the shapes
come in random colors and sizes, and the class (circle, rectangle, triangle) is only told by the
outline. Every image is a pure function of (seed, index), so a dataset is reproducible.
"""

import numpy as np

from keras_vit.data.detection import pad_detection_targets
from keras_vit.models.detr.box_ops import box_xyxy_to_cxcywh

SHAPES_CLASS_NAMES = ("circle", "rectangle", "triangle")


def _background(rng, size):
    height, width = size
    kind = rng.integers(3)
    base = rng.uniform(40, 200, size=3)
    if kind == 0:  # smooth noise: a coarse random grid upsampled
        coarse = rng.uniform(-50, 50, size=(height // 8 + 2, width // 8 + 2, 3))
        rows = np.linspace(0, coarse.shape[0] - 1.001, height)
        cols = np.linspace(0, coarse.shape[1] - 1.001, width)
        r0, c0 = rows.astype(int), cols.astype(int)
        fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
        texture = (
            coarse[r0][:, c0] * (1 - fr) * (1 - fc)
            + coarse[r0 + 1][:, c0] * fr * (1 - fc)
            + coarse[r0][:, c0 + 1] * (1 - fr) * fc
            + coarse[r0 + 1][:, c0 + 1] * fr * fc
        )
    elif kind == 1:  # stripes at a random angle
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        y, x = np.mgrid[0:height, 0:width]
        wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
        texture = wave[..., None] * rng.uniform(10, 40, size=3)
    else:  # checkers
        cell = rng.integers(3, 9)
        y, x = np.mgrid[0:height, 0:width]
        checker = ((x // cell + y // cell) % 2) * 2.0 - 1.0
        texture = checker[..., None] * rng.uniform(10, 35, size=3)
    noise = rng.normal(0, 6, size=(height, width, 3))
    return base + texture + noise


def _shape_mask(kind, box, size):
    """Boolean mask of a shape filling the pixel box (x0, y0, x1, y1)."""
    height, width = size
    x0, y0, x1, y1 = box
    y, x = np.mgrid[0:height, 0:width] + 0.5  # pixel centers
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if kind == 0:  # circle (an ellipse when the box is not square)
        return ((x - cx) / (w / 2)) ** 2 + ((y - cy) / (h / 2)) ** 2 <= 1.0
    if kind == 1:
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    # an upward triangle: apex at the top center, base at the bottom
    inside_rows = (y >= y0) & (y < y1)
    half_width = (y - y0) / h * (w / 2)
    return inside_rows & (np.abs(x - cx) <= half_width)


def _overlaps(box, boxes, margin=2):
    for other in boxes:
        if not (
            box[2] + margin <= other[0] or other[2] + margin <= box[0]
            or box[3] + margin <= other[1] or other[3] + margin <= box[1]
        ):  # fmt: skip
            return True
    return False


def make_shapes_image(seed, index, image_size=64, max_objects=3, min_size=0.2, max_size=0.45):
    """One image of the shapes dataset and its objects.

    Returns (image uint8 (H, W, 3), boxes (n, 4) float32 normalized (cx, cy, w, h), labels (n,) int32),
    with 0 <= n <= max_objects (images without objects occur: they teach "no object").
    Boxes are the tight bounding boxes of the drawn pixels.

    Example:
    >>> image, boxes, labels = make_shapes_image(seed=0, index=3)
    >>> image.shape, boxes.shape[1], bool(np.all((boxes > 0) & (boxes <= 1)))
    ((64, 64, 3), 4, True)
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    rng = np.random.default_rng([int(seed), int(index)])
    image = _background(rng, (height, width))
    count = int(rng.integers(0, max_objects + 1)) if max_objects > 0 else 0
    boxes = []
    for _ in range(count):
        for _attempt in range(20):
            w = rng.uniform(min_size, max_size) * width
            h = rng.uniform(min_size, max_size) * height
            x0 = rng.uniform(0, width - w)
            y0 = rng.uniform(0, height - h)
            box = (x0, y0, x0 + w, y0 + h)
            if not _overlaps(box, [b for b, _ in boxes]):
                break
        else:
            continue
        kind = int(rng.integers(len(SHAPES_CLASS_NAMES)))
        mask = _shape_mask(kind, box, (height, width))
        if mask.sum() < 4:
            continue
        # A saturated color far from the local background keeps the shape visible.
        color = rng.uniform(0, 255, size=3)
        color[rng.integers(3)] = rng.choice([0.0, 255.0])
        image[mask] = color
        rows, cols = np.nonzero(mask)
        boxes.append(((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1), kind))
    image = np.clip(image, 0, 255).astype("uint8")
    corners = np.asarray([box for box, _ in boxes], "float64").reshape(-1, 4)
    normalized = (box_xyxy_to_cxcywh(corners) / np.array([width, height, width, height], "float64")).astype("float32")
    return image, normalized, np.asarray([kind for _, kind in boxes], "int32")


def make_shapes_dataset(num_images, image_size=64, max_objects=3, seed=0, start=0):
    """The shapes dataset as arrays, targets padded to `max_objects` boxes.

    Images `start .. start + num_images - 1` of the stream for `seed`: use disjoint ranges (or
    seeds) for training and held-out images.

    Returns a dict: "images" (N, H, W, 3) uint8, "boxes" (N, M, 4) float32 normalized (cx, cy, w, h),
    "labels" (N, M) int32, "valid" (N, M) float32 (1 = real box), M = max_objects. Class names are
    `SHAPES_CLASS_NAMES`.

    Example:
    >>> data = make_shapes_dataset(4, image_size=32, max_objects=2, seed=1)
    >>> data["images"].shape, data["boxes"].shape, data["valid"].shape
    ((4, 32, 32, 3), (4, 2, 4), (4, 2))
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    examples = [make_shapes_image(seed, start + i, (height, width), max_objects) for i in range(num_images)]
    images = np.zeros((num_images, height, width, 3), "uint8")
    for i, (image, _, _) in enumerate(examples):
        images[i] = image
    targets = pad_detection_targets(
        [boxes for _, boxes, _ in examples], [labels for _, _, labels in examples], max_objects,
        num_classes=len(SHAPES_CLASS_NAMES),
    )  # fmt: skip
    return {"images": images, **targets}
