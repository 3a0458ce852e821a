"""What the code generator proves before it emits C: every index and size the kernels will use.

The model verifier (:mod:`edgekit.model_check`) has already checked the file
against itself (indices in range, buffer sizes, quantization parameters). Here
the graph is checked against what edgekit's C kernels assume:

- :func:`check_dataflow`: every op writes one fresh, non-constant tensor;
  every tensor it reads is a constant, the model input, an earlier op's
  output or, at an op's state input (:data:`STATE_INPUTS`), a variable tensor; the model output is written; no activation is empty (a zero-sized
  input made the host check loop forever).
- :func:`check_op`: each op's arity, ranks and output shape are what its
  inputs and options give (shape inference), accumulations cannot overflow
  int32, and parameters are in the ranges the kernels index with.

Anything else raises :class:`~edgekit.errors.UnsupportedOpError` naming the
op, so the generated C never reads or writes outside its arrays.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.errors import UnsupportedOpError

MAX_ARENA_BYTES = 2**31 - 1
# |(x - x_zp) * (w - w_zp)| <= 255 * 255: an int32 accumulator holds this many terms (pools, MEAN)
MAX_ACCUMULATION = (2**31 - 1) // (255 * 255)
# (min inputs, max inputs) of each op the runtime lowers; -1 is allowed only for optional inputs past the minimum
ARITY = {
    "CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3), "FULLY_CONNECTED": (2, 3),
    "AVERAGE_POOL_2D": (1, 1), "MAX_POOL_2D": (1, 1), "ADD": (2, 2), "SUB": (2, 2), "MUL": (2, 2),
    "LOGISTIC": (1, 1), "QUANTIZE": (1, 1), "DEQUANTIZE": (1, 1), "RELU": (1, 1), "RELU6": (1, 1), "SOFTMAX": (1, 1),
    "RESHAPE": (1, 2), "SQUEEZE": (1, 1), "EXPAND_DIMS": (1, 2), "MEAN": (2, 2), "PAD": (2, 2), "PADV2": (2, 3),
    "CONCATENATION": (1, 64), "SVDF": (5, 5), "UNIDIRECTIONAL_SEQUENCE_LSTM": (1, 24),
    "READ_VARIABLE": (1, 1), "ASSIGN_VARIABLE": (1, 1), "UNPACK": (1, 1),
}
# (op, input position) of the variable tensors an op keeps its state in
STATE_INPUTS = {("SVDF", 4), ("UNIDIRECTIONAL_SEQUENCE_LSTM", 18), ("UNIDIRECTIONAL_SEQUENCE_LSTM", 19), ("READ_VARIABLE", 0)}
# the options table each op's lowering reads (ops not listed read none); required ones must be present
_OPTIONS = {
    "CONV_2D": "Conv2DOptionsT", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptionsT", "AVERAGE_POOL_2D": "Pool2DOptionsT",
    "MAX_POOL_2D": "Pool2DOptionsT", "CONCATENATION": "ConcatenationOptionsT", "FULLY_CONNECTED": "FullyConnectedOptionsT",
    "ADD": "AddOptionsT", "SUB": "SubOptionsT", "MUL": "MulOptionsT", "SOFTMAX": "SoftmaxOptionsT",
    "SVDF": "SVDFOptionsT", "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptionsT",
}
# TFLite's LSTM input slots (lstm_shared.h): per gate its input and recurrent weights and its bias, in the order
# ek_lstm takes the gates; the hidden (output) state and the cell state
LSTM_GATES = {"forget": (2, 6, 13), "input": (1, 5, 12), "cell": (3, 7, 14), "output": (4, 8, 15)}
LSTM_HIDDEN, LSTM_CELL = 18, 19
MULTI_OUTPUT = ("SPLIT", "SPLIT_V")  # ops with one output tensor per part
DATA_INPUT = {"TRANSPOSE_CONV": 2, "SPLIT": 1}  # the input the kernel reads from the arena, when not the first
_NEEDS_OPTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION", "SVDF",
                  "UNIDIRECTIONAL_SEQUENCE_LSTM")


def _bad(op: Op, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {op.index} {op.name}: {why}",
                              "the model's shapes or parameters are inconsistent; edgekit will not generate C for it")


def check_dataflow(g: Graph) -> None:
    """Raise UnsupportedOpError unless the ops form a straight-line program over distinct tensors (see module docstring)."""
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        return  # codegen refuses these itself, with its own message
    available = {g.inputs[0]} | {t.index for t in g.tensors if t.data is not None}
    variables = {t.index for t in g.tensors if t.is_variable}
    for op in g.ops:
        if len(op.outputs) != 1 and not (op.name in MULTI_OUTPUT and op.outputs):
            raise _bad(op, f"{len(op.outputs)} outputs; the runtime's ops other than {', '.join(MULTI_OUTPUT)} have exactly one")
        for k, i in enumerate(op.inputs):
            if i >= 0 and i not in available and not (i in variables and (op.name, k) in STATE_INPUTS):
                raise _bad(op, f"reads tensor {i} before any op writes it")
        for y in op.outputs:
            if (y in available or y in variables) and not (op.name == "ASSIGN_VARIABLE" and y in variables):  # lower_vars.resolve
                raise _bad(op, f"writes tensor {y}, which is a constant, a variable, the model input or already written")
            available.add(y)
    if g.outputs[0] not in available or g.outputs[0] == g.inputs[0]:
        raise UnsupportedOpError(f"model output tensor {g.outputs[0]} is never written by an op",
                                 "the model's graph is inconsistent; edgekit will not generate C for it")
    for t in g.tensors:
        if t.data is None and t.index in available and t.size == 0:
            raise UnsupportedOpError(f"tensor {t.index} '{t.name}' has no elements (shape {list(t.shape)})",
                                     "edgekit generates C only for tensors with at least one element")


def check_op(g: Graph, op: Op) -> None:
    """Raise UnsupportedOpError unless ``op``'s arity, shapes and parameters are what its kernel assumes."""
    lo, hi = ARITY.get(op.name, (0, 1 << 30))
    if not lo <= len(op.inputs) <= hi:
        raise _bad(op, f"{len(op.inputs)} inputs, expected {lo}..{hi}")
    if any(i < 0 for i in op.inputs[:lo]):
        raise _bad(op, "a required input is missing")
    if op.name in _NEEDS_OPTIONS and op.options is None:
        raise _bad(op, "its options are missing")
    if op.options is not None and op.name in _OPTIONS and type(op.options).__name__ != _OPTIONS[op.name]:
        raise _bad(op, f"its options are {type(op.options).__name__.removesuffix('T')}, not {_OPTIONS[op.name].removesuffix('T')}")
    for i in (*op.inputs, *op.outputs):
        t = g.t(i) if i >= 0 else None
        if t is not None and t.dtype in ("int8", "int16") and t.scale.size == 0:
            raise _bad(op, f"{t.dtype} tensor '{t.name}' has no quantization scale")
    data = g.t(op.inputs[DATA_INPUT.get(op.name, 0)])
    if op.name not in ("ADD", "SUB", "MUL", "CONCATENATION") and data.data is not None:
        raise _bad(op, f"its data input '{data.name}' is a constant; the kernel reads it from the arena")
    check = _CHECKS.get(op.name)
    if check is not None:
        check(g, op)


