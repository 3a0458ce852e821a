"""Lower each TFLite op to one call of edgekit's C runtime, with its host-computed parameters.

``lower_op`` returns a :class:`Lowered`: the C declarations (constant arrays
and a parameter struct), the call, which runtime source file it needs, and how
the planner may reuse memory for it. Tensor pointers are written as
``{t<index>}`` placeholders that the code generator fills in from the plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgekit.aot import layout, packing, quant
from edgekit.aot.checks import check_op
from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.errors import UnsupportedOpError

SUPPORTED_OPS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXPAND_DIMS",
    "FULLY_CONNECTED", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "PADV2", "QUANTIZE", "RELU", "RELU6",
    "RESHAPE", "SOFTMAX", "SQUEEZE", "SUB", "UNPACK",
)
ALIAS_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "UNPACK")
MAX_DIMS = 6


@dataclass
class Lowered:
    """One op ready for emission."""

    op: str
    source: str  # runtime .c file implementing it
    decls: list[str]
    call: str
    reads: tuple[int, ...]
    write: int
    alias_of: int | None = None
    inplace: tuple[int, ...] = ()
    overlap: tuple[int, int] | None = None  # (input, D) for the planner, see overlap_distance
    const_bytes: int = 0
    scratch_bytes: int = 0  # arena scratch the kernel uses during the call (packed weights, im2col); call has {scratch}
    packed_tensor: str | None = None  # name of the weight tensor stored as 4-bit indices
    also_writes: tuple[int, ...] = ()  # further outputs of an op with several (SPLIT)


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = ["0"]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    {body}\n}};"


def _struct(ctype: str, name: str, fields: dict[str, object]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, (list, tuple)):
            return "{" + ", ".join(str(int(x)) for x in v) + "}"
        return str(v)

    body = ",\n    ".join(f".{k} = {fmt(v)}" for k, v in fields.items())
    return f"static const {ctype} {name} = {{\n    {body}\n}};"


def _unsupported(op: Op, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"op {op.index} {op.name}: {why}",
        "edgekit's AOT runtime runs int8 " + ", ".join(SUPPORTED_OPS) + "; use the TFLM runtime for this model",
    )


def _need_int8(op: Op, *tensors: Tensor) -> None:
    for t in tensors:
        if t.dtype != "int8":
            raise _unsupported(op, f"tensor '{t.name}' is {t.dtype}, only int8 is supported")


def _act(op: Op) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def _per_channel(op: Op, x: Tensor, w: Tensor, y: Tensor, oc: int) -> tuple[np.ndarray, np.ndarray]:
    if w.scale.size not in (1, oc):
        raise _unsupported(op, f"filter '{w.name}' has {w.scale.size} scales for {oc} output channels")
    sw = np.broadcast_to(w.scale, (oc,))
    ms = [quant.quantize_multiplier(float(x.s) * float(sw[c]) / float(y.s)) for c in range(oc)]
    return np.array([m for m, _ in ms], dtype=np.int64), np.array([s for _, s in ms], dtype=np.int64)


def _pad4(shape: tuple[int, ...], rank: int) -> list[int]:
    return [1] * (rank - len(shape)) + list(shape)


class _Ctx:
    """Names and byte counts of the constants one op emits."""

    def __init__(self, g: Graph, op: Op):
        self.g, self.op, self.decls, self.const_bytes = g, op, [], 0
        self.p = f"op{op.index}"

    def array(self, ctype: str, suffix: str, values: np.ndarray, itemsize: int) -> str:
        name = f"{self.p}_{suffix}"
        self.decls.append(_c_array(ctype, name, values))
        self.const_bytes += max(1, np.asarray(values).size) * itemsize
        return name


def lower_op(g: Graph, op: Op, weight_bits: int | None = None) -> Lowered:
    """Lower ``op``; raises UnsupportedOpError naming the op when the runtime cannot run it.

    ``weight_bits`` picks the storage of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
    weights: None packs a tensor as 4-bit indices + per-channel tables when every
    channel has at most 16 distinct values and that saves bytes, 4 packs every such
    tensor even when it saves nothing, 8 never packs.
    """
    fn = _LOWER.get(op.name)
    if fn is None:
        raise _unsupported(op, "not supported by edgekit's AOT runtime")
    check_op(g, op)
    from edgekit.aot.lower_int16 import is_int16_op, lower_int16  # it builds on this module's helpers

    try:
        if is_int16_op(g, op):
            return lower_int16(g, op)
        if op.name in _WEIGHTED:
            return fn(g, op, weight_bits)
        return fn(g, op)
    except quant.MultiplierRangeError as exc:
        raise _unsupported(op, str(exc)) from None


def _pack(c: "_Ctx", w: Tensor, axis: int, weight_bits: int | None) -> tuple[str, str] | None:
    """Emit ``w`` as 4-bit indices + tables when ``weight_bits`` asks for it; returns (packed, table) names."""
    if weight_bits == 8 or w.dtype != "int8":
        return None
    if weight_bits is None and packing.packed_bytes(tuple(w.shape), axis) >= w.data.size:
        return None
    got = packing.pack4(w.data, axis)
    if got is None:
        return None
    packed, table = got
    return (c.array("uint8_t", "packed", np.frombuffer(packed, np.uint8), 1),
            c.array("int8_t", "table", table, 1))


def overlap_distance(in_hw: tuple[int, int], in_c: int, out_hw: tuple[int, int], out_c: int,
                     stride: tuple[int, int], pad: tuple[int, int], block: int = 1) -> int:
    """Bytes ``D`` by which a windowed op's output may start before its (dying) input and overlap it.

    The kernels compute output pixels in row-major order; a pixel's channels are
    written while its window is still being read, so the whole pixel must land
    on bytes nobody reads any more. Pixel ``P`` and every later pixel read no
    input byte below ``first[P]`` (the start of the top-left in-image tap, a
    lower bound under dilation and groups, suffix-minimised), and pixel ``P``'s
    output ends ``(P+1)*out_c`` bytes after the output's start. Keeping
    ``in_offset - out_offset >= D`` with ``D = max_P((P+1)*out_c - first[P])``
    means no write lands on a byte still to be read. Batch 1 only.
    A kernel that computes ``block`` pixels together (reading all their windows
    before the last of them is written) has each pixel's output end where its
    block's output ends.
    """
    oh, ow = out_hw
    oy = np.arange(oh)[:, None]
    ox = np.arange(ow)[None, :]
    iy = np.maximum(0, oy * stride[0] - pad[0])
    ix = np.maximum(0, ox * stride[1] - pad[1])
    first = ((iy * in_hw[1] + ix) * in_c).reshape(-1)
    first = np.minimum.accumulate(first[::-1])[::-1]
    n = oh * ow
    ends = np.minimum((np.arange(n) // block + 1) * block, n) * out_c
    return int(max(0, (ends - first).max()))


def _conv(g: Graph, op: Op, weight_bits: int | None = None) -> Lowered:
    c = _Ctx(g, op)
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need_int8(op, x, w, y)
    if w.data is None:
        raise _unsupported(op, "the filter is not a constant")
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    o = op.options
    _, in_h, in_w, in_c = x.shape
    b, out_h, out_w, out_c = y.shape
    if depthwise:
        _, kh, kw, _ = w.shape
    else:
        _, kh, kw, fic = w.shape
    sh, sw_, dh, dw = o.strideH, o.strideW, o.dilationHFactor or 1, o.dilationWFactor or 1
    if depthwise and in_c == 1:  # one input channel: a plain convolution with [out_c, KH, KW, 1] filters
        depthwise, fic = False, 1
        w = dataclasses.replace(w, data=np.ascontiguousarray(w.data.transpose(3, 1, 2, 0)), shape=(out_c, kh, kw, 1),
                                quantized_dimension=0)
    mult, shift = _per_channel(op, x, w, y, out_c)
    act_min, act_max = quant.activation_range(_act(op), float(y.s), y.zp)
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1
    fast = _fast_requant(g, bias, mult, shift, kh * kw * (1 if depthwise else fic))
    fields = {
        "batches": b, "in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w, "out_c": out_c,
        "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw_, "dil_h": dh, "dil_w": dw,
        "pad_h": quant.padding(in_h, kh, sh, dh, out_h) if o.padding == 0 else 0,
        "pad_w": quant.padding(in_w, kw, sw_, dw, out_w) if o.padding == 0 else 0,
        "filter_in_c": in_c if depthwise else fic,
        "depth_multiplier": out_c // in_c if depthwise else 1,
        "in_zp": x.zp, "out_zp": y.zp, "act_min": act_min, "act_max": act_max,
    }
    if _all_taps_in_image(fields):  # no skipped border taps: in_zp folds into the bias exactly
        wsum = w.data.reshape(-1, out_c).sum(0) if depthwise else w.data.reshape(out_c, -1).sum(1)
        fields["in_zp"], bias = _fold_input_zp(c, g, op, bias, wsum, x.zp)
    packed = _pack(c, w, 3 if depthwise else 0, weight_bits)
    # 1x1, stride 1, unpadded, offset folded: a matrix product two pixels by two channels at a time
    pointwise = (fast and not depthwise and packed is None and kh == kw == 1 and sh == sw_ == 1 and fic == in_c
                 and fields["pad_h"] == fields["pad_w"] == 0 and fields["in_zp"] == 0)
    scratch = 0
    grouped = fast and depthwise and packed is None and out_c == in_c  # depth multiplier 1: channel groups of 4
    im2col = fast and not depthwise and not pointwise and packed is None and fic == in_c
    if im2col and fields["in_zp"] != 0:  # taps outside the image read in_zp, so the fold holds everywhere
        fields["in_zp"], bias = _fold_input_zp(c, g, op, bias, w.data.reshape(out_c, -1).sum(1), x.zp)
        fields["pad_value"] = x.zp
        im2col = fields["in_zp"] == 0
    folded_zp, folded = 0, None
    if grouped and fields["in_zp"] != 0:  # whole-window pixels skip the offset
        folded_zp, folded = _fold_input_zp(c, g, op, bias, w.data.reshape(-1, out_c).sum(0), fields["in_zp"])
        grouped = folded_zp == 0
    if pointwise or im2col:
        fields["filter"] = c.array("int8_t", "filter", layout.interleave_rows(w.data.reshape(out_c, -1), 2), 1)
    elif grouped:
        fields["filter"] = c.array("int8_t", "filter", layout.group_taps(w.data.reshape(kh, kw, out_c)), 1)
    elif packed is None:
        fields["filter"] = c.array("int8_t", "filter", w.data, 1)
    else:
        fields["filter"] = "0"
        scratch = kh * kw * out_c if depthwise else min(4, out_c) * kh * kw * fic
    if im2col or pointwise:  # two pixels' inputs, widened to int16 on Arm DSP cores (ek_simd.h: x16)
        scratch = 4 * (((kh * kw * in_c) + 1) & ~1)
    fields |= _requant_fields(c, g, op, bias, mult, shift, packed)
    if grouped:
        fields["bias_folded"] = fields["bias"] if folded is None else c.array("int32_t", "bias_folded", folded, 4)
    c.decls.append(_struct("ek_conv_params", f"{c.p}_params", fields))
    kern = ("ek_depthwise_conv2d_c4" if grouped else "ek_depthwise_conv2d") if depthwise else \
        "ek_conv2d_1x1" if pointwise else "ek_conv2d_im2col" if im2col else "ek_conv2d"
    args = ", {scratch}" if kern in ("ek_conv2d", "ek_depthwise_conv2d", "ek_conv2d_im2col", "ek_conv2d_1x1") else ""
    call = f"{kern}(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}}{args});"
    # a packed CONV_2D writes its output channel block by channel block, not in address order
    ov = None if packed is not None and not depthwise else _overlap(fields, x, y, block=2 if pointwise or im2col else 1)
    return Lowered(op.name, "ek_conv.c", c.decls, call, (x.index,), y.index, overlap=ov, const_bytes=c.const_bytes,
                   scratch_bytes=scratch, packed_tensor=None if packed is None else w.name)


def _overlap(f: dict, x: Tensor, y: Tensor, block: int = 1) -> tuple[int, int] | None:
    if f["batches"] != 1:
        return None
    ch_in, ch_out = f.get("in_c", f.get("channels")), f.get("out_c", f.get("channels"))
    d = overlap_distance((f["in_h"], f["in_w"]), ch_in, (f["out_h"], f["out_w"]), ch_out,
                         (f["stride_h"], f["stride_w"]), (f["pad_h"], f["pad_w"]), block)
    return x.index, d


def _fast_requant(g: Graph, bias: int, mult: np.ndarray, shift: np.ndarray, k: int) -> bool:
    """Whether ek_rq_make/ek_rq_apply's preconditions (ek_common.h) hold for every channel: m >= 0,
    -31 <= shift <= 0, and no reachable accumulator (bias + k products of |w| <= 128 and
    |x - zp| <= 255) makes h + 2^(right-1) overflow int32. The matrix-product and depthwise-c4 kernels
    need them; otherwise the per-pixel kernels run."""
    n = len(mult)
    b = np.zeros(n, np.int64) if bias < 0 or g.t(bias).data is None else np.abs(np.asarray(g.t(bias).data, np.int64))
    b = np.broadcast_to(b.reshape(-1), (n,))
    m, s = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    if (m < 0).any() or (s < -31).any() or (s > 0).any():
        return False
    xmax = b + 128 * 255 * k
    hmax = [(int(xv) * int(mv) + (1 << 30) >> 31) + 1 for xv, mv in zip(xmax, m)]
    return all(sv == 0 or hv + (1 << (-int(sv) - 1)) < 2**31 for hv, sv in zip(hmax, s))


def _all_taps_in_image(f: dict) -> bool:
    """Whether every output pixel's window lies wholly inside the input (no tap is ever skipped)."""
    return (f["pad_h"] == 0 and f["pad_w"] == 0
            and (f["out_h"] - 1) * f["stride_h"] + (f["k_h"] - 1) * f["dil_h"] < f["in_h"]
            and (f["out_w"] - 1) * f["stride_w"] + (f["k_w"] - 1) * f["dil_w"] < f["in_w"])


