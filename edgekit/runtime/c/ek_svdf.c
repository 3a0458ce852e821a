/* edgekit runtime: SVDF, int8 input and output with an int16 state (ek_svdf) or an int8 one (ek_svdf_s8);
 * TFLM's reference integer SVDF, learned from svdf_common.cc; docs/int8-arithmetic.md "SVDF".
 *
 * The state is `filters` rows of `memory` values per batch (the type of weights_time), kept between calls in the
 * arena's state area (the generated <prefix>_reset fills it with the state zero point). One call:
 *   1. shift the whole state left by one element (the oldest value of each row drops out, and
 *      every row's last slot is overwritten in step 2);
 *   2. each filter's feature dot product sum w_f * (x - in_zp), requantized by (m1, s1) and clamped to the state type,
 *      plus the state zero point, goes into its row's last slot;
 *   3. each filter's time dot product sum w_t * (state - state_zp) over its row;
 *   4. per unit: bias + the sum of its `rank` filters, requantized by (m2, s2), plus out_zp, to int8.
 * TFLM sums steps 3 and 4 in int32 and lets them wrap on overflow; here they are summed in uint32,
 * which wraps the same way (two's complement) without undefined behaviour. The int8 SVDF applies no
 * fused activation (TFLM ignores it for integer SVDF), only the int8 clamp. */
#include "ek_common.h"
#include "ek_kernels.h"

/* One body for both state widths (TFLM's EvalIntegerSvdfReference<T>): T is the type of weights_time and of the
 * state, [TMIN, TMAX] its range. The feature sum is clamped to that range before the state zero point is added;
 * the sum is then narrowed to T as TFLM's implicit conversion does (modulo 2^bits with gcc and arm-none-eabi-gcc,
 * implementation-defined in C, not undefined). */
#define EK_SVDF_BODY(T, TMIN, TMAX)                                                                             \
    const int32_t per_batch = p->filters * p->memory;                                                          \
    const int32_t total = p->batches * per_batch;                                                              \
    for (int32_t i = 0; i + 1 < total; i++) state[i] = state[i + 1];                                           \
    for (int32_t b = 0; b < p->batches; b++) {                                                                 \
        const int8_t *x = in + b * p->input_size;                                                              \
        T *row_end = state + b * per_batch + (p->memory - 1);                                                  \
        for (int32_t f = 0; f < p->filters; f++) {                                                             \
            const int8_t *w = p->weights_feature + f * p->input_size;                                          \
            int32_t acc = 0; /* |sum| <= input_size * 128 * 255 < 2^31: checked at generation time */         \
            for (int32_t c = 0; c < p->input_size; c++) acc += (int32_t)w[c] * ((int32_t)x[c] - p->in_zp);     \
            acc = ek_clamp(ek_mbqm(acc, p->m1, p->s1), TMIN, TMAX);                                            \
            row_end[f * p->memory] = (T)(p->state_zp + acc);                                                   \
        }                                                                                                      \
    }                                                                                                          \
    for (int32_t b = 0; b < p->batches; b++) {                                                                 \
        const T *s = state + b * per_batch;                                                                    \
        uint32_t *time = (uint32_t *)(void *)scratch; /* one sum per filter, reused per batch */               \
        for (int32_t f = 0; f < p->filters; f++) {                                                             \
            const T *wt = weights_time + f * p->memory;                                                        \
            const T *sf = s + f * p->memory;                                                                   \
            uint32_t acc = 0;                                                                                  \
            for (int32_t j = 0; j < p->memory; j++) acc += (uint32_t)((int32_t)wt[j] * ((int32_t)sf[j] - p->state_zp)); \
            time[f] = acc;                                                                                     \
        }                                                                                                      \
        int8_t *y = out + b * p->units;                                                                        \
        for (int32_t u = 0; u < p->units; u++) {                                                               \
            uint32_t acc = p->bias ? (uint32_t)p->bias[u] : 0u;                                                \
            for (int32_t r = 0; r < p->rank; r++) acc += time[u * p->rank + r];                                \
            y[u] = ek_sat8(ek_mbqm((int32_t)acc, p->m2, p->s2) + p->out_zp);                                   \
        }                                                                                                      \
    }

void ek_svdf(const ek_svdf_params *p, const int8_t *in, int16_t *state, int8_t *out, int32_t *scratch) {
    const int16_t *weights_time = p->weights_time;
    EK_SVDF_BODY(int16_t, INT16_MIN, INT16_MAX)
}

void ek_svdf_s8(const ek_svdf_params *p, const int8_t *in, int8_t *state, int8_t *out, int32_t *scratch) {
    const int8_t *weights_time = p->weights_time_s8;
    EK_SVDF_BODY(int8_t, -128, 127)
}
