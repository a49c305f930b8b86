"""Attention maps equal a hand computation from the block's weights; rollout shapes."""

import numpy as np

import keras_vit
from conftest import fixture_path, to_numpy
from keras_vit.viz import attention_maps, attention_rollout


def test_attention_maps_equal_softmax_of_scaled_qk():
    model = keras_vit.VisionTransformer(32, 8, 48, 2, 3, 192, num_classes=10, weights=fixture_path("vit_tiny.safetensors"))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    maps = attention_maps(model, images)
    assert [m.shape for m in maps] == [(2, 3, 17, 17)] * 2
    # Recompute block 0 by hand from its input tokens and its qkv weights.
    import keras

    tokens = to_numpy(keras.Model(model.inputs[0], model.get_layer("block_0").input)(images))
    block = model.get_layer("block_0")
    mean, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    normed = (tokens - mean) / np.sqrt(var + 1e-6) * to_numpy(block.norm1.gamma) + to_numpy(block.norm1.beta)
    qkv = normed @ to_numpy(block.attn.qkv.kernel) + to_numpy(block.attn.qkv.bias)
    q, k, _ = np.split(qkv.reshape(2, 17, 3, 3, 16), 3, axis=2)
    logits = np.einsum("bnhd,bmhd->bhnm", q[:, :, 0], k[:, :, 0]) / 4.0
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(maps[0], expected, atol=1e-5)
    rollout = attention_rollout(maps, grid_size=(4, 4))
    assert rollout.shape == (2, 4, 4) and np.isclose(rollout.max(), 1.0)


# ------------------------------------------------------------------------------------------------
# Pictures: heat maps peak where a planted pattern is; files have the pixel size asked for.
import warnings  # noqa: E402

import keras  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from keras_vit.layers.attention import recorded_attention  # noqa: E402
from keras_vit.viz import (  # noqa: E402
    class_token_attention,
    plot_attention,
    plot_detr_attention,
    plot_position_embedding_similarity,
    plot_training_curves,
    swin_attention_maps,
    token_layout,
    window_attention_to_map,
)

PLANTED_PATCH = (2, 3)  # row, column on the 4x4 grid


def _planted_deit():
    """A one-block distilled ViT (class + distillation tokens) whose every query attends to the
    patch PLANTED_PATCH: only that patch's position embedding is non-zero, queries are a constant
    (the qkv bias) aligned with it, keys are the normalized tokens."""
    model = keras_vit.VisionTransformer(32, 8, 48, 1, 2, 96, num_classes=10, distilled=True)
    width = 48
    embedding = np.zeros((1, 2 + 16, width), "float32")
    direction = np.zeros(width, "float32")
    direction[[0, 24]], direction[[1, 25]] = 1.0, -1.0  # one +/- pair in each head's 24 dims
    embedding[0, 2 + PLANTED_PATCH[0] * 4 + PLANTED_PATCH[1]] = direction
    model.get_layer("pos_embed").embedding.assign(embedding)
    patch_embed = model.get_layer("patch_embed")
    for weight in patch_embed.weights:
        weight.assign(np.zeros(weight.shape, "float32"))
    for name in ("cls_token", "dist_token"):
        for weight in model.get_layer(name).weights:
            weight.assign(np.zeros(weight.shape, "float32"))
    qkv = model.get_layer("block_0").attn.qkv
    kernel = np.zeros((width, 3 * width), "float32")
    kernel[:, width:2 * width] = np.eye(width)  # k = normalized token
    bias = np.zeros(3 * width, "float32")
    bias[:width] = 5.0 * direction  # q = the same direction for every token
    qkv.kernel.assign(kernel)
    qkv.bias.assign(bias)
    return model


@pytest.fixture(scope="module")
def planted_deit():
    return _planted_deit()


def test_prefix_tokens_and_grid_come_from_the_model(planted_deit):
    assert token_layout(planted_deit) == (2, (4, 4))
    prompted = keras_vit.VisionTransformer(32, 8, 48, 1, 3, 96, num_classes=10, num_prompts=3)
    assert token_layout(prompted) == (4, (4, 4))


