"""Host-side int8 arithmetic, transcribed from /work/shared/design/int8-arithmetic.md.

Everything that TFLM computes at Prepare time (multipliers, shifts, activation
ranges, padding) is computed here once, and the LOGISTIC table and SOFTMAX exp
table are built by running TFLM's fixed-point algorithm in Python, so the C
kernels only do what TFLM does at Eval time.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def round_away(v: float) -> int:
    """C ``round()``: half away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


class MultiplierRangeError(ValueError):
    """A real multiplier the int32 fixed-point kernels cannot represent (not finite, negative, or >= 2^30)."""


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLM ``QuantizeMultiplier`` (§1.4): real multiplier ``m >= 0`` -> (M in [2^30, 2^31-1], shift).

    Raises :class:`MultiplierRangeError` when the shift would pass 30: a left
    shift of 31 or more is undefined behaviour in the C kernels.
    """
    if not math.isfinite(m) or m < 0.0:
        raise MultiplierRangeError(f"requantization multiplier {m!r} is not a finite non-negative number")
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    mq = round_away(q * (1 << 31))
    if mq == 1 << 31:
        mq //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise MultiplierRangeError(f"requantization multiplier {m:.6g} needs a left shift of {shift} (at most 30)")
    return int(mq), int(shift)


def _wrap32(v: int) -> int:
    return ((v + 2**31) % 2**32) - 2**31


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul (§1.1)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return (a * b + (1 << 30)) >> 31


def rdbp(x: int, e: int) -> int:
    """RoundingDivideByPOT (§1.2): round half away from zero."""
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def mbqm(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier with double rounding (§1.3)."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rdbp(srdhm(_wrap32(x << left), m), right)


def activation_range(act: int, s_out: float, zp_out: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """[act_min, act_max] for a fused activation (§1.5); ``act`` is the ActivationFunctionType value.

    ``qmin``/``qmax``: the output type's range (int8 by default, -32768/32767 for int16)."""
    s = np.float32(s_out)

    def qz(f: float) -> int:
        return zp_out + int(round_away(float(np.float32(f) / s)))

    if act == 1:  # RELU
        return max(qmin, zp_out), qmax
    if act == 3:  # RELU6
        return max(qmin, zp_out), min(qmax, qz(6.0))
    if act == 2:  # RELU_N1_TO_1
        return max(qmin, qz(-1.0)), min(qmax, qz(1.0))
    return qmin, qmax


def conv_out_size(n: int, k: int, stride: int, dil: int, same: bool) -> int:
    """Output size along one axis (§2)."""
    eff = (k - 1) * dil + 1
    return (n + stride - 1) // stride if same else (n + stride - eff) // stride


def padding(n: int, k: int, stride: int, dil: int, out: int) -> int:
    """``pad_before`` along one axis (§2, ComputePaddingHeightWidth)."""
    eff = (k - 1) * dil + 1
    return max(0, (out - 1) * stride + eff - n) // 2


# ---- gemmlowp fixed point (§9), for the tables ----

def _sat_shl(v: int, e: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, v * (1 << e)))


def _exp_quarter(z: int) -> int:
    x = z + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    t = rdbp(srdhm(rdbp(x4, 2) + x3, 715827883) + x2, 1)
    return 1895147668 + srdhm(1895147668, x + t)


_EXP_C = {-2: 1672461947, -1: 1302514674, 0: 790015084, 1: 290630308, 2: 39332535, 3: 720401, 4: 242}


def exp_neg(a: int, k: int) -> int:
    """``exp_on_negative_values`` (§9): ``a <= 0`` in Q(k).(31-k) -> Q0.31."""
    f = 31 - k
    q = 1 << (f - 2)
    r = (a & (q - 1)) - q
    e = _exp_quarter(_sat_shl(r, k))
    rem = r - a
    for j in range(-2, 5):
        if j < k and (rem >> (f + j)) & 1:
            e = srdhm(e, _EXP_C[j])
    if a == 0:
        e = INT32_MAX
    return e


def recip(a: int) -> int:
    """``one_over_one_plus_x_for_x_in_0_1`` (§9)."""
    h = (a + 2**31) // 2
    x = 1515870810 + srdhm(h, -1010580540)
    for _ in range(3):
        x = x + _sat_shl(srdhm(x, (1 << 29) - srdhm(h, x)), 2)
    return _sat_shl(x, 1)


def _logistic_q4(a: int) -> int:
    if a == 0:
        return 1 << 30
    p = recip(exp_neg(-abs(a), 4))
    return p if a > 0 else INT32_MAX - p


def q4_table(s_in: float, zp_in: int, inside) -> np.ndarray:
    """The 256 int8 outputs of TFLM's int8 LOGISTIC / TANH shape, indexed by ``x + 128``: the input
    offset rescaled to Q4.27 (multiplier from ``s_in * 2^27``), -128 / 127 beyond +-15, else
    ``inside(q4)`` clamped to int8."""
    q, L = math.frexp(float(np.float32(s_in)) * 2.0**27)
    m = round_away(q * 2**31)
    radius = math.floor(15 * 2**27 / 2.0**L)
    out = np.empty(256, dtype=np.int8)
    for x in range(-128, 128):
        d = x - zp_in
        if d <= -radius:
            y = -128
        elif d >= radius:
            y = 127
        else:
            y = max(-128, min(127, inside(mbqm(d, m, L))))
        out[x + 128] = y
    return out


def logistic_table(s_in: float, zp_in: int) -> np.ndarray:
    """The 256 int8 outputs of TFLM's LOGISTIC (§10), indexed by ``x + 128``."""
    return q4_table(s_in, zp_in, lambda v: rdbp(_logistic_q4(v), 23) - 128)


def requantize_table(s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    """The 256 int8 outputs of int8 -> int8 QUANTIZE (§8), indexed by ``x + 128``."""
    m, sh = quantize_multiplier(float(np.float32(s_in)) / float(np.float32(s_out)))
    return np.array([max(-128, min(127, mbqm(x - zp_in, m, sh) + zp_out)) for x in range(-128, 128)], dtype=np.int8)


def softmax_params(s_in: float, beta: float) -> tuple[np.ndarray, int]:
    """SOFTMAX's exp table (§11), indexed by ``-d`` for d in [-255, 0] (0 below diff_min), and diff_min."""
    arg = min(float(np.float32(beta)) * float(np.float32(s_in)) * 2.0**26, 2.0**31 - 1)
    mb, L = quantize_multiplier(arg)
    diff_min = -math.floor(31 * 2**26 / 2.0**L)
    table = np.zeros(256, dtype=np.int64)
    for nd in range(256):
        d = -nd
        if d >= diff_min:
            table[nd] = exp_neg(srdhm(d * (1 << L), mb), 5)
    return table.astype(np.int32), int(diff_min)
