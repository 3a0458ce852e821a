/* edgekit runtime: int16x8 kernels (int16 activations, int8 weights), bit-exact with TFLM's
 * reference kernels (reference_integer_ops conv, depthwise_conv, fully_connected, pooling, add,
 * mul, logistic; reference_ops SoftmaxInt16, Requantize). All int16 zero points are 0. */
#include "ek_common.h"
#include "ek_kernels.h"
#include "ek_simd.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
/* Inputs x0..x3 (two words, x0 x1 and x2 x3) re-paired as x0 x2 and x1 x3, the halves SXTB16
 * gives for weights 0..3; PKHBT and PKHTB in one instruction each. */
EK_INLINE void pair16(const int16_t *x, uint32_t *x02, uint32_t *x13) {
    uint32_t x01, x23, a, b;
    memcpy(&x01, x, 4); /* unaligned word loads: fine on every core with the DSP extension */
    memcpy(&x23, x + 2, 4);
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(a) : "r"(x01), "r"(x23));
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(b) : "r"(x23), "r"(x01));
    *x02 = a, *x13 = b;
}

EK_INLINE int64_t mac4(const int8_t *w, uint32_t x02, uint32_t x13, int64_t acc) {
    uint32_t wv;
    memcpy(&wv, w, 4);
    acc = __smlald((int16x2_t)__sxtb16((int8x4_t)wv), (int16x2_t)x02, acc);
    return __smlald((int16x2_t)sxtb16_ror8(wv), (int16x2_t)x13, acc);
}
#endif

/* sum of w[i] * x[i] for i < n (int8 weights, int16 inputs), exact in int64. With the Arm DSP
 * extension four products take one weight word and two input words: SXTB16 widens weights
 * 0,2 and 1,3, the inputs are re-paired to match, and SMLALD adds two products to the 64-bit sum. */
EK_INLINE int64_t dot16(const int8_t *w, const int16_t *x, int32_t n) {
    int64_t acc = 0;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
    for (; i + 4 <= n; i += 4) {
        uint32_t x02, x13;
        pair16(x + i, &x02, &x13);
        acc = mac4(w + i, x02, x13, acc);
    }
#endif
    for (; i < n; i++) acc += (int32_t)w[i] * (int32_t)x[i];
    return acc;
}

/* dot16 of two weight rows against one input: each input word is loaded and re-paired once. */
EK_INLINE void dot16x2(const int8_t *wa, const int8_t *wb, const int16_t *x, int32_t n, int64_t *a, int64_t *b) {
    int64_t sa = *a, sb = *b;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
    for (; i + 4 <= n; i += 4) {
        uint32_t x02, x13;
        pair16(x + i, &x02, &x13);
        sa = mac4(wa + i, x02, x13, sa);
        sb = mac4(wb + i, x02, x13, sb);
    }
#endif
    for (; i < n; i++) {
        sa += (int32_t)wa[i] * (int32_t)x[i];
        sb += (int32_t)wb[i] * (int32_t)x[i];
    }
    *a = sa, *b = sb;
}

/* MultiplyByQuantizedMultiplier for an int64 accumulator: the multiplier is reduced to 16 bits
 * and applied with one rounding. |x| < 2^47 (the code generator proves it), so nothing overflows;
 * the int32 result wraps like TFLM's cast when it does not fit. */
EK_INLINE int32_t mbqm64(int64_t x, int32_t m, int32_t shift) {
    const int64_t reduced = m < 0x7FFF0000 ? (m + (1 << 15)) >> 16 : 0x7FFF;
    const int32_t total = 15 - shift; /* 8..46 */
    const int64_t r = (x * reduced + ((int64_t)1 << (total - 1))) >> total;
    return (int32_t)(uint32_t)(uint64_t)r;
}

/* The accumulator rescaled as TFLM does for the bias type (see ek_conv16_params). */
EK_INLINE int16_t requant(int64_t acc, int32_t acc32, int32_t m, int32_t shift, int32_t lo, int32_t hi) {
    const int32_t v = acc32 ? ek_mbqm((int32_t)acc, m, shift) : mbqm64(acc, m, shift);
    return (int16_t)ek_clamp(v, lo, hi);
}

