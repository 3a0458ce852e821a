/* edgekit runtime: CONV_2D and DEPTHWISE_CONV_2D, int8 per-channel
 * (int8-arithmetic.md sections 2 and 3; TFLM ConvPerChannel, DepthwiseConvPerChannel).
 *
 * Taps outside the image are skipped, exactly as TFLM does (equivalent to padding
 * with the input zero point); the in-image tap range is computed once per output
 * pixel instead of testing every tap. Output elements are written in address
 * order, which edgekit's memory planner relies on when it overlaps an output with
 * its dying input. */
#include "ek_common.h"
#include "ek_kernels.h"
#include "ek_simd.h"

/* First and one-past-last kernel index k with 0 <= origin + k*dil < size. */
static void tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size, int32_t *k0, int32_t *k1) {
    const int32_t last = size - 1 - origin;
    *k0 = origin >= 0 ? 0 : (-origin + dil - 1) / dil;
    *k1 = last < 0 ? 0 : EK_MIN(k, last / dil + 1);
}

/* Output channels [oc0, oc1) of output pixel (row origin y0, in-image taps ky0..ky1, column ox)
 * of batch image xb into out[0 .. oc1-oc0); w holds those channels' filter rows, oc0's first. */
EK_INLINE void conv_pixel(const ek_conv_params *p, const int8_t *xb, int32_t y0, int32_t ky0, int32_t ky1, int32_t ox,
                      int32_t oc0, int32_t oc1, const int8_t *w, int8_t *out) {
    const int32_t fic = p->filter_in_c;
    const int32_t oc_per_group = p->out_c / (p->in_c / fic);
    const int32_t w_per_oc = p->k_h * p->k_w * fic;
    const int contiguous = p->dil_w == 1 && fic == p->in_c;
    const int32_t x0 = ox * p->stride_w - p->pad_w;
    int32_t kx0, kx1;
    tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
    int32_t oc = oc0;
    if (contiguous) { /* four output channels per pass over the window */
        for (; oc + 4 <= oc1; oc += 4) {
            int32_t acc[4] = {0, 0, 0, 0};
            const int8_t *wo = w + (oc - oc0) * w_per_oc;
            for (int32_t ky = ky0; ky < ky1; ky++) {
                const int8_t *xr = xb + ((y0 + ky * p->dil_h) * p->in_w + x0 + kx0) * p->in_c;
                ek_dot4(wo + (ky * p->k_w + kx0) * fic, w_per_oc, xr, (kx1 - kx0) * fic, -p->in_zp, acc);
            }
            for (int32_t j = 0; j < 4; j++) {
                int32_t v = acc[j] + (p->bias ? p->bias[oc + j] : 0);
                v = ek_mbqm(v, p->mult[oc + j], p->shift[oc + j]) + p->out_zp;
                *out++ = (int8_t)ek_clamp(v, p->act_min, p->act_max);
            }
        }
    }
    for (; oc < oc1; oc++) {
        const int32_t g = oc / oc_per_group;
        const int8_t *wo = w + (oc - oc0) * w_per_oc;
        int32_t acc = 0;
        for (int32_t ky = ky0; ky < ky1; ky++) {
            const int8_t *xr = xb + (y0 + ky * p->dil_h) * p->in_w * p->in_c + g * fic;
            const int8_t *wr = wo + ky * p->k_w * fic;
            if (contiguous) { /* the window row is one run of bytes, in input and filter */
                acc += ek_dot(wr + kx0 * fic, xr + (x0 + kx0) * p->in_c, (kx1 - kx0) * fic, -p->in_zp);
                continue;
            }
            for (int32_t kx = kx0; kx < kx1; kx++) {
                const int8_t *xp = xr + (x0 + kx * p->dil_w) * p->in_c;
                acc += ek_dot(wr + kx * fic, xp, fic, -p->in_zp);
            }
        }
        if (p->bias) acc += p->bias[oc];
        acc = ek_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
        *out++ = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
    }
}

