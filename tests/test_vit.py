"""ViT: parity with timm, transformers and Google checkpoints; parameter counts; errors."""

import numpy as np
import pytest

import keras_vit
from conftest import fixture_path, load_fixture, to_numpy

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
