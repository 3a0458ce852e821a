/* edgekit runtime: AVERAGE_POOL_2D and MAX_POOL_2D int8
 * (int8-arithmetic.md section 5; TFLM reference_integer_ops::AveragePool, MaxPool). */
#include "ek_common.h"
#include "ek_kernels.h"

static void pool(const ek_pool_params *p, const int8_t *in, int8_t *out, int is_max) {
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = EK_MAX(0, -y0), fy1 = EK_MIN(p->k_h, p->in_h - y0);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = EK_MAX(0, -x0), fx1 = EK_MIN(p->k_w, p->in_w - x0);
                for (int32_t c = 0; c < p->channels; c++) {
                    int32_t acc = is_max ? -128 : 0, n = 0;
                    for (int32_t fy = fy0; fy < fy1; fy++) {
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            const int32_t v = in[((b * p->in_h + y0 + fy) * p->in_w + x0 + fx) * p->channels + c];
                            if (is_max) acc = EK_MAX(acc, v);
                            else acc += v; /* raw values: the zero point is not subtracted */
                            n++;
                        }
                    }
                    if (!is_max) {
                        if (n == 0) continue; /* impossible with SAME/VALID */
                        acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                    }
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->channels + c] =
                        (int8_t)ek_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ek_avg_pool(const ek_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 0); }
void ek_max_pool(const ek_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 1); }
