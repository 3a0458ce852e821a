"""Host-side int16x8 arithmetic: what TFLM computes at Prepare time for int16 activations.

The SOFTMAX tables are TFLM's 513-entry interpolated lookup tables for exp(x) on
[-10, 0] and 1/(1+x) on [0, 1], built here with the same float32 operations in the
same order; LOGISTIC uses a 256-entry table of sigmoid(i/24) in 0.16 fixed point (interpolation-corrected) and
an input multiplier that brings the input to units of 1/(3*4096). The C kernels
(runtime/c/ek_int16.c) only do the Eval-time work.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgekit.aot.quant import quantize_multiplier, round_away

F32 = np.float32
INT16_RANGE = 65535  # int16 max - int16 min


def _round(v: np.float32) -> np.float32:
    """TfLiteRound on a float: half away from zero, staying float32."""
    return F32(round_away(float(v)))


def lut_int16(f: Callable[[np.float32], np.float32], in_scale: np.float32, in_zp: int,
              out_scale: np.float32, out_zp: int) -> np.ndarray:
    """A 513-entry int16 table of ``f`` sampled over the int16 input range (TFLM's LUTPopulate for int16):
    512 steps, each sample nudged by half its midpoint interpolation error, plus the end point."""
    input_min = F32(in_scale * F32(-32768 - in_zp))
    input_max = F32(in_scale * F32(32767 - in_zp))
    output_min = F32(out_scale * F32(-32768 - out_zp))
    output_max = F32(out_scale * F32(32767 - out_zp))
    step = F32(F32(input_max - input_min) / F32(512))
    half = F32(step / F32(2))
    inv = F32(F32(65536) / F32(output_max - output_min))
    lut = np.empty(513, dtype=np.int16)
    for i in range(512):
        x = F32(input_min + F32(F32(i) * step))
        val, mid, nxt = f(x), f(F32(x + half)), f(F32(input_min + F32(F32(i + 1) * step)))
        sample = _round(F32(val * inv))
        mid_interp = _round(F32(F32(F32(nxt * inv) + _round(F32(val * inv))) / F32(2)))
        mid_val = _round(F32(mid * inv))
        bias = _round(F32(F32(mid_interp - mid_val) / F32(2)))
        lut[i] = int(min(max(float(sample - bias), -32768.0), 32767.0))
    lut[512] = int(min(max(float(_round(F32(f(input_max) * inv))), -32768.0), 32767.0))
    return lut


def _exp(x: np.float32) -> np.float32:
    return F32(math.exp(float(x)))  # exp in double, rounded once: expf's value


def _recip1p(x: np.float32) -> np.float32:
    return F32(F32(1) / F32(F32(1) + x))


def softmax_tables() -> tuple[np.ndarray, np.ndarray]:
    """The int16 SOFTMAX tables (exp on [-10, 0], 1/(1+x) on [0, 1]); the same for every model."""
    exp_lut = lut_int16(_exp, F32(F32(10) / F32(INT16_RANGE)), 32767, F32(F32(2) / F32(INT16_RANGE)), 0)
    recip_lut = lut_int16(_recip1p, F32(F32(1) / F32(INT16_RANGE)), -32768, F32(F32(2) / F32(INT16_RANGE)), 0)
    return exp_lut, recip_lut


def softmax_multiplier(s_in: float, beta: float) -> tuple[int, int]:
    """(multiplier, shift) that maps an int16 difference x - max onto [-65535, 0] ~ [-10, 0]."""
    return quantize_multiplier(float(F32(s_in)) * float(F32(beta)) / (10.0 / 65535.0))


def sigmoid_table() -> np.ndarray:
    """sigmoid(i / 24) for i < 256 in 0.16 fixed point, each sample lowered by half the error of linear
    interpolation at its step's midpoint; the last entry is the saturated value 65535, which the
    kernel interpolates towards just below saturation."""
    i = np.arange(256, dtype=np.float64)

    def f(v: np.ndarray) -> np.ndarray:
        return 65536.0 / (1.0 + np.exp(-v / 24.0))

    val, mid, nxt = f(i), f(i + 0.5), f(i + 1.0)
    t = np.floor(val - ((val + nxt) / 2.0 - mid) / 2.0 + 0.5)
    t[-1] = 65535
    return np.minimum(t, 65535).astype(np.uint16)


def logistic_params(s_in: float) -> tuple[int, int]:
    """(multiplier, shift) with (x * multiplier + round) >> shift in units of 1/(3*4096), as TFLM's LOGISTIC
    Prepare for int16; raises ValueError when the input scale is too large for the 15-bit multiplier."""
    s = float(F32(s_in))
    if abs(math.log2(s) + 12) < 1e-3:  # scale 2^-12: TFLM's power-of-two path, multiplier 3
        return 3, 0
    m, shift = s * 4096.0 * 3.0, 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        m *= 2.0
    if int(m) > 32767:
        raise ValueError(f"input scale {s:.6g} is too large for TFLM's int16 LOGISTIC")
    return int(m), shift
