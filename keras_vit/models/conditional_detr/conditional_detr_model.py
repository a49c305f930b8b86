"""Conditional DETR (Meng et al., 2021): DETR with conditional spatial queries, which trains
6.7-10x faster than DETR (41.0 COCO AP in 50 epochs with a ResNet-50).

The backbone, the 1x1 projection, the sine positions and the post-norm encoder are DETR's
(keras_vit/models/detr). The decoder differs (see conditional_detr_layers.py): each learned
query embeds a reference point, `sigmoid(ref_point_head(query_pos))`; its sine embedding,
times `query_scale(decoder embedding)` (identity at the first layer), is the spatial part of
each cross-attention query, concatenated per head with the content part; boxes are predicted
relative to the reference point (`inverse_sigmoid(ref)` added to the box head's centre
before the sigmoid). Classes are scored with sigmoids, `num_classes` logits and no
"no object" class, trained with the sigmoid focal loss
(`keras_vit.training.ConditionalDETRLoss`).

`ConditionalDETR(...)` returns a `ConditionalDETRModel`, a `DETRModel` (same inputs, outputs,
`fit()` and train step, data checks, export) whose `logits` are (B, Q, num_classes).

Denoising training (DN-DETR, `denoising=keras_vit.training.Denoising(...)`): as for DETR, `fit()`
feeds the decoder G noised copies of the targets next to the matching queries, behind the group
self-attention mask. Their content is the label embedding of `DenoisingQueries`; their reference
point is the noised box's centre itself (DN-DETR's rule, where a noised box *is* the anchor of its
query), not `ref_point_head` of a learned embedding, so the spatial query (the sine of the centre)
and the boxes, predicted relative to that point as the matching queries' are, start from the
noised box; their query position embedding (self-attention and the first cross-attention) is
`DenoisingQueries`' box MLP of the noised box. The loss adds `denoising_loss(classification="focal")`.
"""

import math

import keras
from keras import ops

from keras_vit.layers.denoising import Denoising, DenoisingQueries
from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImageNormalization
from keras_vit.layers.renamed_arguments import take_renamed_arguments
from keras_vit.models.conditional_detr.conditional_detr_layers import (
    ConditionalDETRDecoderLayer,
    MLPHead,
    PointSineEmbedding,
    inverse_sigmoid,
)
from keras_vit.models.conditional_detr.conditional_detr_postprocess import post_process_conditional_detections
from keras_vit.models.conditional_detr.conditional_detr_presets import DEFAULT_WEIGHTS
from keras_vit.models.conditional_detr.convert_conditional_detr import convert_conditional_detr
from keras_vit.models.detr.detr_layers import (
    RENAMED_ARGUMENTS,
    DETREncoderLayer,
    ObjectQueries,
    PaddingMaskResize,
    SinePositionEmbedding,
)
from keras_vit.models.detr.detr_model import (
    DENOISING_TARGETS,
    DETRBackbone,
    DETRModel,
    _mlp_dim,
    assemble_detector,
    check_class_names,
    named_detector_builder,
)

# The reference initializes the class bias to the log-odds of a 1% prior (focal loss) and the
# box head's last layer to zero, so that the first boxes sit on the reference points.
PRIOR_PROBABILITY = 0.01