def test_attention_of_a_deit_peaks_at_the_planted_patch_without_warnings(planted_deit, tmp_path):
    image = np.random.default_rng(1).uniform(0, 1, (32, 32, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = attention_maps(planted_deit, image)
    assert not [w for w in caught if "structure" in str(w.message)], [str(w.message) for w in caught]
    heads = class_token_attention(maps, 2, (4, 4))
    for head in heads[0]:
        assert np.unravel_index(head.argmax(), head.shape) == PLANTED_PATCH
    rollout = attention_rollout(maps, 2, (4, 4))[0]
    assert np.unravel_index(rollout.argmax(), rollout.shape) == PLANTED_PATCH

    path = tmp_path / "deit_attention.png"
    figure = plot_attention(planted_deit, image, path=path, dpi=50)
    assert Image.open(path).size == (4 * 2 * 50, 1 * 2 * 50)  # photo, rollout, 2 heads; 2-inch panels
    # The drawn rollout overlay (second image of the second panel) peaks at the patch too.
    drawn = np.asarray(figure.axes[1].images[1].get_array())
    assert np.unravel_index(drawn.argmax(), drawn.shape) == PLANTED_PATCH


def test_recording_leaves_normal_calls_as_they_are(planted_deit):
    image = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    from keras_vit.viz.attention import _recorded_call

    plain = to_numpy(planted_deit.predict_on_batch(image))
    recorded, records = _recorded_call(planted_deit, image)
    assert len(records) == 1 and records[0][0] is planted_deit.get_layer("block_0").attn
    assert tuple(records[0][1].shape) == (2, 2, 18, 18)
    np.testing.assert_allclose(to_numpy(recorded), plain, atol=1e-5)  # explicit path vs fused path
    with recorded_attention() as records:
        pass
    planted_deit.predict_on_batch(image)
    assert records == []


def test_swin_window_attention_is_mapped_back_through_shift_and_windows():
    from keras_vit.models.swin import SwinBlock

    block = SwinBlock(hidden_dim=8, num_heads=1, input_resolution=(8, 8), window_size=4, shift_size=2)
    scores = np.full((4, 1, 16, 16), 1.0 / 16, "float32")
    scores[3, :, :, :] = 0.0
    scores[3, :, :, 0] = 1.0  # window 3 (rows 4:8, columns 4:8 of the shifted map) attends to its first token
    heat_map = window_attention_to_map(scores, block, batch_size=1)[0, 0]
    # Shifted position (4, 4) is (4 + 2, 4 + 2) on the image: the block shifted the map by -2.
    assert np.unravel_index(heat_map.argmax(), heat_map.shape) == (6, 6)

    # The mapping inverts the block's own shift and window cut, on a map that does not fill whole windows.
    from keras_vit.models.swin.swin_layers import cyclic_shift, window_partition

    block = SwinBlock(hidden_dim=8, num_heads=2, input_resolution=(8, 12), window_size=4, shift_size=2)
    values = np.random.default_rng(4).uniform(size=(2, 8, 12, 2)).astype("float32")
    windows = to_numpy(window_partition(to_numpy(cyclic_shift(values, (-2, -2))), block.window_size))
    scores = np.repeat(np.transpose(windows, (0, 2, 1))[:, :, None, :], 16, axis=2)  # every query: the values
    np.testing.assert_allclose(window_attention_to_map(scores, block, 2), values.transpose(0, 3, 1, 2), atol=1e-6)


def test_swin_tnt_and_detr_pictures_have_the_asked_pixel_size(tmp_path):
    image = np.random.default_rng(3).uniform(0, 255, (32, 32, 3)).astype("float32")
    swin = keras_vit.SwinTransformer(image_size=32, patch_size=4, hidden_dim=16, depths=(2,), num_heads=(2,),
                                     window_size=4, num_classes=3)
    assert [m.shape for m in swin_attention_maps(swin, image)] == [(1, 2, 8, 8)] * 2
    plot_attention(swin, image, path=tmp_path / "swin.png", dpi=40)
    assert Image.open(tmp_path / "swin.png").size == (4 * 80, 80)

    tnt = keras_vit.TNT(image_size=32, patch_size=8, hidden_dim=24, inner_dim=8, depth=1, num_heads=2,
                        inner_num_heads=2, num_classes=3)
    assert token_layout(tnt) == (1, (4, 4))
    plot_attention(tnt, image, path=tmp_path / "tnt.png", dpi=40)
    assert Image.open(tmp_path / "tnt.png").size == (4 * 80, 80)

    cnn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(16, 8, strides=8)])
    detr = keras_vit.DETRModel(cnn, num_classes=3, num_queries=5, hidden_dim=32, num_encoder_layers=1,
                               num_decoder_layers=1, num_heads=4, mlp_dim=64)
    figure = plot_detr_attention(detr, image[:, :24], path=tmp_path / "detr.png", max_objects=2,
                                 class_names=["cat", "dog", "bird"], dpi=40)
    assert Image.open(tmp_path / "detr.png").size == (3 * 96, 96)
    assert figure.axes[1].get_title().split(": ")[1].split()[0] in ("cat", "dog", "bird")


def test_position_embedding_similarity_and_training_curves_files(planted_deit, tmp_path):
    from keras_vit.viz import position_embedding_similarity

    similarity = position_embedding_similarity(planted_deit)
    assert similarity.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(similarity[PLANTED_PATCH + PLANTED_PATCH], 1.0, atol=1e-6)
    plot_position_embedding_similarity(planted_deit, path=tmp_path / "position.png", dpi=40)
    assert Image.open(tmp_path / "position.png").size == (int(4 * 0.6 * 40), int(4 * 0.6 * 40))
    history = {"loss": [2.0, 1.0], "val_loss": [2.2, 1.3], "accuracy": [0.3, 0.7], "val_accuracy": [0.2, 0.6]}
    figure = plot_training_curves(history, path=tmp_path / "curves.png", dpi=40)
    assert Image.open(tmp_path / "curves.png").size == (int(2 * 2.6 * 40), int(2.6 * 40))
    assert [line.get_label() for line in figure.axes[0].lines] == ["training", "validation"]
