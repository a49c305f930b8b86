"""`ClassNames`: the last layer of a classifier, which passes the logits through unchanged and
keeps the names of the classes (and how its images were resized) in the model's config, so they
travel with a `.keras` file."""

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassNames(keras.layers.Layer):
    """Identity on the logits `(..., num_classes)` that remembers what each class is called.

    It has no weights and computes nothing; `keras_vit.with_class_names(model, names)` puts it at a
    classifier's output and `keras_vit.get_class_names(model)` reads it back, after a `.keras`
    save/load on any backend. The number of names must match the logits' last axis. `image_recipe`
    (optional) says how the model's images were resized in training, e.g. `{"crop_mode": "squash",
    "crop_pct": 1.0, "interpolation": "bilinear"}`, so `keras_vit.load_image` can do the same.

    Example:
    >>> import numpy as np
    >>> layer = ClassNames(["cat", "dog"])
    >>> layer.get_config()["class_names"]
    ['cat', 'dog']
    >>> tuple(layer(np.zeros((1, 2), "float32")).shape)
    (1, 2)
    """

    def __init__(self, class_names, image_recipe=None, **kwargs):
        super().__init__(**kwargs)
        self.class_names = tuple(str(name) for name in class_names)
        if not self.class_names:
            raise ValueError("ClassNames needs at least one class name.")
        bad = [name for name in self.class_names if "\n" in name or "\r" in name]
        if bad:
            raise ValueError(f"Class names are written one per line; these contain a line break: {bad}.")
        self.image_recipe = None if image_recipe is None else dict(image_recipe)

    def build(self, input_shape):
        classes = input_shape[-1]
        if classes is not None and classes != len(self.class_names):
            raise ValueError(
                f"{len(self.class_names)} class names for a head of {classes} classes: give one name per class."
            )
        super().build(input_shape)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["class_names"] = list(self.class_names)
        config["image_recipe"] = self.image_recipe
        return config