void ek_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch) {
    const int32_t in_img = p->in_h * p->in_w * p->in_c, pixels = p->out_h * p->out_w;
    if (!p->packed) { /* pixel by pixel: output bytes in address order */
        for (int32_t b = 0; b < p->batches; b++)
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int32_t ky0, ky1;
                tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < p->out_w; ox++, out += p->out_c)
                    conv_pixel(p, in + b * in_img, y0, ky0, ky1, ox, 0, p->out_c, p->filter, out);
            }
        return;
    }
    /* Clustered filter: decode up to four channels' rows into the scratch buffer once, then run
     * them over every pixel. The output is not written in address order (no overlap planned). */
    const int32_t w_per_oc = p->k_h * p->k_w * p->filter_in_c;
    const int contiguous = p->dil_w == 1 && p->filter_in_c == p->in_c;
    for (int32_t oc = 0, n; oc < p->out_c; oc += n) {
        n = contiguous && oc + 4 <= p->out_c ? 4 : 1;
        for (int32_t j = 0; j < n; j++)
            ek_unpack4(p->packed, (oc + j) * w_per_oc, w_per_oc, p->table + (oc + j) * 16, scratch + j * w_per_oc);
        for (int32_t b = 0; b < p->batches; b++)
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int32_t ky0, ky1;
                tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < p->out_w; ox++)
                    conv_pixel(p, in + b * in_img, y0, ky0, ky1, ox, oc, oc + n, scratch,
                               out + ((b * pixels) + oy * p->out_w + ox) * p->out_c + oc);
            }
    }
}

EK_INLINE int8_t conv_out(const ek_conv_params *p, int32_t oc, int32_t acc) {
    acc = ek_mbqm(acc + (p->bias ? p->bias[oc] : 0), p->mult[oc], p->shift[oc]) + p->out_zp;
    return (int8_t)ek_clamp(acc, p->act_min, p->act_max);
}

/* Output pixel px's window, tap rows in filter order (ky, kx, ic), taps outside the image = pad_value. */
static void im2col_pixel(const ek_conv_params *p, const int8_t *in, int32_t px, int8_t *col) {
    const int32_t pixels = p->out_h * p->out_w, b = px / pixels, oy = (px % pixels) / p->out_w, ox = px % p->out_w;
    const int32_t c = p->in_c, row = p->k_w * c;
    const int8_t pad = (int8_t)p->pad_value;
    const int8_t *xb = in + b * p->in_h * p->in_w * c;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    int32_t kx0, kx1;
    tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
    for (int32_t ky = 0; ky < p->k_h; ky++, col += row) {
        const int32_t iy = y0 + ky * p->dil_h;
        int32_t i = 0;
        if (iy >= 0 && iy < p->in_h) {
            for (; i < kx0 * c; i++) col[i] = pad;
            if (p->dil_w == 1) { /* the in-image taps are one run of bytes */
                const int8_t *src = xb + (iy * p->in_w + x0 + kx0) * c;
                for (const int32_t end = kx1 * c; i < end; i++) col[i] = *src++;
            } else {
                for (int32_t kx = kx0; kx < kx1; kx++) {
                    const int8_t *src = xb + (iy * p->in_w + x0 + kx * p->dil_w) * c;
                    for (int32_t j = 0; j < c; j++) col[i++] = src[j];
                }
            }
        }
        for (; i < row; i++) col[i] = pad;
    }
}

/* Pixels [0, n): inputs read in place (im2col == 0: 1x1 convolution) or gathered by im2col_pixel
 * into scratch; two pixels by two output channels at a time. With EK_X16 (Arm DSP without Helium)
 * each pixel's inputs are first widened into scratch (x16: ek_simd.h), two pixels of
 * x16_stride(depth) bytes. The parameters are read into locals once: every int8 store may alias
 * them, so the compiler would reload them after each output otherwise. */
