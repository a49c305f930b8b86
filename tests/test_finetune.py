"""Fine-tuning as a flow: a Keras file of this package loads into a model of another resolution
or number of classes as a timm file does; freezing, layer-wise decay and LoRA."""

import logging
import os

import keras
import numpy as np
import pytest

import keras_vit
from conftest import to_numpy
from keras_vit.layers.resampling import resample_position_embedding
from keras_vit.models.swin.convert_swin import resample_relative_position_bias_table
from keras_vit.training import enable_lora, freeze_backbone, layer_decay_optimizer, unfreeze
from keras_vit.weights import WeightsMismatchError

VIT = dict(patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=96)
SWIN = dict(patch_size=4, hidden_dim=16, depths=(2, 2), num_heads=(2, 4))


@pytest.fixture(scope="module")
def saved_vit(tmp_path_factory):
    model = keras_vit.VisionTransformer(image_size=32, num_classes=10, **VIT)
    directory = tmp_path_factory.mktemp("vit")
    model.save(str(directory / "vit.keras"))
    model.save_weights(str(directory / "vit.weights.h5"))
    return model, directory


def weights_by_path(model):
    return {v.path: to_numpy(v) for v in model.weights}


@pytest.mark.parametrize("filename", ["vit.keras", "vit.weights.h5"])
def test_a_keras_file_loads_at_another_resolution_and_number_of_classes(saved_vit, filename, caplog):
    trained, directory = saved_vit
    model = keras_vit.VisionTransformer(image_size=48, num_classes=5, **VIT)
    head_before = to_numpy(model.get_layer("head").kernel)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        keras_vit.load_weights(model, str(directory / filename))
    assert sum("head left at its initial values" in r.getMessage() for r in caplog.records) == 1
    source, target = weights_by_path(trained), weights_by_path(model)
    expected_pos = resample_position_embedding(source["pos_embed/embedding"], (4, 4), (6, 6))
    np.testing.assert_allclose(target["pos_embed/embedding"], expected_pos, atol=1e-6)
    np.testing.assert_array_equal(target["head/kernel"], head_before)
    for path in source:
        if not path.startswith(("pos_embed", "head")):
            np.testing.assert_array_equal(target[path], source[path], err_msg=path)


def test_weights_argument_takes_a_keras_file_of_another_resolution(saved_vit):
    trained, directory = saved_vit
    model = keras_vit.ViTTi16(input_shape=(48, 48, 3), **{**VIT, "num_classes": 10},
                              weights=str(directory / "vit.keras"))
    np.testing.assert_array_equal(to_numpy(model.get_layer("head").kernel), to_numpy(trained.get_layer("head").kernel))


def test_a_keras_file_of_another_architecture_is_refused_and_nothing_changes(saved_vit):
    _, directory = saved_vit
    model = keras_vit.VisionTransformer(image_size=32, num_classes=10, **{**VIT, "depth": 3})
    before = weights_by_path(model)
    with pytest.raises(WeightsMismatchError, match="lacks"):
        keras_vit.load_weights(model, str(directory / "vit.keras"))
    for path, value in weights_by_path(model).items():
        np.testing.assert_array_equal(value, before[path])


def test_swin_bias_tables_are_resampled_from_a_keras_file(tmp_path):
    trained = keras_vit.SwinTransformer(image_size=32, window_size=4, num_classes=10, **SWIN)
    path = str(tmp_path / "swin.weights.h5")
    trained.save_weights(path)
    model = keras_vit.SwinTransformer(image_size=48, window_size=6, num_classes=10, **SWIN, weights=path)
    table = "stage_1_block_1/attn/relative_position_bias_table"
    expected = resample_relative_position_bias_table(weights_by_path(trained)[table], (6, 6))
    np.testing.assert_allclose(weights_by_path(model)[table], expected, atol=1e-6)


def test_freeze_lora_and_unfreeze():
    model = keras_vit.VisionTransformer(image_size=32, num_classes=10, **VIT)
    assert [v.path for v in freeze_backbone(model).trainable_variables] == ["head/kernel", "head/bias"]
    unfreeze(model)
    assert len(model.trainable_variables) == len(model.weights)
    assert enable_lora(model, rank=2) == 4 * VIT["depth"]
    names = {v.path.rsplit("/", 1)[-1] for v in model.trainable_variables}
    assert names == {"lora_kernel_a", "lora_kernel_b", "kernel", "bias"}
    assert {v.path for v in model.trainable_variables if v.path.endswith(("/kernel", "/bias"))} == {
        "head/kernel", "head/bias"}


def test_layer_decay_scales_each_variables_step():
    model = keras_vit.VisionTransformer(image_size=32, num_classes=10, **VIT)
    optimizer = layer_decay_optimizer(model, learning_rate=1e-2, layer_decay=0.5, weight_decay=0.0)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = weights_by_path(model)
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    model.train_on_batch(images, np.arange(4))
    after = weights_by_path(model)
    # Adam's first step moves every weight by about its rate: 1e-2 * 0.5 ** (depth + 1 - layer).
    steps = {path: np.abs(after[path] - before[path]).max() for path in
             ("patch_embed/proj/kernel", "block_0/mlp/fc1/kernel", "block_1/mlp/fc1/kernel", "head/kernel")}
    np.testing.assert_allclose(list(steps.values()), [1.25e-3, 2.5e-3, 5e-3, 1e-2], rtol=0.02)
