"""Lowering of the decoder, activation and shape ops: TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR,
RESIZE_BILINEAR, HARD_SWISH, LEAKY_RELU, TANH, STRIDED_SLICE, TRANSPOSE, SPLIT and SPLIT_V.

Registered into :mod:`edgekit.aot.lower` (``LOWER`` below). As there, every
parameter is computed here and proven by :mod:`edgekit.aot.checks` before it is
emitted; the kernels are ``ek_transpose_conv.c``, ``ek_resize.c``, ``ek_shape.c``
(one strided gather for the four shape ops) and ``ek_lut`` for the three
activations, whose 256-entry tables come from :mod:`edgekit.aot.act_tables`.
"""

from __future__ import annotations

import numpy as np

from edgekit.aot import act_tables, quant
from edgekit.aot.checks import gather_in_bounds, resize_size, split_sizes, strided_slice_axes, transpose_perm
from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.aot.lower import MAX_DIMS, Lowered, _act, _bias, _Ctx, _need_int8, _per_channel, _struct, _unsupported

MULTI_OUTPUT_OPS = ("SPLIT", "SPLIT_V")


def _act_lut(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    if op.name == "HARD_SWISH":
        try:
            table = act_tables.hard_swish_table(float(x.s), x.zp, float(y.s), y.zp)
        except ValueError as exc:
            raise _unsupported(op, str(exc)) from None
    elif op.name == "LEAKY_RELU":
        alpha = float(getattr(op.options, "alpha", 0.0) or 0.0)
        if not alpha >= 0.0:
            raise _unsupported(op, f"alpha {alpha} is negative")
        table = act_tables.leaky_relu_table(float(x.s), x.zp, float(y.s), y.zp, alpha)
    else:  # TANH: TFLM's int8 kernel writes Q0.7 whatever the output's parameters say
        if y.zp != 0 or np.float32(y.s) != np.float32(1.0 / 128):
            raise _unsupported(op, f"output scale {float(y.s):g} and zero point {y.zp}; TFLM's int8 TANH needs 1/128 and 0")
        table = act_tables.tanh_table(float(x.s), x.zp)
    name = c.array("int8_t", "table", table, 1)
    call = f"ek_lut({y.size}, {name}, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_misc.c", c.decls, call, (x.index,), y.index, inplace=(x.index,), const_bytes=c.const_bytes)


def _elem_strides(shape: tuple[int, ...]) -> list[int]:
    st, s = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        st[k] = s
        s *= int(shape[k])
    return st


def _gather_call(c: _Ctx, op: Op, x: Tensor, y: Tensor, dims: list[int], strides: list[int], start: int,
                 suffix: str = "params") -> str:
    """Prove and emit one ``ek_gather`` from ``x`` into ``y`` (dims/strides of rank <= MAX_DIMS)."""
    if len(dims) > MAX_DIMS:
        raise _unsupported(op, f"rank {len(dims)} > {MAX_DIMS}")
    pad = MAX_DIMS - len(dims)
    dims, strides = [1] * pad + list(dims), [0] * pad + list(strides)
    gather_in_bounds(op, dims, strides, start, x.size, y.size)
    c.decls.append(_struct("ek_gather_params", f"{c.p}_{suffix}", {"dims": dims, "strides": strides, "start": start}))
    return f"ek_gather(&{c.p}_{suffix}, {{t{x.index}}}, {{t{y.index}}});"


