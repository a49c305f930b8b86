"""Swin: parity with timm, official and transformers checkpoints; sizes; training; errors."""

import os
import re

import keras
import numpy as np
import pytest

import keras_vit
from conftest import BACKEND, assert_xnnpack_runs_whole_graph, fixture_path, load_fixture, to_numpy
from keras_vit.models.swin.swin_layers import cyclic_shift, shifted_window_mask, window_merge, window_partition
from keras_vit.weights import WeightsMismatchError, read_checkpoint
from keras_vit.models.swin.convert_swin import resample_relative_position_bias_table

# The swin_tiny fixture's configuration (timm SwinTransformer(img 64, patch 4, window 4, dim 32, 2-2-2, 2-4-8)).
TINY = dict(image_size=64, patch_size=4, window_size=4, hidden_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))
TIMM_WEIGHTS = fixture_path("swin_tiny.safetensors")


def _timm_tensors():
    return read_checkpoint(TIMM_WEIGHTS)[1]


def test_timm_checkpoint_matches_reference_logits_and_stages():
    ref = load_fixture("swin_tiny")
    model = keras_vit.SwinTransformer(**TINY, num_classes=10, weights=TIMM_WEIGHTS)
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)
    backbone = keras_vit.SwinTransformer(**TINY, features_only=True, weights=TIMM_WEIGHTS)
    features = backbone(ref["input_nhwc"])
    assert sorted(features) == ["stride_16", "stride_4", "stride_8"]
    for i, stride in enumerate((4, 8, 16)):
        stage = to_numpy(features[f"stride_{stride}"]).transpose(0, 3, 1, 2)  # to the fixture's NCHW
        np.testing.assert_allclose(stage, ref[f"stage{i}_nchw"], atol=1e-4)


def _official_layout(tensors):
    """The timm fixture renamed to microsoft/Swin-Transformer's layout, with its saved buffers."""
    from keras_vit.models.swin.swin_layers import relative_position_index

    official = {}
    for key, value in tensors.items():
        key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        official[key.replace("head.fc.", "head.")] = value
    for key in list(official):
        if key.endswith("attn.relative_position_bias_table"):
            official[key.replace("bias_table", "index")] = relative_position_index((4, 4)).astype(np.int64)
        if key.endswith("blocks.1.norm1.weight") and key.startswith("layers.0."):
            official[key.replace("norm1.weight", "attn_mask")] = shifted_window_mask((16, 16), (4, 4), (2, 2))
    return official


def test_official_checkpoint_layout_matches_reference(tmp_path):
    torch = pytest.importorskip("torch")
    ref = load_fixture("swin_tiny")
    official = _official_layout(_timm_tensors())
    assert "layers.0.downsample.reduction.weight" in official and "head.weight" in official
    path = os.path.join(tmp_path, "swin_official.pth")
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official.items()}}, path)
    model = keras_vit.SwinTransformer(**TINY, num_classes=10, weights=path)
    np.testing.assert_allclose(to_numpy(model(ref["input_nhwc"])), ref["logits"], atol=1e-4)


def test_strict_loading_names_problems_and_leaves_model_unchanged():
    model = keras_vit.SwinTransformer(**TINY, num_classes=10)
    before = [v.numpy().copy() if hasattr(v, "numpy") else to_numpy(v) for v in model.weights]
    tensors = _timm_tensors()
    tensors.pop("layers.1.blocks.0.attn.qkv.bias")
    tensors["layers.9.extra.weight"] = np.zeros(3, "float32")
    from keras_vit.models.swin.convert_swin import convert_swin

    with pytest.raises(WeightsMismatchError, match=r"qkv\.bias[\s\S]*layers\.9\.extra\.weight|layers\.9[\s\S]*qkv"):
        convert_swin(model, tensors)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(to_numpy(variable), value)