@keras.saving.register_keras_serializable(package="keras_vit")
class ConditionalDETRModel(DETRModel):
    """The Conditional DETR detector as a `keras.Model` that trains with its own set loss.

    Build it with `ConditionalDETR(...)`, `ConditionalDETRResNet50(...)` or
    `ConditionalDETRResNet101(...)`. Layers: `backbone`, `input_proj`, `position_embedding`,
    `encoder_{i}` (DETR's), `query_embed`, `ref_point_head`, `query_sine_embedding`,
    `query_scale`, `decoder_{i}` (`ConditionalDETRDecoderLayer`), `decoder_norm`,
    `class_embed` (num_classes sigmoid logits) and `bbox_embed` (`MLPHead`, before the
    reference offset and the sigmoid); `convert_conditional_detr` fills them.

    Training is `DETRModel`'s: `compile(optimizer)` and `fit()` with the targets
    `{"boxes", "labels", "valid"}`; the default loss is
    `keras_vit.training.ConditionalDETRLoss(num_classes, auxiliary_loss=auxiliary_outputs,
    **loss_config)` (sigmoid focal loss, focal matching cost).

    Denoising training: `denoising=keras_vit.training.Denoising(groups, label_noise, box_noise)` (or
    `True`) adds DN-DETR's denoising queries in `fit()` (the layer `denoising_queries`, see the
    module's docstring for how they enter this decoder: reference point = noised box centre) and
    their focal reconstruction loss, logged as `loss_dn`. `predict`, `evaluate`, a plain call,
    saving and export compute exactly what the same weights compute without denoising.

    As in the original repository, the decoder's final LayerNorm is applied to every auxiliary
    output while the un-normalized state goes on to the next layer (and to `query_scale`);
    transformers does the same with `auxiliary_loss=False`, its published configuration.

    Example:
    >>> import keras, numpy as np
    >>> cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    >>> model = ConditionalDETRModel(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
    ...                              num_decoder_layers=2, num_heads=4, mlp_dim=64)
    >>> out = model(np.zeros((2, 32, 48, 3), "float32"))
    >>> tuple(out["logits"].shape), tuple(out["pred_boxes"].shape), tuple(out["aux_logits"].shape)
    ((2, 5, 3), (2, 5, 4), (2, 1, 5, 3))
    """

    DEFAULT_LOSS = "keras_vit>ConditionalDETRLoss"
    # One sigmoid per class, no "no object" column (see DETRModel.SCORES).
    SCORES = "sigmoid"

    def __init__(
        self,
        backbone,
        num_classes,
        num_queries=300,
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
        old_names = {key: kwargs.pop(key) for key in RENAMED_ARGUMENTS if key in kwargs}
        mlp_dim = _mlp_dim(
            take_renamed_arguments({"mlp_dim": mlp_dim, **old_names}, RENAMED_ARGUMENTS, "ConditionalDETRModel"),
            "ConditionalDETRModel",
        )
        # DETRModel's layers differ (decoder and heads): start from keras.Model, reuse the rest.
        keras.Model.__init__(self, **kwargs)
        for label, value, minimum in (
            ("num_classes", num_classes, 1),
            ("num_queries", num_queries, 1),
            ("num_decoder_layers", num_decoder_layers, 1),
            ("num_encoder_layers", num_encoder_layers, 0),
            ("hidden_dim", hidden_dim, 2),
            ("num_heads", num_heads, 1),
            ("mlp_dim", mlp_dim, 1),
        ):
            if int(value) != value or value < minimum:
                raise ValueError(f"Conditional DETR needs an integer {label} >= {minimum}, got {label}={value!r}.")
        if hidden_dim % 4 or hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim {hidden_dim} must be a multiple of 4 (the sine embeddings interleave sines and "
                f"cosines in each half) and of num_heads ({num_heads})."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
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
        self.encoder_layers = [
            DETREncoderLayer(
                hidden_dim, num_heads, mlp_dim, dropout=dropout, layer_norm_epsilon=layer_norm_epsilon,
                name=f"encoder_{i}", **kw,
            )
            for i in range(num_encoder_layers)
        ]
        self.query_embed = ObjectQueries(num_queries, hidden_dim, name="query_embed", **kw)
        self.ref_point_head = MLPHead(hidden_dim, 2, 2, name="ref_point_head", **kw)
        self.query_sine_embedding = PointSineEmbedding(hidden_dim, name="query_sine_embedding", **kw)
        self.query_scale = MLPHead(hidden_dim, hidden_dim, 2, name="query_scale", **kw)
        self.decoder_layers = [
            ConditionalDETRDecoderLayer(
                hidden_dim, num_heads, mlp_dim, dropout=dropout, is_first=i == 0,
                layer_norm_epsilon=layer_norm_epsilon, name=f"decoder_{i}", **kw,
            )
            for i in range(num_decoder_layers)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="decoder_norm", **kw)
        prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.class_embed = keras.layers.Dense(
            num_classes, bias_initializer=keras.initializers.Constant(prior_bias), name="class_embed", **kw
        )
        self.bbox_embed = MLPHead(hidden_dim, 4, 3, zero_last_layer=True, name="bbox_embed", **kw)
        # Training only: the denoising queries' embeddings (never called at inference).
        self.denoising_queries = (
            DenoisingQueries(num_classes, hidden_dim, self.denoising, name="denoising_queries", **kw)
            if self.denoising is not None
            else None
        )
        self.loss_ce_tracker = keras.metrics.Mean(name="loss_ce")
        self.loss_bbox_tracker = keras.metrics.Mean(name="loss_bbox")
        self.loss_giou_tracker = keras.metrics.Mean(name="loss_giou")
        self.loss_dn_tracker = keras.metrics.Mean(name="loss_dn") if self.denoising is not None else None
        object.__setattr__(self, "_set_loss", None)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        images_shape = input_shape["images"] if isinstance(input_shape, dict) else input_shape
        images_shape = tuple(images_shape)
        self.backbone.build(images_shape)
        feature_shape = self.backbone.compute_output_shape(images_shape)
        if feature_shape[-1] is None:
            raise ValueError("The Conditional DETR backbone's feature map must have a known number of channels.")
        self.input_proj.build(feature_shape)
        batch = images_shape[0]
        tokens = (batch, None, self.hidden_dim)
        queries = (batch, self.num_queries, self.hidden_dim)
        for layer in self.encoder_layers:
            layer.build(tokens)
        self.query_embed.build(tokens)
        self.ref_point_head.build(queries)
        self.query_scale.build(queries)
        for layer in self.decoder_layers:
            layer.build(queries, tokens)
        self.decoder_norm.build(queries)
        self.class_embed.build(queries)
        self.bbox_embed.build(queries)
        if self.denoising_queries is not None:
            self.denoising_queries.build()
        self._build_weightless_layers(feature_shape)
        self.built = True

    def _build_weightless_layers(self, feature_shape):
        super()._build_weightless_layers(feature_shape)
        self.query_sine_embedding.build((None, self.num_queries, 2))

    # ------------------------------------------------------------------- call
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
        reference = ops.sigmoid(ops.cast(self.ref_point_head(query_pos), "float32"))  # (B, Q, 2) x, y
        tgt = ops.zeros_like(query_pos)
        targets = inputs.get(DENOISING_TARGETS) if isinstance(inputs, dict) else None
        denoising = None
        if training and targets is not None and self.denoising_queries is not None:
            # [G * M denoising queries | Q matching queries], behind the group mask (DN-DETR). A
            # denoising query's reference point is its noised box's centre (cx, cy).
            denoising = self.denoising_queries(
                targets["boxes"], targets["labels"], targets["valid"], num_queries=self.num_queries
            )
            tgt = ops.concatenate([ops.cast(denoising["content"], tgt.dtype), tgt], axis=1)
            query_pos = ops.concatenate([ops.cast(denoising["position"], query_pos.dtype), query_pos], axis=1)
            reference = ops.concatenate([ops.cast(denoising["boxes"][..., :2], "float32"), reference], axis=1)
        self_attention_mask = None if denoising is None else denoising["attention_mask"]
        point_sine = self.query_sine_embedding(reference)
        hidden = []
        for i, layer in enumerate(self.decoder_layers):
            # The spatial query: the point's sine embedding, scaled by a transform of the decoder
            # embedding from the second layer on.
            query_sine = point_sine if i == 0 else point_sine * self.query_scale(tgt)
            tgt = layer(
                tgt, memory, pos, query_pos, query_sine, memory_mask=mask, self_attention_mask=self_attention_mask,
                training=training,
            )  # fmt: skip
            hidden.append(tgt)

        # Boxes relative to the reference point: its logit is added to the predicted centre's.
        offset = ops.concatenate([inverse_sigmoid(reference), ops.zeros_like(reference)], axis=-1)

        def boxes(states, reference_offset):
            return ops.sigmoid(ops.cast(self.bbox_embed(states), "float32") + reference_offset)

        denoising_outputs = {}
        if denoising is not None:
            num_denoising = denoising["content"].shape[1]
            denoising_hidden = ops.stack([self.decoder_norm(h[:, :num_denoising]) for h in hidden], axis=1)
            if not self.auxiliary_outputs:
                denoising_hidden = denoising_hidden[:, -1:]
            # (B, L, G * M, ...): every decoder layer's, the final one last.
            denoising_outputs = {
                "denoising_logits": ops.cast(self.class_embed(denoising_hidden), "float32"),
                "denoising_pred_boxes": boxes(denoising_hidden, ops.expand_dims(offset[:, :num_denoising], 1)),
            }
            hidden = [h[:, num_denoising:] for h in hidden]
            offset = offset[:, num_denoising:]

        final = self.decoder_norm(hidden[-1])
        outputs = {"logits": ops.cast(self.class_embed(final), "float32"), "pred_boxes": boxes(final, offset)}
        if self.auxiliary_outputs and len(hidden) > 1:
            intermediate = ops.stack([self.decoder_norm(h) for h in hidden[:-1]], axis=1)  # (B, L-1, Q, D)
            outputs["aux_logits"] = ops.cast(self.class_embed(intermediate), "float32")
            outputs["aux_pred_boxes"] = boxes(intermediate, ops.expand_dims(offset, 1))
        outputs.update(denoising_outputs)
        return outputs

    @staticmethod
    def post_process_detections(outputs, image_sizes, threshold=0.5, top_k=100):
        """This model's outputs as detections in pixels (sigmoid scores, the best `top_k` query-class
        pairs): `post_process_conditional_detections`, which `keras_vit.training.evaluate_coco` calls.

        Example:
        >>> import numpy as np
        >>> outputs = {"logits": np.zeros((1, 2, 3), "float32"), "pred_boxes": np.full((1, 2, 4), 0.5, "float32")}
        >>> len(ConditionalDETRModel.post_process_detections(outputs, [(32, 32)], threshold=0.0)[0]["scores"])
        6
        """
        return post_process_conditional_detections(outputs, image_sizes, threshold=threshold, top_k=top_k)

    def compute_output_shape(self, input_shape):
        images_shape = input_shape["images"] if isinstance(input_shape, dict) else input_shape
        batch = images_shape[0]
        shapes = {
            "logits": (batch, self.num_queries, self.num_classes),
            "pred_boxes": (batch, self.num_queries, 4),
        }
        if self.auxiliary_outputs and self.num_decoder_layers > 1:
            aux = self.num_decoder_layers - 1
            shapes["aux_logits"] = (batch, aux, self.num_queries, self.num_classes)
            shapes["aux_pred_boxes"] = (batch, aux, self.num_queries, 4)
        return shapes


def ConditionalDETR(
    backbone="resnet50",
    num_classes=91,
    num_queries=300,
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
    name="conditional_detr",
    **deprecated,
):
    """A Conditional DETR detector (`ConditionalDETRModel`) with every hyper-parameter.

    Args:
        backbone: "resnet50" or "resnet101" (keras_vit's ResNet with frozen BatchNorm), or any
            Keras model mapping images to a feature map (B, h, w, C) or to a dict of maps keyed
            "stride_N" (the largest stride is used), e.g. `keras_vit.SwinT(include_top=False)`.
        num_classes: object classes, one sigmoid logit each (no "no object" class). COCO
            checkpoints use 91.
        num_queries (300 as the reference), hidden_dim, num_encoder_layers, num_decoder_layers,
            num_heads, mlp_dim (feed-forward width, 2048 by default; formerly `ffn_dim`, which still
            works with a DeprecationWarning, as in `DETR`), dropout: the transformer.
        dilation: DC5 (ResNet backbones): stride 16 with a dilated last stage.
        auxiliary_outputs: also return every earlier decoder layer's predictions
            (`aux_logits`, `aux_pred_boxes`), for the auxiliary losses.
        include_preprocessing: take RGB in [0, 255] and apply ImageNet normalization in the model.
        weights: None, a checkpoint file (transformers Conditional DETR .safetensors/.bin under
            the transformers 4 or 5 key names, the original repository's .pth, a Keras file) or a
            published name (`keras_vit.weights.published_names("conditional_detr")`: transformers'
            R50 and the original repository's R50, R50-DC5, R101 and R101-DC5 release files). A
            checkpoint with another number of classes loads everything but the class head.
        input_shape: (height, width, 3); None sizes take any image size.
        loss_config: keyword arguments of `keras_vit.training.ConditionalDETRLoss` used by `fit()`.
        class_names: None or one name per class, kept by the model.
        denoising: None (off), True, or a `keras_vit.training.Denoising(groups, label_noise,
            box_noise)`: DN-DETR's denoising queries in `fit()` (reference point = the noised box's
            centre; see `ConditionalDETRModel`); inference and export are unchanged, and
            checkpoints load as without it.

    Example:
    >>> from keras_vit.models.resnet import ResNet
    >>> backbone = ResNet(depths=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8)
    >>> model = ConditionalDETR(backbone, num_classes=3, num_queries=4, hidden_dim=16, num_encoder_layers=1,
    ...                         num_decoder_layers=2, num_heads=2, mlp_dim=32)
    >>> shapes = model.compute_output_shape((1, 64, 64, 3))
    >>> shapes["logits"], shapes["pred_boxes"]
    ((1, 4, 3), (1, 4, 4))
    """
    # Called here, not in a helper, so that the DeprecationWarning points at the caller's line.
    mlp_dim = _mlp_dim(
        take_renamed_arguments({"mlp_dim": mlp_dim, **deprecated}, RENAMED_ARGUMENTS, "ConditionalDETR"),
        "ConditionalDETR",
    )
    return assemble_detector(
        ConditionalDETRModel, "conditional_detr", convert_conditional_detr, backbone, dilation=dilation,
        input_shape=input_shape, weights=weights, dtype=dtype, name=name, num_classes=num_classes,
        num_queries=num_queries, hidden_dim=hidden_dim, num_encoder_layers=num_encoder_layers,
        num_decoder_layers=num_decoder_layers, num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout,
        auxiliary_outputs=auxiliary_outputs, include_preprocessing=include_preprocessing,
        loss_config=loss_config, class_names=class_names, denoising=denoising,
    )


def _builder(variant):
    label = {"resnet50": "ConditionalDETRResNet50", "resnet101": "ConditionalDETRResNet101"}[variant]
    build = named_detector_builder(ConditionalDETR, label, variant, DEFAULT_WEIGHTS, 300, "conditional_detr")
    build.__doc__ = f"""Conditional DETR with a {variant} backbone (d 256, 6 + 6 layers, 8 heads, MLP 2048,
    300 queries, 91 classes by default).

    `dilation=True` is the DC5 variant. `weights="coco"` loads the published COCO checkpoint
    (91 classes, downloaded once) of this backbone and dilation:
    {{coco}}. Any input size: `input_shape` None and (None, None, 3) are the same; `classes` is another name of
    `num_classes`. Other keywords go to `ConditionalDETR`.

    Example:
    >>> model = {label}(num_classes=91)
    >>> model.compute_output_shape((None, 800, 1216, 3))["logits"]
    (None, 300, 91)
    """.replace("{coco}", ", ".join(
        f"{DEFAULT_WEIGHTS[(variant, dilation)]!r} ({'dilation=True' if dilation else 'dilation=False'})"
        for dilation in (False, True)))
    return build


ConditionalDETRResNet50 = _builder("resnet50")
ConditionalDETRResNet101 = _builder("resnet101")
