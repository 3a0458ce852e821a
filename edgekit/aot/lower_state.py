"""Lower the stateful and mixed-width ops of TFLM's keyword models to edgekit's C runtime.

- SVDF (int8 input and output, int16 or int8 state): ``ek_svdf`` / ``ek_svdf_s8`` in ``ek_svdf.c``. Its
  activation state is a *variable tensor*: it keeps its values between calls, so
  it lives in the arena's state area (see :func:`state_layout`), which the
  planner never reuses and ``<prefix>_reset`` fills with the state's zero point.
- QUANTIZE int16 -> int8 and int16 -> int32 (``ek_requant.c``), and SOFTMAX
  int8 -> int16 (``ek_softmax.c``): the int16 input and int32 output around
  TFLM's ``keyword_scrambled.tflite``.

Resource variables are resolved by :mod:`edgekit.aot.lower_vars`. Registered
from :mod:`edgekit.aot.lower`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekit.aot import quant
from edgekit.aot.graph import Graph, Op
from edgekit.aot.lower import Lowered, _Ctx, _need_int8, _struct, _unsupported
from edgekit.errors import UnsupportedOpError

OPS = ("SVDF",)
_CTYPE = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}


@dataclass(frozen=True)
class StateLayout:
    """The arena's state area: byte offset of each variable tensor inside it, and its size (a multiple of 4)."""

    offsets: dict[int, int]
    nbytes: int


def state_layout(g: Graph) -> StateLayout:
    """Place every variable tensor the ops read or write, 4-byte aligned, in tensor order."""
    used = {i for op in g.ops for i in (*op.inputs, *op.outputs) if i >= 0}  # ASSIGN_VARIABLE writes one
    offsets, at = {}, 0
    for t in g.tensors:
        if t.is_variable and t.index in used:
            offsets[t.index] = at
            at += (t.nbytes + 3) // 4 * 4
    return StateLayout(offsets, at)


def reset_code(g: Graph, layout: StateLayout, base: str) -> list[str]:
    """C statements filling each state tensor with its zero point (TFLM's ResetVariableTensors); ``base`` is
    the state area's ``int8_t *`` expression."""
    lines = []
    for idx, off in layout.offsets.items():
        t = g.t(idx)
        ctype = _CTYPE.get(t.dtype)
        if ctype is None:
            raise UnsupportedOpError(f"state tensor '{t.name}' is {t.dtype}", "edgekit's runtime keeps int8/int16/int32 state only")
        lines.append(f"{{ {ctype} *s = ({ctype} *)(void *)({base} + {off}); "
                     f"for (int32_t i = 0; i < {t.size}; i++) s[i] = {t.zp}; }}")
    return lines


def _svdf(g: Graph, op: Op) -> Lowered:
    c = _Ctx(g, op)
    x, wf, wt, st = (g.t(op.inputs[k]) for k in (0, 1, 2, 4))
    y = g.t(op.outputs[0])
    _need_int8(op, x, wf, y)
    if wt.dtype != st.dtype or wt.dtype not in ("int8", "int16"):
        raise _unsupported(op, f"time weights {wt.dtype} and state {st.dtype}; the runtime runs an int16 or int8 state")
    if wf.data is None or wt.data is None:
        raise _unsupported(op, "the weights are not constants")
    _need_scales(op, x, wf, wt, st, y)
    if wf.scale.size != 1 or wt.scale.size != 1:
        raise _unsupported(op, "per-channel SVDF weights")
    rank = int(op.options.rank)
    batches, input_size = x.shape
    filters, memory = wt.shape
    # TFLM's PrepareSvdf: float32 products and quotient, then widened to double (an overflow to inf is refused
    # by quantize_multiplier)
    with np.errstate(all="ignore"):
        e1 = np.float32(np.float32(x.s) * np.float32(wf.s)) / np.float32(st.s)
        e2 = np.float32(np.float32(st.s) * np.float32(wt.s)) / np.float32(y.s)
    m1, s1 = quant.quantize_multiplier(float(np.float32(e1)))
    m2, s2 = quant.quantize_multiplier(float(np.float32(e2)))
    bias = "0"
    if op.inputs[3] >= 0:
        b = g.t(op.inputs[3])
        if b.dtype != "int32":
            raise _unsupported(op, f"bias '{b.name}' is {b.dtype}, not int32")
        bias = c.array("int32_t", "bias", b.data, 4)
    fields = {
        "batches": batches, "input_size": input_size, "filters": filters, "units": filters // rank, "rank": rank,
        "memory": memory, "in_zp": x.zp, "state_zp": st.zp, "out_zp": y.zp, "m1": m1, "s1": s1, "m2": m2, "s2": s2,
        "weights_feature": c.array("int8_t", "weights_feature", wf.data, 1),
        "bias": bias,
    }
    if wt.dtype == "int16":
        fields["weights_time"] = c.array("int16_t", "weights_time", wt.data, 2)
        kern, state = "ek_svdf", f"(int16_t *)(void *){{t{st.index}}}"
    else:
        fields["weights_time_s8"] = c.array("int8_t", "weights_time", wt.data, 1)
        kern, state = "ek_svdf_s8", f"{{t{st.index}}}"
    c.decls.append(_struct("ek_svdf_params", f"{c.p}_params", fields))
    call = f"{kern}(&{c.p}_params, {{t{x.index}}}, {state}, {{t{y.index}}}, (int32_t *)(void *){{scratch}});"
    return Lowered(op.name, "ek_svdf.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes,
                   scratch_bytes=4 * filters)


