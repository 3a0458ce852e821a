/* edgekit runtime: FULLY_CONNECTED int8, per-channel and per-tensor
 * (int8-arithmetic.md section 4; TFLM FullyConnectedPerChannel, FullyConnected). */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_fully_connected(const ek_fc_params *p, const int8_t *in, int8_t *out) {
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = in + b * p->depth;
        for (int32_t u = 0; u < p->units; u++) {
            const int8_t *w = p->weights + u * p->depth;
            if (p->packed) { /* clustered: decode this unit's row */
                ek_unpack4(p->packed, u * p->depth, p->depth, p->table + u * 16, p->scratch);
                w = p->scratch;
            }
            int32_t acc = ek_dot(w, x, p->depth, -p->in_zp);
            if (p->w_zp) /* per-tensor weights with a zero point (TFLM DCHECKs it is 0) */
                for (int32_t d = 0; d < p->depth; d++) acc -= p->w_zp * ((int32_t)x[d] - p->in_zp);
            if (p->bias) acc += p->bias[u];
            const int32_t c = p->per_channel ? u : 0;
            acc = ek_mbqm(acc, p->mult[c], p->shift[c]) + p->out_zp;
            out[b * p->units + u] = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
        }
    }
}
