/* edgekit runtime: int8 kernels bit-exact with TFLM's reference kernels.
 * Parameters are computed on the host by edgekit's code generator; the kernels
 * only do the Eval-time work. No allocation, no libc beyond <string.h>. */
#ifndef EK_KERNELS_H
#define EK_KERNELS_H

#include <stdint.h>

#include "ek_namespace.h" /* generated next to each model: prefixes every function below */

/* sum of w[i] * (x[i] + x_offset) for i < n (SIMD on cores with the Arm DSP extension). */
int32_t ek_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t x_offset);
/* Decode n 4-bit-indexed weights starting at flat index `start` (weight k in the low nibble of
 * byte k/2 when k is even, the high nibble when odd) through one 16-entry table into dst. */
void ek_unpack4(const uint8_t *packed, int32_t start, int32_t n, const int8_t *table, int8_t *dst);
/* acc[j] += sum of w[j*w_stride + i] * (x[i] + x_offset), for j < 4. */
void ek_dot4(const int8_t *w, int32_t w_stride, const int8_t *x, int32_t n, int32_t x_offset, int32_t *acc);
/* Offset-free depthwise window of four channels with the weights in tap order, 4 bytes per tap
 * (w[(r*cols + c)*4 + j]): acc[j] += sum of w * x[r*x_row + c*x_col + j]; 3x3 is unrolled. */
void ek_dw4_full(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t rows, int32_t cols,
                 int32_t *acc);
/* acc[j] += sum over r < rows, c < cols of w[r*w_row + c*w_col + j] * (x[r*x_row + c*x_col + j] + x_offset), j < 4. */
void ek_dw4(const int8_t *x, int32_t x_row, int32_t x_col, const int8_t *w, int32_t w_row, int32_t w_col,
            int32_t rows, int32_t cols, int32_t x_offset, int32_t *acc);

/* CONV_2D (groups allowed) and DEPTHWISE_CONV_2D. Shapes NHWC; filter OHWI
 * for conv, [1,KH,KW,OC] for depthwise. */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t filter_in_c;      /* conv: filter's input depth (in_c / groups) */
    int32_t depth_multiplier; /* depthwise only */
    int32_t in_zp, out_zp, act_min, act_max;
    int32_t pad_value; /* ek_conv2d_im2col: the input zero point, what a tap outside the image reads */
    const int8_t *filter;
    const int32_t *bias; /* may be 0 */
    const int32_t *mult, *shift; /* one per output channel */
    /* ek_depthwise_conv2d_c4 only: bias - in_zp * (sum of the channel's weights), for pixels whose
     * whole window lies in the image (no offset needed there). */
    const int32_t *bias_folded;
    /* Clustered filter stored as 4-bit indices (filter == 0): table[c*16 + index] per output
     * channel c; the kernel's scratch argument receives decoded weights (conv: min(4, out_c)
     * channels, depthwise: all). */
    const uint8_t *packed;
    const int8_t *table;
} ek_conv_params;

/* `scratch`: memory in the caller's arena the kernel may use during the call (decoded packed
 * weights, im2col windows); 0 when the op needs none. */
void ek_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch);
void ek_depthwise_conv2d(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch);
/* DEPTHWISE_CONV_2D with depth multiplier 1 and an int8 filter in channel groups
 * (layout.group_taps: for each group of 4 channels, its taps in order, 4 bytes each; then the
 * last in_c % 4 channels tap by tap). Whole-window pixels run offset-free on bias_folded. */
void ek_depthwise_conv2d_c4(const ek_conv_params *p, const int8_t *in, int8_t *out);
/* CONV_2D without groups, int8 filter rows pair-interleaved (layout.interleave_rows, k = 2), in_zp folded
 * into the bias over the whole filter: two pixels' windows are copied into scratch (2 * k_h*k_w*in_c
 * bytes) with taps outside the image set to the input zero point, which then contribute exactly what
 * the fold subtracted, and multiplied by two output channels at a time (ek_mat2x2 in ek_simd.h). */
void ek_conv2d_im2col(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch);
/* CONV_2D with a 1x1 filter, stride 1, no padding, in_zp folded into the bias (in_zp == 0), int8 filter:
 * a matrix product over pixels, two pixels by two output channels at a time. Each pair of pixels
 * is written before the next pair is read. */
void ek_conv2d_1x1(const ek_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch);