EK_INLINE void matmul_pixels(const ek_conv_params *p, int32_t n, int32_t depth, const int8_t *in, int8_t *scratch,
                             int im2col, int8_t *out) {
    const int32_t oc_n = p->out_c, zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const int32_t *bias = p->bias, *mult = p->mult, *shift = p->shift;
    const int8_t *filter = p->filter;
#ifdef EK_X16
    int8_t *sa = scratch, *sb = scratch + 2 * ((depth + 1) & ~1); /* 4-byte aligned for LDRD */
#else
    int8_t *sa = scratch, *sb = scratch + depth;
#endif
    for (int32_t px = 0; px < n; px += 2) {
        const int last = px + 1 == n; /* an odd last pixel runs as a pair with itself */
        const int8_t *xa, *xb;
        if (im2col) {
            im2col_pixel(p, in, px, sa);
            if (!last) im2col_pixel(p, in, px + 1, sb);
#ifdef EK_X16
            ek_widen_x16(sa, sa, depth);
            if (!last) ek_widen_x16(sb, sb, depth);
#endif
            xa = sa, xb = last ? sa : sb;
        } else {
#ifdef EK_X16
            ek_widen_x16(in + px * depth, sa, depth);
            if (!last) ek_widen_x16(in + (px + 1) * depth, sb, depth);
            xa = sa, xb = last ? sa : sb;
#else
            xa = in + px * depth, xb = last ? xa : xa + depth;
#endif
        }
        int8_t *oa = out + px * oc_n, *ob = oa + oc_n;
        int32_t oc = 0;
        for (; oc + 2 <= oc_n; oc += 2) {
            int32_t acc[4] = {0, 0, 0, 0};
#ifdef EK_X16
            ek_mat2x2_x16(filter + oc * depth, xa, xb, depth, acc);
#else
            ek_mat2x2(filter + oc * depth, xa, xb, depth, acc);
#endif
            const int32_t b0 = bias ? bias[oc] : 0, b1 = bias ? bias[oc + 1] : 0;
            const ek_rq r0 = ek_rq_make(mult[oc], shift[oc]), r1 = ek_rq_make(mult[oc + 1], shift[oc + 1]);
            oa[oc] = (int8_t)ek_clamp(ek_rq_apply(r0, acc[0] + b0) + zp, lo, hi);
            oa[oc + 1] = (int8_t)ek_clamp(ek_rq_apply(r1, acc[1] + b1) + zp, lo, hi);
            if (!last) {
                ob[oc] = (int8_t)ek_clamp(ek_rq_apply(r0, acc[2] + b0) + zp, lo, hi);
                ob[oc + 1] = (int8_t)ek_clamp(ek_rq_apply(r1, acc[3] + b1) + zp, lo, hi);
            }
        }
        if (oc < oc_n) { /* an odd last channel: its row is stored plainly */
            const ek_rq r = ek_rq_make(mult[oc], shift[oc]);
            const int32_t b = bias ? bias[oc] : 0;
#ifdef EK_X16
            oa[oc] = (int8_t)ek_clamp(ek_rq_apply(r, ek_dot_x16(filter + oc * depth, xa, depth) + b) + zp, lo, hi);
            if (!last) ob[oc] = (int8_t)ek_clamp(ek_rq_apply(r, ek_dot_x16(filter + oc * depth, xb, depth) + b) + zp, lo, hi);
#else
            oa[oc] = (int8_t)ek_clamp(ek_rq_apply(r, ek_dot(filter + oc * depth, xa, depth, 0) + b) + zp, lo, hi);
            if (!last) ob[oc] = (int8_t)ek_clamp(ek_rq_apply(r, ek_dot(filter + oc * depth, xb, depth, 0) + b) + zp, lo, hi);
#endif
        }
    }
}

void ek_conv2d_1x1(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch) {
    matmul_pixels(p, p->batches * p->out_h * p->out_w, p->in_c, in, scratch, 0, out);
}

void ek_conv2d_im2col(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch) {
    matmul_pixels(p, p->batches * p->out_h * p->out_w, p->k_h * p->k_w * p->in_c, in, scratch, 1, out);
}

