/* edgekit runtime: the int8 dot product under CONV_2D and FULLY_CONNECTED.
 * Integer sums are exact, so the SIMD path (Arm DSP extension: Cortex-M4/M7/M33/M55)
 * gives the same result as the plain loop, bit for bit. */
#include <string.h>

#include "ek_common.h"
#include "ek_kernels.h"
#include "ek_simd.h"

void ek_unpack4(const uint8_t *packed, int32_t start, int32_t n, const int8_t *table, int8_t *dst) {
    int32_t i = 0;
    if ((start & 1) && n > 0) dst[i++] = table[packed[start >> 1] >> 4];
    const uint8_t *src = packed + ((start + i) >> 1);
    for (; i + 8 <= n; i += 8, src += 4) { /* one word of indices: eight weights */
        uint32_t v;
        memcpy(&v, src, 4);
        dst[i] = table[v & 15];
        dst[i + 1] = table[(v >> 4) & 15];
        dst[i + 2] = table[(v >> 8) & 15];
        dst[i + 3] = table[(v >> 12) & 15];
        dst[i + 4] = table[(v >> 16) & 15];
        dst[i + 5] = table[(v >> 20) & 15];
        dst[i + 6] = table[(v >> 24) & 15];
        dst[i + 7] = table[v >> 28];
    }
    for (; i + 2 <= n; i += 2, src++) {
        dst[i] = table[*src & 15];
        dst[i + 1] = table[*src >> 4];
    }
    if (i < n) dst[i] = table[*src & 15];
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
#include <arm_acle.h>


/* The SIMD dot product; with_off is a compile-time constant at each call, so the offset-free
 * loop (the code generator folds the input zero point into the bias) has no SADD16 at all. */
EK_INLINE int32_t dot_simd(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset, int with_off) {
    /* x + x_offset lies in [-255, 255]: it fits the int16 halves SADD16 works on */
    const uint32_t off2 = (uint32_t)(uint16_t)x_offset * 0x10001u;
#define EK_XOFF(v) (with_off ? (uint32_t)__sadd16((v), off2) : (uint32_t)(v))
    int32_t acc = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t wv, xv, wv2, xv2;
        memcpy(&wv, w + i, 4); /* unaligned word loads are fine on these cores */
        memcpy(&xv, x + i, 4);
        memcpy(&wv2, w + i + 4, 4);
        memcpy(&xv2, x + i + 4, 4);
        acc = __smlad(__sxtb16(wv), EK_XOFF(__sxtb16(xv)), acc);             /* bytes 0, 2 */
        acc = __smlad(sxtb16_ror8(wv), EK_XOFF(sxtb16_ror8(xv)), acc); /* bytes 1, 3 */
        acc = __smlad(__sxtb16(wv2), EK_XOFF(__sxtb16(xv2)), acc);
        acc = __smlad(sxtb16_ror8(wv2), EK_XOFF(sxtb16_ror8(xv2)), acc);
    }
    if (i + 4 <= n) {
        uint32_t wv, xv;
        memcpy(&wv, w + i, 4);
        memcpy(&xv, x + i, 4);
        acc = __smlad(__sxtb16(wv), EK_XOFF(__sxtb16(xv)), acc);
        acc = __smlad(sxtb16_ror8(wv), EK_XOFF(sxtb16_ror8(xv)), acc);
        i += 4;
    }
    for (; i < n; i++) acc += (int32_t)w[i] * ((int32_t)x[i] + x_offset);
    return acc;
}

int32_t ek_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset) {
    return x_offset ? dot_simd(w, x, n, x_offset, 1) : dot_simd(w, x, n, 0, 0);
}

