/* edgekit runtime: QUANTIZE int16 -> int32 (TFLM reference_ops::Requantize):
 * y = MultiplyByQuantizedMultiplier(x - in_zp, m, shift) + out_zp, keyword_scrambled's int32 output
 * (int16 <-> int8 is ek_requantize_s16 in ek_int16.c). The code generator proves
 * |MultiplyByQuantizedMultiplier(...)| + |out_zp| < 2^31. */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_requant_s16_s32(int32_t count, const ek_requant_params *p, const int16_t *in, int32_t *out) {
    for (int32_t i = 0; i < count; i++) out[i] = ek_mbqm((int32_t)in[i] - p->in_zp, p->m, p->shift) + p->out_zp;
}
