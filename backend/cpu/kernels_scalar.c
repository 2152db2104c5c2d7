/* Scalar reference kernels: the ground truth every vector variant is tested against
 * (tests/test_kernels.c). Plain loops, float32 accumulation in natural index order, one
 * rounding per C operation. Products and sums are written as separate statements where the
 * order of roundings matters, so a compiler that contracts a*b+c into an FMA within one
 * expression (clang's default -ffp-contract=on) still computes the same values as GCC. Keep
 * this file obviously right rather than fast. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include <math.h>

#include "core/dtype.h"
#include "core/numeric.h"
#include "core/quant_blocks.h"

/* ---- matrix products -------------------------------------------------------------------- */

/* Element readers: exact conversions of one element to float32. */
static float f32_value(const void *p, size_t i) { return ((const float *)p)[i]; }
static float f16_value(const void *p, size_t i) { return ml_f16_to_f32(((const uint16_t *)p)[i]); }
static float bf16_value(const void *p, size_t i) { return ml_bf16_to_f32(((const uint16_t *)p)[i]); }
typedef float (*element_reader)(const void *p, size_t i);

/* y[t*ldy + r] = sum_i x[t*ldx + i] * w[r*n_in + i], i = 0, 1, ..., n_in-1 in that order, each
 * element read exactly as float32 (bf16 x bf16 products have at most 16 significant bits, so
 * they are exact in float32 too; only the sum rounds). The value of one output depends only on
 * x row t and w row r, never on the split. */
static inline void matmul_driver(float *y, size_t ldy, const void *x, size_t ldx, element_reader x_value,
                                 const void *w, element_reader w_value, int n_in, int n_tok, int row_begin,
                                 int row_end) {
    for (int t = 0; t < n_tok; t++) {
        size_t x_row = (size_t)t * ldx; /* [n_in] */
        for (int r = row_begin; r < row_end; r++) {
            size_t w_row = (size_t)r * n_in; /* [n_in] */
            float sum = 0.0f;
            for (int i = 0; i < n_in; i++) {
                float product = x_value(x, x_row + i) * w_value(w, w_row + i);
                sum += product;
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

/* ---- matrix products: ggml block-quantised weights ---------------------------------------- */

/* Each block's 32 weights are decoded by core/quant_blocks.c, the same code the dequantiser
 * (formats/gguf_dequant.c) runs. */
#define QK ML_QUANT_BLOCK
/* The legacy block types use the one block-by-block reference of kernels_blocks.c: the same
 * products and the same sums in the same order as matmul_f32_f32 on the dequantised matrix. */
static inline void q_matmul_driver(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in,
                                   int n_tok, int row_begin, int row_end, ml_dtype w_dtype) {
    ml_scalar_matmul_f32_blocks(w_dtype, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
}

/* The kinds of kernels_matmul_entries.h: element readers and block types. */
#define KIND_F32 f32_value
#define KIND_F16 f16_value
#define KIND_BF16 bf16_value
#define QKIND_Q8_0 ML_DTYPE_Q8_0
#define QKIND_Q4_0 ML_DTYPE_Q4_0
#define QKIND_Q4_1 ML_DTYPE_Q4_1
#include "backend/cpu/kernels_matmul_entries.h"

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

static void attention_generic(float *out, const float *q, int n_q, const void *k, const void *v, int n_pos,
                              int head_dim, float scale, float *scratch, element_reader value) {
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
    attention_generic(out, q, n_q, k, v, n_pos, head_dim, scale, scratch, f32_value);
}

static void attention_bf16(float *out, const float *q, int n_q, const uint16_t *k, const uint16_t *v, int n_pos,
                           int head_dim, float scale, float *scratch) {
    attention_generic(out, q, n_q, k, v, n_pos, head_dim, scale, scratch, bf16_value);
}

/* ---- conversions -------------------------------------------------------------------------- */

void ml_scalar_f32_to_bf16(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f32_to_bf16(in[i]);
}

void ml_scalar_bf16_to_f32(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_bf16_to_f32(in[i]);
}

void ml_scalar_f16_to_f32(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f16_to_f32(in[i]);
}

static void q8_0_to_f32(float *out, const uint8_t *in, size_t n) { ml_quant_blocks_to_f32(ML_DTYPE_Q8_0, in, n / QK, out); }
static void q4_0_to_f32(float *out, const uint8_t *in, size_t n) { ml_quant_blocks_to_f32(ML_DTYPE_Q4_0, in, n / QK, out); }
static void q4_1_to_f32(float *out, const uint8_t *in, size_t n) { ml_quant_blocks_to_f32(ML_DTYPE_Q4_1, in, n / QK, out); }

/* The exported conversions under the names the table entries use. */
static void f32_to_bf16(uint16_t *out, const float *in, size_t n) { ml_scalar_f32_to_bf16(out, in, n); }
static void bf16_to_f32(float *out, const uint16_t *in, size_t n) { ml_scalar_bf16_to_f32(out, in, n); }
static void f16_to_f32(float *out, const uint16_t *in, size_t n) { ml_scalar_f16_to_f32(out, in, n); }

const ml_cpu_kernels ml_cpu_kernels_scalar = {
    .name = "scalar",
    .bf16_dot_product = 0,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = ml_scalar_matmul_f32_blocks,
    .quantize_q8 = ml_scalar_quantize_q8,
    .matmul_q8_blocks = ml_scalar_matmul_q8_blocks,
    .quantize_q8k = ml_scalar_quantize_q8k,
    .matmul_q8k_blocks = ml_scalar_matmul_q8k_blocks,
    .blocks_to_f32 = ml_scalar_blocks_to_f32,
    .matmul_f32_bf16g = ml_scalar_matmul_f32_bf16g,
    .matmul_bf16_bf16g = ml_scalar_matmul_bf16_bf16g,
};
