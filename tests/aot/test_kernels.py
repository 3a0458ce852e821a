"""Every kernel against the tflite-micro interpreter on single-op int8 models, bit for bit.

Each model is built here with the TF 2.21 converter (spec §13), generated,
compiled with the host gcc and run on seeded inputs (all -128, all 127, then
uniform random); every output byte must equal TFLM's.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from aot_models import convert, edit_scales, op_output, random_inputs, retype_only_op
from conftest import require_tools

from edgekit.aot.graph import parse
from edgekit.aot.hostcheck import host_check

rng = np.random.default_rng(42)


def _w(*shape, decades: float = 0.0) -> tf.Tensor:
    """Seeded weights; ``decades`` spreads the output channels' magnitudes (per-channel scales)."""
    w = rng.normal(size=shape).astype(np.float32) * 0.3
    if decades:
        w *= np.logspace(0, decades, shape[-1]).astype(np.float32)
    return tf.constant(w)


def _conv(shape, oc, k, stride=1, padding="SAME", dil=1, act=None, decades=0.0):
    w, b = _w(k if isinstance(k, int) else k[0], k if isinstance(k, int) else k[1], shape[-1], oc, decades=decades), _w(oc)
    def f(x):
        y = tf.nn.conv2d(x, w, stride, padding, dilations=dil) + b
        return act(y) if act else y
    return f


def _dw(shape, dm, k, stride=1, padding="SAME", dil=1, act=None):
    w, b = _w(k, k, shape[-1], dm), _w(shape[-1] * dm)
    def f(x):
        y = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding, dilations=[dil, dil]) + b
        return act(y) if act else y
    return f


def _fc(depth, units, act=None, decades=0.0):
    w, b = _w(depth, units, decades=decades), _w(units)
    def f(x):
        y = tf.matmul(x, w) + b
        return act(y) if act else y
    return f