def _quantize(g: Graph, op: Op) -> Lowered | None:
    """QUANTIZE int16 -> int32 (TFLM's Requantize with a double-precision scale ratio); None for other
    widths (int16 <-> int8 is aot/lower_int16.py's)."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if (x.dtype, y.dtype) != ("int16", "int32"):
        return None
    _need_scales(op, x, y)
    c = _Ctx(g, op)
    m, s = quant.quantize_multiplier(float(x.s) / float(y.s))
    if y.dtype == "int32":
        worst = abs(quant.mbqm(-32768 - x.zp, m, s)) + abs(quant.mbqm(32767 - x.zp, m, s)) + abs(y.zp)
        if worst >= 2**31:
            raise _unsupported(op, "the int32 output could overflow")
    c.decls.append(_struct("ek_requant_params", f"{c.p}_params", {"in_zp": x.zp, "out_zp": y.zp, "m": m, "shift": s}))
    call = (f"ek_requant_s16_s32({y.size}, &{c.p}_params, (const int16_t *)(const void *){{t{x.index}}}, "
            f"(int32_t *)(void *){{t{y.index}}});")
    return Lowered(op.name, "ek_requant.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _softmax(g: Graph, op: Op) -> Lowered | None:
    """SOFTMAX int8 -> int16 (TFLM: output zero point -32768, scale 1/65536 within 0.1 %); None for int8 output."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if y.dtype != "int16":
        return None
    _need_int8(op, x)
    if y.zp != -32768 or abs(float(y.s) - 1.0 / 65536) > 0.001 / 65536:
        raise _unsupported(op, "int16 SOFTMAX output must have scale 1/65536 and zero point -32768")
    beta = float(getattr(op.options, "beta", 1.0))
    if not beta * float(x.s) * 2.0**26 > 1.0:
        raise _unsupported(op, "input scale too small for TFLM's int8 SOFTMAX")
    c = _Ctx(g, op)
    table, diff_min = quant.softmax_params(float(x.s), beta)
    depth = y.shape[-1]
    fields = {"rows": y.size // depth, "depth": depth, "diff_min": diff_min,
              "exp_table": c.array("int32_t", "exp", table, 4)}
    c.decls.append(_struct("ek_softmax_params", f"{c.p}_params", fields))
    call = f"ek_softmax_s8_s16(&{c.p}_params, {{t{x.index}}}, (int16_t *)(void *){{t{y.index}}});"
    return Lowered(op.name, "ek_softmax.c", c.decls, call, (x.index,), y.index, const_bytes=c.const_bytes)


def _need_scales(op: Op, *tensors) -> None:
    for t in tensors:
        if t.scale.size == 0 or not float(t.s) > 0:
            raise _unsupported(op, f"tensor '{t.name}' has no positive quantization scale")


def lowerings(base: dict[str, Callable]) -> dict[str, Callable]:
    """The op lowerings this module adds or widens; ``base`` holds the int8 ones it falls back to."""

    def widen(mine: Callable, name: str) -> Callable:
        return lambda g, op: mine(g, op) or base[name](g, op)

    return {"SVDF": _svdf, "QUANTIZE": widen(_quantize, "QUANTIZE"), "SOFTMAX": widen(_softmax, "SOFTMAX")}
