/* edgekit runtime: int16x8 kernels (int16 activations, int8 weights), bit-exact with TFLM's
 * reference kernels (reference_integer_ops conv, depthwise_conv, fully_connected, pooling, add,
 * mul, logistic; reference_ops SoftmaxInt16, Requantize). All int16 zero points are 0. */
#include "ek_common.h"
#include "ek_kernels.h"

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

void ek_conv2d_s16(const ek_conv16_params *p, const int16_t *in, int16_t *out) {
    const int32_t groups = p->depthwise ? 1 : p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    int64_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) continue; /* taps outside the image are skipped */
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dil_w;
                            if (ix < 0 || ix >= p->in_w) continue;
                            const int16_t *px = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c;
                            if (p->depthwise) {
                                acc += (int32_t)p->filter[(ky * p->k_w + kx) * p->out_c + oc] *
                                       (int32_t)px[oc / p->depth_multiplier];
                            } else {
                                const int8_t *w = p->filter + ((oc * p->k_h + ky) * p->k_w + kx) * p->filter_in_c;
                                const int16_t *xg = px + (oc / per_group) * p->filter_in_c;
                                for (int32_t ic = 0; ic < p->filter_in_c; ic++) acc += (int32_t)w[ic] * (int32_t)xg[ic];
                            }
                        }
                    }
                    if (p->bias64) acc += p->bias64[oc];
                    if (p->bias32) acc += p->bias32[oc];
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        requant(acc, p->acc32, p->mult[oc], p->shift[oc], p->act_min, p->act_max);
                }
            }
        }
    }
}

void ek_fully_connected_s16(const ek_fc16_params *p, const int16_t *in, int16_t *out) {
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *x = in + b * p->depth;
        for (int32_t u = 0; u < p->units; u++) {
            const int8_t *w = p->weights + u * p->depth;
            int64_t acc = 0;
            for (int32_t d = 0; d < p->depth; d++) acc += ((int32_t)w[d] + p->w_zp) * (int32_t)x[d];
            if (p->bias64) acc += p->bias64[u];
            if (p->bias32) acc += p->bias32[u];
            const int32_t c = p->per_channel ? u : 0;
            out[b * p->units + u] = requant(acc, p->acc32, p->mult[c], p->shift[c], p->act_min, p->act_max);
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
