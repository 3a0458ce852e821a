"""Lower UNIDIRECTIONAL_SEQUENCE_LSTM (int8 activations, int16 cell state) to :func:`ek_lstm` in ``ek_lstm.c``.

What TFLM's ``UnidirectionalSequenceLstmPrepare`` computes once is computed here at
generation time: each gate's input and recurrent fully connected multipliers (to int16
at scale 2^-12), the three element-wise multipliers (forget x cell, input x cell gate,
tanh(cell) x output gate), the cell clip in cell-state units and the tanh input scaling
from the cell state's power-of-two scale. The input and hidden-state zero points are
folded into the biases. The hidden and cell state are variable tensors: they live in
the arena's state area (:func:`edgekit.aot.lower_state.state_layout`), carried from call
to call as TFLM carries them, and ``<prefix>_reset`` zeroes them.

TFLM's kernel runs only the plain LSTM: peephole, projection, layer-norm and CIFG
(no input gate) variants are refused by name, as are int16 activations.
Registered from :mod:`edgekit.aot.lower`.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.aot import quant
from edgekit.aot.checks import LSTM_CELL as CELL
from edgekit.aot.checks import LSTM_GATES as GATES
from edgekit.aot.checks import LSTM_HIDDEN as HIDDEN
from edgekit.aot.graph import Graph, Op, Tensor
from edgekit.aot.lower import Lowered, _Ctx, _need_int8, _struct, _unsupported

OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM",)
VARIANTS = {9: "peephole", 10: "peephole", 11: "peephole", 16: "projection", 17: "projection",
            20: "layer normalization", 21: "layer normalization", 22: "layer normalization",
            23: "layer normalization"}
GATE_SCALE = 2.0**-12  # the gates' fully connected outputs, Q3.12
ACT_OUT_SCALE = 2.0**-15  # sigmoid and tanh outputs, Q0.15
_TANH, _SIGMOID = 4, 6  # TfLiteFusedActivation


def sigmoid_table() -> np.ndarray:
    """The 256-entry table of sigmoid(k/24) in 0.16 behind TFLM's int16 LOGISTIC and TANH.

    Each entry is raised by half the gap at the midpoint between the curve and the chord to the next
    entry, so linear interpolation errs both ways; the last entry is 0xFFFF. Derived here, not copied;
    tests/aot/test_lstm.py compares it with TFLM's table value by value.
    """
    k = np.arange(256, dtype=np.float64)
    h = 1.0 / 24

    def s(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    x = k * h
    gap = s(x + h / 2) - (s(x) + s(x + h)) / 2
    t = np.minimum(np.round(65536.0 * (s(x) + gap / 2)), 65535)
    t[-1] = 65535
    return t.astype(np.uint16)


def _tanh_scaling(cell_scale: float) -> tuple[int, int]:
    """(mult, shift) of TFLM's int16 Tanh input ``(x * mult + round) >> shift`` for a cell state at ``cell_scale``."""
    power = int(round(float(np.float32(math.log(float(cell_scale))) * np.float32(1.0 / math.log(2.0)))))
    left = 15 + power - 3
    return (3, -left) if left < 0 else (3 << left, 0)


def _folded_bias(w: Tensor, bias: np.ndarray | None, zp: int) -> np.ndarray:
    """bias - zp * (row sums of w): sum w * (v - zp) + b == sum w * v + folded (checks.py proves int32 holds it)."""
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    return (b - np.int64(zp) * w.data.astype(np.int64).sum(axis=1)).astype(np.int32)


def _gate(c: _Ctx, name: str, x: Tensor, h: Tensor, w_in: Tensor, w_rec: Tensor, b: Tensor) -> str:
    m_in, s_in = quant.quantize_multiplier(float(x.s) * float(w_in.s) / GATE_SCALE)
    m_rec, s_rec = quant.quantize_multiplier(float(h.s) * float(w_rec.s) / GATE_SCALE)
    fields = {
        "m_in": m_in, "s_in": s_in, "m_rec": m_rec, "s_rec": s_rec,
        "w_in": c.array("int8_t", f"{name}_w_in", w_in.data, 1),
        "w_rec": c.array("int8_t", f"{name}_w_rec", w_rec.data, 1),
        "bias_in": c.array("int32_t", f"{name}_bias_in", _folded_bias(w_in, b.data, x.zp), 4),
        "bias_rec": c.array("int32_t", f"{name}_bias_rec", _folded_bias(w_rec, None, h.zp), 4),
    }
    return "{ " + ", ".join(f".{k} = {v}" for k, v in fields.items()) + " }"


def _mul(s1: float, s2: float, s_out: float) -> tuple[int, int]:
    """TFLM's CreateInterGateMulParams: the double product of two float scales over the output's."""
    return quant.quantize_multiplier(float(s1) * float(s2) / float(s_out))