def _random_transformers_swin(torch, **config):
    """A small SwinForImageClassification with every parameter random (no unit scales, no zero biases)."""
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    model = SwinForImageClassification(SwinConfig(num_channels=3, **config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 1.0 if "relative_position_bias_table" in name else 0.1
            parameter.copy_(torch.randn_like(parameter) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def _compare_with_transformers(torch, tmp_path, keras_config, hf_config, rename=None):
    from safetensors.torch import save_file

    hf_model = _random_transformers_swin(torch, **hf_config)
    state = {k: v.contiguous() for k, v in hf_model.state_dict().items()}
    if rename is not None:
        state = rename(state)
    path = os.path.join(tmp_path, "swin_hf.safetensors")
    save_file(state, path)
    size = hf_config["image_size"]
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        expected = hf_model(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).logits.numpy()
    model = keras_vit.SwinTransformer(**keras_config, weights=path)
    np.testing.assert_allclose(to_numpy(model(images)), expected, atol=1e-4)


HF_TINY = dict(image_size=64, patch_size=4, window_size=4, embed_dim=32, depths=[2, 2, 2], num_heads=[2, 4, 8], num_labels=10)


def test_transformers_checkpoint_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    _compare_with_transformers(torch, tmp_path, dict(TINY, num_classes=10), HF_TINY)


def _transformers4_names(state):
    """transformers 5 names -> the transformers-4 names of the hub's Swin files (with the index buffers)."""
    from keras_vit.models.swin.swin_layers import relative_position_index

    renamed = {}
    for key, value in state.items():
        key = key.replace("attention.relative_position_bias.relative_position_bias_table", "attention.self.relative_position_bias_table")
        for new, old in (("q_proj", "self.query"), ("k_proj", "self.key"), ("v_proj", "self.value"), ("o_proj", "output.dense")):
            key = key.replace(f"attention.{new}.", f"attention.{old}.")
        key = key.replace("mlp.fc1.", "intermediate.dense.").replace("mlp.fc2.", "output.dense.")
        renamed[key] = value
        if key.endswith("relative_position_bias_table"):
            index = relative_position_index((4, 4)).astype(np.int64)
            renamed[key.replace("bias_table", "index")] = __import__("torch").from_numpy(index)
    return renamed


def test_transformers4_hub_names_load(tmp_path):
    torch = pytest.importorskip("torch")
    _compare_with_transformers(torch, tmp_path, dict(TINY, num_classes=10), HF_TINY, rename=_transformers4_names)


def test_maps_not_a_multiple_of_the_window_are_padded_like_the_reference(tmp_path):
    # Window 5 on 12x12 and 6x6 maps: both stages pad (to 15 and 10) and crop back. One block per
    # stage, so there is no shift, where transformers (pad, then roll) and timm (roll, then pad) agree.
    torch = pytest.importorskip("torch")
    hf = dict(image_size=48, patch_size=4, window_size=5, embed_dim=16, depths=[1, 1], num_heads=[2, 4], num_labels=3)
    keras_config = dict(image_size=48, patch_size=4, window_size=5, hidden_dim=16, depths=(1, 1), num_heads=(2, 4), num_classes=3)
    _compare_with_transformers(torch, tmp_path, keras_config, hf)


def test_bias_table_resampling_follows_timm():
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    table = rng.normal(size=(13 * 13, 3)).astype("float32")  # window 7
    resized = resample_relative_position_bias_table(table, (12, 12))
    assert resized.shape == (23 * 23, 3)
    # timm: source offsets on BEiT's geometric progression, linear interpolation, clamped at the ends.
    q_lo, q_hi = 1.01, 1.5
    while q_hi - q_lo > 1e-6:
        q = (q_lo + q_hi) / 2
        q_hi, q_lo = (q, q_lo) if (1 - q**6) / (1 - q) > 11 else (q_hi, q)
    half = np.cumsum([1.0] + [q ** (i + 1) for i in range(5)])
    source = np.concatenate([-half[::-1], [0.0], half])
    targets = np.clip(np.arange(-11, 12, dtype="float64"), source[0], source[-1])
    grid_y, grid_x = np.meshgrid(targets, targets, indexing="ij")
    for head in range(3):
        f = scipy_interpolate.RegularGridInterpolator((source, source), table[:, head].reshape(13, 13).astype("float64"))
        expected = f(np.stack([grid_y, grid_x], -1)).reshape(-1)
        np.testing.assert_allclose(resized[:, head], expected, atol=1e-5)
    # Offsets 0 and +-1 sit on source points: those entries are copied.
    centre = resized.reshape(23, 23, 3)[10:13, 10:13]
    np.testing.assert_allclose(centre, table.reshape(13, 13, 3)[5:8, 5:8], atol=1e-6)
    assert resample_relative_position_bias_table(table, (7, 7)) is table


def test_checkpoint_loads_at_another_window_size():
    # The fixture (window 4) in a model with window 8: the first stage's 7x7 tables become 15x15.
    ref = load_fixture("swin_tiny")
    model = keras_vit.SwinTransformer(**dict(TINY, window_size=8), num_classes=10, weights=TIMM_WEIGHTS)
    table = to_numpy(model.get_layer("stage_0_block_0").attn.relative_position_bias_table)
    source = _timm_tensors()["layers.0.blocks.0.attn.relative_position_bias_table"]
    np.testing.assert_allclose(table, resample_relative_position_bias_table(source, (8, 8)), atol=1e-6)
    logits = to_numpy(model(ref["input_nhwc"]))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_parameter_counts_of_canonical_models():
    # Built in a StatelessScope that never initializes: every variable gets its shape but no values,
    # so even Swin-L builds in seconds on every backend. clear_session() then drops the shells.
    expected = [
        (keras_vit.SwinT, 224, 28_288_354),
        (keras_vit.SwinS, 224, 49_606_258),
        (keras_vit.SwinB, 224, 87_768_224),
        (keras_vit.SwinL, 224, 196_532_476),
        (keras_vit.SwinB, 384, 87_903_584),
        (keras_vit.SwinL, 384, 196_735_516),
    ]
    try:
        with keras.StatelessScope(initialize_variables=False):
            for builder, size, count in expected:
                model = builder(input_shape=(size, size, 3))
                assert model.count_params() == count, (builder.__name__, size)
                window = 12 if size == 384 else 7
                assert model.get_layer("stage_0_block_1").window_size == (window, window)
                assert model.get_layer("stage_3_block_1").shift_size == (0, 0)  # last stage: map == window
    finally:
        keras.utils.clear_session()


def test_any_size_divisible_by_32_and_backbone_outputs():
    try:
        with keras.StatelessScope(initialize_variables=False):
            backbone = keras_vit.SwinT(input_shape=(256, 160, 3), features_only=True)
            shapes = {k: tuple(v.shape) for k, v in backbone.output.items()}
            assert shapes == {
                "stride_4": (None, 64, 40, 96),
                "stride_8": (None, 32, 20, 192),
                "stride_16": (None, 16, 10, 384),
                "stride_32": (None, 8, 5, 768),
            }
            # 64 % 7 != 0: padded; the last stage (8x5) has a 7x5 window and shifts only the rows.
            assert backbone.get_layer("stage_0_block_0").padding == (6, 2)
            assert backbone.get_layer("stage_3_block_1").window_size == (7, 5)
            assert backbone.get_layer("stage_3_block_1").shift_size == (3, 0)
            # What a DETR-style detector takes: the last, stride-32 map of the backbone.
            last_stage = keras.Model(backbone.input, backbone.output["stride_32"])
            assert tuple(last_stage.output.shape) == (None, 8, 5, 768)
            features = keras_vit.SwinT(input_shape=(256, 160, 3), include_top=False, pooling=None)
            assert tuple(features.output.shape) == (None, 8, 5, 768)
    finally:
        keras.utils.clear_session()


def _numpy_shifted_window_attention(x, block):
    """timm's SwinTransformerBlock._attn written out in NumPy: roll, pad, attend per window, crop, roll back."""
    attn = block.attn
    weights = {
        name: to_numpy(variable).astype("float64")
        for name, variable in (("qkv/kernel", attn.qkv.kernel), ("qkv/bias", attn.qkv.bias),
                               ("proj/kernel", attn.proj.kernel), ("proj/bias", attn.proj.bias))
    }
    table = to_numpy(attn.relative_position_bias_table).astype("float64")
    (wh, ww), (sh, sw), (ph, pw) = block.window_size, block.shift_size, block.padding
    heads, head_dim = attn.num_heads, attn.head_dim
    x = np.roll(x.astype("float64"), (-sh, -sw), axis=(1, 2))
    x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    hp, wp = x.shape[1:3]
    # Regions of the padded map: rows/columns before the last window, in it before the shift, in the shift.
    rows = (np.arange(hp) >= hp - wh).astype(int) + (np.arange(hp) >= hp - sh)
    cols = (np.arange(wp) >= wp - ww).astype(int) + (np.arange(wp) >= wp - sw)
    regions = rows[:, None] * 3 + cols[None, :]
    ys, xs = np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    bias = table[(ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)]
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        for top in range(0, hp, wh):
            for left in range(0, wp, ww):
                tokens = x[b, top : top + wh, left : left + ww].reshape(wh * ww, -1)
                label = regions[top : top + wh, left : left + ww].reshape(-1)
                q, k, v = np.split(tokens @ weights["qkv/kernel"] + weights["qkv/bias"], 3, axis=-1)
                merged = []
                for h in range(heads):
                    part = slice(h * head_dim, (h + 1) * head_dim)
                    logits = q[:, part] @ k[:, part].T * head_dim**-0.5 + bias[:, :, h]
                    logits = logits + np.where(label[:, None] != label[None, :], -100.0, 0.0)
                    p = np.exp(logits - logits.max(-1, keepdims=True))
                    merged.append((p / p.sum(-1, keepdims=True)) @ v[:, part])
                window = np.concatenate(merged, -1) @ weights["proj/kernel"] + weights["proj/bias"]
                out[b, top : top + wh, left : left + ww] = window.reshape(wh, ww, -1)
    out = out[:, : out.shape[1] - ph, : out.shape[2] - pw]
    return np.roll(out, (sh, sw), axis=(1, 2))


def test_padded_shifted_window_attention_matches_a_plain_numpy_version():
    # A 9x12 map, window 4, shift 2: rolled, then padded to 12x12 (rows), masked by the regions of the
    # padded map, cropped, rolled back: timm's order. (Padding before the roll, as transformers does,
    # differs here by ~1.0, since the padding is larger than the shift.)
    x = np.random.default_rng(1).normal(size=(2, 9, 12, 8)).astype("float32")
    block = keras_vit.layers.SwinBlock(8, 2, (9, 12), window_size=4, shift_size=2)
    block.build(x.shape)
    assert block.padding == (3, 0) and block.shift_size == (2, 2) and block.attention_mask.shape == (9, 16, 16)
    table = block.attn.relative_position_bias_table
    table.assign(np.random.default_rng(2).normal(size=table.shape).astype("float32"))
    expected = _numpy_shifted_window_attention(x, block)
    np.testing.assert_allclose(to_numpy(block._window_attention(x, training=False)), expected, atol=1e-4)
    assert to_numpy(block(x)).shape == x.shape


def test_window_helpers_match_numpy():
    x = np.random.default_rng(1).normal(size=(2, 24, 24, 8)).astype("float32")
    np.testing.assert_array_equal(to_numpy(cyclic_shift(x, (-2, 3))), np.roll(x, (-2, 3), axis=(1, 2)))
    windows = window_partition(x, (4, 6))
    assert tuple(windows.shape) == (2 * 6 * 4, 24, 8)
    np.testing.assert_array_equal(to_numpy(windows)[5], x[0, 4:8, 6:12].reshape(24, 8))  # batch-major, row-major
    np.testing.assert_array_equal(to_numpy(window_merge(windows, (4, 6), 24, 24)), x)


def test_bad_configurations_fail_at_construction():
    cases = [
        (dict(TINY, window_size=32), "window_size 32 is larger than the first stage"),
        (dict(TINY, num_heads=(2, 4)), "different lengths"),
        (dict(TINY, num_heads=(2, 4, 6)), "not divisible by its 6 heads"),
        (dict(TINY, image_size=72), "not a multiple of 16"),
        (dict(TINY, image_size=(64, 40)), "width 40 is not a multiple of 16"),
    ]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            keras_vit.SwinTransformer(**config, num_classes=10)
    with pytest.raises(ValueError, match="not a multiple of 32"):
        keras_vit.SwinT(input_shape=(200, 200, 3))
    with pytest.raises(ValueError, match="unknown|Unknown weights"):
        keras_vit.SwinT(weights="swin_no_such_checkpoint")
    with pytest.raises(ValueError, match="not a Swin checkpoint"):
        keras_vit.SwinTransformer(**TINY, num_classes=10, weights=fixture_path("vit_tiny.safetensors"))


def test_published_weights_are_registered():
    names = keras_vit.weights.published_names("swin")
    assert "swin_tiny_patch4_window7_224.ms_in1k" in names
    assert "swin_large_patch4_window12_384.ms_in22k_ft_in1k" in names
    entry = keras_vit.weights.PUBLISHED_WEIGHTS["swin_base_patch4_window12_384.ms_in22k_ft_in1k"]
    assert entry["image_size"] == 384 and entry["mean"] == (0.485, 0.456, 0.406) and entry["std"] == (0.229, 0.224, 0.225)


def _toy_data(size=64, count=16):
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 2
    images = rng.normal(size=(count, size, size, 3)).astype("float32") * 0.5
    images[labels == 1, : size // 2] += 1.0  # a learnable difference between the two classes
    return images, labels


def test_fit_reduces_loss_with_seeded_drop_path():
    images, labels = _toy_data()
    model = keras_vit.SwinTransformer(**TINY, num_classes=2, drop_path_rate=0.2, seed=7)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, labels, batch_size=8, epochs=5, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_drop_path_is_seeded():
    # The model hands seed + k to block k; equal seeds give equal drop-path noise.
    with keras.StatelessScope(initialize_variables=False):
        model = keras_vit.SwinTransformer(**TINY, num_classes=2, drop_path_rate=0.2, seed=7)
    rates = [model.get_layer(f"stage_{i}_block_{j}").drop_path.rate for i in range(3) for j in range(2)]
    seeds = [model.get_layer(f"stage_{i}_block_{j}").drop_path.seed for i in range(3) for j in range(2)]
    keras.utils.clear_session()
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.2, 6), atol=1e-7)
    assert seeds == [7, 8, 9, 10, 11, 12]
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 16)).astype("float32")
    first = keras_vit.layers.SwinBlock(16, 2, (8, 8), window_size=4, shift_size=2, drop_path_rate=0.5, seed=3)
    second = keras_vit.layers.SwinBlock(16, 2, (8, 8), window_size=4, shift_size=2, drop_path_rate=0.5, seed=3)
    first.build(x.shape)
    second.build(x.shape)
    second.set_weights(first.get_weights())
    a, b = to_numpy(first(x, training=True)), to_numpy(second(x, training=True))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, to_numpy(first(x, training=False)), atol=1e-4)  # drop path did act


