"""One vocabulary across families: `hidden_dim`, `mlp_dim` and `num_heads`; old names still work."""

import pytest

import keras_vit

SWIN = dict(image_size=32, patch_size=4, window_size=4, depths=(1, 1), num_heads=(2, 4), num_classes=3)
TNT = dict(image_size=32, patch_size=16, hidden_dim=32, inner_dim=8, depth=1, num_classes=3)


def _shapes(model):
    return [tuple(w.shape) for w in model.weights]


def test_swin_embed_dim_is_hidden_dim_with_a_warning():
    new = keras_vit.SwinTransformer(hidden_dim=16, **SWIN)
    with pytest.warns(DeprecationWarning, match="`embed_dim` is now called `hidden_dim`"):
        old = keras_vit.SwinTransformer(embed_dim=16, **SWIN)
    assert _shapes(old) == _shapes(new)
    assert new.get_layer("stage_1_downsample").output_dim == 32


def test_tnt_old_head_and_mlp_names_build_the_same_model():
    new = keras_vit.TNT(inner_num_heads=2, num_heads=4, mlp_dim=64, inner_mlp_dim=16, **TNT)
    with pytest.warns(DeprecationWarning, match="`num_heads_outer` is now called `num_heads`"):
        old = keras_vit.TNT(num_heads_inner=2, num_heads_outer=4, mlp_ratio=2.0, inner_mlp_ratio=2.0, **TNT)
    assert _shapes(old) == _shapes(new)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: keras_vit.SwinTransformer(hidden_dim=16, embed_dim=16, **SWIN), "pass `hidden_dim` only"),
        (lambda: keras_vit.SwinTransformer(hidden_dim=16, width=16, **SWIN), "unexpected keyword argument 'width'"),
        (lambda: keras_vit.TNT(num_heads=4, num_heads_outer=4, **TNT), "pass `num_heads` only"),
    ],
)
def test_old_and_new_name_together_or_unknown_names_are_refused(build, message):
    with pytest.raises(TypeError, match=message):
        build()
