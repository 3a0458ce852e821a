/* edgekit runtime: SVDF, int8 input and output with an int16 state (TFLM's reference integer SVDF,
 * learned from svdf_common.cc; docs/int8-arithmetic.md "SVDF").
 *
 * The state is `filters` rows of `memory` int16 values per batch, kept between calls in the
 * arena's state area (the generated <prefix>_reset fills it with the state zero point). One call:
 *   1. shift the whole state left by one element (the oldest value of each row drops out, and
 *      every row's last slot is overwritten in step 2);
 *   2. each filter's feature dot product sum w_f * (x - in_zp), requantized by (m1, s1) to int16,
 *      plus the state zero point, goes into its row's last slot;
 *   3. each filter's time dot product sum w_t * (state - state_zp) over its row;
 *   4. per unit: bias + the sum of its `rank` filters, requantized by (m2, s2), plus out_zp, to int8.
 * TFLM sums steps 3 and 4 in int32 and lets them wrap on overflow; here they are summed in uint32,
 * which wraps the same way (two's complement) without undefined behaviour. The int8 SVDF applies no
 * fused activation (TFLM ignores it for integer SVDF), only the int8 clamp. */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_svdf(const ek_svdf_params *p, const int8_t *in, int16_t *state, int8_t *out, int32_t *scratch) {
    const int32_t per_batch = p->filters * p->memory;
    const int32_t total = p->batches * per_batch;
    for (int32_t i = 0; i + 1 < total; i++) state[i] = state[i + 1];
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = in + b * p->input_size;
        int16_t *row_end = state + b * per_batch + (p->memory - 1);
        for (int32_t f = 0; f < p->filters; f++) {
            const int8_t *w = p->weights_feature + f * p->input_size;
            int32_t acc = 0; /* |sum| <= input_size * 128 * 255 < 2^31: checked at generation time */
            for (int32_t c = 0; c < p->input_size; c++) acc += (int32_t)w[c] * ((int32_t)x[c] - p->in_zp);
            acc = ek_clamp(ek_mbqm(acc, p->m1, p->s1), INT16_MIN, INT16_MAX);
            row_end[f * p->memory] = (int16_t)(p->state_zp + acc);
        }
    }
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *s = state + b * per_batch;
        uint32_t *time = (uint32_t *)(void *)scratch; /* one sum per filter, reused per batch */
        for (int32_t f = 0; f < p->filters; f++) {
            const int16_t *wt = p->weights_time + f * p->memory;
            const int16_t *sf = s + f * p->memory;
            uint32_t acc = 0;
            for (int32_t j = 0; j < p->memory; j++) acc += (uint32_t)((int32_t)wt[j] * ((int32_t)sf[j] - p->state_zp));
            time[f] = acc;
        }
        int8_t *y = out + b * p->units;
        for (int32_t u = 0; u < p->units; u++) {
            uint32_t acc = p->bias ? (uint32_t)p->bias[u] : 0u;
            for (int32_t r = 0; r < p->rank; r++) acc += time[u * p->rank + r];
            const int32_t v = ek_mbqm((int32_t)acc, p->m2, p->s2) + p->out_zp;
            y[u] = ek_sat8(v);
        }
    }
}