def test_mixed_precision_forward():
    ref = load_fixture("swin_tiny")
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras_vit.SwinTransformer(**TINY, num_classes=10, weights=TIMM_WEIGHTS)
    assert all(v.dtype == "float32" for v in model.weights)
    assert model.get_layer("stage_0_block_1").attn.compute_dtype == "bfloat16"
    logits = to_numpy(keras.ops.cast(model(ref["input_nhwc"]), "float32"))
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(logits, ref["logits"], atol=0.1 * np.abs(ref["logits"]).max())


def test_keras_file_round_trip(tmp_path):
    images = load_fixture("swin_tiny")["input_nhwc"]
    model = keras_vit.SwinTransformer(**TINY, num_classes=10, weights=TIMM_WEIGHTS, drop_path_rate=0.1, seed=1)
    path = os.path.join(tmp_path, "swin.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(restored(images)), to_numpy(model(images)))
    assert restored.get_layer("stage_0_block_1").get_config() == model.get_layer("stage_0_block_1").get_config()


def test_tflite_conversion_needs_builtin_ops_only(tmp_path):
    if BACKEND != "tensorflow":
        pytest.skip("TFLite conversion is done from the TensorFlow backend (the export module serves the others).")
    import tensorflow as tf

    images = load_fixture("swin_tiny")["input_nhwc"][:1]
    model = keras_vit.SwinTransformer(**TINY, num_classes=10, weights=TIMM_WEIGHTS)
    saved_model = os.path.join(tmp_path, "saved_model")
    model.export(saved_model, format="tf_saved_model", verbose=False,
                 input_signature=[keras.InputSpec(shape=(1, 64, 64, 3), dtype="float32")])
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails if any op needs Flex
    flatbuffer = converter.convert()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    # PatchMerging's 2x2 neighbours are a reshape and a transpose (stride-2 slices stayed outside XNNPACK).
    assert_xnnpack_runs_whole_graph(interpreter)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(logits, load_fixture("swin_tiny")["logits"][:1], atol=1e-4)
