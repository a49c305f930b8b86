"""MAE's figure: original, masked and reconstructed images side by side, as a PNG."""


import numpy as np

from keras_vit.viz._figures import finish, new_figure


def _displayable(image):
    """An (H, W, C) array scaled into [0, 1] for imshow (pixels in [0, 255] or [0, 1])."""
    image = np.asarray(image, "float32")
    if image.max() > 1.5:
        image = image / 255.0
    image = np.clip(image, 0.0, 1.0)
    return image[..., 0] if image.shape[-1] == 1 else image


def plot_mae_reconstruction(mae, images, path, noise=None, titles=("original", "masked", "reconstruction",
                                                                       "reconstruction + visible")):
    """Saves a grid: one row per image, columns original | masked | reconstruction | pasted.

    `mae` is a `keras_vit.MaskedAutoencoder`; `images` a batch in the model's input scale
    (what it was trained on; [0, 255] or [0, 1] pixels plot as they are, other scales
    are clipped to [0, 1]); `noise` (B, N) fixes the masks. Needs matplotlib (the
    `viz` extra). Returns `path`.

    Example:
    >>> import os, tempfile, numpy as np, keras_vit
    >>> encoder = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, include_top=False, pooling=None)
    >>> mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "mae.png")
    >>> from keras_vit.viz import plot_mae_reconstruction
    >>> plot_mae_reconstruction(mae, np.random.rand(2, 32, 32, 3).astype("float32"), path) == path
    True
    """
    result = mae.reconstruct(images, noise=noise)
    columns = [result[k] for k in ("original", "masked", "reconstruction", "pasted")]
    rows = len(columns[0])
    figure, axes = new_figure(rows, 4)
    for row in range(rows):
        for column, (pictures, title) in enumerate(zip(columns, titles)):
            axis = axes[row, column]
            axis.imshow(_displayable(pictures[row]), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(title, fontsize=9)
    # Written to a temporary file and renamed (the format follows the extension, which it keeps).
    finish(figure, path, dpi=80)
    return path
