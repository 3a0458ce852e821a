/* edgekit runtime: the int8 dot product under CONV_2D and FULLY_CONNECTED.
 * Integer sums are exact, so the SIMD path (Arm DSP extension: Cortex-M4/M7/M33/M55)
 * gives the same result as the plain loop, bit for bit. */
#include <string.h>

#include "ek_kernels.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
#include <arm_acle.h>

static uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); }

int32_t ek_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset) {
    /* x + x_offset lies in [-255, 255]: it fits the int16 halves SADD16 works on */
    const uint32_t off2 = (uint32_t)(uint16_t)x_offset * 0x10001u;
    int32_t acc = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t wv, xv, wv2, xv2;
        memcpy(&wv, w + i, 4); /* unaligned word loads are fine on these cores */
        memcpy(&xv, x + i, 4);
        memcpy(&wv2, w + i + 4, 4);
        memcpy(&xv2, x + i + 4, 4);
        acc = __smlad(__sxtb16(wv), __sadd16(__sxtb16(xv), off2), acc);             /* bytes 0, 2 */
        acc = __smlad(__sxtb16(ror8(wv)), __sadd16(__sxtb16(ror8(xv)), off2), acc); /* bytes 1, 3 */
        acc = __smlad(__sxtb16(wv2), __sadd16(__sxtb16(xv2), off2), acc);
        acc = __smlad(__sxtb16(ror8(wv2)), __sadd16(__sxtb16(ror8(xv2)), off2), acc);
    }
    if (i + 4 <= n) {
        uint32_t wv, xv;
        memcpy(&wv, w + i, 4);
        memcpy(&xv, x + i, 4);
        acc = __smlad(__sxtb16(wv), __sadd16(__sxtb16(xv), off2), acc);
        acc = __smlad(__sxtb16(ror8(wv)), __sadd16(__sxtb16(ror8(xv)), off2), acc);
        i += 4;
    }
    for (; i < n; i++) acc += (int32_t)w[i] * ((int32_t)x[i] + x_offset);
    return acc;
}

#else

int32_t ek_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset) {
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += (int32_t)w[i] * ((int32_t)x[i] + x_offset);
    return acc;
}

#endif
