"""DeiT: parity with timm and transformers (each head and the mean), builders, heads view, errors."""

import os

import numpy as np
import pytest

import keras_vit
from conftest import fixture_path, load_fixture, to_numpy
from keras_vit.weights import PUBLISHED_WEIGHTS, WeightsMismatchError
from keras_vit.models.vit.convert_vit import convert_vit

TINY = dict(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=192, num_classes=10)


def _assert_heads_match(model, images, logits, cls_logits, dist_logits):
    np.testing.assert_allclose(to_numpy(model(images)), logits, atol=1e-4)
    class_out, dist_out = keras_vit.distillation_heads(model)(images)
    np.testing.assert_allclose(to_numpy(class_out), cls_logits, atol=1e-4)
    np.testing.assert_allclose(to_numpy(dist_out), dist_logits, atol=1e-4)


def test_timm_distilled_checkpoint_matches_reference_each_head_and_mean():
    ref = load_fixture("deit_tiny_distilled")
    model = keras_vit.VisionTransformer(**TINY, distilled=True, weights=fixture_path("deit_tiny_distilled.safetensors"))
    _assert_heads_match(model, ref["input_nhwc"], ref["logits"], ref["cls_logits"], ref["dist_logits"])


def test_timm_distilled_checkpoint_resampled_to_48_keeps_both_prefix_tokens():
    # The resampled grid is 6x6 + [cls, dist]; a converter that resampled the dist token would fail to load.
    model = keras_vit.VisionTransformer(**{**TINY, "image_size": 48}, distilled=True,
                                        weights=fixture_path("deit_tiny_distilled.safetensors"))
    from keras_vit.weights import read_checkpoint

    _, tensors = read_checkpoint(fixture_path("deit_tiny_distilled.safetensors"))
    embedding = to_numpy(model.get_layer("pos_embed").embedding)
    assert embedding.shape == (1, 2 + 36, 48)
    np.testing.assert_array_equal(embedding[:, :2], tensors["pos_embed"][:, :2])


def test_distilled_checkpoint_into_undistilled_model_fails_and_names_the_keys():
    model = keras_vit.VisionTransformer(**TINY)
    before = [to_numpy(w) for w in model.weights]
    with pytest.raises(WeightsMismatchError, match="dist_token"):
        keras_vit.weights.load_weights(model, fixture_path("deit_tiny_distilled.safetensors"), convert_vit, "vit")
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(to_numpy(w), b)


def _transformers_case(tmp_path, with_teacher, hub_names):
    """A small random transformers DeiT / ViT, its outputs, and a checkpoint file of it."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    common = dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=192, num_labels=10, hidden_act="gelu", layer_norm_eps=1e-12)
    if with_teacher:
        model = transformers.DeiTForImageClassificationWithTeacher(transformers.DeiTConfig(**common))
    else:  # the published undistilled DeiTs (facebook/deit-*-patch16-224) are ViTForImageClassification
        model = transformers.ViTForImageClassification(transformers.ViTConfig(**common))
    with torch.no_grad():  # no zero biases or unit scales, so any dropped or transposed tensor shows
        for tensor in model.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.2)
    model.eval()
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
    if hub_names:  # transformers 4 / hub key names, as save_pretrained writes them
        model.save_pretrained(str(tmp_path))
        path = os.path.join(str(tmp_path), "model.safetensors")
    else:  # the in-memory transformers 5 names
        path = os.path.join(str(tmp_path), "state_dict.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return images, out, path


@pytest.mark.parametrize("hub_names", [True, False], ids=["hub_names", "state_dict_names"])
def test_transformers_deit_with_teacher_matches_each_head_and_mean(tmp_path, hub_names):
    images, out, path = _transformers_case(tmp_path, with_teacher=True, hub_names=hub_names)
    model = keras_vit.VisionTransformer(**TINY, distilled=True, layer_norm_epsilon=1e-12, weights=path)
    _assert_heads_match(model, images, out.logits.numpy(), out.cls_logits.numpy(), out.distillation_logits.numpy())


def test_transformers_undistilled_deit_matches(tmp_path):
    images, out, path = _transformers_case(tmp_path, with_teacher=False, hub_names=True)
    model = keras_vit.VisionTransformer(**TINY, layer_norm_epsilon=1e-12, weights=path)
    np.testing.assert_allclose(to_numpy(model(images)), out.logits.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "builder, distilled, expected",
    [
        ("DeiTTi16", True, 5_910_800),
        ("DeiTS16", True, 22_436_432),
        ("DeiTB16", True, 87_338_192),
        ("DeiTB16", False, 86_567_656),
    ],
)
def test_parameter_counts_match_timm(builder, distilled, expected):
    model = getattr(keras_vit, builder)(distilled=distilled)
    assert model.count_params() == expected


def test_384_builder_has_the_384_grid_and_imagenet_preprocessing():
    model = keras_vit.DeiTTi16(input_shape=(384, 384, 3), distilled=True, include_preprocessing=True, num_classes=3)
    assert model.get_layer("pos_embed").embedding.shape == (1, 2 + 24 * 24, 192)
    normalization = model.get_layer("preprocessing")
    assert normalization.mean == (0.485, 0.456, 0.406) and normalization.std == (0.229, 0.224, 0.225)


def test_heads_view_shares_weights_and_model_output_is_their_mean():
    model = keras_vit.VisionTransformer(**TINY, distilled=True)
    heads = keras_vit.distillation_heads(model)
    assert {id(w) for w in heads.weights} == {id(w) for w in model.weights}
    images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    class_logits, dist_logits = (to_numpy(t) for t in heads(images))
    np.testing.assert_allclose(to_numpy(model(images)), (class_logits + dist_logits) / 2, atol=1e-5)
    assert len(model.outputs) == 1


def test_heads_view_of_undistilled_model_is_a_clear_error():
    with pytest.raises(ValueError, match="distilled=True"):
        keras_vit.distillation_heads(keras_vit.VisionTransformer(**TINY))


def test_published_deit_checkpoints_are_registered_with_imagenet_statistics():
    names = [n for n in PUBLISHED_WEIGHTS if n.startswith("deit_")]
    assert len(names) == 8
    for name in names:
        entry = PUBLISHED_WEIGHTS[name]
        assert entry["mean"] == (0.485, 0.456, 0.406) and entry["std"] == (0.229, 0.224, 0.225)
        assert entry["distilled"] == ("distilled" in name)
        assert entry["image_size"] == (384 if "_384" in name else 224)
    from keras_vit.models.deit.deit_model import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS[("DeiTB16", 384, True)] == "deit_base_distilled_patch16_384.fb_in1k"
    assert set(DEFAULT_WEIGHTS.values()) == set(names)


def test_bad_weights_requests_are_clear_errors():
    with pytest.raises(ValueError, match="distilled=True"):
        keras_vit.DeiTTi16(weights="deit_tiny_distilled_patch16_224.fb_in1k")
    with pytest.raises(ValueError, match=r"\[224\]"):
        keras_vit.DeiTS16(input_shape=(384, 384, 3), weights="imagenet")
    with pytest.raises(FileNotFoundError):
        keras_vit.DeiTTi16(weights=os.path.join("no", "such", "file.safetensors"))
