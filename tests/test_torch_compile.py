"""`model.compile(jit_compile=True)` on the PyTorch backend (Keras runs `torch.compile`): the whole
forward is one graph (no graph break) and the compiled predict equals eager."""

import keras
import numpy as np
import pytest

import keras_vit

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="jit_compile=True means torch.compile on the PyTorch backend only"
)

IMAGES = np.random.default_rng(0).uniform(0, 1, size=(2, 32, 32, 3)).astype("float32")


def tiny_vit():
    return keras_vit.VisionTransformer(image_size=32, patch_size=16, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32,
                                       num_classes=3, layer_norm_epsilon=1e-6)


def tiny_swin():
    return keras_vit.SwinTransformer(image_size=32, patch_size=4, window_size=4, hidden_dim=8, depths=(2,),
                                     num_heads=(1,), num_classes=3)


def test_swin_forward_is_one_graph():
    # Swin's relative-position index and shifted-window mask are NumPy constants: converted on every
    # call, dynamo would break the graph at each (it does not trace `ndarray.dtype`).
    import torch

    model = tiny_swin()
    images = keras.ops.convert_to_tensor(IMAGES)

    def forward(x):
        with torch.no_grad():
            return model(x, training=False)

    explanation = torch._dynamo.explain(forward)(images)  # traces only, compiles nothing
    assert explanation.graph_break_count == 0, [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_jit_compiled_vit_predict_is_one_graph_and_equals_eager():
    import torch

    model = tiny_vit()
    eager = model.predict_on_batch(IMAGES)
    model.compile(jit_compile=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # A torch tensor, as fit()'s data adapter feeds: a NumPy batch breaks the graph at Keras' input conversion.
    compiled = model.predict_on_batch(keras.ops.convert_to_tensor(IMAGES))
    np.testing.assert_allclose(compiled, eager, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch._dynamo.utils.counters["graph_break"]
