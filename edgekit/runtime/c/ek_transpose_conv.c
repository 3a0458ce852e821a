/* edgekit runtime: TRANSPOSE_CONV int8, per-channel requantization. TFLM scatters every input pixel
 * into an int32 scratch copy of the output; here each output pixel gathers the taps that land on it
 * (the same int32 terms, summed exactly), so no scratch is needed. */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_transpose_conv(const ek_transpose_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t ic = p->in_c, oc = p->out_c;
    const int32_t in_row = p->in_w * ic, in_image = p->in_h * in_row;
    const int32_t w_tap = ic, w_row = p->k_w * ic, w_chan = p->k_h * w_row;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *img = in + b * in_image;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                for (int32_t o = 0; o < oc; o++) {
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int32_t ty = oy + p->pad_h - ky; /* = iy * stride_h for a contributing row */
                        if (ty < 0 || ty % p->stride_h) continue;
                        const int32_t iy = ty / p->stride_h;
                        if (iy >= p->in_h) continue;
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            const int32_t tx = ox + p->pad_w - kx;
                            if (tx < 0 || tx % p->stride_w) continue;
                            const int32_t ix = tx / p->stride_w;
                            if (ix >= p->in_w) continue;
                            acc += ek_dot(p->filter + o * w_chan + ky * w_row + kx * w_tap, img + iy * in_row + ix * ic,
                                          ic, -p->in_zp);
                        }
                    }
                    if (p->bias) acc += p->bias[o];
                    acc = ek_mbqm(acc, p->mult[o], p->shift[o]) + p->out_zp;
                    *out++ = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