def _fold_input_zp(c: _Ctx, g: Graph, op: Op, bias: int, wsum: np.ndarray, in_zp: int) -> tuple[int, int | np.ndarray]:
    """``(in_zp, bias)`` for the params: sum w*(x - zp) + b = sum w*x + (b - zp*sum w), so the kernels skip the
    offset. ``wsum`` is each output channel's weight sum. Unchanged when the folded bias would leave int32."""
    if in_zp == 0:
        return in_zp, bias
    if bias >= 0 and (g.t(bias).data is None or g.t(bias).dtype != "int32"):
        return in_zp, bias  # _bias refuses it
    b = np.zeros(len(wsum), np.int64) if bias < 0 else np.asarray(g.t(bias).data, np.int64).reshape(-1)
    folded = b - np.int64(in_zp) * wsum.astype(np.int64)
    if folded.min() < -(2**31) or folded.max() >= 2**31:
        return in_zp, bias
    return 0, folded.astype(np.int32)


def _requant_fields(c, g, op, bias: "int | np.ndarray", mult, shift, packed) -> dict:
    """The bias, per-channel multiplier/shift arrays and (when packed) 4-bit weight fields shared by conv and FC."""
    fields = {
        "bias": _bias(c, g, op, bias),
        "mult": c.array("int32_t", "mult", mult, 4),
        "shift": c.array("int32_t", "shift", shift, 4),
    }
    if packed is not None:
        fields |= {"packed": packed[0], "table": packed[1]}
    return fields


