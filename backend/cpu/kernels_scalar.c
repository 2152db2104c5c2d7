/* Scalar reference kernels: the ground truth every vector variant is tested against
 * (tests/test_kernels.c). Plain loops, float32 accumulation in natural index order, one
 * rounding per C operation. Products and sums are written as separate statements where the
 * order of roundings matters, so a compiler that contracts a*b+c into an FMA within one
 * expression (clang's default -ffp-contract=on) still computes the same values as GCC. Keep
 * this file obviously right rather than fast. */
#include "backend/cpu/kernels.h"

#include <math.h>

#include "core/dtype.h"
#include "core/numeric.h"

/* ---- matrix products -------------------------------------------------------------------- */

/* y[t*ldy + r] = sum_i x[t*ldx + i] * w[r*n_in + i], i = 0, 1, ..., n_in-1 in that order.
 * The value of one output depends only on x row t and w row r, never on the split. */
static void matmul_f32_f32(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in, int n_tok,
                       int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++) {
        const float *x_row = x + (size_t)t * ldx; /* [n_in] */
        for (int r = row_begin; r < row_end; r++) {
            const float *w_row = w + (size_t)r * n_in; /* [n_in] */
            float sum = 0.0f;
            for (int i = 0; i < n_in; i++) {
                float product = x_row[i] * w_row[i];
                sum += product;
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

static void matmul_f32_f16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                       int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++) {
        const float *x_row = x + (size_t)t * ldx;
        for (int r = row_begin; r < row_end; r++) {
            const uint16_t *w_row = w + (size_t)r * n_in;
            float sum = 0.0f;
            for (int i = 0; i < n_in; i++) {
                float product = x_row[i] * ml_f16_to_f32(w_row[i]);
                sum += product;
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

static void matmul_f32_bf16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++) {
        const float *x_row = x + (size_t)t * ldx;
        for (int r = row_begin; r < row_end; r++) {
            const uint16_t *w_row = w + (size_t)r * n_in;
            float sum = 0.0f;
            for (int i = 0; i < n_in; i++) {
                float product = x_row[i] * ml_bf16_to_f32(w_row[i]);
                sum += product;
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

/* Fast mode: both operands bf16. A bf16 x bf16 product has at most 16 significant bits, so it
 * is exact in float32; only the sum rounds. */
static void matmul_bf16_bf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                             int n_tok, int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++) {
        const uint16_t *x_row = x + (size_t)t * ldx;
        for (int r = row_begin; r < row_end; r++) {
            const uint16_t *w_row = w + (size_t)r * n_in;
            float sum = 0.0f;
            for (int i = 0; i < n_in; i++) {
                float product = ml_bf16_to_f32(x_row[i]) * ml_bf16_to_f32(w_row[i]);
                sum += product;
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

/* ---- matrix products: ggml block-quantised weights ---------------------------------------- */

/* A block's 32 weights as float32, computed as formats/gguf_dequant.c computes them: the f16
 * scale converted exactly, one product per weight (exact: an 11-bit significand times an
 * integer of at most 8 bits), and for Q4_1 a separate sum, the one rounding. */
#define QK ML_QUANT_BLOCK
enum { BYTES_Q8_0 = 2 + QK, BYTES_Q4_0 = 2 + QK / 2, BYTES_Q4_1 = 2 + 2 + QK / 2 };

/* Little-endian f16 at p (any alignment). */
static float f16_at(const uint8_t *p) { return ml_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void q8_0_block(const uint8_t *block, float *out) {
    float d = f16_at(block);
    for (int i = 0; i < QK; i++) out[i] = (float)(int8_t)block[2 + i] * d;
}

static void q4_0_block(const uint8_t *block, float *out) {
    float d = f16_at(block);
    const uint8_t *qs = block + 2; /* low nibbles: elements 0..15; high nibbles: 16..31 */
    for (int i = 0; i < QK / 2; i++) {
        out[i] = d * (float)((int)(qs[i] & 0x0f) - 8);
        out[i + QK / 2] = d * (float)((int)(qs[i] >> 4) - 8);
    }
}

static void q4_1_block(const uint8_t *block, float *out) {
    float d = f16_at(block), m = f16_at(block + 2);
    const uint8_t *qs = block + 4;
    for (int i = 0; i < QK / 2; i++) {
        float low = d * (float)(qs[i] & 0x0f);
        float high = d * (float)(qs[i] >> 4);
        out[i] = low + m;
        out[i + QK / 2] = high + m;
    }
}

typedef void (*block_decoder)(const uint8_t *block, float *out);

/* matmul_f32_f32 with each row's weights decoded block by block: the same products and the same
 * sums in the same order, so the same bits as matmul_f32_f32 on the dequantised matrix. */
static void matmul_blocks(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                          int row_begin, int row_end, size_t block_bytes, block_decoder decode) {
    int n_blocks = n_in / QK;
    size_t row_bytes = (size_t)n_blocks * block_bytes;
    float weights[QK];
    for (int t = 0; t < n_tok; t++) {
        const float *x_row = x + (size_t)t * ldx; /* [n_in] */
        for (int r = row_begin; r < row_end; r++) {
            const uint8_t *w_row = w + (size_t)r * row_bytes; /* [n_blocks] blocks */
            float sum = 0.0f;
            for (int b = 0; b < n_blocks; b++) {
                decode(w_row + (size_t)b * block_bytes, weights);
                for (int i = 0; i < QK; i++) {
                    float product = x_row[b * QK + i] * weights[i];
                    sum += product;
                }
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

static void matmul_f32_q8_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    matmul_blocks(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, BYTES_Q8_0, q8_0_block);
}

static void matmul_f32_q4_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    matmul_blocks(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, BYTES_Q4_0, q4_0_block);
}

static void matmul_f32_q4_1(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    matmul_blocks(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, BYTES_Q4_1, q4_1_block);
}

/* ---- normalisation and elementwise ------------------------------------------------------- */

/* HF LlamaRMSNorm.forward (modeling_llama.py):
 *   variance = hidden_states.pow(2).mean(-1, keepdim=True)
 *   hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
 *   return self.weight * hidden_states
 * so: inv = 1 / sqrt(mean(x^2) + eps), then out = (x * inv) * w, in that order. */
static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float sum_squares = 0.0f;
    for (int i = 0; i < n; i++) {
        float square = x[i] * x[i];
        sum_squares += square;
    }
    float mean = sum_squares / (float)n;
    float inv = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) {
        float normalised = x[i] * inv;
        out[i] = normalised * weight[i];
    }
}

/* HF apply_rotary_pos_emb: q_embed = q * cos + rotate_half(q) * sin, where
 * rotate_half(q) = cat(-q[half:], q[:half]) and cos/sin repeat their [head_dim/2] values twice.
 * Per pair (a, b) = (vec[i], vec[i + half]):
 *   vec[i]        = a*cos[i] + (-b)*sin[i] = a*cos[i] - b*sin[i]
 *   vec[i + half] = b*cos[i] +   a *sin[i] */
static void rope(float *vec, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *head = vec + (size_t)h * head_dim; /* [head_dim] */
        for (int i = 0; i < half; i++) {
            float a = head[i], b = head[i + half];
            float a_cos = a * cos[i], b_sin = b * sin[i];
            float b_cos = b * cos[i], a_sin = a * sin[i];
            head[i] = a_cos - b_sin;
            head[i + half] = b_cos + a_sin;
        }
    }
}

/* LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)) with act_fn = SiLU,
 * torch.nn.SiLU: silu(g) = g * sigmoid(g) = g / (1 + exp(-g)). */
static void silu_mul(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        float denominator = 1.0f + expf(-g);
        float silu = g / denominator;
        out[i] = silu * up[i];
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

/* HF eager_attention_forward (modeling_llama.py), one token, one KV head, n_q query heads:
 *   attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
 *   attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
 *   attn_output  = torch.matmul(attn_weights, value_states)
 * with the usual two-pass softmax: p_j = exp(s_j - max) / sum_k exp(s_k - max).
 * The causal mask is implicit: the caller passes only the positions 0..n_pos-1 this token sees.
 * K and V rows are given as float here; attention_bf16 widens them first (exact). */
static float k_value_f32(const void *k, size_t index) { return ((const float *)k)[index]; }
static float k_value_bf16(const void *k, size_t index) { return ml_bf16_to_f32(((const uint16_t *)k)[index]); }

static void attention_generic(float *out, const float *q, int n_q, const void *k, const void *v, int n_pos,
                              int head_dim, float scale, float *scratch, float (*value)(const void *, size_t)) {
    float *scores = scratch; /* [n_pos] */
    for (int h = 0; h < n_q; h++) {
        const float *q_head = q + (size_t)h * head_dim; /* [head_dim] */
        float max_score = -INFINITY;
        for (int j = 0; j < n_pos; j++) {
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) {
                float product = q_head[d] * value(k, (size_t)j * head_dim + d);
                dot += product;
            }
            scores[j] = dot * scale;
            if (scores[j] > max_score) max_score = scores[j];
        }
        float sum = 0.0f;
        for (int j = 0; j < n_pos; j++) {
            scores[j] = expf(scores[j] - max_score);
            sum += scores[j];
        }
        for (int j = 0; j < n_pos; j++) scores[j] = scores[j] / sum;
        float *out_head = out + (size_t)h * head_dim; /* [head_dim] */
        for (int d = 0; d < head_dim; d++) {
            float acc = 0.0f;
            for (int j = 0; j < n_pos; j++) {
                float product = scores[j] * value(v, (size_t)j * head_dim + d);
                acc += product;
            }
            out_head[d] = acc;
        }
    }
}

static void attention_f32(float *out, const float *q, int n_q, const float *k, const float *v, int n_pos,
                          int head_dim, float scale, float *scratch) {
    attention_generic(out, q, n_q, k, v, n_pos, head_dim, scale, scratch, k_value_f32);
}

static void attention_bf16(float *out, const float *q, int n_q, const uint16_t *k, const uint16_t *v, int n_pos,
                           int head_dim, float scale, float *scratch) {
    attention_generic(out, q, n_q, k, v, n_pos, head_dim, scale, scratch, k_value_bf16);
}

/* ---- conversions -------------------------------------------------------------------------- */

static void f32_to_bf16(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f32_to_bf16(in[i]);
}

static void bf16_to_f32(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_bf16_to_f32(in[i]);
}

static void f16_to_f32(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f16_to_f32(in[i]);
}

static void q8_0_to_f32(float *out, const uint8_t *in, size_t n) {
    for (size_t b = 0; b < n / QK; b++) q8_0_block(in + b * BYTES_Q8_0, out + b * QK);
}

static void q4_0_to_f32(float *out, const uint8_t *in, size_t n) {
    for (size_t b = 0; b < n / QK; b++) q4_0_block(in + b * BYTES_Q4_0, out + b * QK);
}

static void q4_1_to_f32(float *out, const uint8_t *in, size_t n) {
    for (size_t b = 0; b < n / QK; b++) q4_1_block(in + b * BYTES_Q4_1, out + b * QK);
}

const ml_cpu_kernels ml_cpu_kernels_scalar = {
    .name = "scalar",
    .bf16_dot_product = 0,
    .matmul_f32_f32 = matmul_f32_f32,
    .matmul_f32_f16 = matmul_f32_f16,
    .matmul_f32_bf16 = matmul_f32_bf16,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    .matmul_f32_q8_0 = matmul_f32_q8_0,
    .matmul_f32_q4_0 = matmul_f32_q4_0,
    .matmul_f32_q4_1 = matmul_f32_q4_1,
    .rmsnorm = rmsnorm,
    .rope = rope,
    .silu_mul = silu_mul,
    .attention_f32 = attention_f32,
    .attention_bf16 = attention_bf16,
    .f32_to_bf16 = f32_to_bf16,
    .bf16_to_f32 = bf16_to_f32,
    .f16_to_f32 = f16_to_f32,
    .q8_0_to_f32 = q8_0_to_f32,
    .q4_0_to_f32 = q4_0_to_f32,
    .q4_1_to_f32 = q4_1_to_f32,
};
