"""256-entry int8 tables for the elementwise activations HARD_SWISH, LEAKY_RELU and TANH.

Each of these is an int8 -> int8 function of one input byte with per-tensor
parameters, so the code generator runs TFLM's integer algorithm here for all
256 inputs (as :func:`edgekit.aot.quant.logistic_table` does for LOGISTIC) and
the C runtime only looks the result up (``ek_lut``). The Prepare-time float
arithmetic follows TFLM's kernels (hard_swish_common.cc, leaky_relu_common.cc,
tanh.cc): float32 where TFLM computes in float, double where it casts.
"""

from __future__ import annotations

import numpy as np

from edgekit.aot.quant import exp_neg, mbqm, q4_table, quantize_multiplier, rdbp, srdhm

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1


def _sat16(v: int) -> int:
    return max(INT16_MIN, min(INT16_MAX, v))


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp's int16 SaturatingRoundingDoublingHighMul: round half away from zero of a*b / 2^15."""
    if a == b == INT16_MIN:
        return INT16_MAX
    p = a * b
    nudge = (1 << 14) if p >= 0 else 1 - (1 << 14)
    return _trunc_div(p + nudge, 1 << 15)


def _trunc_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _sdhm16(a: int, b: int) -> int:
    """TFLM's int16 SaturatingDoublingHighMul (hard_swish.h): a*b / 2^15 truncated toward zero."""
    if a == b == INT16_MIN:
        return INT16_MAX
    return _trunc_div(a * b, 1 << 15)


def _to_int16_multiplier(m32: int) -> int:
    """TFLM ``DownScaleInt32ToInt16Multiplier``."""
    if m32 >= 2**31 - 1 - (1 << 15):
        return INT16_MAX
    return (m32 + (1 << 15)) >> 16


def hard_swish_table(s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    """The 256 int8 outputs of TFLM's int8 HARD_SWISH, indexed by ``x + 128``.

    Raises :class:`~edgekit.aot.quant.MultiplierRangeError` (via quantize_multiplier) for
    unrepresentable scales and ValueError when the output multiplier needs a left shift,
    which TFLM refuses at Prepare time.
    """
    f32 = np.float32
    with np.errstate(all="ignore"):  # an inf or NaN multiplier is refused by quantize_multiplier
        hires = f32(f32(1.0 / 128.0) * f32(s_in))
        out_real, relu_real = float(f32(hires / f32(s_out))), float(f32(hires / f32(3.0 / 32768.0)))
    out_m, out_e = quantize_multiplier(out_real)
    if out_e > 0:
        raise ValueError(f"HARD_SWISH output multiplier needs a left shift of {out_e} (TFLM requires none)")
    relu_m, relu_e = quantize_multiplier(relu_real)
    out_m16, relu_m16 = _to_int16_multiplier(out_m), _to_int16_multiplier(relu_m)
    table = np.empty(256, dtype=np.int8)
    for x in range(-128, 128):
        hires_v = _sat16((x - zp_in) * 128)  # int16 in TFLM: |x - zp| <= 255 keeps it in range
        pre_out = _srdhm16(hires_v, out_m16)
        r = hires_v
        if relu_e > 0:
            r = _sat16(r * (1 << (relu_e - 1)))
        r = _srdhm16(r, relu_m16)
        if relu_e > 0:
            r = _sat16(r * 2)
        if relu_e < 0:
            r = rdbp(r, -relu_e)
        r = (r + (1 << 15)) >> 1
        v = rdbp(_sdhm16(r, pre_out), -out_e) + zp_out
        table[x + 128] = max(-128, min(127, v))
    return table


def leaky_relu_table(s_in: float, zp_in: int, s_out: float, zp_out: int, alpha: float) -> np.ndarray:
    """The 256 int8 outputs of TFLM's int8 LEAKY_RELU, indexed by ``x + 128`` (``alpha >= 0``)."""
    f32 = np.float32
    with np.errstate(all="ignore"):  # an inf or NaN multiplier is refused by quantize_multiplier
        alpha_real, identity_real = float(f32(f32(s_in) * f32(alpha)) / f32(s_out)), float(f32(f32(s_in) / f32(s_out)))
    ma, sa = quantize_multiplier(alpha_real)
    mi, si = quantize_multiplier(identity_real)
    table = np.empty(256, dtype=np.int8)
    for x in range(-128, 128):
        d = x - zp_in
        v = zp_out + (mbqm(d, mi, si) if d >= 0 else mbqm(d, ma, sa))
        table[x + 128] = max(-128, min(127, v))
    return table


def _one_minus_x_over_one_plus_x(a: int) -> int:
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1`` (Q0.31 in and out)."""
    h = (a + 2**31) // 2  # RoundingHalfSum(a, One) with One = INT32_MAX
    x = 1515870810 + srdhm(h, -1010580540)
    for _ in range(3):
        x = x + _sat_shl(srdhm(x, (1 << 29) - srdhm(h, x)), 2)
    return _sat_shl(x - (1 << 29), 2)


def _sat_shl(v: int, e: int) -> int:
    return max(-(2**31), min(2**31 - 1, v * (1 << e)))


def _tanh_q4(a: int) -> int:
    """gemmlowp ``tanh`` of a Q4.27 raw value, as a Q0.31 raw value."""
    if a == 0:
        return 0
    n = a if a < 0 else -a
    t = _one_minus_x_over_one_plus_x(exp_neg(n, 5))  # exp(2n): the same raw value read as Q5.26
    return -t if a < 0 else t


def tanh_table(s_in: float, zp_in: int) -> np.ndarray:
    """The 256 int8 outputs of TFLM's int8 TANH (output scale 1/128, zero point 0), indexed by ``x + 128``."""
    return q4_table(s_in, zp_in, lambda v: rdbp(_tanh_q4(v), 24))
