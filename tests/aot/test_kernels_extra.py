"""The decoder, activation and shape ops (TRANSPOSE_CONV, RESIZE_*, HARD_SWISH, LEAKY_RELU, TANH,
STRIDED_SLICE, TRANSPOSE, SPLIT, SPLIT_V) against the tflite-micro interpreter, bit for bit.

Each case is a tiny Keras model converted full-int8 by edgekit's own converter
(edgekit.convert.convert_int8, static batch 1), generated, compiled under ASan/UBSan
with -Wall -Wextra -Werror and run on 24 seeded inputs (all -128, all 127, then
uniform random); every output byte must equal TFLM's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from aot_models import random_inputs
from conftest import require_tools

from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check
from edgekit.errors import UnsupportedOpError


def keras_int8(layers, input_shape, *, low: float = -1.0, high: float = 1.0, seed: int = 0) -> bytes:
    """A Keras model of ``layers`` on ``input_shape`` (no batch axis), full-int8 through edgekit.convert."""
    import keras

    from edgekit.convert import convert_int8
    from edgekit.data import Dataset
    from edgekit.load import LoadedModel

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    out = inp
    for layer in layers:
        out = layer(out) if not isinstance(out, list) else layer(*out)
    model = keras.Model(inp, out)
    calib = np.random.default_rng(seed).uniform(low, high, size=(64, *input_shape)).astype(np.float32)
    loaded = LoadedModel("keras3", Path("tiny.keras"), model, input_shape=(1, *input_shape))
    return convert_int8(loaded, Dataset(calib, None, Path("calib.npz")))


def _cases():
    import keras
    import tensorflow as tf
    from keras import layers as L

    def lam(f):
        return L.Lambda(f)

    def concat_relu(parts):
        return keras.ops.concatenate([keras.ops.relu(p) for p in parts], axis=-1)

    return {
        # name: (layers, input shape, ops the converter must emit, calibration range)
        "tconv_s2_same_bias_relu": ([L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu",
                                                       bias_initializer="random_normal")], (5, 6, 3),
                                    ["TRANSPOSE_CONV"], 1.0),
        "tconv_s2_valid_no_bias": ([L.Conv2DTranspose(4, 3, strides=2, padding="valid", use_bias=False)], (4, 5, 2),
                                   ["TRANSPOSE_CONV"], 1.0),
        "tconv_s2_same_even_k_stride_1x2": ([L.Conv2DTranspose(3, (4, 2), strides=(1, 2), padding="same")], (4, 4, 6),
                                            ["TRANSPOSE_CONV"], 1.0),
        "resize_nearest_2x3": ([L.Resizing(6, 12, interpolation="nearest")], (3, 4, 5),
                                 ["RESIZE_NEAREST_NEIGHBOR"], 1.0),
        "resize_nearest_align_corners": ([lam(lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, [7, 5], align_corners=True))],
                                         (3, 4, 2), ["RESIZE_NEAREST_NEIGHBOR"], 1.0),
        "resize_nearest_down_half_pixel": ([lam(lambda x: tf.image.resize(x, [3, 2], "nearest"))], (7, 5, 3),
                                           ["RESIZE_NEAREST_NEIGHBOR"], 1.0),
        "upsample_bilinear_half_pixel": ([L.UpSampling2D(2, interpolation="bilinear")], (4, 5, 3),
                                         ["RESIZE_BILINEAR"], 1.0),
        "resize_bilinear_align_corners": ([lam(lambda x: tf.compat.v1.image.resize_bilinear(x, [9, 7], align_corners=True))],
                                          (4, 3, 2), ["RESIZE_BILINEAR"], 1.0),
        "resize_bilinear_legacy_down": ([lam(lambda x: tf.compat.v1.image.resize_bilinear(x, [3, 5], half_pixel_centers=False))],
                                        (5, 7, 2), ["RESIZE_BILINEAR"], 1.0),
        "hard_swish": ([L.Activation("hard_swish")], (50,), ["HARD_SWISH"], 5.0),
        "hard_swish_wide_range_left_shift": ([L.Activation("hard_swish")], (50,), ["HARD_SWISH"], 60.0),
        "leaky_relu_0.2": ([L.LeakyReLU(negative_slope=0.2)], (50,), ["LEAKY_RELU"], 3.0),
        "tanh": ([L.Activation("tanh")], (50,), ["TANH"], 4.0),
        "strided_slice_negative_stride": ([lam(lambda x: x[:, 1:6:2, ::-1, 1:])], (7, 5, 3), ["STRIDED_SLICE"], 1.0),
        "strided_slice_shrink_axis": ([lam(lambda x: x[:, 2, -4:-1, :])], (6, 6, 3), ["STRIDED_SLICE"], 1.0),
        "transpose_permute": ([L.Permute((3, 1, 2))], (3, 4, 5), ["TRANSPOSE"], 1.0),
        "split_3_relu": ([lam(lambda x: concat_relu(tf.split(x, 3, axis=1)))], (6, 4), ["SPLIT"], 1.0),
        "split_v_1_2_3": ([lam(lambda x: concat_relu(tf.split(x, [1, 2, 3], axis=-1)))], (4, 6), ["SPLIT_V"], 1.0),
    }


CASE_NAMES = sorted(_cases())


@pytest.mark.parametrize("case", CASE_NAMES)
def test_extra_op_bit_exact_with_tflm(case, tmp_path):
    require_tools("gcc")
    layers, shape, ops, rng = _cases()[case]
    tfl = keras_int8(layers, shape, low=-rng, high=rng)
    names = [op.name for op in parse(tfl).ops]
    for op in ops:
        assert op in names, f"the converter did not emit {op}: {names}"
    if case == "tconv_s2_same_bias_relu":  # a zero bias is dropped by the converter: this one must reach the kernel
        assert len(parse(tfl).ops[0].inputs) == 4 and parse(tfl).ops[0].inputs[3] >= 0
    r = host_check(tfl, random_inputs(tfl, 24, seed=3), tmp_path)
    assert r.bit_exact_fraction == 1.0, (names, r.to_dict())
    assert len(np.unique(r.reference)) > 3  # the outputs really vary


@pytest.mark.parametrize("case", ["hard_swish", "leaky_relu_0.2", "tanh", "tconv_s2_same_bias_relu", "upsample_bilinear_half_pixel"])
def test_power_of_two_scales_rounding_ties(case, tmp_path):
    """Every scale a power of two: multipliers are exactly 2^30 and many results land on .5 ties."""
    require_tools("gcc")
    from aot_models import pow2_scales

    layers, shape, _, rng = _cases()[case]
    tfl = pow2_scales(keras_int8(layers, shape, low=-rng, high=rng))
    r = host_check(tfl, random_inputs(tfl, 24, seed=7), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()


@pytest.fixture(scope="module")
def shape_models() -> dict[str, bytes]:
    """One converted model per shape op, for the refusal tests (converted once)."""
    cases = _cases()
    return {k: keras_int8(cases[k][0], cases[k][1]) for k in
            ("transpose_permute", "split_v_1_2_3", "strided_slice_shrink_axis", "leaky_relu_0.2", "tconv_s2_valid_no_bias",
             "tconv_s2_same_bias_relu")}


def _const_input(tfl: bytes, op_name: str, k: int) -> int:
    g = parse(tfl)
    return next(op.inputs[k] for op in g.ops if op.name == op_name)


@pytest.mark.parametrize("case, op, k, data, why", [
    ("transpose_permute", "TRANSPOSE", 1, [0, 3, 3, 1], "is not a permutation"),
    ("split_v_1_2_3", "SPLIT_V", 1, [1, 2, 2], "do not tile an axis of 6"),
    ("split_v_1_2_3", "SPLIT_V", 2, [5], "is not one dimension of rank 3"),
    ("strided_slice_shrink_axis", "STRIDED_SLICE", 1, [0, 9, -4, 0], "shrunk axis 1 index 9 is outside 0..5"),
    ("strided_slice_shrink_axis", "STRIDED_SLICE", 3, [1, 1, 0, 1], "stride 0 on axis 2"),
    ("strided_slice_shrink_axis", "STRIDED_SLICE", 2, [1, 3, 6, 3], "is not the [1, 4, 3] the slice gives"),
    ("tconv_s2_valid_no_bias", "TRANSPOSE_CONV", 0, [1, 11, 11, 4], "is not the output's [1, 9, 11, 4]"),
    ("tconv_s2_same_bias_relu", "TRANSPOSE_CONV", 3, [2**31 - 1] * 5, "beyond int32: its accumulator would overflow"),
])
def test_inconsistent_parameters_refused_by_name(shape_models, case, op, k, data, why, tmp_path):
    """Edited constants that would send a kernel outside its arrays: refused at generation time, one line."""
    from aot_models import set_quant

    from edgekit.aot.codegen import generate

    tfl = shape_models[case]
    idx = _const_input(tfl, op, k)
    bad = set_quant(tfl, idx, data=np.asarray(data, dtype=np.int32))
    with pytest.raises(UnsupportedOpError, match=f"op \\d+ {op}: .*{re.escape(why)}") as err:
        generate(bad, tmp_path)
    assert "\n" not in err.value.one_line()
    assert not list(tmp_path.glob("*.c"))  # nothing half-written


def test_negative_leaky_alpha_refused(shape_models, tmp_path):
    from ai_edge_litert import schema_py_generated as s
    import flatbuffers

    from edgekit.aot.codegen import generate

    m = s.ModelT.InitFromPackedBuf(shape_models["leaky_relu_0.2"], 0)
    m.subgraphs[0].operators[0].builtinOptions.alpha = -0.5
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(UnsupportedOpError, match="LEAKY_RELU: alpha -0.5 is negative"):
        generate(bytes(b.Output()), tmp_path)


def test_inspect_reports_the_new_ops_as_supported(shape_models, tmp_path):
    from edgekit.cli.inspect_cmd import inspect_tflite

    f = tmp_path / "tconv.tflite"
    f.write_bytes(shape_models["tconv_s2_valid_no_bias"])
    d = inspect_tflite(f)
    assert "TRANSPOSE_CONV" in d["ops"] and d["aot"] == {"ops_supported": True, "missing_ops": []}


@pytest.mark.emulator
def test_new_ops_bit_exact_on_qemu_cortex_m4(tmp_path):
    """Every new op in one model, cross-compiled for the Cortex-M4 (ek_dot's DSP path under TRANSPOSE_CONV)
    and run on QEMU mps2-an386: every output byte equals the tflite-micro interpreter's."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    import keras
    import tensorflow as tf
    from keras import layers as L

    from edgekit.targets import get_target
    from edgekit.tflm_host import run_tflm
    from edgekit.toolchain.mcu_verify import run_on_emulator

    def parts(x):
        a, b, c = tf.split(x, [2, 3, 3], axis=-1)
        return keras.ops.concatenate([tf.nn.tanh(a), tf.nn.leaky_relu(b, 0.3), c], axis=-1)

    tfl = keras_int8([
        L.Conv2DTranspose(8, 3, strides=2, padding="same"), L.Activation("hard_swish"),
        L.Lambda(parts), L.Lambda(lambda x: tf.image.resize(x, [9, 11], "nearest")),
        L.Lambda(lambda x: x[:, 1::2, ::-1, :]), L.Permute((3, 1, 2)),
        L.Lambda(lambda x: keras.ops.concatenate([keras.ops.relu(p) for p in tf.split(x, 2, axis=1)], axis=-1)),
        L.Lambda(lambda x: tf.compat.v1.image.resize_bilinear(x, [6, 20], align_corners=True)),
    ], (3, 4, 5), low=-2.0, high=2.0)
    names = {op.name for op in parse(tfl).ops}
    want = {"TRANSPOSE_CONV", "HARD_SWISH", "SPLIT_V", "TANH", "LEAKY_RELU", "RESIZE_NEAREST_NEIGHBOR", "STRIDED_SLICE",
            "TRANSPOSE", "SPLIT", "RESIZE_BILINEAR"}
    assert want <= names, names
    x = random_inputs(tfl, 12, seed=6)
    out, dev = run_on_emulator(tfl, get_target("cortex-m4"), x.reshape(len(x), -1), tmp_path)
    ref = run_tflm(tfl, x).reshape(out.shape)
    assert dev.machine == "mps2-an386"
    assert (out == ref).all(), f"{int((out != ref).sum())} of {out.size} bytes differ"
    assert len(np.unique(ref)) > 20


def test_planner_gives_each_split_output_its_own_bytes():
    """A SPLIT step writes three tensors: each gets arena bytes no other live tensor shares, and an
    output read only at the end stays intact while the other parts are consumed."""
    from edgekit.aot.planner import Step, plan_memory

    # 0 -> split -> (1, 2, 3); 1 -> 4; (4, 2) -> 5; (5, 3) -> 6 (model output)
    steps = [Step((0,), 1, also_writes=(2, 3)), Step((1,), 4, inplace=(1,)), Step((4, 2), 5), Step((5, 3), 6)]
    sizes = {0: 96, 1: 32, 2: 32, 3: 32, 4: 32, 5: 32, 6: 32}
    plan = plan_memory(steps, sizes, 0, 6)
    spans = {t: (plan.location(t)[1], plan.location(t)[1] + sizes[t]) for t in (1, 2, 3, 4, 5)}
    assert all(plan.location(t)[0] == "arena" for t in spans)
    for a, b in ((1, 2), (1, 3), (2, 3), (4, 2), (4, 3), (5, 3)):  # alive together
        (a0, a1), (b0, b1) = spans[a], spans[b]
        assert a1 <= b0 or b1 <= a0, (a, b, spans)
    assert plan.buffers[plan.tensor_buffer[3]].last == 3  # the third part lives until the last step reads it
