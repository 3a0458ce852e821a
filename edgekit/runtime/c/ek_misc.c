/* edgekit runtime: table lookups (LOGISTIC, int8 requantize), QUANTIZE/DEQUANTIZE
 * with float I/O, and plain copies (int8-arithmetic.md sections 8 and 10). */
#include <string.h>

#include "ek_common.h"
#include "ek_kernels.h"

void ek_lut(int32_t count, const int8_t *table, const int8_t *in, int8_t *out) {
    for (int32_t i = 0; i < count; i++) out[i] = table[(int32_t)in[i] + 128];
}

/* C round() (half away from zero) on a float of magnitude < 2^23, without libm. */
static int32_t round_away_f(float v) {
    const int32_t t = (int32_t)v; /* truncates toward zero */
    const float frac = v - (float)t; /* exact for |v| < 2^23 */
    if (frac >= 0.5f) return t + 1;
    if (frac <= -0.5f) return t - 1;
    return t;
}

void ek_quantize_f32(int32_t count, float scale, int32_t zp, const float *in, int8_t *out) {
    for (int32_t i = 0; i < count; i++) {
        float v = in[i] / scale; /* float division, as TFLM */
        if (v != v) { /* NaN: casting it to int is undefined; TFLM's cast gives INT32_MIN on x86, so -128 */
            out[i] = -128;
            continue;
        }
        if (v > 4096.0f) v = 4096.0f; /* saturates anyway; keeps the int cast defined */
        if (v < -4096.0f) v = -4096.0f;
        out[i] = ek_sat8(round_away_f(v) + zp);
    }
}

void ek_dequantize_f32(int32_t count, float scale, int32_t zp, const int8_t *in, float *out) {
    for (int32_t i = 0; i < count; i++) out[i] = scale * (float)((int32_t)in[i] - zp);
}

void ek_quantize_f32_s16(int32_t count, float scale, int32_t zp, const float *in, int16_t *out) {
    for (int32_t i = 0; i < count; i++) {
        float v = in[i] / scale;
        if (v != v) { /* NaN, as ek_quantize_f32 */
            out[i] = -32768;
            continue;
        }
        if (v > 1048576.0f) v = 1048576.0f; /* saturates anyway; keeps the int cast defined */
        if (v < -1048576.0f) v = -1048576.0f;
        out[i] = (int16_t)ek_clamp(round_away_f(v) + zp, -32768, 32767);
    }
}

void ek_dequantize_s16_f32(int32_t count, float scale, int32_t zp, const int16_t *in, float *out) {
    for (int32_t i = 0; i < count; i++) out[i] = scale * (float)((int32_t)in[i] - zp);
}

void ek_copy(int32_t bytes, const void *in, void *out) {
    if (in != out) memmove(out, in, (size_t)bytes);
}

void ek_concat(int32_t outer, int32_t n_inputs, const int8_t *const *inputs, const int32_t *block_bytes, int8_t *out) {
    for (int32_t o = 0; o < outer; o++) {
        for (int32_t k = 0; k < n_inputs; k++) {
            memcpy(out, inputs[k] + o * block_bytes[k], (size_t)block_bytes[k]);
            out += block_bytes[k];
        }
    }
}

void ek_pad(const ek_pad_params *p, const int8_t *in, int8_t *out) {
    const int32_t *od = p->out_dims, *id = p->in_dims, *bf = p->before;
    const int32_t row = od[4], left = bf[4], n = id[4];
    for (int32_t a = 0; a < od[0]; a++)
        for (int32_t b = 0; b < od[1]; b++)
            for (int32_t c = 0; c < od[2]; c++)
                for (int32_t d = 0; d < od[3]; d++) {
                    const int32_t ia = a - bf[0], ib = b - bf[1], ic = c - bf[2], idd = d - bf[3];
                    if (ia < 0 || ia >= id[0] || ib < 0 || ib >= id[1] || ic < 0 || ic >= id[2] || idd < 0 ||
                        idd >= id[3]) {
                        memset(out, p->pad_value, (size_t)row);
                    } else {
                        memset(out, p->pad_value, (size_t)left);
                        memcpy(out + left, in + (((ia * id[1] + ib) * id[2] + ic) * id[3] + idd) * n, (size_t)n);
                        memset(out + left + n, p->pad_value, (size_t)(row - left - n));
                    }
                    out += row;
                }
}

void ek_mean(const ek_mean_params *p, const int8_t *in, int8_t *out) {
    int32_t stride[EK_MAX_DIMS];
    int32_t s = 1;
    for (int32_t d = EK_MAX_DIMS - 1; d >= 0; d--) {
        stride[d] = s;
        s *= p->dims[d];
    }
    int32_t oidx[EK_MAX_DIMS] = {0};
    int32_t o = 0;
    for (;;) {
        int32_t base = 0;
        for (int32_t d = 0; d < EK_MAX_DIMS; d++) base += oidx[d] * stride[d];
        int32_t ridx[EK_MAX_DIMS] = {0};
        int32_t sum = 0;
        for (;;) { /* odometer over the reduced axes */
            int32_t off = base;
            for (int32_t d = 0; d < EK_MAX_DIMS; d++) off += ridx[d] * stride[d];
            sum += in[off];
            int32_t d = EK_MAX_DIMS - 1;
            for (; d >= 0; d--) {
                if (!p->reduce[d]) continue;
                if (++ridx[d] < p->dims[d]) break;
                ridx[d] = 0;
            }
            if (d < 0) break;
        }
        const int32_t v = (int32_t)((int64_t)sum - (int64_t)p->in_zp * p->n);
        out[o++] = ek_sat8(ek_mbqm(v, p->mult, p->shift) + p->out_zp);
        int32_t d = EK_MAX_DIMS - 1;
        for (; d >= 0; d--) { /* odometer over the kept axes */
            if (p->reduce[d]) continue;
            if (++oidx[d] < p->dims[d]) break;
            oidx[d] = 0;
        }
        if (d < 0) break;
    }
}
