/* edgekit runtime: CONV_2D and DEPTHWISE_CONV_2D, int8 per-channel
 * (int8-arithmetic.md sections 2 and 3; TFLM ConvPerChannel, DepthwiseConvPerChannel). */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t oc_per_group = p->out_c / groups;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int32_t g = oc / oc_per_group;
                    const int8_t *w = p->filter + oc * p->k_h * p->k_w * p->filter_in_c;
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) continue; /* skipped tap == zero-point padding */
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dil_w;
                            if (ix < 0 || ix >= p->in_w) continue;
                            const int8_t *x = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c + g * p->filter_in_c;
                            const int8_t *wk = w + (ky * p->k_w + kx) * p->filter_in_c;
                            for (int32_t ic = 0; ic < p->filter_in_c; ic++)
                                acc += (int32_t)wk[ic] * ((int32_t)x[ic] - p->in_zp);
                        }
                    }
                    if (p->bias) acc += p->bias[oc];
                    acc = ek_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ek_depthwise_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t dm = p->depth_multiplier;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    for (int32_t m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        for (int32_t ky = 0; ky < p->k_h; ky++) {
                            const int32_t iy = y0 + ky * p->dil_h;
                            if (iy < 0 || iy >= p->in_h) continue;
                            for (int32_t kx = 0; kx < p->k_w; kx++) {
                                const int32_t ix = x0 + kx * p->dil_w;
                                if (ix < 0 || ix >= p->in_w) continue;
                                const int32_t x = in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                                acc += (int32_t)p->filter[(ky * p->k_w + kx) * p->out_c + oc] * (x - p->in_zp);
                            }
                        }
                        if (p->bias) acc += p->bias[oc];
                        acc = ek_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
                        out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                            (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
