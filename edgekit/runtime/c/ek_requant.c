/* edgekit runtime: QUANTIZE between integer widths (TFLM reference_ops::Requantize):
 * y = clamp(MultiplyByQuantizedMultiplier(x - in_zp, m, shift) + out_zp) to the output type.
 * int16 -> int8 and int16 -> int32 carry keyword_scrambled's int16 input and int32 output. The code
 * generator proves |MultiplyByQuantizedMultiplier(...)| + |out_zp| < 2^31 for int32 outputs. */
#include "ek_common.h"
#include "ek_kernels.h"

void ek_requant_s16_s8(int32_t count, const ek_requant_params *p, const int16_t *in, int8_t *out) {
    for (int32_t i = 0; i < count; i++) out[i] = ek_sat8(ek_mbqm((int32_t)in[i] - p->in_zp, p->m, p->shift) + p->out_zp);
}

void ek_requant_s16_s32(int32_t count, const ek_requant_params *p, const int16_t *in, int32_t *out) {
    for (int32_t i = 0; i < count; i++) out[i] = ek_mbqm((int32_t)in[i] - p->in_zp, p->m, p->shift) + p->out_zp;
}