def _bias(c: _Ctx, g: Graph, op: Op, bias: "int | np.ndarray") -> str:
    if isinstance(bias, np.ndarray):  # already folded with the input zero point
        return c.array("int32_t", "bias", bias, 4)
    if bias < 0:
        return "0"
    bt = g.t(bias)
    if bt.data is None or bt.dtype != "int32":
        raise _unsupported(op, f"bias '{bt.name}' must be a constant int32 tensor, not {bt.dtype}")
    return c.array("int32_t", "bias", bt.data, 4)


def _fc(g: Graph, op: Op, weight_bits: int | None = None) -> Lowered:
    c = _Ctx(g, op)
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need_int8(op, x, w, y)
    if w.data is None:
        raise _unsupported(op, "the weights are not a constant")
    if getattr(op.options, "weightsFormat", 0):
        raise _unsupported(op, "shuffled weights format")
    units, depth = int(w.shape[0]), int(w.shape[-1])
    batches = y.size // units
    per_channel = w.scale.size > 1
    if per_channel:
        mult, shift = _per_channel(op, x, w, y, units)
    else:
        # per-tensor FC: (double)s_in * (double)s_w / s_out, no float32 rounding of the product
        # (measured on the tflite-micro wheel; docs/int8-arithmetic.md, test_fc_per_tensor_multiplier).
        m, s = quant.quantize_multiplier(float(x.s) * float(w.s) / float(y.s))
        mult, shift = np.array([m]), np.array([s])
    act_min, act_max = quant.activation_range(_act(op), float(y.s), y.zp)
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1
    fields = {
        "batches": batches, "units": units, "depth": depth,
        "in_zp": x.zp, "w_zp": 0 if per_channel else w.zp, "out_zp": y.zp, "act_min": act_min, "act_max": act_max,
        "per_channel": int(per_channel),
    }
    if fields["w_zp"] == 0:
        fields["in_zp"], bias = _fold_input_zp(c, g, op, bias, w.data.reshape(units, -1).sum(1), x.zp)
    packed = _pack(c, w, 0, weight_bits) if w.data.ndim == 2 else None
    if packed is not None:
        fields["weights"] = "0"
    elif fields["w_zp"] == 0 and fields["in_zp"] == 0:  # ek_mat4x1: four units per pass, rows interleaved
        fields["weights"] = c.array("int8_t", "weights", layout.interleave_rows(w.data.reshape(units, -1), 4), 1)
        fields["interleaved"] = 1
    else:
        fields["weights"] = c.array("int8_t", "weights", w.data, 1)
    fields |= _requant_fields(c, g, op, bias, mult, shift, packed)
    c.decls.append(_struct("ek_fc_params", f"{c.p}_params", fields))
    call = f"ek_fully_connected(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}}, {{scratch}});"
    return Lowered(op.name, "ek_fc.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes,
                   scratch_bytes=0 if packed is None else depth, packed_tensor=None if packed is None else w.name)


