"""ViT: parity with timm, transformers and Google checkpoints; parameter counts; errors."""

import numpy as np
import pytest

import keras_vit
from conftest import fixture_path, load_fixture, to_numpy, torch

TINY = dict(image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=3, mlp_dim=192, num_classes=10)


def test_timm_checkpoint_matches_reference():
    ref = load_fixture("vit_tiny")
    model = keras_vit.VisionTransformer(**TINY, weights=fixture_path("vit_tiny.safetensors"))
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)


def test_timm_checkpoint_resampled_to_48():
    ref = load_fixture("vit_tiny")
    model = keras_vit.VisionTransformer(**{**TINY, "image_size": 48}, weights=fixture_path("vit_tiny.safetensors"))
    np.testing.assert_allclose(to_numpy(model(ref["input48_nhwc"])), ref["logits48"], atol=1e-4)


def test_pre_logits_feature_matches_reference():
    ref = load_fixture("vit_tiny")
    model = keras_vit.VisionTransformer(**TINY, include_top=False, weights=fixture_path("vit_tiny.safetensors"))
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["pre_logits"], atol=1e-4)


def test_google_npz_matches_timm():
    ref = load_fixture("vit_tiny_google_expected")
    model = keras_vit.VisionTransformer(**TINY, weights=fixture_path("vit_tiny_google.npz"))
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)


def _transformers_vit(tmp_path, num_labels=10):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=192, num_labels=num_labels, layer_norm_eps=1e-6,
    )
    torch.manual_seed(0)
    reference = transformers.ViTForImageClassification(config).eval()
    path = str(tmp_path / "model.safetensors")
    reference.save_pretrained(str(tmp_path))
    return reference, path


def _transformers_logits(reference, images_nhwc):
    with torch.no_grad():
        pixels = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return reference(pixel_values=pixels).logits.numpy()


def test_transformers_checkpoint_matches_reference(tmp_path):
    if torch is None:
        pytest.skip("transformers needs torch to build the reference model")
    reference, path = _transformers_vit(tmp_path)
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    model = keras_vit.VisionTransformer(**TINY, weights=path)
    np.testing.assert_allclose(to_numpy(model(images)), _transformers_logits(reference, images), atol=1e-4)


def test_transformers_4_key_names(tmp_path):
    """Published hub checkpoints carry the transformers-4 names; both layouts load the same."""
    if torch is None:
        pytest.skip("transformers needs torch to build the reference model")
    reference, _ = _transformers_vit(tmp_path)
    renames = {
        "layers.": "encoder.layer.", "attention.q_proj": "attention.attention.query",
        "attention.k_proj": "attention.attention.key", "attention.v_proj": "attention.attention.value",
        "attention.o_proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
    }
    tensors = {}
    for key, value in reference.state_dict().items():
        for new, old in renames.items():
            key = key.replace(new, old)
        tensors[key] = value.numpy()
    path = str(tmp_path / "v4.safetensors")
    from safetensors.numpy import save_file

    save_file(tensors, path)
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    model = keras_vit.VisionTransformer(**TINY, weights=path)
    np.testing.assert_allclose(to_numpy(model(images)), _transformers_logits(reference, images), atol=1e-4)
