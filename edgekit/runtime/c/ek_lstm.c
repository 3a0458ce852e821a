/* edgekit runtime: UNIDIRECTIONAL_SEQUENCE_LSTM, int8 input/output/hidden state, int8 weights, int32 biases,
 * int16 cell state and gates (TFLM's integer LSTM, learned from micro/kernels/lstm_eval.h and the
 * reference integer FULLY_CONNECTED, MUL, LOGISTIC and TANH it calls; docs/int8-arithmetic.md, UNIDIRECTIONAL_SEQUENCE_LSTM).
 *
 * One time step, per batch row:
 *   gate = act(sat16(rq(bias_in + sum w_in * x, m_in)) + sat16(rq(bias_rec + sum w_rec * h, m_rec)))
 *          for the forget, input, cell and output gates; each FC's output is int16 at scale 2^-12
 *          (Q3.12), act is the int16 sigmoid, or for the cell gate tanh/sigmoid (the op's activation);
 *          the gates come out at scale 2^-15. The zero points of x and h are folded into the biases
 *          at generation time (exact: checks.py proves no sum leaves int32).
 *   c = clip(sat16(sat16(rq(f * c)) + sat16(rq(i * g))))
 *   h = sat8(rq(tanh(c) * o) + h_zp), copied to the output row of this step.
 * The hidden and cell state are variable tensors in the arena's state area: they carry over from one
 * call to the next (as in TFLM) until <prefix>_reset. `scratch` holds 3 * units int16 values. */
#include "ek_common.h"
#include "ek_kernels.h"

static int16_t ek_sat16(int32_t v) { return (int16_t)ek_clamp(v, INT16_MIN, INT16_MAX); }

/* int16 Q3.12 -> Q0.15 logistic: the input times 3 indexes a 256-entry table of sigmoid(k/24) in 0.16
 * with 9 fractional bits of linear interpolation; negative inputs by symmetry (1 - sigmoid(-x)). */
static int16_t ek_lstm_sigmoid(int16_t x, const uint16_t *table) {
    const int32_t v = (int32_t)x * 3;
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t k = a >> 9;
    uint32_t r;
    if (k >= 255) {
        r = 0x7FFFu << 10;
    } else {
        const uint32_t lo = table[k], hi = table[k + 1];
        r = (lo << 9) + (a & 0x1FFu) * (hi - lo);
    }
    r = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
    return (int16_t)(r >> 10);
}

/* int16 -> Q0.15 tanh = 2 * sigmoid(2x) - 1 on the same table: the input is first scaled by
 * (x * mult + round) >> shift (mult and shift from the input's scale, computed at generation time),
 * 8 fractional bits of interpolation. */
static int16_t ek_lstm_tanh(int16_t x, int32_t mult, int32_t shift, const uint16_t *table) {
    const int32_t round = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    const int32_t v = ((int32_t)x * mult + round) >> shift; /* arithmetic shift, as TFLM's */
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t k = a >> 8;
    int32_t r;
    if (k >= 255) {
        r = 0xFFFF << 8;
    } else {
        const uint32_t lo = table[k], hi = table[k + 1];
        r = (int32_t)((lo << 8) + (a & 0xFFu) * (hi - lo));
    }
    r = v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    return (int16_t)(r >> 8); /* arithmetic shift, as TFLM's */
}

static int32_t ek_lstm_dot(const int8_t *w, const int8_t *v, int32_t n, int32_t acc) {
    for (int32_t k = 0; k < n; k++) acc += (int32_t)w[k] * (int32_t)v[k];
    return acc;
}

/* One gate for one batch row: the int16 pre-activation of every unit, then its activation. */
static void ek_lstm_gate(const ek_lstm_params *p, const ek_lstm_gate_params *g, int32_t tanh_act, const int8_t *x,
                         const int8_t *h, int16_t *out) {
    for (int32_t u = 0; u < p->units; u++) {
        const int32_t a = ek_mbqm(ek_lstm_dot(g->w_in + u * p->input_size, x, p->input_size, g->bias_in[u]),
                                  g->m_in, g->s_in);
        const int32_t b = ek_mbqm(ek_lstm_dot(g->w_rec + u * p->units, h, p->units, g->bias_rec[u]),
                                  g->m_rec, g->s_rec);
        const int16_t s = ek_sat16((int32_t)ek_sat16(a) + (int32_t)ek_sat16(b));
        out[u] = tanh_act ? ek_lstm_tanh(s, 3, 0, p->sigmoid_table) : ek_lstm_sigmoid(s, p->sigmoid_table);
    }
}

static void ek_lstm_step(const ek_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int16_t *scratch) {
    int16_t *fg = scratch, *ig = scratch + p->units, *cg = scratch + 2 * p->units;
    ek_lstm_gate(p, &p->gates[0], 0, x, h, fg);
    ek_lstm_gate(p, &p->gates[1], 0, x, h, ig);
    ek_lstm_gate(p, &p->gates[2], p->cell_tanh, x, h, cg);
    for (int32_t u = 0; u < p->units; u++) {
        const int32_t kept = ek_sat16(ek_mbqm((int32_t)fg[u] * c[u], p->forget_m, p->forget_s));
        const int32_t added = ek_sat16(ek_mbqm((int32_t)ig[u] * cg[u], p->input_m, p->input_s));
        int32_t v = ek_sat16(kept + added);
        if (p->cell_clip > 0) v = ek_clamp(v, -p->cell_clip, p->cell_clip);
        c[u] = (int16_t)v;
    }
    int16_t *og = fg; /* the forget gate is used up */
    ek_lstm_gate(p, &p->gates[3], 0, x, h, og); /* still the old hidden state */
    for (int32_t u = 0; u < p->units; u++) {
        const int32_t t = ek_lstm_tanh(c[u], p->tanh_mult, p->tanh_shift, p->sigmoid_table);
        h[u] = ek_sat8(ek_mbqm(t * og[u], p->hidden_m, p->hidden_s) + p->hidden_zp);
    }
}

void ek_lstm(const ek_lstm_params *p, const int8_t *in, int8_t *hidden, int16_t *cell, int8_t *out,
             int16_t *scratch) {
    for (int32_t b = 0; b < p->outer; b++) {
        for (int32_t t = 0; t < p->steps; t++) {
            const int32_t at = b * p->steps + t; /* batch-major: one row per step; time-major: outer = 1 */
            for (int32_t r = 0; r < p->rows; r++) {
                const int32_t row = b * p->rows + r;
                int8_t *h = hidden + row * p->units;
                ek_lstm_step(p, in + (at * p->rows + r) * p->input_size, h, cell + row * p->units, scratch);
                int8_t *y = out + (at * p->rows + r) * p->units;
                for (int32_t u = 0; u < p->units; u++) y[u] = h[u];
            }
        }
    }
}
