"""Visual Prompt Tuning: prompt placement (shallow and deep), frozen backbone, parameter counts,
training, export, and families without prompts."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from conftest import to_numpy

import keras_vit
from keras_vit.models.vit import PromptTokens, count_parameters, freeze_backbone, prompt_tuning_summary

TINY = dict(image_size=16, patch_size=4, hidden_dim=16, depth=3, num_heads=2, mlp_dim=32, num_classes=5)


@pytest.fixture(scope="module")
def prompted():
    keras.utils.set_random_seed(0)
    vit = keras_vit.VisionTransformer(**TINY, include_preprocessing=True, name="tiny_vit")
    return vit, keras_vit.add_prompts(vit, num_prompts=3, deep=True, num_classes=4, verbose=False)


def _manual_forward(model, images, num_prefix, deep):
    """The prompted network written out by hand from its layers: [cls, (dist,) prompts, patches]."""
    x = model.get_layer("patch_embed")(model.get_layer("preprocessing")(images))
    if num_prefix == 2:
        x = model.get_layer("dist_token")(x)
    x = model.get_layer("pos_embed")(model.get_layer("cls_token")(x))
    for i in range(TINY["depth"]):
        if i == 0 or deep:
            prompts = ops.broadcast_to(model.get_layer(f"prompt_{i}").tokens, (x.shape[0], 3, x.shape[-1]))
            rest = x[:, num_prefix:] if i == 0 else x[:, num_prefix + 3:]  # deep: drop the old prompt outputs
            x = ops.concatenate([x[:, :num_prefix], prompts, rest], axis=1)
        x = model.get_layer(f"block_{i}")(x)
    x = model.get_layer("norm")(x)
    if num_prefix == 2:
        return (model.get_layer("head")(x[:, 0]) + model.get_layer("head_dist")(x[:, 1])) / 2
    return model.get_layer("head")(x[:, 0])


@pytest.mark.parametrize("deep", [True, False])
@pytest.mark.parametrize("distilled", [False, True])
def test_prompts_sit_after_the_class_tokens(deep, distilled):
    vit = keras_vit.VisionTransformer(**TINY, distilled=distilled, include_preprocessing=True)
    model = keras_vit.add_prompts(vit, num_prompts=3, deep=deep, verbose=False)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    expected = _manual_forward(model, images, 2 if distilled else 1, deep)
    np.testing.assert_allclose(to_numpy(model.predict_on_batch(images)), to_numpy(expected), atol=1e-5)
    prompt_layers = [layer for layer in model.layers if isinstance(layer, PromptTokens)]
    assert len(prompt_layers) == (TINY["depth"] if deep else 1)
    assert {layer.num_prefix_tokens for layer in prompt_layers} == {2 if distilled else 1}


def test_only_prompts_and_head_train(prompted):
    vit, model = prompted
    trainable = sorted(w.path for w in model.trainable_weights)
    assert trainable == sorted([f"prompt_{i}/tokens" for i in range(3)] + ["head/kernel", "head/bias"])
    # The backbone weights are the original model's; the original model is left trainable.
    np.testing.assert_array_equal(to_numpy(model.get_layer("block_1").mlp.fc1.kernel),
                                  to_numpy(vit.get_layer("block_1").mlp.fc1.kernel))
    assert all(layer.trainable for layer in vit.layers)
    frozen_before = [to_numpy(w) for w in model.non_trainable_weights]
    prompts_before = to_numpy(model.get_layer("prompt_2").tokens)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    history = model.fit(rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32"), rng.integers(0, 4, 8),
                        batch_size=8, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for before, weight in zip(frozen_before, model.non_trainable_weights):
        np.testing.assert_array_equal(before, to_numpy(weight))
    assert not np.allclose(prompts_before, to_numpy(model.get_layer("prompt_2").tokens))


def test_parameter_count_printed(capsys):
    vit = keras_vit.VisionTransformer(**TINY)
    model = keras_vit.add_prompts(vit, num_prompts=3, deep=False, num_classes=7)
    printed = capsys.readouterr().out
    prompts, head = 3 * 16, 16 * 7 + 7
    assert count_parameters(model.trainable_weights) == prompts + head
    assert f"VPT: {prompts + head:,} trainable parameters (prompts {prompts:,}, head {head:,})" in printed


def test_vit_b16_deep_prompt_count():
    # VPT-deep, ViT-B/16, 50 prompts, 100 classes: 12 blocks x 50 prompts x 768 + the head 768 x 100 + 100.
    with keras.StatelessScope(initialize_variables=False):  # shapes only: cheap
        model = keras_vit.VisionTransformer(num_classes=100, num_prompts=50, deep_prompts=True,
                                            **keras_vit.models.vit.VIT_CONFIGS["ViTB16"])
        freeze_backbone(model)
        trainable = count_parameters(model.trainable_weights)
        total = count_parameters(model.weights)
        summary = prompt_tuning_summary(model)
    keras.utils.clear_session()
    assert trainable == 12 * 50 * 768 + 768 * 100 + 100 == 537_700
    # timm's ViT-B/16 (1000 classes) 86,567,656, with the 100-class head and the prompts.
    assert total == 86_567_656 - (768 * 1000 + 1000) + (768 * 100 + 100) + 12 * 50 * 768
    assert summary.startswith("VPT: 537,700 trainable parameters (prompts 460,800, head 76,900)")


def test_gap_pooling_skips_prompts():
    vit = keras_vit.VisionTransformer(**TINY, pooling="gap")
    model = keras_vit.add_prompts(vit, num_prompts=2, deep=True, verbose=False)
    images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    tokens = keras.Model(model.input, model.get_layer("block_2").output).predict_on_batch(images)
    assert tokens.shape == (2, 1 + 2 + 16, 16)
    features = model.get_layer("fc_norm")(ops.mean(tokens[:, 3:], axis=1))
    np.testing.assert_allclose(to_numpy(model.get_layer("head")(features)), model.predict_on_batch(images), atol=1e-5)


def test_exports_to_saved_model_and_tflite(tmp_path, prompted):
    from keras_vit.export import ExportJob, export_many

    _, model = prompted
    jobs = [ExportJob(model, "saved_model", str(tmp_path / "vpt_saved_model")),
            ExportJob(model, "tflite", str(tmp_path / "vpt.tflite"))]
    for report in export_many(jobs):
        assert report.max_abs_diff <= 1e-4
    assert os.path.isfile(tmp_path / "vpt.tflite")


def _swin():
    return keras_vit.SwinTransformer(image_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1),
                                     num_heads=(1, 2), num_classes=3)


def _tnt():
    return keras_vit.TNT(image_size=32, patch_size=16, hidden_dim=32, inner_dim=8, depth=1, num_heads_inner=1,
                         num_heads_outer=2, num_classes=3)


def _detr():
    backbone = keras_vit.ResNet(depths=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, name="tiny_resnet")
    return keras_vit.DETR(backbone, num_classes=3, num_queries=2, hidden_dim=16, num_encoder_layers=1,
                          num_decoder_layers=1, num_heads=2, mlp_dim=16)


@pytest.mark.parametrize("factory", [_swin, _tnt, _detr], ids=["swin", "tnt", "detr"])
def test_families_without_prompts_are_refused(factory):
    with pytest.raises(ValueError, match="works on ViT and DeiT models"):
        keras_vit.add_prompts(factory(), num_prompts=4)


def test_bad_prompt_arguments(prompted):
    vit, model = prompted
    with pytest.raises(ValueError, match="positive int"):
        keras_vit.add_prompts(vit, num_prompts=0)
    with pytest.raises(ValueError, match="already has prompt tokens"):
        keras_vit.add_prompts(model, num_prompts=2)
