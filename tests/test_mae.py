"""Masked autoencoder: parity with transformers' ViTMAEForPreTraining, checkpoint layouts,
training with fit(), the encoder as a ViT, pictures, and bad input."""


import keras
import numpy as np
import pytest

from conftest import to_numpy

import keras_vit
from keras_vit.models.mae import sincos_position_embedding
from keras_vit.models.mae.convert_mae import convert_mae
from keras_vit.weights.assignment import WeightsMismatchError

# Tiny and deliberately asymmetric: decoder width 12 with 3 heads, its own MLP width.
TINY = dict(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, decoder_hidden_size=12, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=3, decoder_intermediate_size=20, layer_norm_eps=1e-6, mask_ratio=0.75)


def tiny_mae(norm_pix_loss=False, **kwargs):
    encoder = keras_vit.VisionTransformer(16, 4, 16, 2, 2, 32, include_top=False, pooling=None, name="encoder")
    return keras_vit.MaskedAutoencoder(encoder, decoder_dim=12, decoder_depth=1, decoder_num_heads=3,
                                       decoder_mlp_dim=20, norm_pix_loss=norm_pix_loss, **kwargs)


@pytest.fixture(scope="module")
def reference():
    """transformers' MAE with random weights (every tensor perturbed) and its outputs for fixed noise."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**TINY)).eval()
    # transformers 5 leaves a fresh model's sine-cosine tables at zero (pretrained ones are loaded):
    # fill them with its own initializers, which hold the official layout.
    model.vit.embeddings.patch_embeddings.projection._is_hf_initialized = False
    model.vit.embeddings.initialize_weights()
    model.decoder.initialize_weights(16)
    tables = {"encoder": model.vit.embeddings.position_embeddings.detach().numpy().copy(),
              "decoder": model.decoder.decoder_pos_embed.detach().numpy().copy()}
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.1)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 16, 16)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    outputs = {}
    for norm_pix in (False, True):
        model.config.norm_pix_loss = norm_pix
        with torch.no_grad():
            out = model(torch.tensor(images), noise=torch.tensor(noise))
        outputs[norm_pix] = {"loss": float(out.loss), "predictions": out.logits.numpy(), "mask": out.mask.numpy()}
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return {"state": state, "images": images.transpose(0, 2, 3, 1), "noise": noise, "outputs": outputs,
            "tables": tables}


def _transformers4_names(state):
    """transformers 5's in-memory names -> the hub's (transformers 4) names."""
    pairs = [("vit.layers.", "vit.encoder.layer."), (".attention.q_proj.", ".attention.attention.query."),
             (".attention.k_proj.", ".attention.attention.key."), (".attention.v_proj.", ".attention.attention.value."),
             (".attention.o_proj.", ".attention.output.dense."), (".mlp.fc1.", ".intermediate.dense."),
             (".mlp.fc2.", ".output.dense.")]
    renamed = {}
    for key, value in state.items():
        for new, old in pairs:
            key = key.replace(new, old)
        renamed[key] = value
    return renamed


def _official_names(state):
    """The same weights under facebookresearch/mae's `models_mae.py` names (q, k, v fused into qkv)."""
    official = {}
    for key, value in state.items():
        key = key.replace("vit.embeddings.cls_token", "cls_token").replace("vit.embeddings.position_embeddings", "pos_embed")
        key = key.replace("vit.embeddings.patch_embeddings.projection", "patch_embed.proj")
        key = key.replace("vit.layernorm", "norm").replace("vit.layers.", "blocks.")
        key = key.replace("decoder.decoder_layers.", "decoder_blocks.").replace("decoder.", "")
        key = key.replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
        key = key.replace("attention.o_proj", "attn.proj")
        official[key] = value
    for key in [k for k in official if ".attention.q_proj." in k]:
        prefix, suffix = key.split(".attention.q_proj.")
        parts = [official.pop(f"{prefix}.attention.{n}_proj.{suffix}") for n in "qkv"]
        official[f"{prefix}.attn.qkv.{suffix}"] = np.concatenate(parts, axis=0)
    return official


@pytest.fixture(scope="module")
def loaded(reference):
    keras.utils.clear_session()
    models = {}
    for norm_pix in (False, True):
        models[norm_pix] = tiny_mae(norm_pix)
        convert_mae(models[norm_pix], reference["state"])
        models[norm_pix].compile(optimizer="adam")
    return models


def _predict(mae, reference):
    return mae.predict_on_batch({"images": reference["images"], "noise": reference["noise"]})


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_outputs_mask_and_loss_equal_transformers(reference, loaded, norm_pix_loss):
    mae, expected = loaded[norm_pix_loss], reference["outputs"][norm_pix_loss]
    outputs = _predict(mae, reference)
    np.testing.assert_allclose(outputs["predictions"], expected["predictions"], atol=1e-4)
    np.testing.assert_array_equal(outputs["mask"], expected["mask"])
    loss = mae.test_on_batch({"images": reference["images"], "noise": reference["noise"]})
    np.testing.assert_allclose(loss, expected["loss"], atol=1e-4)


@pytest.mark.parametrize("layout", ["transformers4", "official"])
def test_checkpoint_layouts_load_strictly(reference, loaded, layout):
    rename = _transformers4_names if layout == "transformers4" else _official_names
    state = rename(reference["state"])
    mae = tiny_mae()
    convert_mae(mae, state)
    np.testing.assert_allclose(_predict(mae, reference)["predictions"],
                               reference["outputs"][False]["predictions"], atol=1e-4)
    # Strict: a key left out, or one too many, fails and names it.
    missing = dict(state)
    dropped = sorted(k for k in state if "decoder_pred" in k)[0]
    del missing[dropped]
    with pytest.raises(WeightsMismatchError, match="decoder_pred"):
        convert_mae(mae, missing)
    with pytest.raises(WeightsMismatchError, match="extra.weight"):
        convert_mae(mae, {**state, "extra.weight": np.zeros(3, "float32")})