/* FULLY_CONNECTED: per-channel (n_mult == units) or per-tensor (n_mult == 1, weight zp applied). */
typedef struct {
    int32_t batches, units, depth;
    int32_t in_zp, w_zp, out_zp, act_min, act_max;
    int32_t per_channel;
    /* 1: weights in groups of four rows (layout.interleave_rows, k = 4; the last units % 4 rows plain),
     * in_zp == 0 (folded into the bias) and w_zp == 0; four units per pass (ek_mat4x1) */
    int32_t interleaved;
    const int8_t *weights;
    const int32_t *bias; /* may be 0 */
    const int32_t *mult, *shift;
    /* Clustered weights as 4-bit indices (weights == 0): table[u*16 + index] per unit; scratch holds one row. */
    const uint8_t *packed;
    const int8_t *table;
} ek_fc_params;

void ek_fully_connected(const ek_fc_params *p, const int8_t *in, int8_t *out, int8_t *scratch);

/* AVERAGE_POOL_2D and MAX_POOL_2D. */
typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} ek_pool_params;

void ek_avg_pool(const ek_pool_params *p, const int8_t *in, int8_t *out);
void ek_max_pool(const ek_pool_params *p, const int8_t *in, int8_t *out);

/* ADD, SUB and MUL with NumPy broadcasting, shapes padded to EK_MAX_DIMS; a stride
 * of 0 repeats an input along that axis. count = number of output elements. */
#define EK_MAX_DIMS 6
typedef struct {
    int32_t count;
    int32_t out_dims[EK_MAX_DIMS];
    int32_t stride1[EK_MAX_DIMS], stride2[EK_MAX_DIMS];
    int32_t broadcast; /* 0: both inputs have the output's shape */
    int32_t zp1, zp2, out_zp, act_min, act_max;
    int32_t m1, s1, m2, s2, mo, so; /* ADD, SUB: three multipliers; MUL: mo, so only */
} ek_binary_params;

