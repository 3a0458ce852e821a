/* edgekit runtime: TFLM's int8 fixed-point primitives (int8-arithmetic.md, section 1).
 * Part of edgekit's hand-written C99 runtime; copied next to the generated model. */
#ifndef EK_COMMON_H
#define EK_COMMON_H

#include <stdint.h>

/* The requantization runs once per output element: keep it inline even at -Os. */
#if defined(__GNUC__)
#define EK_INLINE static inline __attribute__((always_inline))
#else
#define EK_INLINE static inline
#endif

#define EK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EK_MAX(a, b) ((a) > (b) ? (a) : (b))

EK_INLINE int32_t ek_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* SaturatingRoundingDoublingHighMul: (a*b + 2^30) >> 31 on int64, saturating -1*-1. */
EK_INLINE int32_t ek_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t p = (int64_t)a * (int64_t)b + ((int64_t)1 << 30);
    /* arithmetic shift of a negative int64: gcc and arm-none-eabi-gcc sign-extend */
    return (int32_t)(p >> 31);
}

/* RoundingDivideByPOT: round half away from zero, 0 <= e <= 31. */
EK_INLINE int32_t ek_rdbp(int32_t x, int32_t e) {
    int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    int32_t rem = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier, double rounding (TFLM default build). */
EK_INLINE int32_t ek_mbqm(int32_t x, int32_t m, int32_t shift) {
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return ek_rdbp(ek_srdhm((int32_t)((uint32_t)x << left), m), right);
}

/* ek_mbqm split in two for the kernels' hot loops: the per-channel constants are derived once
 * (ek_rq_make) and applied to every accumulator of that channel (ek_rq_apply). Preconditions, which
 * the code generator checks per channel before it picks a kernel that uses them (lower._fast_requant):
 * m >= 0, -31 <= shift <= 0, and h + 2^(right-1) stays below 2^31 for every reachable accumulator.
 * Then ek_srdhm cannot saturate and TFLM's round-half-away-from-zero division by 2^right is one add
 * and one shift, (h + 2^(right-1) - (h < 0)) >> right: bit for bit ek_mbqm's result. */
typedef struct {
    int32_t m, right, nudge, neg; /* neg: -1 when right > 0 (a negative h rounds down by one), else 0 */
} ek_rq;

EK_INLINE ek_rq ek_rq_make(int32_t m, int32_t shift) {
    ek_rq r;
    r.m = m;
    r.right = -shift;
    r.nudge = (int32_t)(((uint32_t)1 << r.right) >> 1);
    r.neg = r.right ? -1 : 0;
    return r;
}

EK_INLINE int32_t ek_rq_apply(ek_rq r, int32_t x) {
    const int32_t h = (int32_t)(((int64_t)x * r.m + ((int64_t)1 << 30)) >> 31); /* arithmetic shift */
    return (h + r.nudge + ((h >> 31) & r.neg)) >> r.right;
}

EK_INLINE int8_t ek_sat8(int32_t v) { return (int8_t)ek_clamp(v, -128, 127); }

#endif
