"""Masked autoencoder pretraining (He et al., 2022) of a ViT, trained with `fit()`.

`MaskedAutoencoder(encoder)` wraps a `keras_vit.VisionTransformer` built with
`include_top=False`: each step hides a random 75% of the patches, runs the encoder on
the visible quarter only (what makes MAE cheap), and a light decoder predicts the
pixels of every patch; the loss is the mean squared error on the removed patches
(optionally against per-patch normalized pixels, `norm_pix_loss`). Afterwards
`to_vision_transformer()` turns the encoder into a classifier with the same weights.

The forward pass, loss and weight layout are those of the official code
(facebookresearch/mae `models_mae.py`) and transformers' `ViTMAEForPreTraining`; the
tests check outputs, mask and loss against transformers to 1e-4.
"""

import keras
from keras import ops

from keras_vit.layers import ClassToken, ImageNormalization, PatchEmbedding, PositionEmbedding, TransformerEncoderBlock
from keras_vit.layers.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_vit.models.mae.convert_mae import convert_mae
from keras_vit.models.mae.mae_layers import (
    MAEDecoder, RandomPatchMasking, check_mask_ratio, patchify, sincos_position_embedding, unpatchify,
)
from keras_vit.models.vit.vit_model import VIT_CONFIGS, VisionTransformer
from keras_vit.models.vit.vit_prompts import vision_transformer_config
from keras_vit.weights.assignment import numbered_layers, optional_layer
from keras_vit.weights.loader import load_weights, resolve_weights


def _check_encoder(encoder):
    kinds = {"patch_embed": PatchEmbedding, "cls_token": ClassToken, "pos_embed": PositionEmbedding,
             "block_0": TransformerEncoderBlock, "norm": keras.layers.LayerNormalization}
    if not isinstance(encoder, keras.Model) or any(
        not isinstance(optional_layer(encoder, name), kind) for name, kind in kinds.items()
    ):
        raise ValueError(
            "MaskedAutoencoder needs a ViT encoder: keras_vit.VisionTransformer (or a ViT* builder) with "
            f"include_top=False and pooling=None or 'token'; got {getattr(encoder, 'name', encoder)!r}, which "
            "lacks the patch embedding, class token, position embedding, blocks or final norm it uses."
        )
    for name, why in (("head", "build it with include_top=False"),
                      ("dist_token", "MAE encodes [cls, patches]: use distilled=False"),
                      ("prompt_0", "prompts belong to fine-tuning, not to pretraining")):
        if optional_layer(encoder, name) is not None:
            raise ValueError(f"The MAE encoder {encoder.name!r} has a {name!r} layer: {why}.")
    if encoder.get_layer("patch_embed").patch_size[0] != encoder.get_layer("patch_embed").patch_size[1]:
        raise ValueError("MaskedAutoencoder needs square patches.")