def _pool(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    o = op.options
    b, in_h, in_w, ch = x.shape
    _, out_h, out_w, _ = y.shape
    kh, kw, sh, sw_ = o.filterHeight, o.filterWidth, o.strideH, o.strideW
    act_min, act_max = quant.activation_range(_act(op), float(y.s), y.zp)
    fields = {
        "batches": b, "in_h": in_h, "in_w": in_w, "channels": ch, "out_h": out_h, "out_w": out_w,
        "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw_,
        "pad_h": quant.padding(in_h, kh, sh, 1, out_h) if o.padding == 0 else 0,
        "pad_w": quant.padding(in_w, kw, sw_, 1, out_w) if o.padding == 0 else 0,
        "act_min": act_min, "act_max": act_max,
    }
    c.decls.append(_struct("ek_pool_params", f"{c.p}_params", fields))
    kern = "ek_avg_pool" if op.name == "AVERAGE_POOL_2D" else "ek_max_pool"
    call = f"{kern}(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    ov = _overlap(fields, x, y)
    return Lowered(op.name, "ek_pool.c", c.decls, call, (x.index,), y.index, overlap=ov, const_bytes=c.const_bytes)


def _operand(c: _Ctx, g: Graph, idx: int) -> str:
    """The C expression for an input that may be a constant tensor."""
    t = g.t(idx)
    if t.data is not None:
        return c.array("int8_t", f"c{idx}", t.data, 1)
    return f"{{t{idx}}}"


def binary_multipliers(op: Op, a: Tensor, b: Tensor, y: Tensor, left_shift: int) -> dict[str, int]:
    """TFLM's ADD / SUB multipliers (both inputs rescaled to twice the larger scale after a left shift
    of ``left_shift`` bits: 20 for int8, 15 for int16) or MUL's single one, as ek_binary_params fields."""
    if op.name in ("ADD", "SUB"):
        s1, s2, so = float(a.s), float(b.s), float(y.s)
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = quant.quantize_multiplier(s1 / twice_max)
        m2, sh2 = quant.quantize_multiplier(s2 / twice_max)
        mo_real = twice_max / ((1 << left_shift) * so)
        if not mo_real < 1.0:
            raise _unsupported(op, f"output scale too small for TFLM's {y.dtype} {op.name}")
        mo, sho = quant.quantize_multiplier(mo_real)
        return {"m1": m1, "s1": sh1, "m2": m2, "s2": sh2, "mo": mo, "so": sho}
    mo, sho = quant.quantize_multiplier(float(a.s) * float(b.s) / float(y.s))
    return {"m1": 0, "s1": 0, "m2": 0, "s2": 0, "mo": mo, "so": sho}


def _binary(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _need_int8(op, a, b, y)
    if len(y.shape) > MAX_DIMS:
        raise _unsupported(op, f"rank {len(y.shape)} > {MAX_DIMS}")
    od = _pad4(y.shape, MAX_DIMS)
    ad, bd = _pad4(a.shape, MAX_DIMS), _pad4(b.shape, MAX_DIMS)

    def strides(d: list[int]) -> list[int]:
        st, s = [0] * MAX_DIMS, 1
        for k in range(MAX_DIMS - 1, -1, -1):
            st[k] = 0 if d[k] == 1 and od[k] != 1 else s
            s *= d[k]
        return st

    act_min, act_max = quant.activation_range(_act(op), float(y.s), y.zp)
    f: dict[str, object] = {
        "count": y.size, "out_dims": od, "stride1": strides(ad), "stride2": strides(bd),
        "broadcast": int(not (ad == od and bd == od)),
        "zp1": a.zp, "zp2": b.zp, "out_zp": y.zp, "act_min": act_min, "act_max": act_max,
    }
    f.update(binary_multipliers(op, a, b, y, left_shift=20))
    ea, eb = _operand(c, g, a.index), _operand(c, g, b.index)
    c.decls.append(_struct("ek_binary_params", f"{c.p}_params", f))
    kern = {"ADD": "ek_add", "SUB": "ek_sub", "MUL": "ek_mul"}[op.name]
    call = f"{kern}(&{c.p}_params, {ea}, {eb}, {{t{y.index}}});"
    inplace = tuple(t.index for t, d in ((a, ad), (b, bd)) if d == od and t.data is None)
    reads = tuple(t.index for t in (a, b) if t.data is None)
    return Lowered(op.name, "ek_binary.c", c.decls, call, reads, y.index, inplace=inplace, const_bytes=c.const_bytes)


def _lut(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if op.name == "QUANTIZE" and x.dtype == "float32" and y.dtype == "int8":
        call = f"ek_quantize_f32({y.size}, {_float(y.s)}, {y.zp}, {{t{x.index}}}, {{t{y.index}}});"
        return Lowered(op.name, "ek_misc.c", [], call, (x.index,), y.index)
    if op.name == "DEQUANTIZE" and x.dtype == "int8" and y.dtype == "float32":
        call = f"ek_dequantize_f32({y.size}, {_float(x.s)}, {x.zp}, {{t{x.index}}}, {{t{y.index}}});"
        return Lowered(op.name, "ek_misc.c", [], call, (x.index,), y.index)
    _need_int8(op, x, y)
    if op.name == "LOGISTIC":
        if y.zp != -128:
            raise _unsupported(op, f"output zero point {y.zp}, TFLM requires -128")
        table = quant.logistic_table(float(x.s), x.zp)
    elif op.name == "QUANTIZE":
        table = quant.requantize_table(float(x.s), x.zp, float(y.s), y.zp)
    elif op.name in ("RELU", "RELU6"):
        # TFLM ReluQuantized: requantize, then clamp to the activation range
        lo, hi = quant.activation_range(1 if op.name == "RELU" else 3, float(y.s), y.zp)
        table = np.clip(quant.requantize_table(float(x.s), x.zp, float(y.s), y.zp), lo, hi).astype(np.int8)
    else:
        raise _unsupported(op, f"{x.dtype} -> {y.dtype}")
    name = c.array("int8_t", "table", table, 1)
    call = f"ek_lut({y.size}, {name}, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_misc.c", c.decls, call, (x.index,), y.index, inplace=(x.index,), const_bytes=c.const_bytes)


def _float(v: float) -> str:
    """An exact C float literal (hex float) for a float32 value."""
    return f"{float(np.float32(v)).hex()}f"


def _softmax(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    if y.zp != -128 or float(y.s) != 1.0 / 256:
        raise _unsupported(op, "int8 SOFTMAX output must have scale 1/256 and zero point -128")
    beta = float(getattr(op.options, "beta", 1.0))
    if not beta * float(x.s) * 2.0**26 > 1.0:
        raise _unsupported(op, "input scale too small for TFLM's int8 SOFTMAX")
    table, diff_min = quant.softmax_params(float(x.s), beta)
    depth = y.shape[-1]
    fields = {"rows": y.size // depth, "depth": depth, "diff_min": diff_min,
              "exp_table": c.array("int32_t", "exp", table, 4)}
    c.decls.append(_struct("ek_softmax_params", f"{c.p}_params", fields))
    call = f"ek_softmax(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_softmax.c", c.decls, call, (x.index,), y.index, inplace=(x.index,), const_bytes=c.const_bytes)


def _reshape(g: Graph, op: Op) -> Lowered:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.data is not None:
        raise _unsupported(op, "reshaping a constant")
    call = f"ek_copy({y.nbytes}, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_misc.c", [], call, (x.index,), y.index, alias_of=x.index)


def _mean(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    axes_t = g.t(op.inputs[1])
    if axes_t.data is None:
        raise _unsupported(op, "the axes are not a constant")
    rank = len(x.shape)
    if rank > MAX_DIMS:
        raise _unsupported(op, f"rank {rank} > {MAX_DIMS}")
    axes = sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes_t.data.reshape(-1)})
    dims = _pad4(x.shape, MAX_DIMS)
    red = [0] * MAX_DIMS
    for a in axes:
        red[a + MAX_DIMS - rank] = 1
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    m, s = quant.quantize_multiplier(float(x.s) / float(y.s))
    k = min(n.bit_length() - 1, 32, 31 + s)
    m2, s2 = (m << k) // n, s - k
    fields = {"dims": dims, "reduce": red, "in_zp": x.zp, "out_zp": y.zp, "mult": m2, "shift": s2, "n": n}
    c.decls.append(_struct("ek_mean_params", f"{c.p}_params", fields))
    call = f"ek_mean(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_misc.c", c.decls, call, (x.index,), y.index)


