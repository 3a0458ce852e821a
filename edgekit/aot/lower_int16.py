"""Lower int16x8 ops (int16 activations, int8 weights) to edgekit's C runtime (runtime/c/ek_int16.c).

:func:`lower_int16` is what :func:`edgekit.aot.lower.lower_op` calls for an op whose
data input or output is int16. The arithmetic follows TFLM's reference kernels for
16x8: symmetric int16 activations (zero point 0, refused otherwise), convolutions
and FULLY_CONNECTED accumulating in the bias's type (int64 bias: 64-bit accumulator
and rescale; int32 bias: 32-bit, proven not to overflow), ADD/SUB inputs scaled by
2^15, SOFTMAX and LOGISTIC through tables (:mod:`edgekit.aot.quant16`).
"""

from __future__ import annotations

import numpy as np

from edgekit.aot import quant, quant16
from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.aot.lower import (MAX_DIMS, Lowered, _act, _Ctx, _float, _pad4, _per_channel, _struct, _unsupported,
                               binary_multipliers, overlap_distance)

SOURCE = "ek_int16.c"
Q16 = (-32768, 32767)


def is_int16_op(g: Graph, op: Op) -> bool:
    """Whether ``op`` reads or writes int16 activations and is one this module lowers."""
    if op.name not in _LOWER16 or not op.inputs or not op.outputs:
        return False
    x, y = g.t(op.inputs[0]).dtype, g.t(op.outputs[0]).dtype
    if (op.name, x, y) in (("SOFTMAX", "int8", "int16"), ("QUANTIZE", "int16", "int32")):
        return False  # the mixed-width ops of int8 models with int16 I/O (keyword_scrambled): aot/lower_state.py
    return "int16" in (x, y)


def lower_int16(g: Graph, op: Op) -> Lowered:
    """Lower one int16x8 op; raises UnsupportedOpError naming the op when TFLM's 16x8 kernels would refuse it."""
    return _LOWER16[op.name](g, op)


def _need(op: Op, dtype: str, *tensors: Tensor) -> None:
    for t in tensors:
        if t.dtype != dtype:
            raise _unsupported(op, f"tensor '{t.name}' is {t.dtype}; int16x8 {op.name} needs {dtype}")
        if dtype == "int16" and t.zp != 0:
            raise _unsupported(op, f"int16 tensor '{t.name}' has zero point {t.zp}; TFLM requires 0")


def _act16(op: Op, y: Tensor) -> tuple[int, int]:
    return quant.activation_range(_act(op), float(y.s), y.zp, *Q16)


def _bias16(c: _Ctx, g: Graph, op: Op) -> dict:
    """The bias fields and the accumulator TFLM picks from the bias's type: int32 for an int32 bias,
    else int64 (checks.py has proven the sums fit it)."""
    bi = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1
    # no bias: the converter's quantized_bias_type option (TensorType INT32 = 2) picks int32
    fields: dict[str, object] = {"acc32": int(getattr(op.options, "quantizedBiasType", 0) == 2), "bias64": "0", "bias32": "0"}
    if bi >= 0:
        b = g.t(bi)
        if b.data is None or b.dtype not in ("int32", "int64"):
            raise _unsupported(op, f"bias '{b.name}' must be a constant int32 or int64 tensor, not {b.dtype}")
        if b.dtype == "int64":
            fields["bias64"] = c.array("int64_t", "bias", b.data, 8)
        else:
            fields["bias32"] = c.array("int32_t", "bias", b.data, 4)
            fields["acc32"] = 1
    return fields


def _check_shift64(op: Op, acc32: object, shift: np.ndarray) -> None:
    """TFLM's 64-bit rescale takes shifts below 8 (a right shift by 15 - shift): refuse larger ones."""
    if not acc32 and int(np.max(shift)) >= 8:
        raise _unsupported(op, f"requantization shift {int(np.max(shift))} is beyond the 64-bit rescale's 7: "
                               "the output scale is far too small for the input and weight scales")


