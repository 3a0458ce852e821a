/* edgekit runtime: STRIDED_SLICE, TRANSPOSE, SPLIT and SPLIT_V as one strided gather (int8 bytes are
 * copied unchanged, as TFLM does). */
#include <string.h>

#include "ek_common.h"
#include "ek_kernels.h"

void ek_gather(const ek_gather_params *p, const int8_t *in, int8_t *out) {
    const int32_t *d = p->dims, *s = p->strides;
    const int32_t n = d[5], s5 = s[5];
    for (int32_t i0 = 0; i0 < d[0]; i0++)
        for (int32_t i1 = 0; i1 < d[1]; i1++)
            for (int32_t i2 = 0; i2 < d[2]; i2++)
                for (int32_t i3 = 0; i3 < d[3]; i3++)
                    for (int32_t i4 = 0; i4 < d[4]; i4++) {
                        const int8_t *src = in + p->start + i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3] + i4 * s[4];
                        if (s5 == 1) {
                            memcpy(out, src, (size_t)n);
                        } else {
                            for (int32_t i5 = 0; i5 < n; i5++) out[i5] = src[i5 * s5];
                        }
                        out += n;
                    }
}