def _pad(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _need_int8(op, x, y)
    pt = g.t(op.inputs[1])
    if pt.data is None:
        raise _unsupported(op, "the paddings are not a constant")
    rank = len(x.shape)
    if rank > 5:
        raise _unsupported(op, f"rank {rank} > 5")
    pads = pt.data.reshape(rank, 2)
    value = y.zp
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        cv = g.t(op.inputs[2])
        if cv.data is None:
            raise _unsupported(op, "the constant value is not a constant")
        value = int(cv.data.reshape(-1)[0])
    fields = {"in_dims": _pad4(x.shape, 5), "out_dims": _pad4(y.shape, 5),
              "before": [0] * (5 - rank) + [int(p) for p in pads[:, 0]], "pad_value": value}
    c.decls.append(_struct("ek_pad_params", f"{c.p}_params", fields))
    call = f"ek_pad(&{c.p}_params, {{t{x.index}}}, {{t{y.index}}});"
    return Lowered(op.name, "ek_misc.c", c.decls, call, (x.index,), y.index)


def _concat(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    y = g.t(op.outputs[0])
    ins = [g.t(i) for i in op.inputs]
    _need_int8(op, y, *ins)
    if _act(op):
        raise _unsupported(op, "fused activation on CONCATENATION")
    for t in ins:
        if t.zp != y.zp or np.float32(t.s) != np.float32(y.s):
            raise _unsupported(op, f"input '{t.name}' quantization differs from the output's")
    rank = len(y.shape)
    axis = op.options.axis + rank if op.options.axis < 0 else op.options.axis
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    inner = int(np.prod(y.shape[axis + 1 :], dtype=np.int64))
    exprs = [_operand(c, g, t.index) for t in ins]
    blocks = c.array("int32_t", "blocks", np.array([t.shape[axis] * inner for t in ins]), 4)
    call = (
        f"{{ const int8_t *const srcs[{len(ins)}] = {{{', '.join(exprs)}}};\n"
        f"      ek_concat({outer}, {len(ins)}, srcs, {blocks}, {{t{y.index}}}); }}"
    )
    reads = tuple(t.index for t in ins if t.data is None)
    return Lowered(op.name, "ek_misc.c", c.decls, call, reads, y.index, const_bytes=c.const_bytes)


_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_LOWER = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fc,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "ADD": _binary, "SUB": _binary, "MUL": _binary,
    "LOGISTIC": _lut, "QUANTIZE": _lut, "RELU": _lut, "RELU6": _lut, "DEQUANTIZE": _lut, "SOFTMAX": _softmax,
    "RESHAPE": _reshape, "SQUEEZE": _reshape, "EXPAND_DIMS": _reshape,
    "UNPACK": _reshape,  # one part only (checks.py): an unrolled recurrent layer's single timestep, the same bytes
    "MEAN": _mean, "PAD": _pad, "PADV2": _pad, "CONCATENATION": _concat,
}


def _register_extra() -> None:
    """Add the ops lowered in :mod:`edgekit.aot.lower_extra` (decoder, activation and shape ops)."""
    global SUPPORTED_OPS
    from edgekit.aot import lower_extra

    _LOWER.update(lower_extra.LOWER)
    SUPPORTED_OPS = tuple(sorted({*SUPPORTED_OPS, *lower_extra.LOWER}))


_register_extra()

# SVDF, int16/int32 QUANTIZE and int8 -> int16 SOFTMAX: aot/lower_state.py (it uses the helpers above)
from edgekit.aot import lower_state  # noqa: E402

from edgekit.aot import lower_lstm  # noqa: E402  UNIDIRECTIONAL_SEQUENCE_LSTM
from edgekit.aot import lower_vars  # noqa: E402  resource variables

SUPPORTED_OPS = tuple(sorted({*SUPPORTED_OPS, *lower_state.OPS, *lower_lstm.OPS, *lower_vars.OPS}))
_LOWER = {**_LOWER, **lower_state.lowerings(_LOWER), **lower_lstm.lowerings(), **lower_vars.lowerings()}