/* First and one-past-last tap k of a window starting at `origin` with dilation `dil` whose
 * position origin + k * dil lies in [0, n): taps outside the image are skipped, as TFLM. */
EK_INLINE void tap_range(int32_t origin, int32_t dil, int32_t k, int32_t n, int32_t *k0, int32_t *k1) {
    int32_t a = 0, b = k;
    while (a < b && origin + a * dil < 0) a++;
    while (b > a && origin + (b - 1) * dil >= n) b--;
    *k0 = a, *k1 = b;
}

/* CONV_2D without groups and without horizontal dilation: each kernel row's in-image taps are one
 * run of input and of weights, and output channels go in pairs that share every input load. */
static void conv_rows(const ek_conv16_params *p, const int16_t *in, int16_t *out) {
    const int32_t x_row = p->dil_h * p->in_w * p->in_c, w_oc = p->k_h * p->k_w * p->in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                tap_range(x0, 1, p->k_w, p->in_w, &kx0, &kx1);
                const int16_t *win = in + ((b * p->in_h + y0 + ky0 * p->dil_h) * p->in_w + x0 + kx0) * p->in_c;
                const int32_t run = (kx1 - kx0) * p->in_c, w_first = kx0 * p->in_c;
                int16_t *y = out + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; oc += 2) {
                    const int32_t oc2 = oc + 1 < p->out_c ? oc + 1 : oc; /* an odd last channel pairs with itself */
                    int64_t acc[2] = {0, 0};
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t wr = ky * p->k_w * p->in_c + w_first;
                        dot16x2(p->filter + oc * w_oc + wr, p->filter + oc2 * w_oc + wr, win + (ky - ky0) * x_row, run,
                                &acc[0], &acc[1]);
                    }
                    for (int32_t j = 0; j < 2 && oc + j < p->out_c; j++) {
                        const int32_t c = oc + j;
                        int64_t a = acc[j];
                        if (p->bias64) a += p->bias64[c];
                        if (p->bias32) a += p->bias32[c];
                        y[c] = requant(a, p->acc32, p->mult[c], p->shift[c], p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

void ek_conv2d_s16(const ek_conv16_params *p, const int16_t *in, int16_t *out) {
    const int32_t groups = p->depthwise ? 1 : p->in_c / p->filter_in_c;
    if (!p->depthwise && groups == 1 && p->dil_w == 1) {
        conv_rows(p, in, out);
        return;
    }
    const int32_t per_group = p->out_c / groups;
    const int32_t x_row = p->dil_h * p->in_w * p->in_c, x_col = p->dil_w * p->in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                /* the window's first in-image tap; taps step by x_row and x_col */
                const int16_t *win = in + ((b * p->in_h + y0 + ky0 * p->dil_h) * p->in_w + x0 + kx0 * p->dil_w) * p->in_c;
                int16_t *y = out + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    int64_t acc = 0;
                    if (p->depthwise) {
                        const int16_t *xc = win + oc / p->depth_multiplier;
                        for (int32_t ky = ky0; ky < ky1; ky++) {
                            const int16_t *xr = xc + (ky - ky0) * x_row;
                            const int8_t *wr = p->filter + ky * p->k_w * p->out_c + oc;
                            for (int32_t kx = kx0; kx < kx1; kx++)
                                acc += (int32_t)wr[kx * p->out_c] * (int32_t)xr[(kx - kx0) * x_col];
                        }
                    } else {
                        const int16_t *xg = win + (oc / per_group) * p->filter_in_c;
                        const int8_t *wo = p->filter + oc * p->k_h * p->k_w * p->filter_in_c;
                        for (int32_t ky = ky0; ky < ky1; ky++) {
                            const int16_t *xr = xg + (ky - ky0) * x_row;
                            const int8_t *wr = wo + ky * p->k_w * p->filter_in_c;
                            for (int32_t kx = kx0; kx < kx1; kx++)
                                acc += dot16(wr + kx * p->filter_in_c, xr + (kx - kx0) * x_col, p->filter_in_c);
                        }
                    }
                    if (p->bias64) acc += p->bias64[oc];
                    if (p->bias32) acc += p->bias32[oc];
                    y[oc] = requant(acc, p->acc32, p->mult[oc], p->shift[oc], p->act_min, p->act_max);
                }
            }
        }
    }
}