def _conv(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need(op, "int16", x, y)
    _need(op, "int8", w)
    if w.data is None:
        raise _unsupported(op, "the filter is not a constant")
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    o = op.options
    _, in_h, in_w, in_c = x.shape
    b, out_h, out_w, out_c = y.shape
    _, kh, kw, fic = w.shape
    sh, sw_, dh, dw = o.strideH, o.strideW, o.dilationHFactor or 1, o.dilationWFactor or 1
    mult, shift = _per_channel(op, x, w, y, out_c)
    act_min, act_max = _act16(op, y)
    pad_h = quant.padding(in_h, kh, sh, dh, out_h) if o.padding == 0 else 0
    pad_w = quant.padding(in_w, kw, sw_, dw, out_w) if o.padding == 0 else 0
    fields = {
        "batches": b, "in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w, "out_c": out_c,
        "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw_, "dil_h": dh, "dil_w": dw, "pad_h": pad_h, "pad_w": pad_w,
        "filter_in_c": in_c if depthwise else fic, "depth_multiplier": out_c // in_c if depthwise else 1,
        "depthwise": int(depthwise), "act_min": act_min, "act_max": act_max,
    }
    fields["acc32"] = 0  # set by _bias16 below, in the struct's field order
    fields["filter"] = c.array("int8_t", "filter", w.data, 1)
    fields |= _bias16(c, g, op)
    _check_shift64(op, fields["acc32"], shift)
    fields["mult"] = c.array("int32_t", "mult", mult, 4)
    fields["shift"] = c.array("int32_t", "shift", shift, 4)
    c.decls.append(_struct("ek_conv16_params", f"{c.p}_params", fields))
    call = f"ek_conv2d_s16(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    ov = None
    if b == 1:  # the kernel writes pixel by pixel in order: the int8 overlap rule holds in bytes
        ov = (x.index, overlap_distance((in_h, in_w), 2 * in_c, (out_h, out_w), 2 * out_c, (sh, sw_), (pad_h, pad_w)))
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, overlap=ov, const_bytes=c.const_bytes)


def _fc(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need(op, "int16", x, y)
    _need(op, "int8", w)
    if w.data is None:
        raise _unsupported(op, "the weights are not a constant")
    if getattr(op.options, "weightsFormat", 0):
        raise _unsupported(op, "shuffled weights format")
    units, depth = int(w.shape[0]), int(w.shape[-1])
    per_channel = w.scale.size > 1
    if per_channel:
        mult, shift = _per_channel(op, x, w, y, units)
    else:  # as the int8 FC: (double)s_in * (double)s_w / s_out
        m, s = quant.quantize_multiplier(float(x.s) * float(w.s) / float(y.s))
        mult, shift = np.array([m]), np.array([s])
    act_min, act_max = _act16(op, y)
    w_zp = 0 if per_channel else -w.zp  # TFLM's weights_offset
    fields: dict[str, object] = {
        "batches": y.size // units, "units": units, "depth": depth, "w_zp": w_zp,
        "act_min": act_min, "act_max": act_max, "per_channel": int(per_channel),
    }
    fields["acc32"] = 0  # set by _bias16 below, in the struct's field order
    fields["weights"] = c.array("int8_t", "weights", w.data, 1)
    fields |= _bias16(c, g, op)
    _check_shift64(op, fields["acc32"], shift)
    fields["mult"] = c.array("int32_t", "mult", mult, 4)
    fields["shift"] = c.array("int32_t", "shift", shift, 4)
    c.decls.append(_struct("ek_fc16_params", f"{c.p}_params", fields))
    call = f"ek_fully_connected_s16(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _pool(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(op, "int16", x, y)
    o = op.options
    b, in_h, in_w, ch = x.shape
    _, out_h, out_w, _ = y.shape
    kh, kw, sh, sw_ = o.filterHeight, o.filterWidth, o.strideH, o.strideW
    act_min, act_max = _act16(op, y)
    pad_h = quant.padding(in_h, kh, sh, 1, out_h) if o.padding == 0 else 0
    pad_w = quant.padding(in_w, kw, sw_, 1, out_w) if o.padding == 0 else 0
    fields = {
        "batches": b, "in_h": in_h, "in_w": in_w, "channels": ch, "out_h": out_h, "out_w": out_w,
        "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw_, "pad_h": pad_h, "pad_w": pad_w,
        "act_min": act_min, "act_max": act_max,
    }
    c.decls.append(_struct("ek_pool_params", f"{c.p}_params", fields))
    kern = "ek_avg_pool_s16" if op.name == "AVERAGE_POOL_2D" else "ek_max_pool_s16"
    call = f"{kern}(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    ov = (x.index, overlap_distance((in_h, in_w), 2 * ch, (out_h, out_w), 2 * ch, (sh, sw_), (pad_h, pad_w))) if b == 1 else None
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, overlap=ov, const_bytes=c.const_bytes)


def _operand16(c: _Ctx, g: Graph, idx: int) -> str:
    t = g.t(idx)
    if t.data is not None:
        return c.array("int16_t", f"c{idx}", t.data, 2)
    return f"{{t{idx}}}"


