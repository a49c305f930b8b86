"""ViT/DeiT on images of any size (timm's `dynamic_img_size`): the position embeddings, stored for
the canonical grid, are resampled at run time to each input's patch grid, as a fixed-size model
of that size resamples them when its weights are loaded."""

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy
from keras_vit.layers import PositionEmbedding
from keras_vit.layers.position_embedding import bicubic_antialias_matrix
from keras_vit.layers.resampling import resize_matrix

TINY = dict(image_size=32, patch_size=8, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=3,
            distilled=True)  # two prefix tokens (class and distillation), kept as they are


@pytest.fixture(scope="module")
def dynamic_model():
    return keras_vit.VisionTransformer(dynamic_image_size=True, name="dynamic_vit", **TINY)


@pytest.fixture(scope="module")
def saved_weights(dynamic_model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dynamic") / "dynamic_vit.keras")
    dynamic_model.save(path)
    return path


def _images(seed, height, width):
    return np.random.default_rng(seed).normal(size=(2, height, width, 3)).astype("float32")


def test_run_time_weights_equal_the_load_time_resampling():
    # The matrix built from a size known only at run time equals the NumPy one the loaders use.
    pairs = ((4, 6), (5, 2), (14, 24))  # up, down (scale > 1: the wider window), 224 -> 384
    if keras.backend.backend() == "jax":  # eager JAX compiles every op of every shape: one pair
        pairs = pairs[-1:]
    for source, target in pairs:
        run_time = to_numpy(bicubic_antialias_matrix(source, keras.ops.convert_to_tensor(target, "int32")))
        # float32 arithmetic against the loaders' float64: a few ulps of weights near 1.
        np.testing.assert_allclose(run_time, resize_matrix(source, target, "bicubic_antialias"), atol=5e-6)


def test_run_time_resampling_equals_torch_interpolate():
    # timm's resample_abs_pos_embed: prefix tokens kept, the grid through F.interpolate(bicubic, antialias).
    torch = pytest.importorskip("torch", reason="torch is the reference for this resize")
    layer = PositionEmbedding((14, 14), num_prefix_tokens=2, patch_size=4)
    layer.build((None, 2 + 14 * 14, 8))
    stored = np.random.default_rng(7).normal(size=(1, 2 + 14 * 14, 8)).astype("float32")
    layer.embedding.assign(stored)
    target = (24, 10)  # up in one direction, down in the other
    added = to_numpy(layer(np.zeros((1, 2 + 24 * 10, 8), "float32"), np.zeros((1, 96, 40, 3), "float32")))
    grid = torch.from_numpy(stored[0, 2:].reshape(14, 14, 8).transpose(2, 0, 1)[None])
    resized = torch.nn.functional.interpolate(grid, size=target, mode="bicubic", antialias=True, align_corners=False)
    expected = np.concatenate([stored[:, :2], resized[0].numpy().transpose(1, 2, 0).reshape(1, -1, 8)], axis=1)
    np.testing.assert_allclose(added, expected, atol=1e-5)


def test_canonical_size_is_the_fixed_size_model(dynamic_model):
    assert dynamic_model.input_shape == (None, None, None, 3)
    fixed = keras_vit.VisionTransformer(name="fixed_vit", **TINY)
    fixed.set_weights(dynamic_model.get_weights())
    images = _images(0, 32, 32)
    np.testing.assert_allclose(to_numpy(dynamic_model.predict_on_batch(images)),
                               to_numpy(fixed.predict_on_batch(images)), atol=1e-5)


@pytest.mark.parametrize("size", [(48, 24), (16, 16)])
def test_other_sizes_equal_a_fixed_size_model_loaded_from_the_same_weights(dynamic_model, saved_weights, size):
    # The fixed-size model resamples the stored 4x4 embedding when it loads the .keras file.
    fixed = keras_vit.VisionTransformer(**{**TINY, "image_size": size}, weights=saved_weights, name="fixed_vit")
    images = _images(1, *size)
    np.testing.assert_allclose(to_numpy(dynamic_model.predict_on_batch(images)),
                               to_numpy(fixed.predict_on_batch(images)), atol=1e-4)


def test_keras_file_and_bad_sizes(dynamic_model, saved_weights):
    loaded = keras.saving.load_model(saved_weights)
    images = _images(2, 40, 24)
    assert loaded.get_layer("pos_embed").grid_size == (4, 4)
    np.testing.assert_allclose(to_numpy(loaded.predict_on_batch(images)),
                               to_numpy(dynamic_model.predict_on_batch(images)), atol=1e-6)
    # A size known when the model runs (TensorFlow's predict may trace with unknown sizes: next test).
    with pytest.raises(ValueError, match="image height 36 is not a multiple of the patch size 8"):
        dynamic_model(_images(3, 36, 32))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function with unknown image sizes")
def test_tf_function_with_unknown_sizes(dynamic_model):
    import tensorflow as tf

    serve = tf.function(lambda x: dynamic_model(x, training=False),
                        input_signature=[tf.TensorSpec((None, None, None, 3), "float32")])
    for size in ((32, 32), (48, 24)):
        images = _images(4, *size)
        np.testing.assert_allclose(serve(images).numpy(), to_numpy(dynamic_model(images, training=False)), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="an image width is not a multiple of the patch size 8"):
        serve(_images(5, 32, 36))


def test_builders_take_any_size_vit_and_deit_only():
    deit = keras_vit.DeiTTi16(input_shape=(None, None, 3), depth=1, hidden_dim=16, num_heads=2, mlp_dim=32,
                              num_classes=3, distilled=True)
    assert deit.input_shape == (None, None, None, 3) and deit.get_layer("pos_embed").grid_size == (14, 14)
    assert deit.compute_output_shape((1, 64, 48, 3)) == (1, 3)
    for builder in (keras_vit.SwinT, keras_vit.TNTS16):
        with pytest.raises(ValueError, match="needs a fixed input size"):
            builder(input_shape=(None, None, 3))


def test_predict_runs_an_any_size_model_at_its_canonical_size(saved_weights, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from keras_vit.cli import main
    from keras_vit.cli.predict import _Predictor

    assert _Predictor(saved_weights).size == (32, 32)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (30, 50, 3), dtype="uint8")).save("photo.png")
    assert main(["predict", saved_weights, "photo.png", "--top-k", "1"]) == 0
    assert "1. class " in capsys.readouterr().out


def test_attention_maps_of_an_any_size_model_are_at_its_canonical_size(dynamic_model):
    from keras_vit.viz import attention_maps

    maps = attention_maps(dynamic_model, _images(8, 48, 24)[0])  # resized to 32x32: a 4x4 grid
    assert [m.shape for m in maps] == [(1, 2, 18, 18)]