void ek_fully_connected_s16(const ek_fc16_params *p, const int16_t *in, int16_t *out) {
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *x = in + b * p->depth;
        int64_t sx = 0; /* per-tensor weights with a zero point: (w + w_zp) . x = w . x + w_zp * sum x */
        if (p->w_zp)
            for (int32_t d = 0; d < p->depth; d++) sx += x[d];
        for (int32_t u = 0; u < p->units; u += 2) {
            const int32_t u2 = u + 1 < p->units ? u + 1 : u; /* an odd last unit pairs with itself */
            int64_t acc[2] = {0, 0};
            dot16x2(p->weights + u * p->depth, p->weights + u2 * p->depth, x, p->depth, &acc[0], &acc[1]);
            for (int32_t j = 0; j < 2 && u + j < p->units; j++) {
                int64_t a = acc[j] + p->w_zp * sx;
                if (p->bias64) a += p->bias64[u + j];
                if (p->bias32) a += p->bias32[u + j];
                const int32_t c = p->per_channel ? u + j : 0;
                out[b * p->units + u + j] = requant(a, p->acc32, p->mult[c], p->shift[c], p->act_min, p->act_max);
            }
        }
    }
}

static void pool16(const ek_pool_params *p, const int16_t *in, int16_t *out, int is_max) {
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = EK_MAX(0, -y0), fy1 = EK_MIN(p->k_h, p->in_h - y0);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = EK_MAX(0, -x0), fx1 = EK_MIN(p->k_w, p->in_w - x0);
                for (int32_t c = 0; c < p->channels; c++) {
                    int32_t acc = is_max ? -32768 : 0, n = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int32_t v = in[((b * p->in_h + y0 + fy) * p->in_w + x0 + fx) * p->channels + c];
                            if (is_max) acc = EK_MAX(acc, v);
                            else acc += v;
                            n++;
                        }
                    }
                    if (!is_max) {
                        if (n == 0) continue; /* impossible with SAME/VALID */
                        acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                    }
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->channels + c] =
                        (int16_t)ek_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ek_avg_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out) { pool16(p, in, out, 0); }
void ek_max_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out) { pool16(p, in, out, 1); }

static int32_t add16(const ek_binary_params *p, int32_t x1, int32_t x2, int32_t sign) {
    const int32_t a = ek_rdbp(ek_srdhm(x1 * (1 << 15), p->m1), -p->s1);
    const int32_t b = ek_rdbp(ek_srdhm(x2 * (1 << 15), p->m2), -p->s2);
    return ek_rdbp(ek_srdhm(a + sign * b, p->mo), -p->so);
}

/* kind: 0 ADD, 1 SUB, 2 MUL. Output element i is written after both its inputs are read. */
static void binary16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out, int kind) {
    int32_t idx[EK_MAX_DIMS] = {0};
    int32_t ia = 0, ib = 0;
    for (int32_t i = 0; i < p->count; i++) {
        if (!p->broadcast) ia = ib = i;
        const int32_t x1 = a[ia], x2 = b[ib];
        const int32_t y = kind == 2 ? ek_mbqm(x1 * x2, p->mo, p->so) : add16(p, x1, x2, kind ? -1 : 1);
        out[i] = (int16_t)ek_clamp(y, p->act_min, p->act_max);
        if (!p->broadcast) continue;
        for (int32_t d = EK_MAX_DIMS - 1; d >= 0; d--) {
            ia += p->stride1[d];
            ib += p->stride2[d];
            if (++idx[d] < p->out_dims[d]) break;
            ia -= p->stride1[d] * p->out_dims[d];
            ib -= p->stride2[d] * p->out_dims[d];
            idx[d] = 0;
        }
    }
}

