"""Detections drawn over the photo: boxes with class names and scores (DETR, Conditional DETR)."""

import numpy as np

from keras_vit.viz._figures import displayable, finish, new_figure

# Distinct box colours, cycled by class so that one class keeps one colour in a picture.
_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:cyan", "tab:olive", "tab:pink")


def plot_detections(image, detections, path=None, title=None, dpi=100, panel_inches=5.0):
    """Draws `detections` of one image over it: a box per detection, labelled "name score".

    Args:
        image: (H, W, 3) pixels (any range; see `displayable`), the image the boxes refer to.
        detections: one image's dict as `keras_vit.decode_detections` (or a model's
            `post_process_detections`) returns it: `boxes` (n, 4) corners (x0, y0, x1, y1) in pixels
            of `image`, `scores` (n,), and `names` (n,) or `labels` (n,).
        path: where to save the PNG (written to a temporary file and renamed), or None.
        title: the picture's title (default: the number of detections).

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
    >>> import numpy as np, os, tempfile
    >>> found = {"boxes": np.array([[4.0, 8.0, 40.0, 30.0]]), "scores": np.array([0.9]), "names": ["cat"]}
    >>> path = os.path.join(tempfile.mkdtemp(), "detections.png")
    >>> figure = plot_detections(np.zeros((48, 64, 3)), found, path=path)
    >>> os.path.exists(path), len(figure.axes[0].patches)
    (True, 1)
    """
    from matplotlib.patches import Rectangle

    image = np.asarray(image)
    boxes = np.asarray(detections["boxes"], "float64").reshape(-1, 4)
    scores = np.asarray(detections["scores"], "float64").reshape(-1)
    labels = [int(label) for label in detections.get("labels", range(len(boxes)))]
    names = detections.get("names") or [f"class {label}" for label in labels]
    if not len(boxes) == len(scores) == len(names):
        raise ValueError(
            f"detections have {len(boxes)} boxes, {len(scores)} scores and {len(names)} names: one of each per "
            "detection (pass one image's dict of keras_vit.decode_detections)."
        )
    height, width = image.shape[:2]
    figure, axes = new_figure(1, 1, panel_inches)
    figure.set_size_inches(panel_inches, panel_inches * height / max(width, 1))
    axis = axes[0, 0]
    axis.imshow(displayable(image))
    for (x0, y0, x1, y1), score, name, label in zip(boxes, scores, names, labels):
        color = _COLORS[label % len(_COLORS)]
        axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2))
        axis.text(x0, y0, f"{name} {score:.2f}", color="white", fontsize=8, va="bottom",
                  bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    axis.set_title(title if title is not None else f"{len(boxes)} detection{'s' * (len(boxes) != 1)}", fontsize=9)
    return finish(figure, path, dpi)
