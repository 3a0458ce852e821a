"""int16x8 kernels (int16 activations, int8 weights) against the tflite-micro interpreter, bit for bit.

Each single-op model is converted here with the converter's 16x8 mode, generated,
compiled with the host gcc under ASan/UBSan and run on seeded inputs (all -32768,
all 32767, then uniform over int16); every output byte must equal TFLM's.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, random_inputs, retype_only_op, set_quant
from conftest import require_tools, shared_model

from edgekit.aot.codegen import generate
from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check
from edgekit.errors import UnsupportedOpError

rng = np.random.default_rng(16)


def _w(*shape, decades: float = 0.0) -> tf.Tensor:
    w = rng.normal(size=shape).astype(np.float32) * 0.3
    if decades:
        w *= np.logspace(0, decades, shape[-1]).astype(np.float32)
    return tf.constant(w)


def _conv(cin, oc, k, stride=1, padding="SAME", dil=1, act=None, decades=0.0):
    w, b = _w(k, k, cin, oc, decades=decades), _w(oc)
    return lambda x: (act or tf.identity)(tf.nn.conv2d(x, w, stride, padding, dilations=dil) + b)


def _dw(cin, dm, k, stride=1, padding="SAME", act=None):
    w, b = _w(k, k, cin, dm), _w(cin * dm)
    return lambda x: (act or tf.identity)(tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding) + b)


def _fc(depth, units, act=None, decades=0.0):
    w, b = _w(depth, units, decades=decades), _w(units)
    return lambda x: (act or tf.identity)(tf.matmul(x, w) + b)


CASES = {
    # name: (fn, input shape, ops that must appear, converter kwargs)
    "conv_same_3x3_relu": (_conv(3, 5, 3, act=tf.nn.relu), [1, 9, 9, 3], ["CONV_2D"], {}),
    "conv_valid_4x4_stride2_4_decades": (_conv(4, 6, 4, 2, "VALID", decades=4), [1, 12, 11, 4], ["CONV_2D"], {}),
    "conv_dilation2_relu6": (_conv(2, 3, 3, dil=2, act=tf.nn.relu6), [1, 9, 9, 2], ["CONV_2D"], {}),
    "conv_grouped_2_groups": (lambda x: tf.nn.conv2d(x, _w(3, 3, 2, 6), 1, "SAME"), [1, 6, 6, 4], ["CONV_2D"], {}),
    "conv_int32_bias": (_conv(3, 4, 3), [1, 7, 7, 3], ["CONV_2D"], {"int32_bias": True}),
    "dw_3x3_same_relu": (_dw(4, 1, 3, act=tf.nn.relu), [1, 9, 9, 4], ["DEPTHWISE_CONV_2D"], {}),
    "dw_4x4_stride2_dm2_valid": (_dw(3, 2, 4, 2, "VALID"), [1, 10, 9, 3], ["DEPTHWISE_CONV_2D"], {}),
    "fc_per_channel_relu_3_decades": (_fc(20, 7, tf.nn.relu, decades=3), [1, 20], ["FULLY_CONNECTED"], {}),
    "fc_per_tensor_3d_input": (_fc(12, 5), [1, 3, 12], ["FULLY_CONNECTED"], {"per_tensor_dense": True}),
    "fc_int32_bias": (_fc(16, 6), [1, 16], ["FULLY_CONNECTED"], {"int32_bias": True}),
    "avgpool_3x3_s2_same": (lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"), [1, 9, 9, 3], ["AVERAGE_POOL_2D"], {}),
    "maxpool_3x3_s2_same": (lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"), [1, 9, 9, 3], ["MAX_POOL_2D"], {}),
    "add_residual_relu": (lambda x: tf.nn.relu(_conv(4, 4, 3)(x) + x), [1, 6, 6, 4], ["CONV_2D", "ADD"], {}),
    "add_broadcast_const_1000x": (lambda x: x + tf.constant(np.linspace(-900, 1000, 3, dtype=np.float32)), [1, 4, 5, 3], ["ADD"], {}),
    "sub_input_minus_relu": (lambda x: x - tf.nn.relu(_conv(3, 3, 3)(x)), [1, 5, 5, 3], ["SUB"], {}),
    "mul_square": (lambda x: x * x, [1, 40], ["MUL"], {}),
    "mul_broadcast_vector": (lambda x: x * tf.constant(np.linspace(-2, 3, 4, dtype=np.float32)), [1, 3, 5, 4], ["MUL"], {}),
    "softmax_300_wide": (tf.nn.softmax, [1, 300], ["SOFTMAX"], {"low": -12.0, "high": 12.0}),
    "softmax_rows_beta": (lambda x: tf.nn.softmax(x * 0.7), [1, 4, 10], ["SOFTMAX"], {"low": -3.0, "high": 3.0}),
    "logistic_wide": (tf.sigmoid, [1, 64], ["LOGISTIC"], {"low": -12.0, "high": 12.0}),
    "logistic_narrow": (tf.sigmoid, [1, 64], ["LOGISTIC"], {"low": -0.5, "high": 0.5}),
    "float_io_quantize_dequantize": (_conv(2, 3, 3), [1, 6, 6, 2], ["QUANTIZE", "DEQUANTIZE"], {"float_io": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_int16x8_kernel_bit_exact_with_tflm(case, tmp_path):
    require_tools("gcc")
    fn, shape, ops, kw = CASES[case]
    tfl = convert(fn, shape, int16x8=True, **kw)
    g = parse(tfl)
    names = [op.name for op in g.ops]
    for op in ops:
        assert op in names, f"the converter did not emit {op}: {names}"
    for op in g.ops:  # every op computes on int16 activations
        if op.name not in ("QUANTIZE", "DEQUANTIZE"):
            assert g.t(op.outputs[0]).dtype == "int16", (op.name, g.t(op.outputs[0]).dtype)
    r = host_check(tfl, random_inputs(tfl, 24, seed=3), tmp_path)
    assert r.bit_exact_fraction == 1.0, (names, r.to_dict())
    assert r.outputs.dtype == (np.float32 if kw.get("float_io") else np.int16)
    assert np.unique(r.outputs).size > 2  # the inputs reached more than the output's two extremes
    if ops[0] in ("CONV_2D", "FULLY_CONNECTED"):  # TFLM accumulates in the bias's type
        bias = g.t(next(op for op in g.ops if op.name == ops[0]).inputs[2])
        assert bias.dtype == ("int32" if kw.get("int32_bias") else "int64")
        code = next(tmp_path.rglob("edgekit_model.c")).read_text()
        assert f".acc32 = {int(bias.dtype == 'int32')}" in code


@pytest.mark.parametrize("src,dst,factor", [("int16", "int8", 300.0), ("int8", "int16", 1 / 300.0), ("int16", "int16", 0.37)])
def test_quantize_requantizes_between_int8_and_int16(src, dst, factor, tmp_path):
    require_tools("gcc")
    # a one-op RELU model retyped to QUANTIZE, its output given another type and scale
    tfl = retype_only_op(convert(tf.nn.relu, [1, 50], int16x8=src == "int16"), "QUANTIZE")
    g = parse(tfl)
    x, y = g.t(g.inputs[0]), g.t(g.outputs[0])
    zp = -5 if dst == "int8" else 0
    tfl = set_quant(tfl, y.index, scale=[float(x.s) * factor], zero_point=[zp], dtype=dst)
    r = host_check(tfl, random_inputs(tfl, 24, seed=4), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    assert r.outputs.dtype == np.dtype(dst) and np.unique(r.outputs).size > 10
    assert "ek_requantize_s16" in next(tmp_path.rglob("edgekit_model.c")).read_text()


def test_logistic_power_of_two_input_scale(tmp_path):
    require_tools("gcc")
    tfl = convert(tf.sigmoid, [1, 64], int16x8=True, low=-6.0, high=6.0)
    g = parse(tfl)
    tfl = set_quant(tfl, g.ops[0].inputs[0], scale=[2.0**-12])  # TFLM's power-of-two path: multiplier 3, no shift
    r = host_check(tfl, random_inputs(tfl, 24, seed=5), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    assert "ek_logistic_s16(64, 3, 0," in next(tmp_path.rglob("edgekit_model.c")).read_text()


def test_two_inputs_two_outputs_int16_bit_exact_with_tflm(tmp_path):
    """Several int16 tensors: one pointer each in the generated API, every output byte equal to TFLM's."""
    require_tools("gcc")
    wa, ba, wb, bb = _w(8, 3), _w(3), _w(6, 2), _w(2)
    fn = tf.function(lambda a, b: (tf.nn.relu(tf.matmul(a, wa) + ba), tf.matmul(b, wb) + bb))
    conc = fn.get_concrete_function(tf.TensorSpec([1, 8], tf.float32), tf.TensorSpec([1, 6], tf.float32))
    data = np.random.default_rng(6)

    def rep():
        for _ in range(50):
            yield [data.uniform(-1, 1, (1, 8)).astype(np.float32), data.uniform(-1, 1, (1, 6)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int16
    tfl = conv.convert()
    g = parse(tfl)
    assert [g.t(t).dtype for t in (*g.inputs, *g.outputs)] == ["int16"] * 4
    r = host_check(tfl, random_inputs(tfl, 24, seed=6), tmp_path)
    assert r.bit_exact_fraction == 1.0 and r.n_inputs == 24, r.to_dict()
    assert (r.codegen.input_bytes, r.codegen.output_bytes) == (2 * (8 + 6), 2 * (3 + 2))
    header = next(tmp_path.rglob("edgekit_model.h")).read_text()
    assert "#define EDGEKIT_INPUT_COUNT 2" in header and "#define EDGEKIT_OUTPUT1_BYTES 4" in header


def test_refusals_name_the_op_and_the_reason(tmp_path):
    tfl = convert(_fc(600, 4), [1, 600], int16x8=True, int32_bias=True)
    g = parse(tfl)
    fc = next(op for op in g.ops if op.name == "FULLY_CONNECTED")
    w = g.t(fc.inputs[1])
    # every weight 127: 600 * 127 * 32768 leaves the int32 accumulator TFLM uses with an int32 bias
    big = set_quant(tfl, w.index, data=np.full(w.shape, 127, np.int8))
    with pytest.raises(UnsupportedOpError, match=r"op \d+ FULLY_CONNECTED: an output channel's sum can reach 2,\d{3},\d{3},\d{3}, beyond int32"):
        generate(big, tmp_path / "a")
    generate(tfl, tmp_path / "ok")  # the trained weights stay far below it
    tiny = convert(_fc(8, 4), [1, 8], int16x8=True)  # int64 bias: TFLM's 64-bit rescale allows shifts up to 7
    fc8 = next(op for op in parse(tiny).ops if op.name == "FULLY_CONNECTED")
    tiny = set_quant(tiny, fc8.outputs[0], scale=[float(parse(tiny).t(fc8.outputs[0]).s) * 2.0**-20])
    with pytest.raises(UnsupportedOpError, match=r"FULLY_CONNECTED: requantization shift \d+ is beyond the 64-bit rescale's 7"):
        generate(tiny, tmp_path / "c")
    odd = set_quant(tfl, fc.outputs[0], zero_point=[3])
    with pytest.raises(UnsupportedOpError, match=r"FULLY_CONNECTED: int16 tensor '.*' has zero point 3; TFLM requires 0"):
        generate(odd, tmp_path / "b")


@pytest.mark.shared_models
def test_resnet8_int16x8_bit_exact_and_arena_at_most_twice_int8(shared_models, tmp_path):
    """MLPerf Tiny's ResNet-8 (.h5) converted int16x8 on generated CIFAR-shaped calibration data."""
    require_tools("gcc")
    from edgekit.convert import convert_quantized
    from edgekit.data import Dataset
    from edgekit.load import load_model

    h5 = shared_model(shared_models, "mlperf_tiny/pretrainedResnet.h5")
    int8 = shared_model(shared_models, "mlperf_tiny/pretrainedResnet_quant.tflite")
    x = np.random.default_rng(0).random((32, 32, 32, 3), dtype=np.float32)  # in [0, 1)
    tfl = convert_quantized(load_model(h5), Dataset(x=x, y=None, path="generated"), "int16x8")
    r = host_check(tfl, random_inputs(tfl, 6, seed=8), tmp_path / "int16")
    assert {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(r.codegen.ops)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
    # int16 activations: each tensor twice its int8 size, so the planned arena at most twice int8's
    arena8 = generate(int8, tmp_path / "int8").arena_bytes
    assert arena8 < r.codegen.arena_bytes <= 2 * arena8


@pytest.mark.emulator
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_int16x8_dsp_paths_bit_exact_on_qemu(target, tmp_path):
    """On Cortex-M4 and M55 the int16 dot products use SMLALD (the host check runs the portable C): input depths
    of 1, 3, 6 and 13 (every tail of four), a dilated conv, an FC of depth 13."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    from edgekit.targets import get_target
    from edgekit.tflm_host import run_tflm
    from edgekit.toolchain.mcu_verify import run_on_emulator

    c1, c2, c3, c4 = _conv(1, 3, 3, act=tf.nn.relu), _conv(3, 6, 3), _conv(6, 13, 3, dil=2, act=tf.nn.relu), _conv(13, 4, 3, 2)
    fc1, fc2 = _fc(4 * 4 * 4, 13, tf.nn.relu), _fc(13, 5)

    def f(x):
        y = c4(c3(c2(c1(x))))
        return tf.nn.softmax(fc2(fc1(tf.reshape(y, [1, -1]))))

    tfl = convert(f, [1, 8, 8, 1], int16x8=True)
    x = random_inputs(tfl, 12, seed=6)
    raw, dev = run_on_emulator(tfl, get_target(target), x, tmp_path)
    ref = run_tflm(tfl, x).reshape(len(x), -1)
    out = raw.view(np.int16)
    assert out.shape == ref.shape and (out == ref).all(), f"{int((out != ref).sum())} of {out.size} outputs differ"
    assert dev.instructions_per_inference > 0