void ek_add_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out) { binary16(p, a, b, out, 0); }
void ek_sub_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out) { binary16(p, a, b, out, 1); }
void ek_mul_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out) { binary16(p, a, b, out, 2); }

/* TFLM's LUTLookup: the top 9 bits pick an entry, the low 7 interpolate towards the next. */
EK_INLINE int16_t lut_lookup(int16_t v, const int16_t *lut) {
    const int32_t index = 256 + (v >> 7); /* arithmetic shift: 0..511 */
    const int32_t offset = v & 0x7f;
    const int32_t base = lut[index];
    const int32_t slope = lut[index + 1] - lut[index];
    return (int16_t)(base + ((slope * offset + 64) >> 7));
}

static int clz32(uint32_t v) {
    int n = 0;
    if (v == 0) return 32;
    while (!(v & 0x80000000u)) { v <<= 1; n++; }
    return n;
}

void ek_softmax_s16(const ek_softmax16_params *p, const int16_t *in, int16_t *out) {
    for (int32_t r = 0; r < p->rows; r++) {
        const int16_t *x = in + r * p->depth;
        int16_t *y = out + r * p->depth;
        int32_t mx = -32768;
        for (int32_t c = 0; c < p->depth; c++) mx = EK_MAX(mx, x[c]);
        /* the exp values are kept in the output, as TFLM does: y[c] is written after x[c] is read */
        int32_t sum = 0; /* Q16.15; depth <= 65536 (checked at generation) keeps it in int32 */
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t scaled = ek_mbqm(x[c] - mx, p->input_multiplier, p->input_shift) + 32767;
            y[c] = lut_lookup((int16_t)ek_clamp(scaled, -32768, 32767), p->exp_lut);
            sum += y[c];
        }
        const int hp = clz32((uint32_t)sum);
        const int32_t shifted = (int32_t)((((int64_t)sum << (hp - 1)) + (1 << 13)) >> 14);
        const int32_t sym = ek_clamp(shifted - ((1 << 15) + (1 << 16)), -32768, 32767);
        const int32_t recip = lut_lookup((int16_t)sym, p->recip_lut);
        const int32_t right = 31 - hp;
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t v = (int32_t)(((int64_t)y[c] * recip + ((int64_t)1 << (right - 1))) >> right);
            y[c] = (int16_t)ek_clamp(v, 0, 32767);
        }
    }
}

void ek_logistic_s16(int32_t count, int32_t multiplier, int32_t shift, const uint16_t *table,
                     const int16_t *in, int16_t *out) {
    const int32_t round = shift > 0 ? 1 << (shift - 1) : 0;
    for (int32_t i = 0; i < count; i++) {
        const int32_t v = (in[i] * multiplier + round) >> shift; /* |in * multiplier| < 2^30 */
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        const uint32_t uh = a >> 9;
        uint32_t r;
        if (uh >= 255) {
            r = 0x7FFFu << 10;
        } else {
            const uint32_t ua = table[uh], ub = table[uh + 1];
            r = (ua << 9) + (a & 0x1ffu) * (ub - ua); /* unsigned wrap as TFLM when ub < ua cannot happen */
        }
        r = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
        out[i] = (int16_t)(r >> 10);
    }
}

void ek_requantize_s16(int32_t count, int32_t m, int32_t shift, int32_t in_zp, int32_t out_zp,
                       int32_t in_bits, int32_t out_bits, const void *in, void *out) {
    const int32_t lo = out_bits == 16 ? -32768 : -128, hi = out_bits == 16 ? 32767 : 127;
    for (int32_t i = 0; i < count; i++) {
        const int32_t x = in_bits == 16 ? ((const int16_t *)in)[i] : ((const int8_t *)in)[i];
        const int32_t y = ek_clamp(ek_mbqm(x - in_zp, m, shift) + out_zp, lo, hi);
        if (out_bits == 16) ((int16_t *)out)[i] = (int16_t)y;
        else ((int8_t *)out)[i] = (int8_t)y;
    }
}