def _binary(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need(op, "int16", a, b, y)
    od, ad, bd = _pad4(y.shape, MAX_DIMS), _pad4(a.shape, MAX_DIMS), _pad4(b.shape, MAX_DIMS)

    def strides(d: list[int]) -> list[int]:
        st, s = [0] * MAX_DIMS, 1
        for k in range(MAX_DIMS - 1, -1, -1):
            st[k] = 0 if d[k] == 1 and od[k] != 1 else s
            s *= d[k]
        return st

    act_min, act_max = _act16(op, y)
    f: dict[str, object] = {
        "count": y.size, "out_dims": od, "stride1": strides(ad), "stride2": strides(bd),
        "broadcast": int(not (ad == od and bd == od)), "zp1": 0, "zp2": 0, "out_zp": 0,
        "act_min": act_min, "act_max": act_max,
    }
    f.update(binary_multipliers(op, a, b, y, left_shift=15))  # TFLM's general-scale path, left_shift 15 for int16
    ea, eb = _operand16(c, g, a.index), _operand16(c, g, b.index)
    c.decls.append(_struct("ek_binary_params", f"{c.p}_params", f))
    kern = {"ADD": "ek_add_s16", "SUB": "ek_sub_s16", "MUL": "ek_mul_s16"}[op.name]
    call = f"{kern}(&{c.p}_params, {ea}, {eb}, {{t{y.index}}});"
    inplace = tuple(t.index for t, d in ((a, ad), (b, bd)) if d == od and t.data is None)
    reads = tuple(t.index for t in (a, b) if t.data is None)
    return Lowered(op.name, SOURCE, c.decls, call, reads, y.index, inplace=inplace, const_bytes=c.const_bytes)


def _softmax(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(op, "int16", x, y)
    if abs(float(y.s) * 32768 - 1.0) > 0.001:
        raise _unsupported(op, f"int16 SOFTMAX output scale {float(y.s):.6g}; TFLM requires 1/32768")
    depth = y.shape[-1]
    if depth > 65536:
        raise _unsupported(op, f"{depth} classes; the int16 SOFTMAX sum of exps holds at most 65536")
    m, s = quant16.softmax_multiplier(float(x.s), float(getattr(op.options, "beta", 1.0)))
    exp_lut, recip_lut = quant16.softmax_tables()
    fields = {"rows": y.size // depth, "depth": depth, "input_multiplier": m, "input_shift": s,
              "exp_lut": c.array("int16_t", "exp", exp_lut, 2), "recip_lut": c.array("int16_t", "recip", recip_lut, 2)}
    c.decls.append(_struct("ek_softmax16_params", f"{c.p}_params", fields))
    call = f"ek_softmax_s16(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, inplace=(x.index,), const_bytes=c.const_bytes)


def _logistic(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need(op, "int16", x, y)
    if float(y.s) != 2.0**-15:
        raise _unsupported(op, f"int16 LOGISTIC output scale {float(y.s):.6g}; TFLM requires 2^-15")
    try:
        m, s = quant16.logistic_params(float(x.s))
    except ValueError as exc:
        raise _unsupported(op, str(exc)) from None
    table = c.array("uint16_t", "sigmoid", quant16.sigmoid_table(), 2)
    call = f"ek_logistic_s16({y.size}, {m}, {s}, {table}, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, inplace=(x.index,), const_bytes=c.const_bytes)


def _quantize(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if op.name == "DEQUANTIZE":
        _need(op, "int16", x)
        _need(op, "float32", y)
        call = f"ek_dequantize_s16_f32({y.size}, {_float(x.s)}, {x.zp}, {{t{x.index}}}, {{t{y.index}}});"
        return Lowered(op.name, "ek_misc.c", [], call, (x.index,), y.index)
    if x.dtype == "float32":
        _need(op, "int16", y)
        call = f"ek_quantize_f32_s16({y.size}, {_float(y.s)}, {y.zp}, {{t{x.index}}}, {{t{y.index}}});"
        return Lowered(op.name, "ek_misc.c", [], call, (x.index,), y.index)
    bits = {"int8": 8, "int16": 16}
    if x.dtype not in bits or y.dtype not in bits:
        raise _unsupported(op, f"{x.dtype} -> {y.dtype}")
    for t in (x, y):
        if t.dtype == "int16" and t.zp != 0:
            raise _unsupported(op, f"int16 tensor '{t.name}' has zero point {t.zp}; TFLM requires 0")
    m, s = quant.quantize_multiplier(float(np.float32(x.s)) / float(np.float32(y.s)))
    call = (f"ek_requantize_s16({y.size}, {m}, {s}, {x.zp}, {y.zp}, {bits[x.dtype]}, {bits[y.dtype]}, "
            f"{{t{x.index}}}, {{t{y.index}}});")
    # element i is written after it is read; a wider output would overwrite inputs not yet read
    inplace = (x.index,) if bits[y.dtype] <= bits[x.dtype] else ()
    return Lowered(op.name, SOURCE, c.decls, call, (x.index,), y.index, inplace=inplace)


_LOWER16 = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fc,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "ADD": _binary, "SUB": _binary, "MUL": _binary,
    "SOFTMAX": _softmax, "LOGISTIC": _logistic, "QUANTIZE": _quantize, "DEQUANTIZE": _quantize,
}