def refuse_variant(g: Graph, op: Op) -> None:
    """Raise UnsupportedOpError naming the LSTM variant (or data type) TFLM's integer kernel and ek_lstm lack."""
    for k, what in VARIANTS.items():
        if k < len(op.inputs) and op.inputs[k] >= 0:
            raise _unsupported(op, f"{what} LSTM (input {k} is set); TFLM's integer LSTM runs the plain one only")
    if op.inputs[1] < 0:
        raise _unsupported(op, "CIFG LSTM (no input gate); TFLM's integer LSTM runs the plain one only")
    x = g.t(op.inputs[0])
    if x.dtype == "int16":
        raise _unsupported(op, "int16 activations (16x8 LSTM); edgekit's runtime runs the int8 LSTM only")


def _lstm(g: Graph, op: Op) -> Lowered:
    refuse_variant(g, op)
    c = _Ctx(g, op)
    x, h, cs, y = g.t(op.inputs[0]), g.t(op.inputs[HIDDEN]), g.t(op.inputs[CELL]), g.t(op.outputs[0])
    _need_int8(op, x, h, y, *(g.t(op.inputs[k]) for k in range(1, 9)))
    if cs.dtype != "int16":
        raise _unsupported(op, f"cell state '{cs.name}' is {cs.dtype}; the runtime runs the int16 cell state only")
    if cs.scale.size == 0 or not float(cs.s) > 0 or not math.isfinite(float(cs.s)):
        raise _unsupported(op, f"cell state '{cs.name}' has no positive quantization scale")
    for k in range(1, 9):
        w = g.t(op.inputs[k])
        if w.data is None or w.scale.size != 1:
            raise _unsupported(op, f"weights '{w.name}' must be constant and per-tensor quantized")
        if w.zp != 0:
            raise _unsupported(op, f"weights '{w.name}' have zero point {w.zp}, not 0")
    for k in range(12, 16):
        b = g.t(op.inputs[k])
        if b.data is None or b.dtype != "int32":
            raise _unsupported(op, f"bias '{b.name}' must be a constant int32 tensor, not {b.dtype}")
    o = op.options
    act = int(o.fusedActivationFunction)
    if act not in (_TANH, _SIGMOID):
        raise _unsupported(op, f"cell gate activation {act}; TFLM's integer LSTM takes tanh or sigmoid")
    time_major = bool(o.timeMajor)
    t0, t1, input_size = x.shape
    steps, batches = (t0, t1) if time_major else (t1, t0)
    units = g.t(op.inputs[5]).shape[0]
    gates = [_gate(c, name, x, h, *(g.t(op.inputs[k]) for k in GATES[name])) for name in GATES]
    clip = 0
    if float(o.cellClip) > 0:  # static_cast<int16_t> of the clamped double quotient: truncation
        clip = int(min(max(float(np.float32(o.cellClip)) / float(cs.s), -32768.0), 32767.0))
    tanh_mult, tanh_shift = _tanh_scaling(float(cs.s))
    if 32768 * tanh_mult >= 2**31:  # the kernel's x * mult in int32
        raise _unsupported(op, f"cell state scale {float(cs.s):g} is too coarse for the int16 tanh (x * {tanh_mult})")
    fm, fs = _mul(ACT_OUT_SCALE, cs.s, cs.s)
    im, is_ = _mul(ACT_OUT_SCALE, ACT_OUT_SCALE, cs.s)
    hm, hs = _mul(ACT_OUT_SCALE, ACT_OUT_SCALE, h.s)
    fields = {
        "outer": 1 if time_major else batches, "steps": steps, "rows": batches if time_major else 1,
        "input_size": input_size, "units": units, "cell_tanh": int(act == _TANH), "cell_clip": clip,
        "tanh_mult": tanh_mult, "tanh_shift": tanh_shift,
        "forget_m": fm, "forget_s": fs, "input_m": im, "input_s": is_, "hidden_m": hm, "hidden_s": hs,
        "hidden_zp": h.zp, "gates": "{\n    " + ",\n    ".join(gates) + "\n    }",
        "sigmoid_table": c.array("uint16_t", "sigmoid", sigmoid_table(), 2),
    }
    c.decls.append(_struct("ek_lstm_params", f"{c.p}_params", fields))
    call = (f"ek_lstm(&{c.p}_params, {{t{x.index}}}, {{t{h.index}}}, (int16_t *)(void *){{t{cs.index}}}, "
            f"{{t{y.index}}}, (int16_t *)(void *){{scratch}});")
    return Lowered(op.name, "ek_lstm.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes,
                   scratch_bytes=3 * units * 2)


def lowerings() -> dict:
    """The op lowerings this module adds."""
    return {"UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm}
