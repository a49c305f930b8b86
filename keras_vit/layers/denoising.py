"""Denoising queries (DN-DETR, Li et al., 2022) for DETR-like detectors: the shared, model-side half.

During training, DN-DETR feeds the decoder, next to its usual (matching) queries, G groups of
*denoising* queries made from the ground truth with noise added: each label is replaced, with
probability `label_noise`, by a class drawn uniformly from all classes (which may be the same one), and
each box (cx, cy, w, h) has its centre moved by up to `box_noise * w / 2` (`* h / 2`) and its size
scaled by a factor in [1 - box_noise, 1 + box_noise], clipped to [0, 1]. The decoder reconstructs the
original boxes and labels from them (`keras_vit.training.denoising.denoising_loss`), with no Hungarian
matching: query `g * M + m` answers for target slot `m` of its image. A self-attention mask keeps the
matching queries from seeing any denoising query (they would otherwise read the answers) and each
group from seeing the others; denoising queries may see the matching ones, as in the paper. At
inference no denoising query exists, so the model computes exactly what it computes without them.

What is here (the loss is in `keras_vit.training.denoising`, above the models):
- `Denoising`: the configuration (groups, label_noise, box_noise), checked once.
- `draw_denoising_noise` / `apply_denoising_noise`: the noise, split into its random draws and a
  deterministic function of them (so it can be checked against a plain NumPy construction).
- `denoising_attention_mask`: the (T, T) self-attention mask as a NumPy constant (static shapes).
- `DenoisingQueries`: the layer that turns padded targets into the decoder's extra queries (content
  and position embeddings) and their attention mask; its weights are used in training only.

Shapes are static: the targets are padded to a fixed M boxes per image (`pad_detection_targets`), so
the G * M denoising queries have a fixed count and the step compiles once (XLA, JAX's jit). A padding
slot gives a denoising query too; it is masked out of every other query's attention and of the loss.
"""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class Denoising:
    """DN-DETR's denoising training: `groups` noised copies of the ground truth as extra decoder queries.

    Args:
        groups: G >= 1, the number of noised copies of each image's targets (each copy is one group
            of M queries, M the padded number of boxes per image; G * M queries in all).
        label_noise: in [0, 1], the probability that a label is replaced by a class drawn uniformly
            from all the classes (DN-DETR's label flipping; 0.2 in the paper).
        box_noise: in [0, 1], lambda: the centre moves by up to lambda * w / 2 (lambda * h / 2), the
            width and height are scaled by a factor in [1 - lambda, 1 + lambda] (0.4 in the paper).

    Pass it to a model that supports it (`keras_vit.DETR(..., denoising=Denoising())`); `True`
    there means `Denoising()`, a dict its keyword arguments.

    Example:
    >>> Denoising(groups=5, label_noise=0.2, box_noise=0.4).get_config()
    {'groups': 5, 'label_noise': 0.2, 'box_noise': 0.4}
    """

    def __init__(self, groups=5, label_noise=0.2, box_noise=0.4):
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(
                f"Denoising needs groups >= 1 (whole noised copies of the targets); got groups={groups!r}. "
                "Use groups=5 as in DN-DETR, or leave denoising off (denoising=None)."
            )
        for name, value in (("label_noise", label_noise), ("box_noise", box_noise)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"Denoising {name} must be a number in [0, 1]; got {value!r}.")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(
                    f"Denoising {name} must be in [0, 1]; got {value}. DN-DETR uses label_noise=0.2 "
                    "(the probability of a replaced label) and box_noise=0.4 (lambda, relative to the box size)."
                )
        self.groups = int(groups)
        self.label_noise = float(label_noise)
        self.box_noise = float(box_noise)

    @classmethod
    def from_argument(cls, value, owner):
        """`None`, `False` -> None; `True` -> `Denoising()`; a dict -> `Denoising(**dict)`; a `Denoising` as is.

        Example:
        >>> Denoising.from_argument(True, "detr").groups
        5
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            config = value.get("config", value) if "class_name" in value else value
            return cls(**config)
        raise TypeError(
            f"{owner}: denoising takes None, True, a dict of its arguments or a "
            f"keras_vit.training.Denoising(groups, label_noise, box_noise); got {type(value).__name__} {value!r}."
        )

    def __repr__(self):
        return (
            f"Denoising(groups={self.groups}, label_noise={self.label_noise}, box_noise={self.box_noise})"
        )

    def __eq__(self, other):
        return isinstance(other, Denoising) and self.get_config() == other.get_config()

    def get_config(self):
        return {
            "groups": self.groups,
            "label_noise": self.label_noise,
            "box_noise": self.box_noise,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def draw_denoising_noise(batch, groups, max_boxes, num_classes, seed=None):
    """The random draws of one noising: a dict of `flip` (B, G, M) uniform in [0, 1), `new_label`
    (B, G, M) int32 uniform in [0, num_classes), `box` (B, G, M, 4) uniform in [-1, 1).

    `seed`: an int or a `keras.random.SeedGenerator` (the layer passes its own).

    Example:
    >>> draws = draw_denoising_noise(2, 3, 4, num_classes=5, seed=0)
    >>> {key: tuple(value.shape) for key, value in draws.items()}
    {'flip': (2, 3, 4), 'new_label': (2, 3, 4), 'box': (2, 3, 4, 4)}
    """
    shape = (batch, groups, max_boxes)
    return {
        "flip": keras.random.uniform(shape, seed=seed),
        "new_label": keras.random.randint(shape, 0, num_classes, dtype="int32", seed=seed),
        "box": keras.random.uniform(shape + (4,), minval=-1.0, maxval=1.0, seed=seed),
    }


def apply_denoising_noise(boxes, labels, valid, draws, label_noise, box_noise):
    """The noised queries from padded targets and the draws of `draw_denoising_noise` (deterministic).

    Args:
        boxes: (B, M, 4) normalized cx, cy, w, h; labels: (B, M) int; valid: (B, M), 1 for a real box.
        draws: the dict of `draw_denoising_noise(B, G, M, ...)`.
        label_noise, box_noise: see `Denoising`.

    Returns a dict, group-major (query `g * M + m` is group g's copy of target slot m):
        "labels": (B, G * M) int32, the noised labels (0 in padding slots);
        "boxes": (B, G * M, 4), the noised boxes in [0, 1] (the full image in padding slots);
        "valid": (B, G * M) float32, 1 where the slot holds a real box.

    Example:
    >>> import numpy as np
    >>> draws = {"flip": np.ones((1, 2, 1), "float32"), "new_label": np.zeros((1, 2, 1), "int32"),
    ...          "box": np.ones((1, 2, 1, 4), "float32")}
    >>> out = apply_denoising_noise(np.array([[[0.5, 0.5, 0.2, 0.4]]], "float32"), np.array([[3]]),
    ...                             np.ones((1, 1), "float32"), draws, label_noise=0.2, box_noise=0.5)
    >>> keras.ops.convert_to_numpy(out["labels"]).tolist()
    [[3, 3]]
    >>> np.round(keras.ops.convert_to_numpy(out["boxes"])[0, 0].astype("float64"), 4).tolist()
    [0.55, 0.6, 0.3, 0.6]
    """
    boxes = ops.cast(boxes, "float32")
    labels = ops.cast(labels, "int32")
    valid = ops.cast(valid, "float32")
    flip = ops.cast(draws["flip"], "float32")
    groups, max_boxes = flip.shape[1], flip.shape[2]
    if boxes.shape[1] is not None and max_boxes is not None and boxes.shape[1] != max_boxes:
        raise ValueError(f"The draws are for {max_boxes} boxes per image, the targets have {boxes.shape[1]}.")

    def per_group(x):  # (B, M, ...) -> (B, G, M, ...)
        return ops.repeat(ops.expand_dims(x, 1), groups, axis=1)

    group_labels = per_group(labels)
    group_labels = ops.where(flip < label_noise, ops.cast(draws["new_label"], "int32"), group_labels)
    group_boxes = per_group(boxes)
    size = group_boxes[..., 2:]
    # (w/2, h/2, w, h): the centre moves by up to lambda * half the size, the size by up to lambda * itself.
    reach = ops.concatenate([size / 2.0, size], axis=-1)
    group_boxes = ops.clip(group_boxes + ops.cast(draws["box"], "float32") * reach * box_noise, 0.0, 1.0)
    group_valid = per_group(valid)
    full_image = ops.convert_to_tensor(np.array([0.5, 0.5, 1.0, 1.0], "float32"))
    group_boxes = ops.where(ops.expand_dims(group_valid, -1) > 0, group_boxes, full_image)
    group_labels = ops.where(group_valid > 0, group_labels, 0)
    flat = groups * max_boxes
    return {
        "labels": ops.reshape(group_labels, (-1, flat)),
        "boxes": ops.reshape(group_boxes, (-1, flat, 4)),
        "valid": ops.reshape(group_valid, (-1, flat)),
    }


def denoising_attention_mask(groups, max_boxes, num_queries):
    """The decoder's self-attention mask, (T, T) bool with T = G * M + Q, True where a query may attend.

    Rows and columns are [group 0 (M) | ... | group G-1 (M) | the Q matching queries]. A matching
    query sees only matching queries; a denoising query sees its own group and the matching queries.

    Example:
    >>> denoising_attention_mask(groups=2, max_boxes=1, num_queries=2).astype(int).tolist()
    [[1, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    denoising = groups * max_boxes
    total = denoising + num_queries
    mask = np.zeros((total, total), bool)
    mask[:, denoising:] = True
    for group in range(groups):
        start, end = group * max_boxes, (group + 1) * max_boxes
        mask[start:end, start:end] = True
    return mask


def box_sine_embedding(boxes, features_per_coordinate, temperature=10000.0):
    """Sine embedding of boxes (..., 4) in [0, 1]: (..., 4 * features_per_coordinate).

    Each coordinate x is scaled by 2 pi and divided by `temperature ** (2 * floor(i / 2) / F)` for
    channel i < F; even channels take the sine, odd ones the cosine (DETR's position embedding rule,
    `SinePositionEmbedding`), the four coordinates' channels concatenated in (cx, cy, w, h) order.

    Example:
    >>> import numpy as np
    >>> tuple(box_sine_embedding(np.zeros((2, 3, 4), "float32"), 8).shape)
    (2, 3, 32)
    """
    exponent = (2 * (np.arange(features_per_coordinate) // 2)).astype(np.float32) / np.float32(features_per_coordinate)
    dim_t = ops.convert_to_tensor(np.power(np.float32(temperature), exponent).astype(np.float32))
    is_even = ops.convert_to_tensor(np.arange(features_per_coordinate) % 2 == 0)
    angle = ops.expand_dims(ops.cast(boxes, "float32") * (2.0 * math.pi), -1) / dim_t  # (..., 4, F)
    embedding = ops.where(is_even, ops.sin(angle), ops.cos(angle))
    return ops.reshape(embedding, tuple(ops.shape(embedding)[:-2]) + (4 * features_per_coordinate,))


@keras.saving.register_keras_serializable(package="keras_vit")
class DenoisingQueries(keras.layers.Layer):
    """Turns padded ground truth into DN-DETR's denoising queries for a DETR decoder (training only).

    `layer(boxes, labels, valid, num_queries)` with targets (B, M, 4), (B, M), (B, M) returns a dict:
    - "content": (B, G * M, D), the decoder's initial state for these queries: a learned embedding of
      the noised label (D - 1 wide, `label_embedding`) and a last channel 1, the indicator that marks a
      denoising query (the matching queries of DETR start from zeros, indicator 0);
    - "position": (B, G * M, D), their query position embedding: `box_mlp` (Dense(D), ReLU, Dense(D))
      of the noised box's sine embedding (`box_sine_embedding`, D / 2 channels per coordinate: 2D);
    - "attention_mask": (B, 1, T, T) bool, `denoising_attention_mask` for T = G * M + num_queries,
      where no query sees a padding slot's denoising query either;
    - "labels", "boxes", "valid": the noised targets (`apply_denoising_noise`).

    Why these embeddings: DN-DETR builds on DAB-DETR, whose queries are boxes (anchors), so a noised
    box *is* a query there. Plain DETR's queries are free learned position embeddings with a zero
    initial content, so a box has to be embedded. The paper's journal version reports denoising on
    vanilla DETR too, without (in what we could read) the exact embedding, so this is our choice:
    the position side follows DAB-DETR's own mapping
    from a box to a query position (an MLP of the box's sine embedding, 2D -> D -> D); the content
    side follows DN-DETR's label embedding with its indicator channel. Both are trained with the rest
    by the reconstruction loss; they never run at inference, so a model trained with denoising
    predicts, saves and exports exactly like one without.

    Args:
        num_classes: object classes (noised labels are drawn from [0, num_classes)).
        hidden_dim: D, the decoder width (even).
        denoising: a `Denoising` (or its config dict).
        seed: the seed of the layer's `SeedGenerator` (None: random).

    Example:
    >>> import numpy as np
    >>> layer = DenoisingQueries(num_classes=3, hidden_dim=8, denoising=Denoising(groups=2), seed=0)
    >>> boxes = np.array([[[0.5, 0.5, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0]]], "float32")
    >>> out = layer(boxes, np.array([[1, 0]]), np.array([[1.0, 0.0]], "float32"), num_queries=3)
    >>> tuple(out["content"].shape), tuple(out["position"].shape), tuple(out["attention_mask"].shape)
    ((1, 4, 8), (1, 4, 8), (1, 1, 7, 7))
    """

    def __init__(self, num_classes, hidden_dim, denoising=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(hidden_dim) % 2 or int(hidden_dim) < 2:
            raise ValueError(f"DenoisingQueries needs an even hidden_dim >= 2 (sine features); got {hidden_dim}.")
        self.num_classes = int(num_classes)
        self.hidden_dim = int(hidden_dim)
        self.denoising = Denoising.from_argument(denoising, self.name) or Denoising()
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="denoising_noise")
        kw = dict(dtype=self.dtype_policy)
        self.label_embedding = keras.layers.Embedding(
            self.num_classes, self.hidden_dim - 1,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0), name="label_embedding", **kw,
        )  # fmt: skip  (torch's nn.Embedding initializes from N(0, 1))
        self.box_mlp_hidden = keras.layers.Dense(self.hidden_dim, name="box_mlp_hidden", **kw)
        self.box_mlp_output = keras.layers.Dense(self.hidden_dim, name="box_mlp_output", **kw)

    def build(self, boxes_shape=None, labels_shape=None, valid_shape=None):
        self.label_embedding.build((None,))
        self.box_mlp_hidden.build((None, 2 * self.hidden_dim))
        self.box_mlp_output.build((None, self.hidden_dim))
        self.built = True

    def call(self, boxes, labels, valid, num_queries):
        groups = self.denoising.groups
        max_boxes = boxes.shape[1]
        if max_boxes is None:
            raise ValueError(
                "Denoising training needs targets padded to a fixed number of boxes per image (static "
                "shapes): pad them with keras_vit.data.pad_detection_targets(..., max_boxes=M), as "
                "prepare_detection_dataset does."
            )
        batch = ops.shape(boxes)[0]
        draws = draw_denoising_noise(batch, groups, max_boxes, self.num_classes, seed=self.seed_generator)
        noised = apply_denoising_noise(
            boxes, labels, valid, draws, self.denoising.label_noise, self.denoising.box_noise
        )
        label_features = self.label_embedding(noised["labels"])
        indicator = ops.ones_like(label_features[..., :1])
        content = ops.concatenate([label_features, indicator], axis=-1)
        sine = ops.cast(box_sine_embedding(noised["boxes"], self.hidden_dim // 2), self.compute_dtype)
        position = self.box_mlp_output(ops.relu(self.box_mlp_hidden(sine)))
        # Padding slots' denoising queries are keys to nobody (their rows still see the matching queries).
        group_mask = ops.convert_to_tensor(denoising_attention_mask(groups, max_boxes, num_queries))
        real_keys = ops.concatenate(
            [noised["valid"] > 0, ops.ones((batch, num_queries), dtype="bool")], axis=1
        )  # (B, T)
        attention_mask = ops.logical_and(ops.expand_dims(group_mask, 0), ops.expand_dims(real_keys, 1))
        return {
            "content": content,
            "position": position,
            "attention_mask": ops.expand_dims(attention_mask, 1),
            **noised,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim,
                "denoising": self.denoising.get_config(),
                "seed": self.seed,
            }
        )
        return config
