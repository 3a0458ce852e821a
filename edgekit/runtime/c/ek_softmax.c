/* edgekit runtime: SOFTMAX int8 -> int8 (int8-arithmetic.md sections 9 and 11;
 * TFLM reference_ops::Softmax). exp(d) for the 256 possible d = x - max is a
 * host-computed table; the sum, reciprocal and scaling run here as in TFLM. */
#include "ek_common.h"
#include "ek_kernels.h"

static int32_t sat_shl(int32_t v, int e) {
    const int64_t r = (int64_t)v * ((int64_t)1 << e);
    return r > INT32_MAX ? INT32_MAX : (r < INT32_MIN ? INT32_MIN : (int32_t)r);
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1, a >= 0 in Q0.31. */
static int32_t recip(int32_t a) {
    const int32_t h = (int32_t)(((int64_t)a + ((int64_t)1 << 31)) / 2);
    int32_t x = 1515870810 + ek_srdhm(h, -1010580540);
    for (int i = 0; i < 3; i++) x = x + sat_shl(ek_srdhm(x, (1 << 29) - ek_srdhm(h, x)), 2);
    return sat_shl(x, 1);
}

static int clz32(uint32_t v) {
    int n = 0;
    if (v == 0) return 32;
    while (!(v & 0x80000000u)) { v <<= 1; n++; }
    return n;
}

/* One implementation for both output widths: TFLM's reference Softmax<int8_t, OutputT> differs only
 * in the final shift (31 - output bits) and the output's minimum. */
static void softmax(const ek_softmax_params *p, const int8_t *in, int8_t *out8, int16_t *out16) {
    const int32_t out_min = out16 ? INT16_MIN : -128, out_max = out16 ? INT16_MAX : 127;
    const int32_t tail = out16 ? 15 : 23;
    for (int32_t r = 0; r < p->rows; r++) {
        const int8_t *x = in + r * p->depth;
        int32_t mx = -128;
        for (int32_t c = 0; c < p->depth; c++) mx = EK_MAX(mx, x[c]);
        uint32_t sum = 0; /* TFLM's int32 sum; unsigned so that rows over 4096 wrap instead of being UB */
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t d = x[c] - mx;
            if (d >= p->diff_min) sum += (uint32_t)ek_rdbp(p->exp_table[-d], 12);
        }
        const int hp = clz32(sum);
        const int32_t exponent = 12 - hp + tail;
        if (exponent > 31) {
            /* A sum of exps of 512 or more (int8 output): TFLM's RoundingDivideByPOT asserts exponent <= 31
             * (the tflite-micro interpreter aborts; shifting by 32+ is undefined in C). The quotient it
             * stands for, a value in [0, 2^31) over 2^32 or more, rounds to 0: the output's minimum. */
            for (int32_t c = 0; c < p->depth; c++) {
                if (out16) out16[r * p->depth + c] = (int16_t)out_min;
                else out8[r * p->depth + c] = (int8_t)out_min;
            }
            continue;
        }
        const int32_t z = (int32_t)((sum << hp) - 0x80000000u);
        const int32_t scale = recip(z);
        /* y[c] is written after x[c] is read: an int8 out may alias in */
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t d = x[c] - mx;
            int32_t v = out_min;
            if (d >= p->diff_min) v = ek_clamp(ek_rdbp(ek_srdhm(scale, p->exp_table[-d]), exponent) + out_min, out_min, out_max);
            if (out16) out16[r * p->depth + c] = (int16_t)v;
            else out8[r * p->depth + c] = (int8_t)v;
        }
    }
}

void ek_softmax(const ek_softmax_params *p, const int8_t *in, int8_t *out) { softmax(p, in, out, 0); }

void ek_softmax_s8_s16(const ek_softmax_params *p, const int8_t *in, int16_t *out) { softmax(p, in, 0, out); }