def check_arena(arena_bytes: int) -> None:
    """The planned arena must be addressable with int32 offsets."""
    if arena_bytes > MAX_ARENA_BYTES:
        raise UnsupportedOpError(f"the arena would need {arena_bytes:,} bytes", "the model is far too large for a microcontroller")


def _ins(g: Graph, op: Op) -> tuple[Tensor, ...]:
    return tuple(g.t(i) for i in op.inputs if i >= 0)


def _rank(op: Op, t: Tensor, *ranks: int) -> None:
    if len(t.shape) not in ranks:
        raise _bad(op, f"tensor '{t.name}' has rank {len(t.shape)}, expected {' or '.join(map(str, ranks))}")


def _same_size(op: Op, x: Tensor, y: Tensor) -> None:
    if x.size != y.size:
        raise _bad(op, f"input has {x.size} elements but output '{y.name}' has {y.size}")


def _positive(op: Op, **values: int) -> None:
    for k, v in values.items():
        if not isinstance(v, (int, np.integer)) or not 1 <= int(v) <= 2**16:
            raise _bad(op, f"{k} {v} is not in 1..65536")


def _window_out(op: Op, n: int, k: int, stride: int, dil: int, padding: int) -> int:
    if padding not in (0, 1):
        raise _bad(op, f"unknown padding {padding}")
    eff = (k - 1) * dil + 1
    out = (n + stride - 1) // stride if padding == 0 else (n - eff) // stride + 1
    if out < 1:
        raise _bad(op, f"a {k}-tap window (dilation {dil}) does not fit an input of {n}")
    return out


