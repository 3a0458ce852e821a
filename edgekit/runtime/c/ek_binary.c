/* edgekit runtime: ADD, SUB and MUL int8 with broadcasting
 * (int8-arithmetic.md section 6; TFLM reference_integer_ops::Add, Mul; SUB is ADD's
 * arithmetic with the scaled inputs subtracted, as TFLM's reference Sub). */
#include "ek_common.h"
#include "ek_kernels.h"

static int8_t add1(const ek_binary_params *p, int32_t x1, int32_t x2) {
    const int32_t a = ek_rdbp(ek_srdhm((x1 - p->zp1) * (1 << 20), p->m1), -p->s1);
    const int32_t b = ek_rdbp(ek_srdhm((x2 - p->zp2) * (1 << 20), p->m2), -p->s2);
    const int32_t y = ek_rdbp(ek_srdhm(a + b, p->mo), -p->so) + p->out_zp;
    return (int8_t)ek_clamp(y, p->act_min, p->act_max);
}

static int8_t sub1(const ek_binary_params *p, int32_t x1, int32_t x2) {
    const int32_t a = ek_rdbp(ek_srdhm((x1 - p->zp1) * (1 << 20), p->m1), -p->s1);
    const int32_t b = ek_rdbp(ek_srdhm((x2 - p->zp2) * (1 << 20), p->m2), -p->s2);
    const int32_t y = ek_rdbp(ek_srdhm(a - b, p->mo), -p->so) + p->out_zp;
    return (int8_t)ek_clamp(y, p->act_min, p->act_max);
}

static int8_t mul1(const ek_binary_params *p, int32_t x1, int32_t x2) {
    const int32_t y = ek_mbqm((x1 - p->zp1) * (x2 - p->zp2), p->mo, p->so) + p->out_zp;
    return (int8_t)ek_clamp(y, p->act_min, p->act_max);
}

/* Walk the output in order; each input advances by its own stride (0 on broadcast axes).
 * Output element i is written after both its inputs are read, so out may alias a
 * non-broadcast input. */
static void binary(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out,
                   int8_t (*f)(const ek_binary_params *, int32_t, int32_t)) {
    if (!p->broadcast) {
        for (int32_t i = 0; i < p->count; i++) out[i] = f(p, a[i], b[i]);
        return;
    }
    int32_t idx[EK_MAX_DIMS] = {0};
    int32_t ia = 0, ib = 0;
    for (int32_t i = 0; i < p->count; i++) {
        out[i] = f(p, a[ia], b[ib]);
        for (int32_t d = EK_MAX_DIMS - 1; d >= 0; d--) {
            ia += p->stride1[d];
            ib += p->stride2[d];
            if (++idx[d] < p->out_dims[d]) break;
            ia -= p->stride1[d] * p->out_dims[d];
            ib -= p->stride2[d] * p->out_dims[d];
            idx[d] = 0;
        }
    }
}

void ek_add(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { binary(p, a, b, out, add1); }
void ek_sub(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { binary(p, a, b, out, sub1); }
void ek_mul(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { binary(p, a, b, out, mul1); }
