"""What every picture of `keras_vit.viz` shares: matplotlib figures made without pyplot,
images scaled for display, heat maps laid over a photo, and saving through a temporary file.

Figures are `matplotlib.figure.Figure` objects made directly (not through pyplot): nothing
global is changed (no backend switch), nothing has to be closed, and a notebook shows one
with `display(figure)`.

Example:
>>> import numpy as np
>>> figure, axes = new_figure(1, 2)
>>> draw_overlay(axes[0, 0], np.zeros((16, 16, 3)), np.eye(4))
>>> len(figure.axes)
2
"""

import numpy as np

from keras_vit.atomic_files import atomic_path


def new_figure(rows, columns, panel_inches=2.0):
    """A `Figure` with a (rows, columns) array of axes, each about `panel_inches` square.

    Example:
    >>> figure, axes = new_figure(2, 3)
    >>> axes.shape
    (2, 3)
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("keras_vit.viz draws with matplotlib: pip install 'keras-vit[viz]'.") from error
    figure = Figure(figsize=(columns * panel_inches, rows * panel_inches))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    return figure, axes


def displayable(image):
    """An (H, W, C) image as floats in [0, 1] for `imshow`: [0, 255] pixels are divided by
    255, [0, 1] ones kept, any other range (normalized inputs) stretched to [0, 1].

    Example:
    >>> float(displayable(np.full((2, 2, 3), 255.0)).max())
    1.0
    """
    image = np.asarray(image, "float32")
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and high > 1.5:
        image = image / 255.0
    elif low < 0.0 or high > 1.0:
        image = (image - low) / max(high - low, 1e-12)
    image = np.clip(image, 0.0, 1.0)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def draw_overlay(axis, image, heat_map, title=None, alpha=0.5, cmap="jet"):
    """Draws `image` (H, W[, C]) with `heat_map` (h, w) stretched over it (bilinear), on `axis`.

    Example:
    >>> figure, axes = new_figure(1, 1)
    >>> draw_overlay(axes[0, 0], np.zeros((8, 8)), np.ones((2, 2)), title="flat")
    >>> axes[0, 0].get_title()
    'flat'
    """
    picture = displayable(image)
    height, width = picture.shape[:2]
    axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    heat_map = np.asarray(heat_map, "float32")
    axis.imshow(heat_map, cmap=cmap, alpha=alpha, extent=(0, width, height, 0), interpolation="bilinear")
    axis.set_xlim(0, width)
    axis.set_ylim(height, 0)
    axis.set_axis_off()
    if title:
        axis.set_title(title, fontsize=8)


def finish(figure, path=None, dpi=100, layout=True):
    """Lays the figure out and, with `path`, saves it (PNG, or the format the extension
    names) through a temporary file renamed into place. The file is `figsize * dpi`
    pixels. Returns the figure.

    Example:
    >>> import os, tempfile
    >>> figure, _ = new_figure(1, 1)
    >>> path = os.path.join(tempfile.mkdtemp(), "empty.png")
    >>> finish(figure, path, dpi=50) is figure, os.path.exists(path)
    (True, True)
    """
    if layout:
        figure.tight_layout()
    if path is not None:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format=_format(path))
    return figure


def _format(path):
    extension = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    return extension if extension in ("png", "jpg", "jpeg", "pdf", "svg") else "png"
