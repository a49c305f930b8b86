"""DETR (Carion et al., 2020): object detection as set prediction.

A CNN backbone, a 1x1 projection, a post-norm transformer encoder over the
flattened feature map with sine positions, a decoder over learned object
queries, a class head (num_classes + 1, no-object last) and a box MLP.
`DETR(...)` returns a `DETRModel`, a `keras.Model` that trains with DETR's
Hungarian set loss (`keras_vit.training.DETRLoss`) when `compile(optimizer)` gets
no loss, so `model.fit(...)` needs no loss argument. The loss, the matcher and the
target padding live in `keras_vit.training` and `keras_vit.data` (dependencies point
down: training -> models); this module only holds the thin hook that runs the loss.

Inputs: `images` (B, H, W, 3), or `{"images": ..., "pixel_mask": (B, H, W)}`
with 1 for real pixels and 0 for padding (images of different sizes padded to
one batch). Outputs: a dict with `logits` (B, Q, num_classes + 1), `pred_boxes`
(B, Q, 4; normalized cx, cy, w, h relative to each image's real, unpadded
extent) and, with `auxiliary_outputs=True`, `aux_logits` / `aux_pred_boxes`
(B, L - 1, Q, ...) from decoder layers 0 .. L-2 for the auxiliary losses.

Padding: the transformer ignores padded positions exactly (padded keys are
masked out, sine positions are normalized by each image's real extent), so with
a backbone whose receptive fields stay inside the image the predictions of a
padded image equal those of the image alone. A ResNet's convolutions near the
bottom/right border do see the padding (zeros, shifted by frozen BatchNorm), as
in the reference implementations, which this reproduces exactly; there the
predictions move slightly with the amount of padding.
"""

import re

import keras
from keras import ops

from keras_vit.models.detr.detr_layers import (
    RENAMED_ARGUMENTS,
    BoxHead,
    DETRDecoderLayer,
    DETREncoderLayer,
    ObjectQueries,
    PaddingMaskResize,
    SinePositionEmbedding,
)
from keras_vit.layers.denoising import Denoising, DenoisingQueries
from keras_vit.layers.patch_embedding import check_batch_not_empty
from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImageNormalization
from keras_vit.models.resnet import resnet_model as resnet
from keras_vit.layers.renamed_arguments import take_renamed_arguments
from keras_vit.models.builder_args import check_input_shape, classes_alias
from keras_vit.models.detr.convert_detr import convert_detr
from keras_vit.models.detr.detr_presets import DEFAULT_WEIGHTS
from keras_vit.weights.loader import load_weights, resolve_weights

BACKBONES = {"resnet50": resnet.ResNet50, "resnet101": resnet.ResNet101}
# The inputs key under which `DETRModel.train_step` hands the targets to `call` (denoising training).
DENOISING_TARGETS = "denoising_targets"
DEFAULT_MLP_DIM = 2048


def _mlp_dim(arguments, owner):
    """`mlp_dim` (default 2048) from `{"mlp_dim": ..., **other keywords}` after `take_renamed_arguments`."""
    unknown = sorted(set(arguments) - {"mlp_dim"})
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}.")
    return DEFAULT_MLP_DIM if arguments["mlp_dim"] is None else arguments["mlp_dim"]

_STRIDE_KEY = re.compile(r"^stride_(\d+)$")