/* Four weight rows (w, w + w_stride, ...) against one x: the x unpacking is shared. */
EK_INLINE void dot4_simd(const int8_t *w, int32_t w_stride, const int8_t *x, int32_t n, int32_t x_offset, int32_t *acc,
                         int with_off) {
    const uint32_t off2 = (uint32_t)(uint16_t)x_offset * 0x10001u;
    const int8_t *w1 = w + w_stride, *w2 = w1 + w_stride, *w3 = w2 + w_stride;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t xv, wv;
        memcpy(&xv, x + i, 4);
        const uint32_t x02 = EK_XOFF(__sxtb16(xv)), x13 = EK_XOFF(sxtb16_ror8(xv));
        memcpy(&wv, w + i, 4);
        a0 = __smlad(sxtb16_ror8(wv), x13, __smlad(__sxtb16(wv), x02, a0));
        memcpy(&wv, w1 + i, 4);
        a1 = __smlad(sxtb16_ror8(wv), x13, __smlad(__sxtb16(wv), x02, a1));
        memcpy(&wv, w2 + i, 4);
        a2 = __smlad(sxtb16_ror8(wv), x13, __smlad(__sxtb16(wv), x02, a2));
        memcpy(&wv, w3 + i, 4);
        a3 = __smlad(sxtb16_ror8(wv), x13, __smlad(__sxtb16(wv), x02, a3));
    }
    for (; i < n; i++) {
        const int32_t xi = (int32_t)x[i] + x_offset;
        a0 += (int32_t)w[i] * xi;
        a1 += (int32_t)w1[i] * xi;
        a2 += (int32_t)w2[i] * xi;
        a3 += (int32_t)w3[i] * xi;
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* Four weight rows (w, w + w_stride, ...) against one x: the x unpacking is shared. */
void ek_dot4(const int8_t *w, int32_t w_stride, const int8_t *x, int32_t n, int32_t x_offset, int32_t *acc) {
    if (x_offset)
        dot4_simd(w, w_stride, x, n, x_offset, acc, 1);
    else
        dot4_simd(w, w_stride, x, n, 0, acc, 0);
}

/* One tap of four channels, no offset: x and w hold 4 int8 each; per-channel products (SMLABB/SMLATT). */
#ifdef EK_MVE
/* Helium: the four channels are the four 32-bit lanes (widening byte loads, one multiply, one add per tap). */
void ek_dw4_full(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t rows, int32_t cols,
                 int32_t *acc) {
    int32x4_t a = vld1q_s32(acc);
    for (int32_t r = 0; r < rows; r++, x += x_row) {
        const int8_t *xp = x;
        for (int32_t c = 0; c < cols; c++, xp += x_col, w += 4) a = vaddq_s32(a, vmulq_s32(vldrbq_s32(xp), vldrbq_s32(w)));
    }
    vst1q_s32(acc, a);
}

void ek_dw4(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t w_row, int32_t w_col,
            int32_t rows, int32_t cols, int32_t x_offset, int32_t *acc) {
    int32x4_t a = vld1q_s32(acc);
    for (int32_t r = 0; r < rows; r++) {
        const int8_t *xp = x + r * x_row, *wp = w + r * w_row;
        for (int32_t c = 0; c < cols; c++, xp += x_col, wp += w_col)
            a = vaddq_s32(a, vmulq_s32(vaddq_n_s32(vldrbq_s32(xp), x_offset), vldrbq_s32(wp)));
    }
    vst1q_s32(acc, a);
}

#else
#define EK_DW_TAP(xp, wp)                                                                        \
    do {                                                                                         \
        uint32_t xv_, wv_;                                                                       \
        memcpy(&xv_, (xp), 4);                                                                   \
        memcpy(&wv_, (wp), 4);                                                                   \
        const uint32_t x02_ = __sxtb16(xv_), x13_ = sxtb16_ror8(xv_);                            \
        const uint32_t w02_ = __sxtb16(wv_), w13_ = sxtb16_ror8(wv_);                            \
        a0 = __smlabb(w02_, x02_, a0), a2 = __smlatt(w02_, x02_, a2);                            \
        a1 = __smlabb(w13_, x13_, a1), a3 = __smlatt(w13_, x13_, a3);                            \
    } while (0)

void ek_dw4_full(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t rows, int32_t cols,
                 int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    if (rows == 3 && cols == 3) { /* the common depthwise window, unrolled */
        const int8_t *r1 = x + x_row, *r2 = r1 + x_row;
        const int32_t c2 = 2 * x_col;
        EK_DW_TAP(x, w);
        EK_DW_TAP(x + x_col, w + 4);
        EK_DW_TAP(x + c2, w + 8);
        EK_DW_TAP(r1, w + 12);
        EK_DW_TAP(r1 + x_col, w + 16);
        EK_DW_TAP(r1 + c2, w + 20);
        EK_DW_TAP(r2, w + 24);
        EK_DW_TAP(r2 + x_col, w + 28);
        EK_DW_TAP(r2 + c2, w + 32);
    } else {
        for (int32_t r = 0; r < rows; r++, x += x_row) {
            const int8_t *xp = x;
            for (int32_t c = 0; c < cols; c++, xp += x_col, w += 4) EK_DW_TAP(xp, w);
        }
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* Depthwise: four adjacent channels over a rows x cols window; per-channel sums (SMLABB/SMLATT). */
void ek_dw4(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t w_row, int32_t w_col,
            int32_t rows, int32_t cols, int32_t x_offset, int32_t *acc) {
    const uint32_t off2 = (uint32_t)(uint16_t)x_offset * 0x10001u;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t r = 0; r < rows; r++) {
        const int8_t *xp = x + r * x_row, *wp = w + r * w_row;
        for (int32_t c = 0; c < cols; c++, xp += x_col, wp += w_col) {
            uint32_t xv, wv;
            memcpy(&xv, xp, 4);
            memcpy(&wv, wp, 4);
            const uint32_t x02 = __sadd16(__sxtb16(xv), off2), x13 = __sadd16(sxtb16_ror8(xv), off2);
            const uint32_t w02 = __sxtb16(wv), w13 = sxtb16_ror8(wv);
            a0 = __smlabb(w02, x02, a0);
            a2 = __smlatt(w02, x02, a2);
            a1 = __smlabb(w13, x13, a1);
            a3 = __smlatt(w13, x13, a3);
        }
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

#endif /* EK_MVE */

#else

void ek_dw4_full(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t rows, int32_t cols,
                 int32_t *acc) {
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < cols; c++, w += 4)
            for (int32_t j = 0; j < 4; j++) acc[j] += (int32_t)w[j] * x[r * x_row + c * x_col + j];
}

void ek_dw4(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t w_row, int32_t w_col,
            int32_t rows, int32_t cols, int32_t x_offset, int32_t *acc) {
    for (int32_t r = 0; r < rows; r++) {
        const int8_t *xp = x + r * x_row, *wp = w + r * w_row;
        for (int32_t c = 0; c < cols; c++, xp += x_col, wp += w_col)
            for (int32_t j = 0; j < 4; j++) acc[j] += (int32_t)wp[j] * ((int32_t)xp[j] + x_offset);
    }
}

void ek_dot4(const int8_t *w, int32_t w_stride, const int8_t *x, int32_t n, int32_t x_offset, int32_t *acc) {
    for (int32_t j = 0; j < 4; j++) acc[j] += ek_dot(w + j * w_stride, x, n, x_offset);
}

int32_t ek_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += (int32_t)w[i] * ((int32_t)x[i] + x_offset);
    return acc;
}

#endif