void ek_depthwise_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch) {
    const int32_t dm = p->depth_multiplier;
    const int8_t *filter = p->filter;
    if (p->packed) { /* clustered: decode the whole [1, KH, KW, OC] filter once; channel = index % OC */
        const int32_t n = p->k_h * p->k_w * p->out_c;
        for (int32_t k = 0; k < n; k++) {
            const uint8_t b = p->packed[k >> 1];
            scratch[k] = p->table[(k % p->out_c) * 16 + ((k & 1) ? (b >> 4) : (b & 15))];
        }
        filter = scratch;
    }
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *xb = in + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                int32_t ic = 0;
                if (dm == 1) { /* four channels per pass over the window, accumulators in registers */
                    const int32_t x_row = p->dil_h * p->in_w * p->in_c, x_col = p->dil_w * p->in_c;
                    const int8_t *xw = xb + ((y0 + ky0 * p->dil_h) * p->in_w + x0 + kx0 * p->dil_w) * p->in_c;
                    const int8_t *ww = filter + (ky0 * p->k_w + kx0) * p->out_c;
                    for (; ic + 4 <= p->in_c; ic += 4) {
                        int32_t acc[4] = {0, 0, 0, 0};
                        ek_dw4(xw + ic, x_row, x_col, ww + ic, p->k_w * p->out_c, p->out_c, ky1 - ky0, kx1 - kx0,
                               -p->in_zp, acc);
                        for (int32_t j = 0; j < 4; j++) {
                            int32_t v = acc[j] + (p->bias ? p->bias[ic + j] : 0);
                            v = ek_mbqm(v, p->mult[ic + j], p->shift[ic + j]) + p->out_zp;
                            *out++ = (int8_t)ek_clamp(v, p->act_min, p->act_max);
                        }
                    }
                }
                for (; ic < p->in_c; ic++) {
                    for (int32_t m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        for (int32_t ky = ky0; ky < ky1; ky++) {
                            const int8_t *xr = xb + (y0 + ky * p->dil_h) * p->in_w * p->in_c + ic;
                            const int8_t *wr = filter + ky * p->k_w * p->out_c + oc;
                            for (int32_t kx = kx0; kx < kx1; kx++)
                                acc += (int32_t)wr[kx * p->out_c] * ((int32_t)xr[(x0 + kx * p->dil_w) * p->in_c] - p->in_zp);
                        }
                        if (p->bias) acc += p->bias[oc];
                        acc = ek_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
                        *out++ = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

void ek_depthwise_conv2d_c4(const ek_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t ch = p->in_c, c4 = ch & ~3, taps = p->k_h * p->k_w, rest = ch - c4, k_h = p->k_h, k_w = p->k_w;
    const int32_t x_row = p->dil_h * p->in_w * ch, x_col = p->dil_w * ch;
    const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max; /* locals: int8 stores may alias *p */
    const int32_t *mult = p->mult, *shift = p->shift, *bias_folded = p->bias_folded;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *xb = in + b * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tap_range(y0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                tap_range(x0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                const int full = ky0 == 0 && ky1 == k_h && kx0 == 0 && kx1 == k_w;
                const int8_t *xw = xb + ((y0 + ky0 * p->dil_h) * p->in_w + x0 + kx0 * p->dil_w) * ch;
                const int8_t *wg = p->filter;
                for (int32_t ic = 0; ic < c4; ic += 4, wg += taps * 4) {
                    int32_t acc[4];
                    if (full) {
                        for (int32_t j = 0; j < 4; j++) acc[j] = bias_folded ? bias_folded[ic + j] : 0;
                        ek_dw4_full(xw + ic, x_row, x_col, wg, k_h, k_w, acc);
                    } else {
                        for (int32_t j = 0; j < 4; j++) acc[j] = p->bias ? p->bias[ic + j] : 0;
                        ek_dw4(xw + ic, x_row, x_col, wg + (ky0 * k_w + kx0) * 4, k_w * 4, 4, ky1 - ky0, kx1 - kx0,
                               -p->in_zp, acc);
                    }
                    out[0] = (int8_t)ek_clamp(ek_rq_apply(ek_rq_make(mult[ic], shift[ic]), acc[0]) + zp, lo, hi);
                    out[1] = (int8_t)ek_clamp(ek_rq_apply(ek_rq_make(mult[ic + 1], shift[ic + 1]), acc[1]) + zp, lo, hi);
                    out[2] = (int8_t)ek_clamp(ek_rq_apply(ek_rq_make(mult[ic + 2], shift[ic + 2]), acc[2]) + zp, lo, hi);
                    out[3] = (int8_t)ek_clamp(ek_rq_apply(ek_rq_make(mult[ic + 3], shift[ic + 3]), acc[3]) + zp, lo, hi);
                    out += 4;
                }
                for (int32_t ic = c4; ic < ch; ic++) { /* the last in_c % 4 channels, tap by tap */
                    int32_t acc = p->bias ? p->bias[ic] : 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int8_t *xr = xb + (y0 + ky * p->dil_h) * p->in_w * ch + ic;
                        const int8_t *wr = p->filter + c4 * taps + ky * p->k_w * rest + (ic - c4);
                        for (int32_t kx = kx0; kx < kx1; kx++)
                            acc += (int32_t)wr[kx * rest] * ((int32_t)xr[(x0 + kx * p->dil_w) * ch] - p->in_zp);
                    }
                    acc = ek_mbqm(acc, p->mult[ic], p->shift[ic]) + p->out_zp;
                    *out++ = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