def _select_feature_map(outputs, owner):
    """The deepest map of a backbone's output: the tensor itself, or the largest `stride_N`."""
    if isinstance(outputs, dict):
        strides = {}
        for key in outputs:
            match = _STRIDE_KEY.match(str(key))
            if match:
                strides[int(match.group(1))] = key
        if not strides:
            raise ValueError(
                f"{owner}: the backbone returns a dict with keys {sorted(outputs)}; DETR needs a "
                "(B, h, w, C) map or a dict of maps keyed 'stride_N' (it takes the largest N)."
            )
        return outputs[strides[max(strides)]]
    if isinstance(outputs, (list, tuple)):
        return outputs[-1]
    return outputs


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRBackbone(keras.layers.Layer):
    """Wraps any Keras feature extractor as DETR's backbone (the layer named `backbone`).

    The extractor maps images (B, H, W, 3) to a feature map (B, h, w, C), or to a
    dict of maps keyed `stride_N`, of which the largest stride is used (a Swin
    model with `include_top=False`, a ResNet, a small CNN). Its variables are
    what `detr_optimizer` trains at the backbone learning rate.

    Example:
    >>> import keras, numpy as np
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(8, 4, strides=4)])
    >>> tuple(DETRBackbone(cnn)(np.zeros((1, 32, 32, 3), "float32")).shape)
    (1, 8, 8, 8)
    """

    def __init__(self, feature_extractor, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_extractor, keras.layers.Layer):
            raise TypeError(
                f"A DETR backbone must be a Keras model or layer, got {type(feature_extractor).__name__}. "
                f"Pass a backbone name ({', '.join(sorted(BACKBONES))}) or a Keras model returning a feature map."
            )
        self.feature_extractor = feature_extractor

    def build(self, input_shape):
        if not self.feature_extractor.built:
            self.feature_extractor.build(input_shape)
        self.built = True

    def call(self, images, training=None):
        features = _select_feature_map(self.feature_extractor(images, training=training), self.name)
        if len(features.shape) != 4:
            raise ValueError(
                f"The DETR backbone must return a (B, h, w, C) feature map; it returned shape {tuple(features.shape)}."
            )
        return features

    def compute_output_shape(self, input_shape):
        try:
            shape = self.feature_extractor.compute_output_shape(tuple(input_shape))
        except Exception:  # a subclassed model without compute_output_shape: trace it
            spec = self.feature_extractor.compute_output_spec(keras.KerasTensor(tuple(input_shape)))
            shape = keras.tree.map_structure(lambda t: t.shape, spec)
        if isinstance(shape, dict):
            return tuple(_select_feature_map(shape, self.name))
        if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
            return tuple(shape[-1])
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config["feature_extractor"] = keras.saving.serialize_keras_object(self.feature_extractor)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["feature_extractor"] = keras.saving.deserialize_keras_object(config["feature_extractor"])
        return cls(**config)


def check_class_names(class_names, num_classes, owner):
    """`class_names` (None or one name per class) as a tuple of strings, or None.

    Example:
    >>> check_class_names(["cat", "dog"], 2, "detr")
    ('cat', 'dog')
    """
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise TypeError(f"{owner}: class_names takes a list of names, one per class, not the string {class_names!r}.")
    names = tuple(str(name) for name in class_names)
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names for {owner}, whose class head has {num_classes} classes (plus 'no object'): "
            "give one name per class."
        )
    return names


