"""Training curves from a Keras `History`: one panel per metric, training and validation."""

from keras_vit.viz._figures import finish, new_figure


def plot_training_curves(history, path=None, dpi=100):
    """One panel per metric of `history` (a `keras.callbacks.History`, as `fit` returns,
    or its `.history` dict): the training curve and, where logged, the `val_` one, by epoch.
    Returns the `Figure`; `path` also saves it.

    Example:
    >>> history = {"loss": [2.0, 1.2, 0.9], "val_loss": [2.1, 1.4, 1.1], "accuracy": [0.3, 0.6, 0.7]}
    >>> figure = plot_training_curves(history)
    >>> [axis.get_title() for axis in figure.axes]
    ['loss', 'accuracy']
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError(
            "plot_training_curves takes the History that fit() returns (or its .history dict of lists); "
            f"got {type(history).__name__} with no logs."
        )
    names = [name for name in logs if not name.startswith("val_")]
    names += [name[4:] for name in logs if name.startswith("val_") and name[4:] not in logs]
    figure, axes = new_figure(1, len(names), panel_inches=2.6)
    for axis, name in zip(axes[0], names):
        axis.set_axis_on()
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in logs:
                values = [float(v) for v in logs[key]]
                axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return finish(figure, path, dpi)