void ek_add(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ek_sub(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ek_mul(const ek_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);

/* A 256-entry int8 table indexed by x + 128: LOGISTIC and int8 -> int8 QUANTIZE. */
void ek_lut(int32_t count, const int8_t *table, const int8_t *in, int8_t *out);

/* SOFTMAX over rows of `depth`; exp_table[-d] for d = x - max in [-255, 0]. */
typedef struct {
    int32_t rows, depth, diff_min;
    const int32_t *exp_table;
} ek_softmax_params;

void ek_softmax(const ek_softmax_params *p, const int8_t *in, int8_t *out);

/* MEAN over the axes flagged in `reduce`, input padded to EK_MAX_DIMS. */
typedef struct {
    int32_t dims[EK_MAX_DIMS];
    int32_t reduce[EK_MAX_DIMS];
    int32_t in_zp, out_zp, mult, shift; /* multiplier with 1/n folded in */
    int32_t n;                          /* elements reduced per output */
} ek_mean_params;

void ek_mean(const ek_mean_params *p, const int8_t *in, int8_t *out);

/* PAD / PADV2 on shapes padded to 5-D; elem_bytes 1 for int8. */
typedef struct {
    int32_t in_dims[5], out_dims[5], before[5];
    int8_t pad_value;
} ek_pad_params;

void ek_pad(const ek_pad_params *p, const int8_t *in, int8_t *out);

/* CONCATENATION: for each outer index, copy each input's block of bytes. */
void ek_concat(int32_t outer, int32_t n_inputs, const int8_t *const *inputs, const int32_t *block_bytes, int8_t *out);

/* QUANTIZE float -> int8 and DEQUANTIZE int8 -> float. */
void ek_quantize_f32(int32_t count, float scale, int32_t zp, const float *in, int8_t *out);
void ek_dequantize_f32(int32_t count, float scale, int32_t zp, const int8_t *in, float *out);

/* RESHAPE and friends when the planner could not alias the buffers. */
void ek_copy(int32_t bytes, const void *in, void *out);

/* STRIDED_SLICE, TRANSPOSE, SPLIT and SPLIT_V: out[i] = in[start + sum_d idx_d * strides[d]] over the
 * output shape `dims` (padded to EK_MAX_DIMS); strides may be negative. The code generator proves
 * every offset lies inside the input. */
typedef struct {
    int32_t dims[EK_MAX_DIMS];
    int32_t strides[EK_MAX_DIMS];
    int32_t start;
} ek_gather_params;

void ek_gather(const ek_gather_params *p, const int8_t *in, int8_t *out);

/* RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR on NHWC int8 (no requantization, as TFLM). The
 * per-row and per-column source indices (and, bilinear, the weights in 1/1024) come from the code
 * generator: ys/xs for nearest; y0, y1, wy and x0, x1, wx for bilinear. */
typedef struct {
    int32_t batches, in_h, in_w, depth, out_h, out_w;
    const int32_t *y0, *y1, *wy; /* out_h entries (y1, wy: bilinear only) */
    const int32_t *x0, *x1, *wx; /* out_w entries (x1, wx: bilinear only) */
} ek_resize_params;

void ek_resize_nearest(const ek_resize_params *p, const int8_t *in, int8_t *out);
void ek_resize_bilinear(const ek_resize_params *p, const int8_t *in, int8_t *out);

/* TRANSPOSE_CONV, filter [out_c, k_h, k_w, in_c]: each output gathers the input pixels whose
 * scattered window covers it (integer sums are exact, so this equals TFLM's scatter), then bias,
 * per-channel requantization and clamping. */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
    int32_t in_zp, out_zp, act_min, act_max;
    const int8_t *filter;
    const int32_t *bias; /* may be 0 */
    const int32_t *mult, *shift;
} ek_transpose_conv_params;

void ek_transpose_conv(const ek_transpose_conv_params *p, const int8_t *in, int8_t *out);

#include "ek_int16.h" /* int16x8 kernels */

/* SVDF with an int16 state (ek_svdf) or an int8 one (ek_svdf_s8), in ek_svdf.c. weights_feature [filters, input_size] int8, weights_time
 * [filters, memory] int16, bias [units] (may be 0), filters = units * rank. `state` is
 * [batches, filters * memory] in the arena's state area, kept between calls; `scratch` holds
 * `filters` int32 values, 4-byte aligned. */
typedef struct {
    int32_t batches, input_size, filters, units, rank, memory;
    int32_t in_zp, state_zp, out_zp;
    int32_t m1, s1, m2, s2; /* feature -> state and time sum -> output multipliers */
    const int8_t *weights_feature;
    const int16_t *weights_time;   /* ek_svdf: int16 weights_time and state */
    const int8_t *weights_time_s8; /* ek_svdf_s8: int8 weights_time and state */
    const int32_t *bias;
} ek_svdf_params;

void ek_svdf(const ek_svdf_params *p, const int8_t *in, int16_t *state, int8_t *out, int32_t *scratch);
void ek_svdf_s8(const ek_svdf_params *p, const int8_t *in, int8_t *state, int8_t *out, int32_t *scratch);

/* QUANTIZE int16 -> int32 (ek_requant.c). */
typedef struct {
    int32_t in_zp, out_zp, m, shift;
} ek_requant_params;

void ek_requant_s16_s32(int32_t count, const ek_requant_params *p, const int16_t *in, int32_t *out);

/* SOFTMAX int8 -> int16 (output scale 1/65536, zero point -32768), same parameters as ek_softmax. */
void ek_softmax_s8_s16(const ek_softmax_params *p, const int8_t *in, int16_t *out);

/* UNIDIRECTIONAL_SEQUENCE_LSTM (ek_lstm.c). One gate's two fully connected parts: w_in [units, input_size]
 * and w_rec [units, units] int8, biases with the input and hidden zero points folded in, each part
 * requantized to int16 at scale 2^-12. */
typedef struct {
    int32_t m_in, s_in, m_rec, s_rec;
    const int8_t *w_in, *w_rec;
    const int32_t *bias_in, *bias_rec;
} ek_lstm_gate_params;

/* Batch-major: outer = batches, rows = 1; time-major: outer = 1, rows = batches. `hidden` [batches, units]
 * int8 and `cell` [batches, units] int16 live in the state area; `scratch` holds 3 * units int16. */
typedef struct {
    int32_t outer, steps, rows, input_size, units;
    int32_t cell_tanh;  /* the cell gate's activation: 1 tanh, 0 sigmoid */
    int32_t cell_clip;  /* 0: no clipping */
    int32_t tanh_mult, tanh_shift; /* the cell state's tanh input scaling */
    int32_t forget_m, forget_s, input_m, input_s, hidden_m, hidden_s, hidden_zp;
    ek_lstm_gate_params gates[4]; /* forget, input, cell, output */
    const uint16_t *sigmoid_table; /* 256 entries: sigmoid(k / 24) in 0.16 */
} ek_lstm_params;

void ek_lstm(const ek_lstm_params *p, const int8_t *in, int8_t *hidden, int16_t *cell, int8_t *out,
             int16_t *scratch);

#endif
