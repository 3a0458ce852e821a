/* edgekit runtime: SIMD building blocks inlined into the kernels' hot loops (Arm DSP extension:
 * Cortex-M4/M7/M33/M55), with portable C for every other target. Integer sums are exact, so both
 * give the same results bit for bit. */
#ifndef EK_SIMD_H
#define EK_SIMD_H

#include <stdint.h>
#include <string.h>

#include "ek_common.h"

/* Offset-free 2x2 block of a matrix product. w holds two weight rows of n int8, pair-interleaved
 * (layout.interleave_rows with k = 2: their 4-byte blocks alternate, then row 0's n % 4 tail, then row 1's);
 * acc[0] += row0.xa, acc[1] += row1.xa, acc[2] += row0.xb, acc[3] += row1.xb. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
/* Helium (M-profile vector extension, Cortex-M55/M85): 16 multiply-accumulates per VMLADAVA.
 * The weight layouts below interleave rows in blocks of 4, so one gather load picks a row's 16
 * weights out of four blocks; the DSP code then finishes the last < 16 inputs. */
#include <arm_mve.h>
#define EK_MVE 1
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1
#include <arm_acle.h>

/* SXTB16 of v rotated by 8 (bytes 1 and 3) in one instruction: gcc does not fuse the rotation itself. */
EK_INLINE uint32_t sxtb16_ror8(uint32_t v) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* Two weight rows, pair-interleaved (above), against two inputs: 20 instructions per
 * 16 multiply-accumulates, every unpacked word used twice. The loop is written in assembly: it
 * needs 14 registers, and gcc at -Os spills the pointers and adds index arithmetic. */
EK_INLINE void ek_mat2x2(const int8_t *w, const int8_t *xa, const int8_t *xb, int32_t n, int32_t *acc) {
    int32_t a00 = acc[0], a10 = acc[1], a01 = acc[2], a11 = acc[3];
#ifdef EK_MVE
    { /* 16 inputs = 4 pair blocks = 32 weight bytes; row 0 holds bytes 0-3, 8-11, 16-19, 24-27 */
        const uint8x16_t r0 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
        const uint8x16_t r1 = vaddq_n_u8(r0, 4);
        for (int32_t g = n >> 4; g > 0; g--, w += 32, xa += 16, xb += 16) {
            const int8x16_t va = vld1q_s8(xa), vb = vld1q_s8(xb);
            const int8x16_t w0 = vldrbq_gather_offset_s8(w, r0), w1 = vldrbq_gather_offset_s8(w, r1);
            a00 = vmladavaq_s8(a00, w0, va), a10 = vmladavaq_s8(a10, w1, va);
            a01 = vmladavaq_s8(a01, w0, vb), a11 = vmladavaq_s8(a11, w1, vb);
        }
        n &= 15; /* the rest keeps the same layout: whole blocks, then the tails */
    }
#endif
    uint32_t k = (uint32_t)n >> 2;
    if (k) {
        uint32_t x02, x13, y02, y13, v, t;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[x13], [%[xa]], #4\n\t"
            "ldr %[y13], [%[xb]], #4\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[x02], %[x13]\n\t"
            "sxtb16 %[x13], %[x13], ror #8\n\t"
            "sxtb16 %[y02], %[y13]\n\t"
            "sxtb16 %[y13], %[y13], ror #8\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a00], %[t], %[x02], %[a00]\n\t"
            "smlad %[a00], %[v], %[x13], %[a00]\n\t"
            "smlad %[a01], %[t], %[y02], %[a01]\n\t"
            "smlad %[a01], %[v], %[y13], %[a01]\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a10], %[t], %[x02], %[a10]\n\t"
            "smlad %[a10], %[v], %[x13], %[a10]\n\t"
            "smlad %[a11], %[t], %[y02], %[a11]\n\t"
            "smlad %[a11], %[v], %[y13], %[a11]\n\t"
            "subs %[k], %[k], #1\n\t"
            "bne 1b"
            : [a00] "+r"(a00), [a10] "+r"(a10), [a01] "+r"(a01), [a11] "+r"(a11), [w] "+r"(w), [xa] "+r"(xa),
              [xb] "+r"(xb), [k] "+r"(k), [x02] "=&r"(x02), [x13] "=&r"(x13), [y02] "=&r"(y02), [y13] "=&r"(y13),
              [v] "=&r"(v), [t] "=&r"(t)
            :
            : "cc", "memory");
    }
    const int32_t r = n & 3; /* the tail: row 0's last r weights, then row 1's */
    for (int32_t i = 0; i < r; i++) {
        a00 += (int32_t)w[i] * xa[i], a01 += (int32_t)w[i] * xb[i];
        a10 += (int32_t)w[r + i] * xa[i], a11 += (int32_t)w[r + i] * xb[i];
    }
    acc[0] = a00, acc[1] = a10, acc[2] = a01, acc[3] = a11;
}