def _bias(g: Graph, op: Op, n: int) -> None:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = g.t(op.inputs[2])
        if b.data is not None and b.data.size != n:
            raise _bad(op, f"bias '{b.name}' has {b.data.size} values for {n} output channels")



def _weighted_sums(g: Graph, op: Op, w: Tensor, axis: int, w_zp: int, bias_input: int = 2) -> None:
    """Prove no output channel's accumulator (plus its bias) can leave its range, whatever the input.

    Each term is (x - x_zp) * (w - w_zp) with |x - x_zp| <= 255 for int8 inputs and
    |x| <= 32768 for int16 ones, so channel c's sum is at most that times sum|w - w_zp|
    over its weights, plus |bias_c|. The range is int32, except for int16 inputs with an
    int64 bias (or none), where TFLM accumulates in int64 and its 64-bit rescale needs
    |sum| < 2^47.
    """
    if w.data is None:
        return  # lowering refuses a non-constant filter
    n = w.shape[axis]
    x16 = g.t(op.inputs[0]).dtype == "int16"
    mag = np.abs(np.moveaxis(w.data.astype(np.int64), axis, 0).reshape(n, -1)).sum(axis=1)
    worst = (32768 if x16 else 255) * (mag + abs(w_zp) * (w.size // max(n, 1)))
    bias = g.t(op.inputs[bias_input]) if len(op.inputs) > bias_input and op.inputs[bias_input] >= 0 else None
    if bias is not None and bias.data is not None:
        worst = worst + np.abs(bias.data.astype(np.int64).reshape(-1))
    # TFLM's accumulator has the bias's type; without a bias, the options' quantized_bias_type (INT32 = 2)
    wide = x16 and (bias.dtype == "int64" if bias is not None else getattr(op.options, "quantizedBiasType", 0) != 2)
    limit, what = (2**47 - 1, "the 48 bits TFLM's 64-bit rescale takes") if wide else (2**31 - 1, "int32")
    if int(worst.max()) > limit:
        raise _bad(op, f"an output channel's sum can reach {int(worst.max()):,}, beyond {what}: its accumulator would overflow")


def _accumulation(op: Op, n: int) -> None:
    if n > MAX_ACCUMULATION:
        raise _bad(op, f"each output sums {n:,} products, more than an int32 accumulator holds ({MAX_ACCUMULATION:,})")


def _conv(g: Graph, op: Op) -> None:
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    for t in (x, w, y):
        _rank(op, t, 4)
    o = op.options
    _positive(op, stride_h=o.strideH, stride_w=o.strideW, dilation_h=o.dilationHFactor or 1, dilation_w=o.dilationWFactor or 1)
    b, in_h, in_w, in_c = x.shape
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    if depthwise:
        one, kh, kw, out_c = w.shape
        if one != 1 or in_c < 1 or out_c % in_c:
            raise _bad(op, f"filter {list(w.shape)} does not fit {in_c} input channels")
    else:
        out_c, kh, kw, fic = w.shape
        if fic < 1 or in_c % fic or out_c % (in_c // fic):
            raise _bad(op, f"filter {list(w.shape)} does not fit {in_c} input channels")
    _positive(op, k_h=kh, k_w=kw)
    oh = _window_out(op, in_h, kh, o.strideH, o.dilationHFactor or 1, o.padding)
    ow = _window_out(op, in_w, kw, o.strideW, o.dilationWFactor or 1, o.padding)
    if tuple(y.shape) != (b, oh, ow, out_c):
        raise _bad(op, f"output shape {list(y.shape)} is not the {[b, oh, ow, out_c]} the input and filter give")
    if w.dtype == "int8" and w.scale.size not in (1, out_c):
        raise _bad(op, f"filter '{w.name}' has {w.scale.size} scales for {out_c} output channels")
    _bias(g, op, out_c)
    _weighted_sums(g, op, w, 3 if depthwise else 0, 0)


def _fc(g: Graph, op: Op) -> None:
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    _rank(op, w, 2)
    units, depth = w.shape
    if units < 1 or depth < 1 or x.size % depth or y.size != x.size // depth * units:
        raise _bad(op, f"input {list(x.shape)}, weights {list(w.shape)} and output {list(y.shape)} do not agree")
    if w.dtype == "int8" and w.scale.size not in (1, units):
        raise _bad(op, f"weights '{w.name}' have {w.scale.size} scales for {units} units")
    _bias(g, op, units)
    _weighted_sums(g, op, w, 0, 0 if w.scale.size > 1 else w.zp)


def _pool(g: Graph, op: Op) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    _rank(op, x, 4)
    _rank(op, y, 4)
    o = op.options
    _positive(op, filter_h=o.filterHeight, filter_w=o.filterWidth, stride_h=o.strideH, stride_w=o.strideW)
    b, in_h, in_w, ch = x.shape
    want = (b, _window_out(op, in_h, o.filterHeight, o.strideH, 1, o.padding),
            _window_out(op, in_w, o.filterWidth, o.strideW, 1, o.padding), ch)
    if tuple(y.shape) != want:
        raise _bad(op, f"output shape {list(y.shape)} is not the {list(want)} the input and window give")
    _accumulation(op, o.filterHeight * o.filterWidth)


def _binary(g: Graph, op: Op) -> None:
    a, b = _ins(g, op)[:2]
    y = g.t(op.outputs[0])
    r = max(len(a.shape), len(b.shape))
    if r > 6 or len(y.shape) != r:
        raise _bad(op, f"shapes {list(a.shape)}, {list(b.shape)} -> {list(y.shape)} are not a broadcast of rank <= 6")
    pa, pb = [1] * (r - len(a.shape)) + list(a.shape), [1] * (r - len(b.shape)) + list(b.shape)
    for da, db, dy in zip(pa, pb, y.shape):
        if da not in (1, dy) or db not in (1, dy) or dy != max(da, db):
            raise _bad(op, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast to {list(y.shape)}")
    for t in (a, b):
        if t.data is not None and t.data.size != t.size:
            raise _bad(op, f"constant '{t.name}' holds {t.data.size} values for shape {list(t.shape)}")


def _unary(g: Graph, op: Op) -> None:
    _same_size(op, g.t(op.inputs[0]), g.t(op.outputs[0]))


def _softmax(g: Graph, op: Op) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if tuple(x.shape) != tuple(y.shape) or not y.shape or y.shape[-1] < 1:
        raise _bad(op, f"input {list(x.shape)} and output {list(y.shape)} must be the same shape, rank >= 1")
    if x.dtype == "int16" and y.shape[-1] > 65536:
        raise _bad(op, f"{y.shape[-1]} classes: the int16 kernel's sum of exps (each < 2^15) would leave int32")


def _mean(g: Graph, op: Op) -> None:
    x, axes, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    rank = len(x.shape)
    if axes.data is None or axes.dtype not in ("int32", "int64") or rank > 6:
        return  # lowering refuses these with its own message
    vals = [int(a) for a in axes.data.reshape(-1)]
    if not vals or any(not -rank <= a < rank for a in vals):
        raise _bad(op, f"axes {vals} are not dimensions of rank {rank}")
    red = {a % rank for a in vals}
    n = math.prod(x.shape[a] for a in red)
    if n < 1 or y.size != x.size // n:
        raise _bad(op, f"reducing {list(x.shape)} over {sorted(red)} cannot give {list(y.shape)}")
    _accumulation(op, n)


def _pad(g: Graph, op: Op) -> None:
    x, p, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    rank = len(x.shape)
    if p.data is None or rank > 5:
        return  # lowering refuses these with its own message
    if p.data.size != 2 * rank or len(y.shape) != rank:
        raise _bad(op, f"paddings {list(p.shape)} do not fit rank {rank}")
    pads = p.data.reshape(rank, 2).astype(np.int64)
    if (pads < 0).any() or tuple(y.shape) != tuple(int(d + a + b) for d, (a, b) in zip(x.shape, pads)):
        raise _bad(op, f"input {list(x.shape)} padded by {pads.tolist()} is not output {list(y.shape)}")
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = g.t(op.inputs[2])
        if v.data is None or v.data.size < 1 or not -128 <= int(v.data.reshape(-1)[0]) <= 127:
            raise _bad(op, "the pad value is not a constant int8")


def _concat(g: Graph, op: Op) -> None:
    ins, y = _ins(g, op), g.t(op.outputs[0])
    rank = len(y.shape)
    axis = int(op.options.axis)
    if not -rank <= axis < rank:
        raise _bad(op, f"axis {axis} is not a dimension of rank {rank}")
    axis %= rank
    total = 0
    for t in ins:
        if len(t.shape) != rank or any(d != e for k, (d, e) in enumerate(zip(t.shape, y.shape)) if k != axis):
            raise _bad(op, f"input {list(t.shape)} does not fit output {list(y.shape)} along axis {axis}")
        if t.data is not None and t.data.size != t.size:
            raise _bad(op, f"constant '{t.name}' holds {t.data.size} values for shape {list(t.shape)}")
        total += t.shape[axis]
    if total != y.shape[axis]:
        raise _bad(op, f"inputs add up to {total} along axis {axis}, the output has {y.shape[axis]}")


def _svdf(g: Graph, op: Op) -> None:
    """SVDF (ek_svdf.c): shapes as TFLM's PrepareSvdf checks them, the state a variable tensor, and the
    feature dot products within int32 (the time sums may wrap, as TFLM's do; the kernel wraps them too)."""
    x, wf, wt, st = (g.t(op.inputs[k]) for k in (0, 1, 2, 4))
    y = g.t(op.outputs[0])
    for t in (x, wf, wt, st, y):
        _rank(op, t, 2)
    rank = int(op.options.rank)
    batches, input_size = x.shape
    filters, memory = wt.shape
    _positive(op, rank=rank, batches=batches, input_size=input_size, filters=filters, memory=memory)
    if filters % rank:
        raise _bad(op, f"{filters} filters are not a multiple of rank {rank}")
    units = filters // rank
    if tuple(wf.shape) != (filters, input_size):
        raise _bad(op, f"feature weights {list(wf.shape)}, expected {[filters, input_size]}")
    if tuple(st.shape) != (batches, memory * filters) or not st.is_variable:
        raise _bad(op, f"state '{st.name}' {list(st.shape)} must be a variable tensor of shape {[batches, memory * filters]}")
    if tuple(y.shape) != (batches, units):
        raise _bad(op, f"output {list(y.shape)}, expected {[batches, units]}")
    if op.inputs[3] >= 0:
        b = g.t(op.inputs[3])
        if b.data is None or b.data.size != units:
            raise _bad(op, f"bias '{b.name}' must be a constant with {units} values")
    if wf.data is not None and wt.data is not None:
        worst = 255 * np.abs(wf.data.astype(np.int64)).sum(axis=1)
        if int(worst.max()) > 2**31 - 1:
            raise _bad(op, f"a feature sum can reach {int(worst.max()):,}, beyond int32: its accumulator would overflow")


def _lstm(g: Graph, op: Op) -> None:
    """UNIDIRECTIONAL_SEQUENCE_LSTM (ek_lstm.c): shapes as TFLM's ValidateTensorSize checks them, both states
    variable tensors of batches x units, and every fully connected sum within int32, both as TFLM computes it
    (sum of w * (v - zp), then the bias) and as the kernel does (zero point folded into the bias)."""
    if len(op.inputs) != 24:
        raise _bad(op, f"{len(op.inputs)} inputs, TFLM's LSTM takes 24")
    missing = [k for k in (0, *(k for ks in LSTM_GATES.values() for k in ks), LSTM_HIDDEN, LSTM_CELL)
               if op.inputs[k] < 0 and k != 1]  # 1 (input gate weights) absent: CIFG, refused by name when lowered
    if missing:
        raise _bad(op, f"required inputs {missing} are missing")
    x, h, c = g.t(op.inputs[0]), g.t(op.inputs[LSTM_HIDDEN]), g.t(op.inputs[LSTM_CELL])
    y = g.t(op.outputs[0])
    for t in (x, y):
        _rank(op, t, 3)
    time_major = bool(op.options.timeMajor)
    steps, batches = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    input_size = x.shape[2]
    units = y.shape[2]
    _positive(op, steps=steps, batches=batches, input_size=input_size, units=units)
    if tuple(y.shape[:2]) != tuple(x.shape[:2]):
        raise _bad(op, f"output {list(y.shape)} does not match input {list(x.shape)} in time and batch")
    for st in (h, c):
        if st.size != batches * units or not st.is_variable:
            raise _bad(op, f"state '{st.name}' {list(st.shape)} must be a variable tensor of {batches} x {units} values")
    if c.zp != 0:
        raise _bad(op, f"cell state '{c.name}' has zero point {c.zp}; TFLM's integer LSTM assumes 0")
    for w_in, w_rec, b in LSTM_GATES.values():
        if op.inputs[w_in] < 0:
            continue  # CIFG: lowering refuses it by name
        wi, wr, bt = g.t(op.inputs[w_in]), g.t(op.inputs[w_rec]), g.t(op.inputs[b])
        if tuple(wi.shape) != (units, input_size) or tuple(wr.shape) != (units, units):
            raise _bad(op, f"weights '{wi.name}' {list(wi.shape)} / '{wr.name}' {list(wr.shape)}, expected "
                           f"{[units, input_size]} / {[units, units]}")
        if bt.shape != (units,) or (bt.data is not None and bt.data.size != units):
            raise _bad(op, f"bias '{bt.name}' {list(bt.shape)}, expected {[units]}")
        for w, v, bias in ((wi, x, bt), (wr, h, None)):
            if w.data is None or (bias is not None and bias.data is None):
                continue  # lowering refuses non-constant weights and biases
            a = np.abs(w.data.astype(np.int64)).sum(axis=1)
            bb = np.zeros(units, np.int64) if bias is None else np.abs(bias.data.astype(np.int64).reshape(-1))
            folded = bb + abs(v.zp) * a
            worst = max(int((bb + 255 * a).max()), int((folded + 128 * a).max()))
            if worst > 2**31 - 1:
                raise _bad(op, f"a gate sum over '{w.name}' can reach {worst:,}, beyond int32")


_CHECKS = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fc,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "ADD": _binary, "SUB": _binary, "MUL": _binary,
    "LOGISTIC": _unary, "QUANTIZE": _unary, "DEQUANTIZE": _unary, "RELU": _unary, "RELU6": _unary,
    "RESHAPE": _unary, "SQUEEZE": _unary, "EXPAND_DIMS": _unary, "UNPACK": _unary, "SOFTMAX": _softmax,
    "MEAN": _mean, "PAD": _pad, "PADV2": _pad, "CONCATENATION": _concat, "SVDF": _svdf,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm,
}


# ---- the decoder, activation and shape ops of edgekit.aot.lower_extra ----

ARITY.update({
    "TRANSPOSE_CONV": (3, 4), "RESIZE_NEAREST_NEIGHBOR": (2, 2), "RESIZE_BILINEAR": (2, 2), "HARD_SWISH": (1, 1),
    "LEAKY_RELU": (1, 1), "TANH": (1, 1), "STRIDED_SLICE": (4, 4), "TRANSPOSE": (2, 2), "SPLIT": (2, 2), "SPLIT_V": (3, 3),
})
_OPTIONS.update({
    "TRANSPOSE_CONV": "TransposeConvOptionsT", "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptionsT",
    "RESIZE_BILINEAR": "ResizeBilinearOptionsT", "LEAKY_RELU": "LeakyReluOptionsT",
    "STRIDED_SLICE": "StridedSliceOptionsT", "SPLIT": "SplitOptionsT", "SPLIT_V": "SplitVOptionsT",
})
_NEEDS_OPTIONS += ("TRANSPOSE_CONV", "LEAKY_RELU", "STRIDED_SLICE")
MAX_GATHER_RANK = 6


def _const_ints(op: Op, t: Tensor, what: str) -> list[int]:
    if t.data is None or t.dtype not in ("int32", "int64"):
        raise _bad(op, f"{what} '{t.name}' is not a constant integer tensor")
    return [int(v) for v in t.data.reshape(-1)]


def strided_slice_axes(op: Op, shape: tuple[int, ...], begin, end, strides) -> list[tuple[int, int, int]]:
    """(first index, step, count) per input axis, as TFLM's StridedSliceStartForAxis / EndForAxis resolve
    begin, end, strides and the begin/end/shrink masks (a shrunk axis has count 1)."""
    rank = len(shape)
    b, e, s = ([int(v) for v in np.asarray(a).reshape(-1)] for a in (begin, end, strides))
    if not len(b) == len(e) == len(s) == rank:
        raise _bad(op, f"begin/end/strides of lengths {len(b)}, {len(e)}, {len(s)} for an input of rank {rank}")
    o = op.options
    out = []
    for k in range(rank):
        n, step = int(shape[k]), s[k]
        if step == 0 or abs(step) > 2**30:
            raise _bad(op, f"stride {step} on axis {k}")
        start = b[k] + n if b[k] < 0 else b[k]
        start = min(max(start, 0), n) if step > 0 else min(max(start, -1), n - 1)
        if o.beginMask >> k & 1:
            start = 0 if step > 0 else n - 1
        if o.shrinkAxisMask >> k & 1:
            if not 0 <= start < n:
                raise _bad(op, f"shrunk axis {k} index {b[k]} is outside 0..{n - 1}")
            out.append((start, 1, 1))
            continue
        stop = e[k] + start if getattr(o, "offset", False) else e[k]
        stop = stop + n if stop < 0 else stop
        stop = min(max(stop, 0), n) if step > 0 else min(max(stop, -1), n - 1)
        if o.endMask >> k & 1:
            stop = n if step > 0 else -1
        out.append((start, step, len(range(start, stop, step))))
    return out


def gather_in_bounds(op: Op, dims: list[int], strides: list[int], start: int, in_size: int, out_size: int) -> None:
    """Prove an ``ek_gather`` reads only inside its input (every offset start + sum i_d * strides[d] with
    0 <= i_d < dims[d] lies in 0..in_size-1) and writes exactly ``out_size`` bytes."""
    if math.prod(dims) != out_size or min(dims) < 1:
        raise _bad(op, f"gathers {dims} = {math.prod(dims)} elements into an output of {out_size}")
    lo = start + sum(min(0, (d - 1) * s) for d, s in zip(dims, strides))
    hi = start + sum(max(0, (d - 1) * s) for d, s in zip(dims, strides))
    if lo < 0 or hi >= in_size:
        raise _bad(op, f"would read input elements {lo}..{hi} of 0..{in_size - 1}")


def _strided_slice(g: Graph, op: Op) -> None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    o = op.options
    if o.ellipsisMask or o.newAxisMask or any(g.t(i).data is None for i in op.inputs[1:4]):
        return  # lowering refuses these with its own message
    if len(x.shape) > 5:
        raise _bad(op, f"rank {len(x.shape)} > 5")
    b, e, s = (_const_ints(op, g.t(i), n) for i, n in zip(op.inputs[1:4], ("begin", "end", "strides")))
    axes = strided_slice_axes(op, x.shape, b, e, s)
    want = [n for k, (_, _, n) in enumerate(axes) if not o.shrinkAxisMask >> k & 1]
    if list(y.shape) != want:
        raise _bad(op, f"output shape {list(y.shape)} is not the {want} the slice gives")


def transpose_perm(op: Op, x: Tensor, p: Tensor, y: Tensor) -> list[int]:
    """The permutation of TRANSPOSE, proven a permutation of the input's axes that gives the output shape."""
    perm = _const_ints(op, p, "permutation")
    rank = len(x.shape)
    if rank > MAX_GATHER_RANK or sorted(perm) != list(range(rank)):
        raise _bad(op, f"permutation {perm} is not a permutation of the {rank} axes (at most {MAX_GATHER_RANK})")
    if list(y.shape) != [x.shape[k] for k in perm]:
        raise _bad(op, f"output shape {list(y.shape)} is not input {list(x.shape)} permuted by {perm}")
    return perm


def _transpose(g: Graph, op: Op) -> None:
    if g.t(op.inputs[1]).data is not None:
        transpose_perm(op, g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0]))


def split_sizes(g: Graph, op: Op) -> tuple[int, list[int]]:
    """(axis, size of each part) of SPLIT / SPLIT_V, proven to tile the input along the axis."""
    if op.name == "SPLIT":
        x, a = g.t(op.inputs[1]), g.t(op.inputs[0])
    else:
        x, a = g.t(op.inputs[0]), g.t(op.inputs[2])
    rank = len(x.shape)
    axis = _const_ints(op, a, "axis")
    if len(axis) != 1 or not -rank <= axis[0] < rank or rank > MAX_GATHER_RANK:
        raise _bad(op, f"axis {axis} is not one dimension of rank {rank} (at most {MAX_GATHER_RANK})")
    ax = axis[0] % rank
    n, parts = x.shape[ax], len(op.outputs)
    if op.name == "SPLIT":
        k = int(getattr(op.options, "numSplits", 0) or 0)
        if k != parts or n % parts:
            raise _bad(op, f"{k} splits into {parts} outputs of an axis of {n}")
        sizes = [n // parts] * parts
    else:
        sizes = _const_ints(op, g.t(op.inputs[1]), "size_splits")
        if len(sizes) != parts or sizes.count(-1) > 1 or any(v < -1 for v in sizes):
            raise _bad(op, f"size_splits {sizes} for {parts} outputs")
        if -1 in sizes:
            sizes[sizes.index(-1)] = n - (sum(sizes) + 1)
    if sum(sizes) != n or min(sizes) < 1:
        raise _bad(op, f"parts {sizes} do not tile an axis of {n}")
    for t, m in zip((g.t(i) for i in op.outputs), sizes):
        want = [m if k == ax else d for k, d in enumerate(x.shape)]
        if list(t.shape) != want:
            raise _bad(op, f"output '{t.name}' has shape {list(t.shape)}, not {want}")
    return ax, sizes


def _split(g: Graph, op: Op) -> None:
    if all(g.t(i).data is not None for i in op.inputs if i != op.inputs[DATA_INPUT.get(op.name, 0)]):
        split_sizes(g, op)


def resize_size(op: Op, x: Tensor, size: Tensor, y: Tensor) -> None:
    """RESIZE_*: NHWC in and out, the constant size [out_h, out_w] is the output's, batch and depth kept."""
    _rank(op, x, 4)
    _rank(op, y, 4)
    hw = _const_ints(op, size, "size")
    if hw != [y.shape[1], y.shape[2]] or y.shape[0] != x.shape[0] or y.shape[3] != x.shape[3]:
        raise _bad(op, f"input {list(x.shape)} resized to {hw} is not output {list(y.shape)}")
    _positive(op, in_h=x.shape[1], in_w=x.shape[2], out_h=y.shape[1], out_w=y.shape[2])
    if getattr(op.options, "alignCorners", False) and getattr(op.options, "halfPixelCenters", False):
        raise _bad(op, "align_corners and half_pixel_centers are both set")


def _resize(g: Graph, op: Op) -> None:
    if g.t(op.inputs[1]).data is not None:
        resize_size(op, g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0]))