def _strided_slice(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    o = op.options
    if getattr(o, "ellipsisMask", 0) or getattr(o, "newAxisMask", 0):
        raise _unsupported(op, "ellipsis and new-axis masks are not supported")
    if any(g.t(i).data is None for i in op.inputs[1:4]):
        raise _unsupported(op, "begin, end and strides must be constants")
    axes = strided_slice_axes(op, x.shape, *(g.t(i).data for i in op.inputs[1:4]))
    es = _elem_strides(x.shape)
    start = sum(a[0] * s for a, s in zip(axes, es))
    dims = [a[2] for a in axes]
    strides = [a[1] * s for a, s in zip(axes, es)]
    call = _gather_call(c, op, x, y, dims, strides, start)
    return Lowered(op.name, "ek_shape.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _transpose(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    if g.t(op.inputs[1]).data is None:
        raise _unsupported(op, "the permutation is not a constant")
    perm = transpose_perm(op, x, g.t(op.inputs[1]), y)
    es = _elem_strides(x.shape)
    call = _gather_call(c, op, x, y, [x.shape[p] for p in perm], [es[p] for p in perm], 0)
    return Lowered(op.name, "ek_shape.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _split(g: Graph, op: Op) -> Lowered:
    """SPLIT (inputs: axis, x) and SPLIT_V (inputs: x, size_splits, axis): one gather per output."""
    c = _Ctx(g, op)
    xi, ai = (op.inputs[1], op.inputs[0]) if op.name == "SPLIT" else (op.inputs[0], op.inputs[2])
    x = g.t(xi)
    outs = [g.t(i) for i in op.outputs]
    _need_int8(op, x, *outs)
    if g.t(ai).data is None or (op.name == "SPLIT_V" and g.t(op.inputs[1]).data is None):
        raise _unsupported(op, "the axis and split sizes must be constants")
    axis, sizes = split_sizes(g, op)
    es = _elem_strides(x.shape)
    calls, offset = [], 0
    for k, (y, n) in enumerate(zip(outs, sizes)):
        dims = list(x.shape)
        dims[axis] = n
        calls.append(_gather_call(c, op, x, y, dims, es, offset * es[axis], f"params{k}"))
        offset += n
    call = "\n    ".join(calls)
    return Lowered(op.name, "ek_shape.c", c.decls, call, (x.index,), outs[0].index, const_bytes=c.const_bytes,
                   also_writes=tuple(y.index for y in outs[1:]))


def _nearest_index(n_in: int, n_out: int, align: bool, half: bool) -> np.ndarray:
    """TFLM ``GetNearestNeighbor`` for every output index (float32 arithmetic, as TFLM)."""
    f32 = np.float32
    scale = f32(n_in - 1) / f32(n_out - 1) if align and n_out > 1 else f32(n_in) / f32(n_out)
    off = f32(0.5) if half else f32(0.0)
    v = (np.arange(n_out, dtype=np.float32) + off) * scale
    v = v.astype(np.float64)  # exact; C's round() on the float32 product, half away from zero (v >= 0)
    v = np.floor(v + 0.5) if align else np.floor(v)
    idx = np.minimum(v.astype(np.int64), n_in - 1)
    return np.maximum(idx, 0) if half else idx


def _c_div(a: np.ndarray, n: int) -> np.ndarray:
    """C integer division of int64 ``a`` by ``n > 0``: truncates toward zero."""
    return np.where(a >= 0, a // n, -((-a) // n))


def _bilinear_axis(n_in: int, n_out: int, align: bool, half: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLM ``ResizeBilinearInteger``'s (lower, upper, weight in 1/1024) for every output index."""
    scale = ((1 << 10) * n_in + n_out // 2) // n_out
    if align and n_out > 1:
        scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
    v = np.arange(n_out, dtype=np.int64) * scale
    if half:
        v = v + scale // 2 - (1 << 9)
    lo = np.maximum(_c_div(v, 1024), 0)
    hi = np.minimum(_c_div(v + 1023, 1024), n_in - 1)
    return lo, hi, v - 1024 * lo


def _resize(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    if g.t(op.inputs[1]).data is None:
        raise _unsupported(op, "the output size is not a constant")
    resize_size(op, x, g.t(op.inputs[1]), y)
    align, half = bool(getattr(op.options, "alignCorners", False)), bool(getattr(op.options, "halfPixelCenters", False))
    b, in_h, in_w, depth = x.shape
    _, out_h, out_w, _ = y.shape
    f: dict[str, object] = {"batches": b, "in_h": in_h, "in_w": in_w, "depth": depth, "out_h": out_h, "out_w": out_w}
    if op.name == "RESIZE_NEAREST_NEIGHBOR":
        ys, xs = _nearest_index(in_h, out_h, align, half), _nearest_index(in_w, out_w, align, half)
        tables = {"y0": (ys, in_h), "x0": (xs, in_w)}
        f |= {"y1": 0, "wy": 0, "x1": 0, "wx": 0}
        kern = "ek_resize_nearest"
    else:
        y0, y1, wy = _bilinear_axis(in_h, out_h, align, half)
        x0, x1, wx = _bilinear_axis(in_w, out_w, align, half)
        tables = {"y0": (y0, in_h), "y1": (y1, in_h), "x0": (x0, in_w), "x1": (x1, in_w)}
        for name, w in (("wy", wy), ("wx", wx)):
            if w.min() <= -1024 or w.max() >= 2048:  # keeps every product inside int64 with room to spare
                raise _unsupported(op, f"interpolation weight {int(w.min())}..{int(w.max())} out of range")
            f[name] = c.array("int32_t", name, w, 4)
        kern = "ek_resize_bilinear"
    for name, (idx, n) in tables.items():
        if idx.min() < 0 or idx.max() >= n:
            raise _unsupported(op, f"source index {int(idx.min())}..{int(idx.max())} outside 0..{n - 1}")
        f[name] = c.array("int32_t", name, idx, 4)
    c.decls.append(_struct("ek_resize_params", f"{c.p}_params", f))
    call = f"{kern}(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_resize.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _transpose_conv(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    w, x, y = g.t(op.inputs[1]), g.t(op.inputs[2]), g.t(op.outputs[0])
    _need_int8(op, x, w, y)
    if w.data is None:
        raise _unsupported(op, "the filter is not a constant")
    o = op.options
    b, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = y.shape
    _, kh, kw, _ = w.shape
    sh, sw_ = int(o.strideH), int(o.strideW)
    same = int(o.padding) == 0
    # TFLM pads as a convolution from the output back to the input would (transpose_conv.cc)
    pad_h = quant.padding(out_h, kh, sh, 1, quant.conv_out_size(out_h, kh, sh, 1, same))
    pad_w = quant.padding(out_w, kw, sw_, 1, quant.conv_out_size(out_w, kw, sw_, 1, same))
    mult, shift = _per_channel(op, x, w, y, out_c)
    act_min, act_max = quant.activation_range(_act(op), float(y.s), y.zp)
    bias = op.inputs[3] if len(op.inputs) > 3 and op.inputs[3] >= 0 else -1
    fields = {
        "batches": b, "in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w, "out_c": out_c,
        "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw_, "pad_h": pad_h, "pad_w": pad_w,
        "in_zp": x.zp, "out_zp": y.zp, "act_min": act_min, "act_max": act_max,
        "filter": c.array("int8_t", "filter", w.data, 1),
        "bias": _bias(c, g, op, bias),
        "mult": c.array("int32_t", "mult", mult, 4),
        "shift": c.array("int32_t", "shift", shift, 4),
    }
    c.decls.append(_struct("ek_transpose_conv_params", f"{c.p}_params", fields))
    call = f"ek_transpose_conv(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_transpose_conv.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


LOWER = {
    "TRANSPOSE_CONV": _transpose_conv, "RESIZE_NEAREST_NEIGHBOR": _resize, "RESIZE_BILINEAR": _resize,
    "HARD_SWISH": _act_lut, "LEAKY_RELU": _act_lut, "TANH": _act_lut,
    "STRIDED_SLICE": _strided_slice, "TRANSPOSE": _transpose, "SPLIT": _split, "SPLIT_V": _split,
}