@keras.saving.register_keras_serializable(package="keras_vit")
class MaskedAutoencoder(keras.Model):
    """A masked autoencoder around a ViT encoder: `compile()`, then `fit(images)`.

    Calling the model on images (B, H, W, C), or on `{"images": ..., "noise": ...}` to
    fix the masking noise (B, N) as transformers' `noise=` does, returns a dict with
    `predictions` (B, N, p * p * C), the predicted pixels of every patch in the encoder's
    input scale (after its preprocessing layer, if any), and `mask` (B, N), 1 where a
    patch was hidden. `fit()` needs no labels (any it gets are ignored) and logs the
    reconstruction `loss`. The encoder's layers are shared, not copied: training the
    MAE trains `encoder`.

    Args:
        encoder: a `keras_vit.VisionTransformer` with `include_top=False` (pooling None
            or "token"), not distilled. With `fixed_position_embedding`, its
            `pos_embed` is set to MAE's sine-cosine table and frozen.
        decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim: the decoder
            (MAE: 512, 8, 16, 4 x 512); the width must be divisible by the heads.
        mask_ratio: fraction of patches hidden from the encoder, in (0, 1).
        norm_pix_loss: regress per-patch normalized pixels ((x - mean) / sqrt(var +
            1e-6), unbiased variance over the patch's p * p * C values).
        fixed_position_embedding: use (and freeze) the sine-cosine position embedding.
        seed: seed of the masking noise.
        weights: a checkpoint of the whole MAE (official `mae_visualize_*.pth`
            layout, or transformers' `ViTMAEForPreTraining`), a Keras weights file,
            or a published name (`keras_vit.weights.published_names("mae")`).

    Example:
    >>> import numpy as np, keras, keras_vit
    >>> encoder = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, include_top=False, pooling=None)
    >>> mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2, seed=0)
    >>> outputs = mae(np.zeros((2, 32, 32, 3), "float32"))
    >>> tuple(outputs["predictions"].shape), float(keras.ops.sum(outputs["mask"][0]))
    ((2, 16, 192), 12.0)
    >>> mae.compile(optimizer="adamw")
    >>> history = mae.fit(np.random.rand(4, 32, 32, 3).astype("float32"), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['loss']
    """

    def __init__(self, encoder, decoder_dim=512, decoder_depth=8, decoder_num_heads=16, decoder_mlp_dim=None,
                 mask_ratio=0.75, norm_pix_loss=False, fixed_position_embedding=True, seed=None, weights=None,
                 **kwargs):
        check_mask_ratio(mask_ratio)
        _check_encoder(encoder)
        if decoder_dim % decoder_num_heads != 0:
            raise ValueError(
                f"decoder_dim {decoder_dim} is not divisible by decoder_num_heads {decoder_num_heads}; choose a "
                "decoder width that is a multiple of its number of heads (MAE: 512 and 16)."
            )
        super().__init__(**kwargs)
        self.encoder = encoder
        embed = encoder.get_layer("patch_embed")
        self.patch_size = embed.patch_size[0]
        self.grid_size = encoder.get_layer("pos_embed").grid_size
        self.num_channels = encoder.input_shape[-1]
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.mask_ratio = float(mask_ratio)
        if int(self.num_patches * (1 - self.mask_ratio)) < 1:
            raise ValueError(
                f"mask_ratio {mask_ratio} hides all {self.num_patches} patches; use a ratio that leaves at least one."
            )
        self.norm_pix_loss = bool(norm_pix_loss)
        self.fixed_position_embedding = bool(fixed_position_embedding)
        self.seed = seed
        self.decoder_config = dict(hidden_dim=int(decoder_dim), depth=int(decoder_depth),
                                   num_heads=int(decoder_num_heads),
                                   mlp_dim=None if decoder_mlp_dim is None else int(decoder_mlp_dim))
        epsilon = encoder.get_layer("norm").epsilon
        self.masking = RandomPatchMasking(mask_ratio, seed=seed, name="masking")
        self.masking.build((None, self.num_patches, embed.hidden_dim))  # no weights; an unbuilt layer slows JAX
        self.decoder = MAEDecoder(self.grid_size, self.patch_size, num_channels=self.num_channels,
                                  layer_norm_epsilon=epsilon, name="decoder", **self.decoder_config)
        self.decoder.build((None, 1 + self.masking.num_visible(self.num_patches), embed.hidden_dim), (None, None))
        if self.fixed_position_embedding:
            pos_embed = encoder.get_layer("pos_embed")
            pos_embed.embedding.assign(sincos_position_embedding(self.grid_size, embed.hidden_dim))
            pos_embed.trainable = False
        self.built = True
        if weights is not None:
            self.load_checkpoint(weights)

    # -- forward -------------------------------------------------------------------------------

    def preprocess(self, images):
        """The pixels the encoder sees (and the loss targets): its preprocessing layer applied."""
        preprocessing = optional_layer(self.encoder, "preprocessing")
        images = ops.cast(images, self.compute_dtype)
        return images if preprocessing is None else preprocessing(images)

    def encode(self, pixels, noise=None, training=None):
        """`(latent (B, 1 + K, D), mask (B, N), ids_restore (B, N))` for preprocessed pixels.

        The encoder runs on the class token and the K visible patches only.
        """
        encoder = self.encoder
        tokens = encoder.get_layer("patch_embed")(pixels)
        position = ops.cast(encoder.get_layer("pos_embed").embedding, tokens.dtype)
        tokens = tokens + position[:, 1:]
        visible, mask, ids_restore = self.masking(tokens, noise=noise)
        class_token = ops.cast(encoder.get_layer("cls_token").token, tokens.dtype) + position[:, :1]
        class_token = ops.broadcast_to(class_token, (ops.shape(visible)[0], 1, tokens.shape[-1]))
        x = ops.concatenate([class_token, visible], axis=1)
        for block in numbered_layers(encoder, "block_{}"):
            x = block(x, training=training)
        return encoder.get_layer("norm")(x), mask, ids_restore

    def call(self, inputs, training=None):
        images, noise = (inputs["images"], inputs.get("noise")) if isinstance(inputs, dict) else (inputs, None)
        latent, mask, ids_restore = self.encode(self.preprocess(images), noise=noise, training=training)
        predictions = self.decoder(latent, ids_restore, training=training)
        return {"predictions": predictions, "mask": mask}

    # -- loss ----------------------------------------------------------------------------------

    def patch_targets(self, pixels):
        """What the decoder regresses: the patches of `pixels`, per-patch normalized with `norm_pix_loss`."""
        target = ops.cast(patchify(pixels, self.patch_size), "float32")
        if self.norm_pix_loss:
            mean = ops.mean(target, axis=-1, keepdims=True)
            count = target.shape[-1]
            variance = ops.sum(ops.square(target - mean), axis=-1, keepdims=True) / (count - 1)  # unbiased
            target = (target - mean) / ops.sqrt(variance + 1e-6)
        return target

    def reconstruction_loss(self, pixels, predictions, mask):
        """Mean over removed patches of each patch's mean squared error (a scalar)."""
        target = self.patch_targets(pixels)
        per_patch = ops.mean(ops.square(ops.cast(predictions, "float32") - target), axis=-1)
        mask = ops.cast(mask, "float32")
        return ops.sum(per_patch * mask) / ops.sum(mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images = x["images"] if isinstance(x, dict) else x
        loss = self.reconstruction_loss(self.preprocess(images), y_pred["predictions"], y_pred["mask"])
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    # -- pictures and fine-tuning ----------------------------------------------------------------

    def reconstruct(self, images, noise=None):
        """Original, masked and reconstructed images, as NumPy in the input's pixel scale.

        Returns a dict: `original`, `masked` (hidden patches zeroed), `reconstruction`
        (predicted pixels on every patch) and `pasted` (visible patches from the
        original, hidden ones predicted), each (B, H, W, C), and `mask` (B, N). With
        `norm_pix_loss`, each predicted patch is mapped back with the true patch's
        mean and variance (MAE's figures do the same); the encoder's preprocessing is
        undone.

        Example:
        >>> import numpy as np, keras_vit
        >>> encoder = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, include_top=False, pooling=None)
        >>> mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)
        >>> result = mae.reconstruct(np.random.rand(2, 32, 32, 3).astype("float32"))
        >>> result["pasted"].shape, result["mask"].shape
        ((2, 32, 32, 3), (2, 16))
        """
        inputs = {"images": images} if noise is None else {"images": images, "noise": noise}
        outputs = self.predict_on_batch(inputs)
        pixels = self.preprocess(images)
        predictions = ops.cast(outputs["predictions"], "float32")
        if self.norm_pix_loss:
            target = ops.cast(patchify(pixels, self.patch_size), "float32")
            mean = ops.mean(target, axis=-1, keepdims=True)
            variance = ops.var(target, axis=-1, keepdims=True) * target.shape[-1] / (target.shape[-1] - 1)
            predictions = predictions * ops.sqrt(variance + 1e-6) + mean
        reconstruction = unpatchify(predictions, self.patch_size, self.grid_size, self.num_channels)
        patch_mask = ops.convert_to_tensor(outputs["mask"], "float32")
        pixel_mask = unpatchify(
            ops.repeat(ops.expand_dims(patch_mask, -1), self.patch_size ** 2 * self.num_channels, axis=-1),
            self.patch_size, self.grid_size, self.num_channels,
        )
        pixels = ops.cast(pixels, "float32")
        results = {
            "original": pixels,
            "masked": pixels * (1.0 - pixel_mask),
            "reconstruction": reconstruction,
            "pasted": pixels * (1.0 - pixel_mask) + reconstruction * pixel_mask,
        }
        preprocessing = optional_layer(self.encoder, "preprocessing")
        if isinstance(preprocessing, ImageNormalization):  # back to the input's pixel scale
            mean = ops.convert_to_tensor(preprocessing.mean, "float32")
            std = ops.convert_to_tensor(preprocessing.std, "float32")
            results = {k: (v * std + mean) / preprocessing.scale for k, v in results.items()}
            results["masked"] = results["masked"] * (1.0 - pixel_mask)
        results = {k: ops.convert_to_numpy(v) for k, v in results.items()}
        results["mask"] = ops.convert_to_numpy(patch_mask)
        return results

    def to_vision_transformer(self, num_classes=1000, pooling="avg", include_top=True, **kwargs):
        """The encoder as a `keras_vit.VisionTransformer` with the same weights, for fine-tuning.

        `pooling="avg"` (mean of the patch tokens, then `fc_norm`, filled from the
        encoder's final norm) is how MAE fine-tunes; "token" keeps the class token and
        `norm`. The head is new. Keywords override `VisionTransformer` arguments
        (`drop_path_rate=0.1` as MAE fine-tunes ViT-B, for example). The position
        embedding is trainable again, as in MAE's fine-tuning.

        Example:
        >>> import numpy as np, keras_vit
        >>> encoder = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 96, include_top=False, pooling=None)
        >>> mae = keras_vit.MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)
        >>> classifier = mae.to_vision_transformer(num_classes=10)
        >>> classifier.output_shape
        (None, 10)
        """
        config = vision_transformer_config(self.encoder)
        config.update(num_classes=num_classes, pooling=pooling, include_top=include_top,
                      name=self.encoder.name + "_classifier")
        config.update(kwargs)
        model = VisionTransformer(**config)
        for layer in self.encoder.layers:
            if not layer.weights:
                continue
            target = layer.name
            if layer.name == "norm" and optional_layer(model, "norm") is None:
                target = "fc_norm"
            model.get_layer(target).set_weights(layer.get_weights())
        return model

    # -- weights and config --------------------------------------------------------------------

    def load_checkpoint(self, weights):
        """Fills the whole MAE (encoder and decoder) from a checkpoint, strictly."""
        load_weights(self, weights, convert_mae, "mae")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder_dim": self.decoder_config["hidden_dim"],
            "decoder_depth": self.decoder_config["depth"],
            "decoder_num_heads": self.decoder_config["num_heads"],
            "decoder_mlp_dim": self.decoder.mlp_dim,
            "mask_ratio": self.mask_ratio,
            "norm_pix_loss": self.norm_pix_loss,
            "fixed_position_embedding": self.fixed_position_embedding,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


# The official architectures: ViT encoders, decoder 512 wide, 8 blocks, 16 heads.
_MAE_ENCODERS = {"MAEViTB16": "ViTB16", "MAEViTL16": "ViTL16", "MAEViTH14": "ViTH14"}


def _builder(name):
    vit_config = VIT_CONFIGS[_MAE_ENCODERS[name]]

    def build(input_shape=(224, 224, 3), mask_ratio=0.75, norm_pix_loss=False, weights=None,
              include_preprocessing=False, decoder_dim=512, decoder_depth=8, decoder_num_heads=16,
              layer_norm_epsilon=1e-6, seed=None):
        entry = None
        if weights is not None and not str(weights).endswith((".weights.h5", ".keras")):
            weights, entry = resolve_weights(weights, "mae")
        mean, std = (entry["mean"], entry["std"]) if entry else (IMAGENET_MEAN, IMAGENET_STD)
        encoder = VisionTransformer(
            image_size=tuple(input_shape[:2]), num_channels=input_shape[2], include_top=False, pooling=None,
            include_preprocessing=include_preprocessing, preprocessing_mean=mean, preprocessing_std=std,
            layer_norm_epsilon=layer_norm_epsilon, name=name.lower() + "_encoder", **vit_config,
        )
        return MaskedAutoencoder(encoder, decoder_dim, decoder_depth, decoder_num_heads, mask_ratio=mask_ratio,
                                 norm_pix_loss=norm_pix_loss, seed=seed, weights=weights, name=name.lower())

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"""MAE with a {_MAE_ENCODERS[name]} encoder and the official decoder (512 wide, 8 blocks, 16 heads).

    `weights`: None, a checkpoint file of the whole MAE (official or transformers
    layout) or a published name (`keras_vit.weights.published_names("mae")`). The
    published weights take ImageNet-normalized pixels (`include_preprocessing=True`
    takes RGB in [0, 255]). transformers' configs use LayerNorm epsilon 1e-12, the
    official code 1e-6 (the default here); the difference is below 1e-5.

    Example (the full-size model on small images):
    >>> mae = {name}(input_shape=({2 * vit_config['patch_size']}, {2 * vit_config['patch_size']}, 3))
    >>> mae.num_patches
    4
    """
    return build


MAEViTB16 = _builder("MAEViTB16")
MAEViTL16 = _builder("MAEViTL16")
MAEViTH14 = _builder("MAEViTH14")
