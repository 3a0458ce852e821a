/* edgekit runtime: RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (TFLM's integer path, 10 fractional
 * bits per axis, double rounding), on source indices and weights computed by the code generator. */
#include <string.h>

#include "ek_common.h"
#include "ek_kernels.h"

void ek_resize_nearest(const ek_resize_params *p, const int8_t *in, int8_t *out) {
    const int32_t c = p->depth, row = p->in_w * c, image = p->in_h * row;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *img = in + b * image;
        for (int32_t y = 0; y < p->out_h; y++) {
            const int8_t *src_row = img + p->y0[y] * row;
            for (int32_t x = 0; x < p->out_w; x++) {
                memcpy(out, src_row + p->x0[x] * c, (size_t)c);
                out += c;
            }
        }
    }
}

void ek_resize_bilinear(const ek_resize_params *p, const int8_t *in, int8_t *out) {
    const int32_t c = p->depth, row = p->in_w * c, image = p->in_h * row;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *img = in + b * image;
        for (int32_t y = 0; y < p->out_h; y++) {
            const int8_t *r0 = img + p->y0[y] * row, *r1 = img + p->y1[y] * row;
            const int64_t wy1 = p->wy[y], wy0 = 1024 - wy1;
            for (int32_t x = 0; x < p->out_w; x++) {
                const int8_t *a = r0 + p->x0[x] * c, *bb = r0 + p->x1[x] * c;
                const int8_t *cc = r1 + p->x0[x] * c, *dd = r1 + p->x1[x] * c;
                const int64_t wx1 = p->wx[x], wx0 = 1024 - wx1;
                for (int32_t k = 0; k < c; k++) {
                    const int64_t v = a[k] * wy0 * wx0 + cc[k] * wy1 * wx0 + bb[k] * wy0 * wx1 + dd[k] * wy1 * wx1;
                    const int64_t round = v > 0 ? (1 << 19) : -(1 << 19);
                    /* TFLM casts without clamping; the weights keep v / 2^20 inside int8 except where
                     * half-pixel centres extrapolate, and there the cast wraps as TFLM's does. */
                    out[k] = (int8_t)(uint8_t)((uint64_t)((v + round) / (1 << 20)) & 0xffu);
                }
                out += c;
            }
        }
    }
}