def _transpose_conv(g: Graph, op: Op) -> None:
    shape, w, x, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.inputs[2]), g.t(op.outputs[0])
    for t in (x, w, y):
        _rank(op, t, 4)
    o = op.options
    _positive(op, stride_h=o.strideH, stride_w=o.strideW)
    if o.padding not in (0, 1):
        raise _bad(op, f"unknown padding {o.padding}")
    if _const_ints(op, shape, "output shape") != list(y.shape):
        raise _bad(op, f"output shape input {shape.data.reshape(-1).tolist()} is not the output's {list(y.shape)}")
    out_c, kh, kw, ic = w.shape
    if ic != x.shape[3] or out_c != y.shape[3] or x.shape[0] != y.shape[0]:
        raise _bad(op, f"filter {list(w.shape)} does not map input {list(x.shape)} to output {list(y.shape)}")
    _positive(op, k_h=kh, k_w=kw, in_c=ic, out_c=out_c)
    if w.dtype == "int8" and w.scale.size not in (1, out_c):
        raise _bad(op, f"filter '{w.name}' has {w.scale.size} scales for {out_c} output channels")
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        b = g.t(op.inputs[3])
        if b.data is not None and b.data.size != out_c:
            raise _bad(op, f"bias '{b.name}' has {b.data.size} values for {out_c} output channels")
    _weighted_sums(g, op, w, 0, 0, bias_input=3)


_CHECKS.update({
    "TRANSPOSE_CONV": _transpose_conv, "RESIZE_NEAREST_NEIGHBOR": _resize, "RESIZE_BILINEAR": _resize,
    "HARD_SWISH": _unary, "LEAKY_RELU": _unary, "TANH": _unary,
    "STRIDED_SLICE": _strided_slice, "TRANSPOSE": _transpose, "SPLIT": _split, "SPLIT_V": _split,
})