def _replicas_in_sync():
    """The number of replicas a `tf.distribute` strategy splits each batch over (1 elsewhere)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    return 1


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRModel(keras.Model):
    """The DETR detector as a `keras.Model` that trains with its own set loss.

    Build it with `DETR(...)`, `DETRResNet50(...)` or `DETRResNet101(...)`. The
    layers are `backbone` (a `DETRBackbone`), `input_proj` (1x1 conv),
    `position_embedding` (sine), `encoder_{i}`, `query_embed`, `decoder_{i}`,
    `decoder_norm`, `class_embed` and `bbox_embed`; the checkpoint converters in
    `keras_vit.models.detr.convert_detr` fill them.

    Training: `compile(optimizer)` (optionally `loss=` any callable
    `(y_true, y_pred) -> dict with "loss"` or a scalar) and `fit()`; by default the
    loss is `keras_vit.training.DETRLoss(num_classes, auxiliary_loss=auxiliary_outputs,
    **loss_config)`. The unweighted terms `loss_ce`, `loss_bbox`, `loss_giou` are
    reported as metrics.
    Targets: `{"boxes": (B, M, 4) cx,cy,w,h in [0, 1], "labels": (B, M) int,
    "valid": (B, M) 1 for real boxes}`.

    Denoising training (DN-DETR): `denoising=keras_vit.training.Denoising(groups=5, label_noise=0.2,
    box_noise=0.4)` (or `True`) makes `fit()` feed the decoder, next to the matching queries, G
    noised copies of each batch's targets (`keras_vit.layers.denoising.DenoisingQueries`, the layer
    `denoising_queries`) behind a self-attention mask that keeps the matching queries from seeing
    them; the set loss adds their reconstruction loss, logged as `loss_dn`. Only `train_step` passes
    the targets on (under `inputs["denoising_targets"]`), so `predict`, `evaluate` (its loss has no
    denoising term), a plain call, saving and export compute exactly what the same weights compute
    without denoising; the layer's weights (`training_only_weights`) never reach the outputs there.

    `class_names` (None, or one name per class) is kept in the config, so it survives `.keras`
    save/load; `keras_vit.with_class_names(model, names)` sets it, `keras_vit.get_class_names`,
    `keras_vit.decode_detections`, `keras-vit predict` and the export's labels file read it.

    The decoder's final LayerNorm is applied to every auxiliary output, while the
    un-normalized state goes on to the next decoder layer, as in the original DETR
    (transformers with `auxiliary_loss=True` feeds the normalized state on
    instead; with it off, as in the published configs, both agree).

    Example:
    >>> import keras, numpy as np
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = DETRModel(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
    ...                   num_decoder_layers=2, num_heads=4, mlp_dim=64)
    >>> out = model(np.zeros((2, 32, 48, 3), "float32"))
    >>> tuple(out["logits"].shape), tuple(out["pred_boxes"].shape), tuple(out["aux_logits"].shape)
    ((2, 5, 4), (2, 5, 4), (2, 1, 5, 4))
    """

    # How `logits` turn into scores: softmax over the classes and a last "no object" column.
    # `keras_vit.decode_detections`, `keras-vit predict` and the files written beside exports read it.
    SCORES = "softmax"

    def __init__(
        self,
        backbone,
        num_classes,
        num_queries=100,
        hidden_dim=256,
        num_encoder_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        mlp_dim=None,
        dropout=0.1,
        auxiliary_outputs=True,
        include_preprocessing=False,
        preprocessing_mean=IMAGENET_MEAN,
        preprocessing_std=IMAGENET_STD,
        layer_norm_epsilon=1e-5,
        loss_config=None,
        class_names=None,
        denoising=None,
        **kwargs,
    ):
        # Called here, not in a helper, so that the DeprecationWarning points at the caller's line.
        old_names = {key: kwargs.pop(key) for key in RENAMED_ARGUMENTS if key in kwargs}
        mlp_dim = _mlp_dim(take_renamed_arguments({"mlp_dim": mlp_dim, **old_names}, RENAMED_ARGUMENTS, "DETRModel"), "DETRModel")
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        if num_decoder_layers < 1:
            raise ValueError(f"DETR needs at least one decoder layer, got num_decoder_layers={num_decoder_layers}.")
        self.num_classes = int(num_classes)
        self.num_queries = int(num_queries)
        self.hidden_dim = int(hidden_dim)
        self.num_encoder_layers = int(num_encoder_layers)
        self.num_decoder_layers = int(num_decoder_layers)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout = float(dropout)
        self.auxiliary_outputs = bool(auxiliary_outputs)
        self.include_preprocessing = bool(include_preprocessing)
        self.preprocessing_mean = tuple(float(m) for m in preprocessing_mean)
        self.preprocessing_std = tuple(float(s) for s in preprocessing_std)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.loss_config = dict(loss_config or {})
        self.class_names = check_class_names(class_names, self.num_classes, self.name)
        self.denoising = Denoising.from_argument(denoising, self.name)
        if self.denoising is not None and not self.supports_denoising:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} cannot train with denoising queries (its decoder takes "
                "no extra queries); build it with denoising=None."
            )

        kw = dict(dtype=self.dtype_policy)
        if not isinstance(backbone, DETRBackbone):
            backbone = DETRBackbone(backbone, name="backbone")
        self.backbone = backbone
        self.preprocessing = (
            ImageNormalization(self.preprocessing_mean, self.preprocessing_std, name="preprocessing", **kw)
            if self.include_preprocessing
            else None
        )
        self.mask_resize = PaddingMaskResize(name="mask_resize", **kw)
        self.position_embedding = SinePositionEmbedding(hidden_dim, name="position_embedding", **kw)
        self.input_proj = keras.layers.Conv2D(hidden_dim, 1, name="input_proj", **kw)
        layer_kw = dict(dropout=dropout, layer_norm_epsilon=layer_norm_epsilon, **kw)
        self.encoder_layers = [
            DETREncoderLayer(hidden_dim, num_heads, mlp_dim, name=f"encoder_{i}", **layer_kw)
            for i in range(num_encoder_layers)
        ]
        self.query_embed = ObjectQueries(num_queries, hidden_dim, name="query_embed", **kw)
        self.decoder_layers = [
            DETRDecoderLayer(hidden_dim, num_heads, mlp_dim, name=f"decoder_{i}", **layer_kw)
            for i in range(num_decoder_layers)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="decoder_norm", **kw)
        self.class_embed = keras.layers.Dense(num_classes + 1, name="class_embed", **kw)
        self.bbox_embed = BoxHead(hidden_dim, name="bbox_embed", **kw)
        # Training only: the denoising queries' embeddings (never called at inference).
        self.denoising_queries = (
            DenoisingQueries(num_classes, hidden_dim, self.denoising, name="denoising_queries", **kw)
            if self.denoising is not None
            else None
        )
        # Loss terms reported by fit()/evaluate() next to the total.
        self.loss_ce_tracker = keras.metrics.Mean(name="loss_ce")
        self.loss_bbox_tracker = keras.metrics.Mean(name="loss_bbox")
        self.loss_giou_tracker = keras.metrics.Mean(name="loss_giou")
        self.loss_dn_tracker = keras.metrics.Mean(name="loss_dn") if self.denoising is not None else None
        object.__setattr__(self, "_set_loss", None)

    # Whether the decoder takes denoising queries; a subclass with another decoder that does not
    # (yet) sets this to False, so that `denoising=` fails at construction rather than being ignored.
    supports_denoising = True
    # Layers that only training uses: Keras files with or without them load into models either way.
    training_only_layer_names = ("denoising_queries",)

    @property
    def training_only_weights(self):
        """The weights used in training only (the denoising queries' embeddings); checkpoint loaders
        leave them at their initial values."""
        # getattr: subclasses whose __init__ skips DETRModel's (ConditionalDETRModel) have no denoising.
        queries = getattr(self, "denoising_queries", None)
        return [] if queries is None else list(queries.weights)

    # ----------------------------------------------------------------- inputs
    @staticmethod
    def _check_input_keys(inputs):
        unknown = sorted(set(inputs) - {"images", "pixel_mask", DENOISING_TARGETS})
        if "images" not in inputs or unknown:
            raise ValueError(
                f"DETR takes images (B, H, W, 3) or a dict with keys 'images' and optionally "
                f"'pixel_mask'; got keys {sorted(inputs)}."
            )

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            self._check_input_keys(inputs)
            images, pixel_mask = inputs["images"], inputs.get("pixel_mask")
        elif isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            images, pixel_mask = inputs
        else:
            images, pixel_mask = inputs, None
        images = ops.convert_to_tensor(images)
        if len(images.shape) != 4:
            raise ValueError(f"DETR images must be (batch, height, width, channels), got shape {tuple(images.shape)}.")
        check_batch_not_empty(images, "DETR")
        if pixel_mask is None:
            pixel_mask = ops.ones_like(images[..., 0], dtype="float32")
        else:
            pixel_mask = ops.convert_to_tensor(pixel_mask)
            expected = tuple(images.shape[:3])
            got = tuple(pixel_mask.shape)
            compatible = len(got) == 3 and all(a is None or b is None or a == b for a, b in zip(expected, got))
            if not compatible:
                raise ValueError(
                    f"pixel_mask has shape {got} but the images are {tuple(images.shape)}: the mask must be "
                    f"(batch, height, width) = {expected}, 1 for real pixels and 0 for padding."
                )
        return images, pixel_mask

    # ------------------------------------------------ host-side data checks
    def _check_host_data(self, x, y=None):
        """Checks images and targets given as arrays before Keras traces a step over them.

        Inside the compiled step a bad target would surface as a backend error, or be checked
        after the loss repeats the targets per decoder layer (so the image count would be off);
        here the message names the image as given. Datasets and generators pass unchecked
        (`prepare_detection_dataset` checks its targets as it reads them).
        """
        if isinstance(x, dict):
            self._check_input_keys(x)
            images = x["images"]
        elif isinstance(x, (list, tuple)) and len(x) == 2:
            images = x[0]
        else:
            images = x
        shape = getattr(images, "shape", None)
        if shape is None or len(shape) == 0:  # a dataset, a generator, a PyDataset
            return
        if len(shape) != 4:  # before Keras builds the backbone on it
            raise ValueError(f"DETR images must be (batch, height, width, channels), got shape {tuple(shape)}.")
        check_batch_not_empty(images, "DETR")
        if y is not None:
            # Imported here: the data module sits above the models (it reads datasets with TensorFlow).
            from keras_vit.data.detection import check_detection_targets

            check_detection_targets(y, num_classes=self.num_classes, num_images=int(shape[0]))

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (list, tuple)) and len(validation_data) >= 2:
            self._check_host_data(validation_data[0], validation_data[1])
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_host_data(x)
        return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_data(x, y)
        return super().test_on_batch(x, y, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_host_data(x)
        return super().predict_on_batch(x)

    def train_step(self, *args):
        """Keras' train step (`(data)`, or `(state, data)` on JAX); with denoising, the targets also
        travel with the inputs, so that `call` can make the denoising queries from them."""
        if getattr(self, "denoising", None) is None:  # also a subclass that skips DETRModel.__init__
            return super().train_step(*args)
        *state, data = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(y, dict):
            if isinstance(x, dict):
                x = {**x, DENOISING_TARGETS: y}
            elif isinstance(x, (list, tuple)) and len(x) == 2:
                x = {"images": x[0], "pixel_mask": x[1], DENOISING_TARGETS: y}
            else:
                x = {"images": x, DENOISING_TARGETS: y}
        return super().train_step(*state, keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        images_shape = input_shape["images"] if isinstance(input_shape, dict) else input_shape
        images_shape = tuple(images_shape)
        self.backbone.build(images_shape)
        feature_shape = self.backbone.compute_output_shape(images_shape)
        if feature_shape[-1] is None:
            raise ValueError("The DETR backbone's feature map must have a known number of channels.")
        self.input_proj.build(feature_shape)
        batch = images_shape[0]
        tokens = (batch, None, self.hidden_dim)
        queries = (batch, self.num_queries, self.hidden_dim)
        for layer in self.encoder_layers:
            layer.build(tokens)
        self.query_embed.build(tokens)
        for layer in self.decoder_layers:
            layer.build(queries, tokens)
        self.decoder_norm.build(queries)
        self.class_embed.build(queries)
        self.bbox_embed.build(queries)
        if getattr(self, "denoising_queries", None) is not None:
            self.denoising_queries.build()
        self._build_weightless_layers(feature_shape)
        self.built = True

    def _build_weightless_layers(self, feature_shape):
        # While any layer is unbuilt, Keras' JAX predict_on_batch runs the whole model eagerly before every
        # compiled call, and train_on_batch rebuilds it symbolically: these have no weights, but build them.
        self.mask_resize.build()
        self.position_embedding.build(feature_shape[:-1])

    # ------------------------------------------------------------------- call
    def _flatten(self, x):
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None:
            return ops.reshape(x, (-1, height * width, x.shape[-1]))
        return ops.reshape(x, (ops.shape(x)[0], -1, x.shape[-1]))

    def call(self, inputs, training=None):
        images, pixel_mask = self._split_inputs(inputs)
        x = ops.cast(images, self.compute_dtype)
        if self.preprocessing is not None:
            # Normalize, then zero the padding, as the reference pads normalized images with 0.
            x = self.preprocessing(x) * ops.expand_dims(ops.cast(pixel_mask, x.dtype), -1)
        features = self.backbone(x, training=training)
        mask = self.mask_resize(pixel_mask, features)  # (B, h, w) float
        pos = self._flatten(self.position_embedding(mask))
        memory = self._flatten(self.input_proj(features))
        mask = ops.reshape(mask, (ops.shape(mask)[0], -1))
        for layer in self.encoder_layers:
            memory = layer(memory, pos, padding_mask=mask, training=training)
        query_pos = self.query_embed(memory)
        tgt = ops.zeros_like(query_pos)
        targets = inputs.get(DENOISING_TARGETS) if isinstance(inputs, dict) else None
        denoising = None
        if training and targets is not None and getattr(self, "denoising_queries", None) is not None:
            # [G * M denoising queries | Q matching queries], behind the group mask (DN-DETR).
            denoising = self.denoising_queries(
                targets["boxes"], targets["labels"], targets["valid"], num_queries=self.num_queries
            )
            tgt = ops.concatenate([ops.cast(denoising["content"], tgt.dtype), tgt], axis=1)
            query_pos = ops.concatenate([ops.cast(denoising["position"], query_pos.dtype), query_pos], axis=1)
        self_attention_mask = None if denoising is None else denoising["attention_mask"]
        hidden = []
        for layer in self.decoder_layers:
            tgt = layer(
                tgt, memory, pos, query_pos, memory_mask=mask, self_attention_mask=self_attention_mask,
                training=training,
            )  # fmt: skip
            hidden.append(tgt)
        if denoising is not None:
            num_denoising = denoising["content"].shape[1]
            denoising_hidden = ops.stack([self.decoder_norm(h[:, :num_denoising]) for h in hidden], axis=1)
            if not self.auxiliary_outputs:
                denoising_hidden = denoising_hidden[:, -1:]
            hidden = [h[:, num_denoising:] for h in hidden]
        final = self.decoder_norm(hidden[-1])
        outputs = {
            "logits": ops.cast(self.class_embed(final), "float32"),
            "pred_boxes": self.bbox_embed(final),
        }
        if self.auxiliary_outputs and len(hidden) > 1:
            intermediate = ops.stack([self.decoder_norm(h) for h in hidden[:-1]], axis=1)  # (B, L-1, Q, D)
            outputs["aux_logits"] = ops.cast(self.class_embed(intermediate), "float32")
            outputs["aux_pred_boxes"] = self.bbox_embed(intermediate)
        if denoising is not None:  # (B, L, G * M, ...): every decoder layer's, the final one last
            outputs["denoising_logits"] = ops.cast(self.class_embed(denoising_hidden), "float32")
            outputs["denoising_pred_boxes"] = self.bbox_embed(denoising_hidden)
        return outputs

    def compute_output_shape(self, input_shape):
        images_shape = input_shape["images"] if isinstance(input_shape, dict) else input_shape
        batch = images_shape[0]
        shapes = {
            "logits": (batch, self.num_queries, self.num_classes + 1),
            "pred_boxes": (batch, self.num_queries, 4),
        }
        if self.auxiliary_outputs and self.num_decoder_layers > 1:
            aux = self.num_decoder_layers - 1
            shapes["aux_logits"] = (batch, aux, self.num_queries, self.num_classes + 1)
            shapes["aux_pred_boxes"] = (batch, aux, self.num_queries, 4)
        return shapes

    # ------------------------------------------------------------------- loss
    # The set loss lives in keras_vit.training, above this module. The model names its default
    # loss the way a saved compile config does, by its registered Keras name; `import keras_vit`
    # imports keras_vit.training, which registers it.
    DEFAULT_LOSS = "keras_vit>DETRLoss"

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Like `keras.Model.compile`; `loss=None` means DETR's set loss (`keras_vit.training.DETRLoss`).

        `loss` may be any callable `(y_true, y_pred) -> {"loss": total, ...}` or a
        scalar; `loss_ce`, `loss_bbox`, `loss_giou` in its result are logged. On
        TensorFlow `jit_compile="auto"` is Keras' choice (XLA on a GPU without
        `tf.distribute`) when the loss says it is `xla_compatible` (the default
        matcher solves in `keras.ops` under XLA), else False (a host-only matcher,
        `solver="scipy"`).

        Example:
        >>> import keras
        >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
        >>> model = DETR(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
        ...              num_decoder_layers=2, num_heads=4, mlp_dim=64)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-4))
        """
        loss = loss if loss is not None else self._default_loss()
        object.__setattr__(self, "_set_loss", loss)
        if keras.backend.backend() == "tensorflow" and kwargs.get("jit_compile", "auto") == "auto":
            if not getattr(loss, "xla_compatible", False):
                kwargs["jit_compile"] = False  # XLA cannot compile a host callback (tf.numpy_function)
        super().compile(optimizer=optimizer, loss=None, **kwargs)

    def _default_loss(self):
        loss_class = keras.saving.get_registered_object(self.DEFAULT_LOSS)
        if loss_class is None:
            raise ValueError(
                f"DETR's set loss ({self.DEFAULT_LOSS}) is not registered: import keras_vit.training, "
                "or pass compile(loss=...) with your own loss."
            )
        return loss_class(self.num_classes, **{"auxiliary_loss": self.auxiliary_outputs, **self.loss_config})

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss (DETR's set loss by default) of `y_pred` against the padded targets `y`.

        `sample_weight` is not used; the model's own regularization losses are added (scaled per
        replica under `tf.distribute`, as Keras scales them). The loss is this replica's share of the
        global batch's loss (DETRLoss normalizes by the global number of boxes), so the replicas'
        gradients add up to one device's. `loss_ce`, `loss_bbox`, `loss_giou` are logged as Keras
        logs `loss`: unscaled, weighted by the number of images.
        """
        if self._set_loss is None:
            object.__setattr__(self, "_set_loss", self._default_loss())
        if y is None:
            raise ValueError(
                "DETR's loss needs targets: fit/evaluate on (inputs, {'boxes', 'labels', 'valid'}) pairs."
            )
        if isinstance(y, dict) and not {"boxes", "labels", "valid"} <= set(y):
            # A trace-time guard (no cost per step) for targets that came through a dataset.
            missing = sorted({"boxes", "labels", "valid"} - set(y))
            raise ValueError(
                f"DETR targets are missing {missing} (got keys {sorted(y)}): pass {{'boxes': (B, M, 4), "
                "'labels': (B, M), 'valid': (B, M) 1 for a real box and 0 for padding}; "
                "keras_vit.data.pad_detection_targets builds it."
            )
        result = self._set_loss(y, y_pred)
        if isinstance(result, dict):
            total = result["loss"]
            batch_size = ops.shape(y_pred["logits"])[0]
            replicas = _replicas_in_sync()
            for name, tracker in (
                ("loss_ce", self.loss_ce_tracker),
                ("loss_bbox", self.loss_bbox_tracker),
                ("loss_giou", self.loss_giou_tracker),
                ("loss_dn", getattr(self, "loss_dn_tracker", None)),
            ):
                if name in result and tracker is not None:
                    tracker.update_state(result[name] * replicas, sample_weight=batch_size)
        else:
            total = result
        for extra in self.losses:
            total = total + ops.cast(self._aggregate_additional_loss(extra), total.dtype)
        return total

    # ---------------------------------------------------------- serialization
    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "num_queries": self.num_queries,
            "hidden_dim": self.hidden_dim,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
            "auxiliary_outputs": self.auxiliary_outputs,
            "include_preprocessing": self.include_preprocessing,
            "preprocessing_mean": list(self.preprocessing_mean),
            "preprocessing_std": list(self.preprocessing_std),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "loss_config": dict(self.loss_config),
            "class_names": None if self.class_names is None else list(self.class_names),
            "denoising": None if getattr(self, "denoising", None) is None else self.denoising.get_config(),
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Configurations saved before the package's one vocabulary (ffn_dim) load silently.
        config = take_renamed_arguments(config, RENAMED_ARGUMENTS, cls.__name__, warn=False)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)


def _make_backbone(backbone, dilation, input_shape, dtype):
    if isinstance(backbone, str):
        key = backbone.lower().replace("-", "").replace("_", "")
        if key not in BACKBONES:
            raise ValueError(
                f"Unknown DETR backbone {backbone!r}. Use one of {sorted(BACKBONES)}, or pass a Keras model "
                "that maps images (B, H, W, 3) to a feature map (B, h, w, C) (or a dict of maps keyed "
                "'stride_N'), e.g. a keras_vit Swin model with include_top=False."
            )
        # DETR trains layer2-4 of its ResNet and freezes the stem and layer1.
        return BACKBONES[key](input_shape=input_shape, dilation=dilation, trainable_stem=False, dtype=dtype, name=key)
    if dilation:
        raise ValueError("dilation=True (DC5) applies to the built-in ResNet backbones, not to a custom backbone model.")
    if not isinstance(backbone, keras.layers.Layer):
        raise TypeError(
            f"backbone must be a name ({', '.join(sorted(BACKBONES))}) or a Keras model, got {type(backbone).__name__}."
        )
    return backbone


def DETR(
    backbone="resnet50",
    num_classes=91,
    num_queries=100,
    hidden_dim=256,
    num_encoder_layers=6,
    num_decoder_layers=6,
    num_heads=8,
    mlp_dim=None,
    dropout=0.1,
    dilation=False,
    auxiliary_outputs=True,
    include_preprocessing=False,
    weights=None,
    input_shape=(None, None, 3),
    loss_config=None,
    class_names=None,
    denoising=None,
    dtype=None,
    name="detr",
    **deprecated,
):
    """A DETR detector (`DETRModel`) with every hyper-parameter.

    Args:
        backbone: "resnet50" or "resnet101" (keras_vit's ResNet with frozen
            BatchNorm), or any Keras model mapping images to a feature map
            (B, h, w, C) or to a dict of maps keyed "stride_N" (the largest stride
            is used), e.g. `keras_vit.SwinT(include_top=False)`.
        num_classes: object classes; the class head has num_classes + 1 outputs,
            the last one "no object". COCO checkpoints use 91.
        num_queries, hidden_dim, num_encoder_layers, num_decoder_layers,
            num_heads, mlp_dim (the feed-forward width, 2048 by default; formerly
            `ffn_dim`, which still works with a DeprecationWarning), dropout: the transformer.
        dilation: DC5 (ResNet backbones): stride 16 with a dilated last stage.
        auxiliary_outputs: also return every earlier decoder layer's predictions
            (`aux_logits`, `aux_pred_boxes`), for the auxiliary losses.
        include_preprocessing: take RGB in [0, 255] and apply ImageNet
            normalization (the published weights' preprocessing) in the model.
        weights: None, a checkpoint file (transformers DETR .safetensors/.bin under
            either key layout, the original repository's .pth, a Keras file) or a
            published name (`keras_vit.weights.published_names("detr")`). A
            checkpoint with another number of classes loads everything but the
            class head.
        input_shape: (height, width, 3); None sizes take any image size.
        loss_config: keyword arguments of `keras_vit.training.DETRLoss` used by `fit()`.
        class_names: None or one name per class, kept by the model (`model.class_names`, through
            `.keras` save/load; also set by `keras_vit.with_class_names`).
        denoising: None (off), True, or a `keras_vit.training.Denoising(groups, label_noise,
            box_noise)`: DN-DETR's denoising queries in `fit()` (see `DETRModel`); inference and
            export are unchanged, and checkpoints load as without it.

    Example:
    >>> import numpy as np
    >>> model = DETR("resnet50", num_classes=91)
    >>> out = model(np.zeros((1, 64, 64, 3), "float32"))
    >>> tuple(out["logits"].shape), tuple(out["pred_boxes"].shape)
    ((1, 100, 92), (1, 100, 4))
    """
    # Called here, not in a helper, so that the DeprecationWarning points at the caller's line.
    mlp_dim = _mlp_dim(take_renamed_arguments({"mlp_dim": mlp_dim, **deprecated}, RENAMED_ARGUMENTS, "DETR"), "DETR")
    return assemble_detector(
        DETRModel, "detr", convert_detr, backbone, dilation=dilation, input_shape=input_shape, weights=weights,
        dtype=dtype, name=name, num_classes=num_classes, num_queries=num_queries, hidden_dim=hidden_dim,
        num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers, num_heads=num_heads,
        mlp_dim=mlp_dim, dropout=dropout, auxiliary_outputs=auxiliary_outputs,
        include_preprocessing=include_preprocessing, loss_config=loss_config, class_names=class_names,
        denoising=denoising,
    )


def assemble_detector(model_class, family, converter, backbone, *, dilation, input_shape, weights, dtype, name,
                      **model_arguments):
    """Builds `model_class` (DETRModel or a subclass) on `backbone` for `input_shape`, then loads
    `weights` (a file or a published name of `family`) with `converter`; the generic constructors
    `DETR` and `ConditionalDETR` share it.

    Example:
    >>> import keras
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = assemble_detector(DETRModel, "detr", None, cnn, dilation=False, input_shape=(32, 32, 3),
    ...                           weights=None, dtype=None, name="tiny", num_classes=3, num_queries=2,
    ...                           hidden_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
    ...                           mlp_dim=32)
    >>> model.compute_output_shape((1, 32, 32, 3))["logits"]
    (1, 2, 4)
    """
    input_shape = tuple(input_shape)
    check_input_shape(input_shape, name, fixed_size=False)
    # Resolved before anything is built, so that an unknown name fails fast.
    weights_path = None if weights is None else resolve_weights(weights, family)[0]
    feature_extractor = _make_backbone(backbone, dilation, input_shape, dtype)
    model = model_class(feature_extractor, dtype=dtype, name=name, **model_arguments)
    model.build((None,) + input_shape)
    if weights_path is not None:
        load_weights(model, weights_path, converter, family, allow_head_reset=True)
    return model


def named_detector_builder(constructor, label, variant, default_weights, num_queries, name_prefix):
    """The named builder `label` (e.g. DETRResNet50) of `constructor` with a `variant` ResNet:
    keras.applications' conventions (`classes`, `input_shape=None`), `weights="coco"` looked up in
    `default_weights` by (variant, dilation); the caller sets the returned function's docstring.

    Example:
    >>> build = named_detector_builder(DETR, "DETRResNet50", "resnet50", {}, 100, "detr")
    >>> build.__name__
    'DETRResNet50'
    """

    def build(
        num_classes=91,
        num_queries=num_queries,
        weights=None,
        dilation=False,
        input_shape=(None, None, 3),
        include_preprocessing=False,
        auxiliary_outputs=True,
        dropout=0.1,
        name=None,
        classes=None,
        **kwargs,
    ):
        num_classes = classes_alias(num_classes, classes, label, default=91)
        if input_shape is None:  # keras.applications' word for the canonical size: any size, here
            input_shape = (None, None, 3)
        if weights == "coco":
            key = (variant, bool(dilation))
            if key not in default_weights:
                raise ValueError(
                    f"No published COCO checkpoint of {label}(dilation={bool(dilation)}) is known; "
                    f"the known ones: {sorted(default_weights.values())}. Pass a checkpoint file instead."
                )
            weights = default_weights[key]
        suffix = "_dc5" if dilation else ""
        return constructor(
            variant,
            num_classes=num_classes,
            num_queries=num_queries,
            weights=weights,
            dilation=dilation,
            input_shape=input_shape,
            include_preprocessing=include_preprocessing,
            auxiliary_outputs=auxiliary_outputs,
            dropout=dropout,
            name=name or f"{name_prefix}_{variant}{suffix}",
            **kwargs,
        )

    build.__name__ = build.__qualname__ = label
    return build


def _builder(variant):
    label = {"resnet50": "DETRResNet50", "resnet101": "DETRResNet101"}[variant]
    build = named_detector_builder(DETR, label, variant, DEFAULT_WEIGHTS, 100, "detr")
    build.__doc__ = f"""DETR with a {variant} backbone (d 256, 6 + 6 layers, 8 heads, MLP 2048, 100 queries).

    `dilation=True` is the DC5 variant. `weights="coco"` loads transformers'
    published COCO checkpoint (91 classes; downloaded once; also by its hub name
    "facebook/detr-resnet-50"). Any input size: `input_shape` None and (None, None, 3) are
    the same; `classes` is another name of `num_classes`. Other keywords go to `DETR`.

    Example:
    >>> model = {label}(num_classes=91)
    >>> sorted(model.compute_output_shape((None, 800, 1216, 3)))
    ['aux_logits', 'aux_pred_boxes', 'logits', 'pred_boxes']
    """
    return build


DETRResNet50 = _builder("resnet50")
DETRResNet101 = _builder("resnet101")
