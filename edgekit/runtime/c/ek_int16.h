/* edgekit runtime: int16x8 kernels (int16 activations, int8 weights) bit-exact with TFLM's
 * reference kernels. int16 activations are symmetric (zero point 0, TFLM requires it), so no
 * kernel here takes an input or output offset. Included by ek_kernels.h. */
#ifndef EK_INT16_H
#define EK_INT16_H

#include <stdint.h>

/* CONV_2D (groups allowed) and DEPTHWISE_CONV_2D, int16 in/out, int8 filter (OHWI for conv,
 * [1,KH,KW,OC] for depthwise). TFLM accumulates in the bias's type: int64 (bias64, or no bias
 * with acc32 == 0), rescaled by the 64-bit MultiplyByQuantizedMultiplier; int32 (bias32 or
 * acc32), rescaled by the 32-bit one. The code generator proves an int32 accumulator cannot
 * overflow before it emits acc32 = 1. */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t filter_in_c;      /* conv: filter's input depth (in_c / groups) */
    int32_t depth_multiplier; /* depthwise only */
    int32_t depthwise;
    int32_t act_min, act_max;
    int32_t acc32;
    const int8_t *filter;
    const int64_t *bias64; /* may be 0 */
    const int32_t *bias32; /* may be 0 */
    const int32_t *mult, *shift; /* one per output channel */
} ek_conv16_params;

void ek_conv2d_s16(const ek_conv16_params *p, const int16_t *in, int16_t *out);

/* FULLY_CONNECTED, int16 in/out, int8 weights [units, depth]; one multiplier per unit
 * (per-channel) or one for all (per-tensor, w_zp applied). Accumulator as for convolutions. */
typedef struct {
    int32_t batches, units, depth;
    int32_t w_zp, act_min, act_max, per_channel, acc32;
    const int8_t *weights;
    const int64_t *bias64;
    const int32_t *bias32;
    const int32_t *mult, *shift;
} ek_fc16_params;

void ek_fully_connected_s16(const ek_fc16_params *p, const int16_t *in, int16_t *out);

/* AVERAGE_POOL_2D and MAX_POOL_2D on int16 (ek_pool_params of ek_kernels.h). */
void ek_avg_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out);
void ek_max_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out);

/* ADD, SUB, MUL on int16 with broadcasting (ek_binary_params; zero points are 0). ADD and SUB
 * scale the inputs by 2^15 where int8 uses 2^20, as TFLM. */
void ek_add_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void ek_sub_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void ek_mul_s16(const ek_binary_params *p, const int16_t *a, const int16_t *b, int16_t *out);

/* SOFTMAX int16 -> int16: exp and 1/(1+x) by 513-entry tables with linear interpolation. */
typedef struct {
    int32_t rows, depth, input_multiplier, input_shift;
    const int16_t *exp_lut, *recip_lut;
} ek_softmax16_params;

void ek_softmax_s16(const ek_softmax16_params *p, const int16_t *in, int16_t *out);

/* LOGISTIC int16 -> int16 (output scale 2^-15): input rescaled to 1/(3*4096) units by
 * (x * multiplier + round) >> shift, then a 256-entry sigmoid table (sigmoid(i/24), 0.16 format). */
void ek_logistic_s16(int32_t count, int32_t multiplier, int32_t shift, const uint16_t *table,
                     const int16_t *in, int16_t *out);

/* QUANTIZE between int8 and int16 (either way, or int16 -> int16): TFLM's Requantize. */
void ek_requantize_s16(int32_t count, int32_t m, int32_t shift, int32_t in_zp, int32_t out_zp,
                       int32_t in_bits, int32_t out_bits, const void *in, void *out);

/* QUANTIZE float -> int16 and DEQUANTIZE int16 -> float. */
void ek_quantize_f32_s16(int32_t count, float scale, int32_t zp, const float *in, int16_t *out);
void ek_dequantize_s16_f32(int32_t count, float scale, int32_t zp, const int16_t *in, float *out);

#endif