def test_encoder_only_checkpoint_is_explained(reference):
    encoder_only = {k: v for k, v in _official_names(reference["state"]).items() if not k.startswith(("decoder", "mask"))}
    with pytest.raises(ValueError, match="encoder only"):
        convert_mae(tiny_mae(), encoder_only)


def test_sincos_tables_equal_transformers(reference):
    np.testing.assert_allclose(sincos_position_embedding((4, 4), 16), reference["tables"]["encoder"], atol=1e-6)
    np.testing.assert_allclose(sincos_position_embedding((4, 4), 12), reference["tables"]["decoder"], atol=1e-6)


def test_masking_is_seeded_and_encoder_sees_visible_patches_only():
    mae = tiny_mae(seed=3)
    images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    first, second = mae.predict_on_batch(images)["mask"], mae.predict_on_batch(images)["mask"]
    assert first.shape == (2, 16) and (first.sum(axis=1) == 12).all()
    assert not np.array_equal(first, second)  # new noise each call
    again = tiny_mae(seed=3).predict_on_batch(images)["mask"]
    np.testing.assert_array_equal(first, again)  # same seed, same masks
    latent, mask, _ = mae.encode(mae.preprocess(images[:1]))
    assert tuple(latent.shape) == (1, 1 + 4, 16)  # class token + the 4 visible patches


def test_fit_reduces_loss_and_trains_the_encoder():
    mae = tiny_mae(seed=0)
    mae.compile(optimizer=keras.optimizers.Adam(3e-3))
    images = np.random.default_rng(0).random((16, 16, 16, 3)).astype("float32")
    pos_before = to_numpy(mae.encoder.get_layer("pos_embed").embedding)
    block_before = to_numpy(mae.encoder.get_layer("block_0").mlp.fc1.kernel)
    history = mae.fit(images, batch_size=16, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert not np.allclose(to_numpy(mae.encoder.get_layer("block_0").mlp.fc1.kernel), block_before)
    np.testing.assert_array_equal(to_numpy(mae.encoder.get_layer("pos_embed").embedding), pos_before)  # fixed


def test_encoder_becomes_a_vision_transformer(reference, loaded):
    mae = loaded[False]
    features = mae.to_vision_transformer(include_top=False, pooling=None)
    np.testing.assert_allclose(to_numpy(features.predict_on_batch(reference["images"])),
                               to_numpy(mae.encoder.predict_on_batch(reference["images"])), atol=1e-5)
    classifier = mae.to_vision_transformer(num_classes=7)
    assert classifier.output_shape == (None, 7)
    np.testing.assert_array_equal(to_numpy(classifier.get_layer("fc_norm").gamma),
                                  to_numpy(mae.encoder.get_layer("norm").gamma))
    assert classifier.get_layer("pos_embed").trainable


def test_save_and_load_keras_file(tmp_path, reference, loaded):
    path = str(tmp_path / "mae.keras")
    loaded[True].save(path)
    restored = keras.saving.load_model(path)
    assert restored.norm_pix_loss
    np.testing.assert_allclose(_predict(restored, reference)["predictions"],
                               reference["outputs"][True]["predictions"], atol=1e-4)


def test_reconstruction_picture(tmp_path, reference, loaded):
    plt = pytest.importorskip("matplotlib.pyplot")
    from keras_vit.viz import plot_mae_reconstruction

    path = str(tmp_path / "pictures" / "mae.png")
    assert plot_mae_reconstruction(loaded[True], reference["images"], path, noise=reference["noise"]) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    height, width = plt.imread(path).shape[:2]
    assert width > height > 0  # 2 rows of 4 pictures
    result = loaded[True].reconstruct(reference["images"], noise=reference["noise"])
    hidden = np.repeat(np.repeat(result["mask"].reshape(2, 4, 4), 4, 1), 4, 2)[..., None] > 0
    np.testing.assert_array_equal(np.where(hidden, 0.0, reference["images"]), result["masked"])
    np.testing.assert_allclose(np.where(hidden, result["reconstruction"], reference["images"]), result["pasted"],
                               atol=1e-6)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2, True])
def test_bad_mask_ratio(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio .* \(0, 1\)"):
        tiny_mae(mask_ratio=ratio)


def test_bad_decoder_and_encoder():
    encoder = keras_vit.VisionTransformer(16, 4, 16, 1, 2, 32, include_top=False, pooling=None)
    with pytest.raises(ValueError, match="decoder_dim 30 is not divisible by decoder_num_heads 4"):
        keras_vit.MaskedAutoencoder(encoder, decoder_dim=30, decoder_num_heads=4)
    classifier = keras_vit.VisionTransformer(16, 4, 16, 1, 2, 32, num_classes=3)
    with pytest.raises(ValueError, match="include_top=False"):
        keras_vit.MaskedAutoencoder(classifier, decoder_dim=8, decoder_depth=1, decoder_num_heads=2)
    cnn = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3)], name="cnn")
    with pytest.raises(ValueError, match="needs a ViT encoder"):
        keras_vit.MaskedAutoencoder(cnn)


def test_published_names_are_registered():
    names = keras_vit.weights.published_names("mae")
    assert {"facebook/vit-mae-base", "mae_visualize_vit_base"} <= set(names)