CASES = {
    # name: (fn, input shape, ops that must appear, converter kwargs)
    "conv_same_3x3_relu": (_conv([1, 9, 9, 3], 5, 3, act=tf.nn.relu), [1, 9, 9, 3], ["CONV_2D"], {}),
    "conv_valid_even_k_stride2_nondividing": (_conv([1, 10, 11, 4], 6, 4, 2, "VALID"), [1, 10, 11, 4], ["CONV_2D"], {}),
    "conv_same_even_k_asym_pad_relu6": (_conv([1, 7, 7, 2], 4, 4, act=tf.nn.relu6), [1, 7, 7, 2], ["CONV_2D"], {}),
    "conv_dilation2_same": (_conv([1, 9, 9, 2], 3, 3, dil=2), [1, 9, 9, 2], ["CONV_2D"], {}),
    "conv_stride2_odd_input_4_decades": (_conv([1, 9, 9, 3], 8, 3, 2, decades=4), [1, 9, 9, 3], ["CONV_2D"], {}),
    "conv_batch2_1x3": (_conv([2, 5, 6, 3], 4, (1, 3)), [2, 5, 6, 3], ["CONV_2D"], {}),
    "conv_grouped_2_groups": (lambda x: tf.nn.conv2d(x, _w(3, 3, 2, 6), 1, "SAME"), [1, 6, 6, 4], ["CONV_2D"], {}),
    "dw_3x3_same_relu": (_dw([1, 9, 9, 4], 1, 3, act=tf.nn.relu), [1, 9, 9, 4], ["DEPTHWISE_CONV_2D"], {}),
    "dw_even_k_stride2_dm2": (_dw([1, 10, 9, 3], 2, 4, 2), [1, 10, 9, 3], ["DEPTHWISE_CONV_2D"], {}),
    "dw_dilation2_valid": (_dw([1, 11, 11, 3], 1, 3, 1, "VALID", dil=2), [1, 11, 11, 3], ["DEPTHWISE_CONV_2D"], {}),
    "fc_per_channel_relu": (_fc(20, 7, tf.nn.relu, decades=3), [1, 20], ["FULLY_CONNECTED"], {}),
    "fc_per_tensor": (_fc(33, 9), [1, 33], ["FULLY_CONNECTED"], {"per_tensor_dense": True}),
    "fc_3d_input": (_fc(12, 5), [1, 3, 12], ["FULLY_CONNECTED"], {}),
    "avgpool_3x3_s2_same": (lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"), [1, 9, 9, 3], ["AVERAGE_POOL_2D"], {}),
    "avgpool_2x2_valid": (lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"), [1, 7, 8, 2], ["AVERAGE_POOL_2D"], {}),
    "maxpool_3x3_s2_same": (lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"), [1, 9, 9, 3], ["MAX_POOL_2D"], {}),
    "maxpool_2x2_valid_relu": (lambda x: tf.nn.relu(tf.nn.max_pool2d(x, 2, 2, "VALID")), [1, 6, 6, 2], ["MAX_POOL_2D"], {}),
    "add_broadcast_const_1000x": (lambda x: x + tf.constant(np.linspace(-900, 1000, 3, dtype=np.float32)), [1, 4, 5, 3], ["ADD"], {}),
    "add_conv_residual_relu": (lambda x: tf.nn.relu(_conv([1, 6, 6, 4], 4, 3)(x) + x), [1, 6, 6, 4], ["CONV_2D", "ADD"], {}),
    "sub_broadcast_const": (lambda x: x - tf.constant(np.linspace(-3, 2, 5, dtype=np.float32)), [1, 4, 5], ["SUB"], {}),
    "sub_conv_minus_input_relu": (lambda x: tf.nn.relu(_conv([1, 5, 5, 3], 3, 3)(x) - x), [1, 5, 5, 3], ["SUB"], {}),
    "mul_broadcast_vector": (lambda x: x * tf.constant(np.linspace(-2, 3, 4, dtype=np.float32)), [1, 3, 5, 4], ["MUL"], {}),
    "mul_square": (lambda x: x * x, [1, 40], ["MUL"], {}),
    "softmax_300_wide": (tf.nn.softmax, [1, 300], ["SOFTMAX"], {"low": -12.0, "high": 12.0}),
    "softmax_rows": (tf.nn.softmax, [1, 4, 10], ["SOFTMAX"], {"low": -3.0, "high": 3.0}),
    "logistic": (tf.sigmoid, [1, 64], ["LOGISTIC"], {"low": -9.0, "high": 9.0}),
    "mean_hw_keepdims_81": (lambda x: tf.reduce_mean(x, [1, 2], keepdims=True), [1, 9, 9, 8], ["MEAN"], {}),
    "mean_1023": (lambda x: tf.reduce_mean(x, [1, 2]), [1, 33, 31, 2], ["MEAN"], {}),
    "mean_last_axis": (lambda x: tf.reduce_mean(x, -1), [1, 5, 7], ["MEAN"], {}),
    "pad_asymmetric": (lambda x: tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]), [1, 5, 5, 3], ["PAD"], {}),
    "concat_channels": (lambda x: tf.concat([tf.nn.relu(x), x, tf.nn.relu6(x * 4.0)], -1), [1, 4, 4, 3], ["CONCATENATION"], {}),
    "concat_axis1_const": (lambda x: tf.concat([x, tf.constant(np.ones((1, 2, 5), np.float32)), x], 1), [1, 3, 5], ["CONCATENATION"], {}),
    "reshape_only_copies_input_to_output": (lambda x: tf.reshape(x, [1, 12]), [1, 3, 4], ["RESHAPE"], {}),
    "relu_relu6": (lambda x: tf.nn.relu6(tf.nn.relu(x) * 2.5) + tf.nn.relu(x), [1, 30], ["RELU"], {}),
    # the codegen-time layouts: odd pixel counts, odd channel counts and depth tails (n % 4) everywhere
    "conv_1x1_odd_pixels_odd_channels": (_conv([1, 5, 5, 6], 7, 1, act=tf.nn.relu), [1, 5, 5, 6], ["CONV_2D"], {}),
    "conv_1x1_stride2_im2col": (_conv([1, 7, 7, 5], 4, 1, 2), [1, 7, 7, 5], ["CONV_2D"], {}),
    "conv_5x3_one_channel_im2col": (_conv([1, 11, 6, 1], 9, (5, 3), 2), [1, 11, 6, 1], ["CONV_2D"], {}),
    "dw_3x3_valid_6_channels": (_dw([1, 7, 7, 6], 1, 3, 1, "VALID"), [1, 7, 7, 6], ["DEPTHWISE_CONV_2D"], {}),
    "dw_5x5_same_stride2_8_channels": (_dw([1, 9, 9, 8], 1, 5, 2), [1, 9, 9, 8], ["DEPTHWISE_CONV_2D"], {}),
    "dw_one_input_channel_dm8": (_dw([1, 9, 9, 1], 8, 3, 2), [1, 9, 9, 1], ["DEPTHWISE_CONV_2D"], {}),
    "fc_7_units_depth_13": (_fc(13, 7, tf.nn.relu), [1, 13], ["FULLY_CONNECTED"], {}),
}

# which kernel each layout case must reach (the kernels' choice is the code generator's)
KERNEL_OF = {
    "conv_1x1_odd_pixels_odd_channels": "ek_conv2d_1x1", "conv_1x1_stride2_im2col": "ek_conv2d_im2col",
    "conv_5x3_one_channel_im2col": "ek_conv2d_im2col", "conv_same_3x3_relu": "ek_conv2d_im2col",
    "conv_grouped_2_groups": "ek_conv2d(", "dw_3x3_valid_6_channels": "ek_depthwise_conv2d_c4",
    "dw_5x5_same_stride2_8_channels": "ek_depthwise_conv2d_c4", "dw_even_k_stride2_dm2": "ek_depthwise_conv2d(",
    "dw_one_input_channel_dm8": "ek_conv2d_im2col", "fc_7_units_depth_13": "ek_fully_connected",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_bit_exact_with_tflm(case, tmp_path):
    require_tools("gcc")
    fn, shape, ops, kw = CASES[case]
    tfl = convert(fn, shape, **kw)
    names = [op.name for op in parse(tfl).ops]
    for op in ops:
        assert op in names, f"the converter did not emit {op}: {names}"
    r = host_check(tfl, random_inputs(tfl, 24, seed=3), tmp_path)
    assert r.bit_exact_fraction == 1.0, (names, r.to_dict())
    if case in KERNEL_OF:
        code = next(tmp_path.rglob("edgekit_model.c")).read_text()
        assert KERNEL_OF[case] in code.split("static void edgekit_run")[1], case


def test_float_io_quantize_dequantize(tmp_path):
    require_tools("gcc")
    tfl = convert(_conv([1, 6, 6, 2], 3, 3), [1, 6, 6, 2], float_io=True)
    g = parse(tfl)
    names = [op.name for op in g.ops]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    x = random_inputs(tfl, 20, seed=5)
    # exact .5 ties of x / s_in
    s = float(g.t(g.inputs[0]).s)
    x[2] = (np.arange(x[2].size).reshape(x[2].shape) % 40 - 20 + 0.5).astype(np.float32) * np.float32(s)
    r = host_check(tfl, x, tmp_path)
    assert r.codegen.input_is_float and r.codegen.output_is_float
    assert r.bit_exact_fraction == 1.0, r.to_dict()


def test_edge_scales_positive_shift_saturation_and_flush(tmp_path):
    """s_out / 300 gives shifts up to +7 and saturation; a huge s_out flushes the multiplier to zero."""
    require_tools("gcc")
    tfl = convert(_conv([1, 6, 6, 3], 4, 3, decades=2), [1, 6, 6, 3])
    out = op_output(tfl, "CONV_2D")
    for k, f in enumerate((1 / 300, 1e12)):
        edited = edit_scales(tfl, {out: f})
        r = host_check(edited, random_inputs(edited, 16, seed=k), tmp_path / str(k))
        assert r.bit_exact_fraction == 1.0, r.to_dict()
        if f < 1:
            assert (np.abs(r.reference.astype(int)) >= 127).mean() > 0.3  # really saturating


@pytest.mark.parametrize("factor", [1.0, 0.37, 3.1, 1e-3, 1e12])
def test_requantize_int8_to_int8(factor, tmp_path):
    """QUANTIZE int8 -> int8 (a 256-entry table), made by retyping a RELU model and rescaling its output."""
    require_tools("gcc")
    relu = convert(tf.nn.relu, [1, 64], low=-2, high=2)
    tfl = retype_only_op(relu, "QUANTIZE")
    tfl = edit_scales(tfl, {op_output(tfl, "QUANTIZE"): factor})
    g = parse(tfl)
    assert [op.name for op in g.ops] == ["QUANTIZE"] and g.t(g.inputs[0]).dtype == g.t(g.outputs[0]).dtype == "int8"
    r = host_check(tfl, random_inputs(tfl, 8, seed=9), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()


def test_fc_per_tensor_multiplier(tmp_path):
    """Per-tensor FC: TFLM's multiplier is (double)s_in*(double)s_w/s_out, not the float32 product (docs/int8-arithmetic.md).

    With these scales (from MLPerf Tiny ad01's last layer) the two formulas give
    M = 1462485049 and 1462485078; an accumulator of -88337 (set through the bias,
    with the input at its zero point) rounds to -117 and -118 respectively.
    """
    require_tools("gcc")
    from edgekit.aot import quant
    from aot_models import set_quant

    w, b = _w(4, 6), _w(6)
    tfl = convert(lambda x: tf.matmul(x, w) + b, [1, 4], per_tensor_dense=True)
    g = parse(tfl)
    (op,) = g.ops
    s_in, s_w, s_out = (float.fromhex(h) for h in ("0x1.962c88p-6", "0x1.406aacp-6", "0x1.753f16p-2"))
    assert quant.quantize_multiplier(s_in * s_w / s_out) == (1462485049, -9)
    tfl = set_quant(tfl, op.inputs[0], [s_in])
    tfl = set_quant(tfl, op.inputs[1], [s_w])
    tfl = set_quant(tfl, op.outputs[0], [s_out], [0])
    bias = np.array([-88337, 88337, -88336, 0, 1000, -1000], dtype=np.int32)
    tfl = set_quant(tfl, op.inputs[2], [float(np.float32(s_in * s_w))], data=bias)
    x = np.full((4, 1, 4), parse(tfl).t(op.inputs[0]).zp, dtype=np.int8)
    x[1:] = random_inputs(tfl, 3, seed=1)
    r = host_check(tfl, x, tmp_path)
    assert list(r.reference[0, 0, :2]) == [-117, 117]
    assert r.bit_exact_fraction == 1.0, r.to_dict()


@pytest.mark.parametrize("case", ["conv_same_3x3_relu", "dw_even_k_stride2_dm2", "fc_per_channel_relu", "fc_per_tensor",
                                  "mul_broadcast_vector", "sub_conv_minus_input_relu", "add_conv_residual_relu", "mean_hw_keepdims_81",
                                  "avgpool_3x3_s2_same", "softmax_rows", "logistic"])
def test_power_of_two_scales_rounding_ties(case, tmp_path):
    """Every scale a power of two: multipliers are exactly 2^30 and many results are exact .5 ties."""
    require_tools("gcc")
    from aot_models import pow2_scales

    fn, shape, ops, kw = CASES[case]
    tfl = pow2_scales(convert(fn, shape, **kw))
    r = host_check(tfl, random_inputs(tfl, 16, seed=11), tmp_path)
    assert r.bit_exact_fraction == 1.0, r.to_dict()
