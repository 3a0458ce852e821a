/* edgekit runtime: FULLY_CONNECTED int8, per-channel and per-tensor
 * (int8-arithmetic.md section 4; TFLM FullyConnectedPerChannel, FullyConnected). */
#include "ek_common.h"
#include "ek_kernels.h"
#include "ek_simd.h"

EK_INLINE int8_t fc_out(const ek_fc_params *p, int32_t u, int32_t acc) {
    if (p->bias) acc += p->bias[u];
    const int32_t c = p->per_channel ? u : 0;
    acc = ek_mbqm(acc, p->mult[c], p->shift[c]) + p->out_zp;
    return (int8_t)ek_clamp(acc, p->act_min, p->act_max);
}

void ek_fully_connected(const ek_fc_params *p, const int8_t *in, int8_t *out, int8_t *scratch) {
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = in + b * p->depth;
        int8_t *o = out + b * p->units;
        int32_t u = 0;
        if (p->interleaved) /* four units per pass over x: the unpacked input is shared */
            for (; u + 4 <= p->units; u += 4) {
                int32_t acc[4] = {0, 0, 0, 0};
                ek_mat4x1(p->weights + u * p->depth, x, p->depth, acc);
                for (int32_t j = 0; j < 4; j++) o[u + j] = fc_out(p, u + j, acc[j]);
            }
        for (; u < p->units; u++) {
            const int8_t *w = p->weights + u * p->depth;
            if (p->packed) { /* clustered: decode this unit's row */
                ek_unpack4(p->packed, u * p->depth, p->depth, p->table + u * 16, scratch);
                w = scratch;
            }
            int32_t acc = ek_dot(w, x, p->depth, -p->in_zp);
            if (p->w_zp) /* per-tensor weights with a zero point (TFLM DCHECKs it is 0) */
                for (int32_t d = 0; d < p->depth; d++) acc -= p->w_zp * ((int32_t)x[d] - p->in_zp);
            o[u] = fc_out(p, u, acc);
        }
    }
}
