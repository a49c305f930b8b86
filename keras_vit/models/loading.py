"""`keras_vit.load_weights(model, weights)`: any checkpoint into a model that is already built.

The family's key map is chosen from the model itself, so the call is the same for a timm or
transformers file, a published or hub name, and a Keras file of this package (`.keras`,
`.weights.h5`). A file made at another resolution is resampled (position embeddings, Swin's
bias tables) and a head of another number of classes is left at its initial values (said once
in a log line), for a Keras file as for a timm one: fine-tuning at a higher resolution or on
new classes starts from the file as it is.
"""

from keras_vit.models.conditional_detr.conditional_detr_model import ConditionalDETRModel
from keras_vit.models.conditional_detr.convert_conditional_detr import convert_conditional_detr
from keras_vit.models.detr.convert_detr import convert_detr
from keras_vit.models.detr.detr_model import DETRModel
from keras_vit.models.mae.convert_mae import convert_mae
from keras_vit.models.mae.mae_model import MaskedAutoencoder
from keras_vit.models.swin.convert_swin import convert_swin
from keras_vit.models.tnt.convert_tnt import convert_tnt
from keras_vit.models.vit.convert_vit import convert_vit
from keras_vit.weights import loader


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def model_family(model):
    """`(family, converter)` of a model built by this package, from its class and layer names.

    Example:
    >>> import keras_vit
    >>> model_family(keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10))[0]
    'vit'
    """
    if isinstance(model, ConditionalDETRModel):  # a DETRModel subclass: asked first
        return "conditional_detr", convert_conditional_detr
    if isinstance(model, DETRModel):
        return "detr", convert_detr
    if isinstance(model, MaskedAutoencoder):
        return "mae", convert_mae
    if _has_layer(model, "pixel_embed"):
        return "tnt", convert_tnt
    if _has_layer(model, "patch_embed_norm"):
        return "swin", convert_swin
    if _has_layer(model, "pos_embed"):
        return "vit", convert_vit
    return None, None


def _unknown_family(model, tensors, allow_head_reset=False):
    raise ValueError(
        f"Model {model.name!r} is not one of this package's families (ViT, DeiT, TNT, Swin, DETR, Conditional DETR, MAE), so "
        "only a Keras file (.keras, .weights.h5) can be loaded into it."
    )


def load_weights(model, weights, allow_head_reset=True, allow_non_finite=False):
    """Fills a built `model` from `weights`: a file of any supported format or a published/hub name.

    As `weights=` in the builders, strictly (every key used, every weight filled, else an error
    and the model unchanged), with two exceptions that fine-tuning needs: position embeddings and
    Swin's bias tables of another resolution are resampled, and a head of another number of
    classes is left at its initial values when `allow_head_reset` (the default here).

    Example (a model trained at 32x32 with 10 classes, continued at 48x48 with 5):
    >>> import keras_vit, os, tempfile
    >>> trained = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "trained.keras")
    >>> trained.save(path)
    >>> model = keras_vit.VisionTransformer(48, 8, 48, 2, 3, 192, num_classes=5)
    >>> load_weights(model, path)
    >>> model.output_shape
    (None, 5)
    """
    family, converter = model_family(model)
    loader.load_weights(model, weights, converter or _unknown_family, family or "keras",
                        allow_head_reset=allow_head_reset, allow_non_finite=allow_non_finite)