/* Four weight rows, interleaved (layout.interleave_rows with k = 4), against one input: 25
 * instructions per 16 multiply-accumulates, each unpacked input word used four times. */
EK_INLINE void ek_mat4x1(const int8_t *w, const int8_t *x, int32_t n, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#ifdef EK_MVE
    { /* 16 inputs = 4 blocks of 4 rows = 64 weight bytes; row j holds bytes 4j + {0-3, 16-19, 32-35, 48-51} */
        const uint8x16_t r0 = {0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51};
        const uint8x16_t r1 = vaddq_n_u8(r0, 4), r2 = vaddq_n_u8(r0, 8), r3 = vaddq_n_u8(r0, 12);
        for (int32_t g = n >> 4; g > 0; g--, w += 64, x += 16) {
            const int8x16_t v = vld1q_s8(x);
            a0 = vmladavaq_s8(a0, vldrbq_gather_offset_s8(w, r0), v);
            a1 = vmladavaq_s8(a1, vldrbq_gather_offset_s8(w, r1), v);
            a2 = vmladavaq_s8(a2, vldrbq_gather_offset_s8(w, r2), v);
            a3 = vmladavaq_s8(a3, vldrbq_gather_offset_s8(w, r3), v);
        }
        n &= 15;
    }
#endif
    uint32_t k = (uint32_t)n >> 2;
    if (k) {
        uint32_t x02, x13, v, t;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[x13], [%[x]], #4\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[x02], %[x13]\n\t"
            "sxtb16 %[x13], %[x13], ror #8\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a0], %[t], %[x02], %[a0]\n\t"
            "smlad %[a0], %[v], %[x13], %[a0]\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a1], %[t], %[x02], %[a1]\n\t"
            "smlad %[a1], %[v], %[x13], %[a1]\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a2], %[t], %[x02], %[a2]\n\t"
            "smlad %[a2], %[v], %[x13], %[a2]\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a3], %[t], %[x02], %[a3]\n\t"
            "smlad %[a3], %[v], %[x13], %[a3]\n\t"
            "subs %[k], %[k], #1\n\t"
            "bne 1b"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x), [k] "+r"(k),
              [x02] "=&r"(x02), [x13] "=&r"(x13), [v] "=&r"(v), [t] "=&r"(t)
            :
            : "cc", "memory");
    }
    const int32_t r = n & 3; /* the tails: row 0's last r weights, then row 1's, ... */
    for (int32_t i = 0; i < r; i++) {
        const int32_t xi = x[i];
        a0 += w[i] * xi, a1 += w[r + i] * xi, a2 += w[2 * r + i] * xi, a3 += w[3 * r + i] * xi;
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

#ifndef EK_MVE
/* The matrix product's inputs widened once to int16 (as CMSIS-NN does), so the inner loop unpacks
 * only weights: 18 instructions per 16 multiply-accumulates instead of 22. An "x16" buffer holds,
 * per block of 4 inputs, the two words SXTB16 and SXTB16-ROR8 give (x0 x2, x1 x3), then the n % 4
 * tail as int16; it is addressed as bytes (memcpy or assembly), 4-byte aligned. */
#define EK_X16 1

/* x16 from n int8 inputs; d may start where x starts (the widening runs backwards, so every byte
 * is read before it is overwritten). */
EK_INLINE void ek_widen_x16(const int8_t *x, int8_t *d, int32_t n) {
    const int32_t body = n & ~3;
    for (int32_t i = n - 1; i >= body; i--) {
        const int16_t v = x[i];
        memcpy(d + 2 * i, &v, 2);
    }
    for (int32_t j = body - 4; j >= 0; j -= 4) {
        uint32_t v, pair[2];
        memcpy(&v, x + j, 4);
        pair[0] = __sxtb16(v), pair[1] = sxtb16_ror8(v);
        memcpy(d + 2 * j, pair, 8);
    }
}

/* ek_mat2x2 with x16 inputs. */
EK_INLINE void ek_mat2x2_x16(const int8_t *w, const int8_t *xa, const int8_t *xb, int32_t n, int32_t *acc) {
    int32_t a00 = acc[0], a10 = acc[1], a01 = acc[2], a11 = acc[3];
    uint32_t k = (uint32_t)n >> 2;
    if (k) {
        uint32_t xa02, xa13, xb02, xb13, v, t;
        __asm__ volatile(
            "1:\n\t"
            "ldrd %[xa02], %[xa13], [%[xa]], #8\n\t"
            "ldrd %[xb02], %[xb13], [%[xb]], #8\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a00], %[t], %[xa02], %[a00]\n\t"
            "smlad %[a00], %[v], %[xa13], %[a00]\n\t"
            "smlad %[a01], %[t], %[xb02], %[a01]\n\t"
            "smlad %[a01], %[v], %[xb13], %[a01]\n\t"
            "ldr %[v], [%[w]], #4\n\t"
            "sxtb16 %[t], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a10], %[t], %[xa02], %[a10]\n\t"
            "smlad %[a10], %[v], %[xa13], %[a10]\n\t"
            "smlad %[a11], %[t], %[xb02], %[a11]\n\t"
            "smlad %[a11], %[v], %[xb13], %[a11]\n\t"
            "subs %[k], %[k], #1\n\t"
            "bne 1b"
            : [a00] "+r"(a00), [a10] "+r"(a10), [a01] "+r"(a01), [a11] "+r"(a11), [w] "+r"(w), [xa] "+r"(xa),
              [xb] "+r"(xb), [k] "+r"(k), [xa02] "=&r"(xa02), [xa13] "=&r"(xa13), [xb02] "=&r"(xb02),
              [xb13] "=&r"(xb13), [v] "=&r"(v), [t] "=&r"(t)
            :
            : "cc", "memory");
    }
    const int32_t r = n & 3; /* the tail: row 0's last r weights, then row 1's; x16 holds plain int16 here */
    for (int32_t i = 0; i < r; i++) {
        int16_t va, vb;
        memcpy(&va, xa + 2 * i, 2), memcpy(&vb, xb + 2 * i, 2);
        a00 += (int32_t)w[i] * va, a01 += (int32_t)w[i] * vb;
        a10 += (int32_t)w[r + i] * va, a11 += (int32_t)w[r + i] * vb;
    }
    acc[0] = a00, acc[1] = a10, acc[2] = a01, acc[3] = a11;
}

/* One plain int8 weight row against x16 inputs. */
EK_INLINE int32_t ek_dot_x16(const int8_t *w, const int8_t *x, int32_t n) {
    int32_t acc = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t wv, xv[2];
        memcpy(&wv, w + i, 4), memcpy(xv, x + 2 * i, 8);
        acc = __smlad(__sxtb16(wv), xv[0], acc);
        acc = __smlad(sxtb16_ror8(wv), xv[1], acc);
    }
    for (; i < n; i++) {
        int16_t v;
        memcpy(&v, x + 2 * i, 2);
        acc += (int32_t)w[i] * v;
    }
    return acc;
}
#endif /* !EK_MVE */
#else

EK_INLINE void ek_mat2x2(const int8_t *w, const int8_t *xa, const int8_t *xb, int32_t n, int32_t *acc) {
    const int32_t body = n & ~3, r = n & 3;
    for (int32_t i = 0; i < n; i++) {
        /* pair-interleaved: blocks of 4 alternate between the rows; then row 0's tail, row 1's tail */
        const int32_t i0 = i < body ? (i >> 2) * 8 + (i & 3) : body + i, i1 = i < body ? i0 + 4 : i0 + r;
        acc[0] += (int32_t)w[i0] * xa[i];
        acc[1] += (int32_t)w[i1] * xa[i];
        acc[2] += (int32_t)w[i0] * xb[i];
        acc[3] += (int32_t)w[i1] * xb[i];
    }
}


EK_INLINE void ek_mat4x1(const int8_t *w, const int8_t *x, int32_t n, int32_t *acc) {
    const int32_t body = n & ~3, r = n & 3;
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < 4; j++) { /* blocks of 4 in turn across the rows, then the rows' tails */
            const int32_t at = i < body ? (i >> 2) * 16 + j * 4 + (i & 3) : 4 * body + j * r + (i - body);
            acc[j] += (int32_t)w[at] * x[i];
        }
}
#endif

#endif
