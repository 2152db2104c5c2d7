/* CPU kernels. Each family has a scalar reference (kernels_scalar.c) and vector versions
 * (kernels_avx2.c, kernels_avx512.c) with the same signatures, gathered in a table chosen at
 * run time (dispatch.c). Weights are row-major [n_out, n_in] as in the checkpoint; activations
 * are float32 unless the name says otherwise. Matrix products are named matmul_<x>_<w> by the
 * type of the activations x and of the weights w (matmul_f32_bf16: float32 x, bf16 w). */
#ifndef ML_BACKEND_CPU_KERNELS_H
#define ML_BACKEND_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

typedef struct {
    const char *name; /* "scalar", "avx2", "avx512", "avx512vnni", "avx512bf16" */
    /* 1 when matmul_bf16_bf16 uses a bf16 dot-product instruction (vdpbf16ps), whose rounding
     * differs. 0 when it widens the bf16 activations to f32 (exact) and then does exactly what
     * matmul_f32_bf16 does: matmul_f32_bf16 on the widened activations then gives the same bits, and is
     * faster where widening x in the inner loop costs (the model calls it that way). */
    int bf16_dot_product;

    /* y[t*ldy + r] = sum_i x[t*ldx + i] * w[r*n_in + i]
     *   for t in [0, n_tok), r in [row_begin, row_end).
     * y: [n_tok, ldy]   x: [n_tok, ldx] (ldx >= n_in)   w: [n_out, n_in] (f32, f16 or bf16 bits)
     * Each output is one dot product accumulated in float32; its value must not depend on
     * row_begin/row_end or n_tok (so results are identical however the work is split). */
    void (*matmul_f32_f32)(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in,
                       int n_tok, int row_begin, int row_end);
    void (*matmul_f32_f16)(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in,
                       int n_tok, int row_begin, int row_end);
    void (*matmul_f32_bf16)(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in,
                        int n_tok, int row_begin, int row_end);
    /* fast mode: x holds bf16 activations [n_tok, ldx]; w bf16. float32 accumulation. */
    void (*matmul_bf16_bf16)(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w,
                             int n_in, int n_tok, int row_begin, int row_end);
    /* The same contract with ggml block-quantised weights (core/dtype.h has the layouts):
     *   w: [n_out, n_in / 32] blocks, a row is n_in / 32 * block bytes; n_in a multiple of 32.
     * Every weight is rebuilt exactly as formats/gguf_dequant.c does (q times the f16 scale d in
     * float32; for Q4_1 plus m) and then used as matmul_f32_f32 uses a float32 weight, in the same
     * order: each output equals, bit for bit, matmul_f32_f32 of the same table on the dequantised
     * matrix. (d * q is exact in float32: an 11-bit f16 significand times an integer of at most
     * 8 bits; so the only rounding is Q4_1's + m, which an FMA would round alike.) Activations
     * are float32 in both modes (no int8 activation quantisation). Blocks are unaligned; the
     * kernels read the f16 scales by memcpy. */
    void (*matmul_f32_q8_0)(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in,
                        int n_tok, int row_begin, int row_end);
    void (*matmul_f32_q4_0)(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in,
                        int n_tok, int row_begin, int row_end);
    void (*matmul_f32_q4_1)(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in,
                        int n_tok, int row_begin, int row_end);
    /* The same contract for the other block types (Q5_0, Q5_1, IQ4_NL; the K-quants Q2_K, Q3_K,
     * Q4_K, Q5_K, Q6_K, Q8_K; backend/cpu/kernels_blocks*.c), w_dtype naming the blocks: a row
     * is n_in / B blocks, B = ml_dtype_block_elements (32 or 256), n_in a multiple of B. Each
     * output equals, bit for bit, this table's matmul_f32_f32 on the dequantised matrix
     * (core/quant_blocks.c, which equals gguf-py's dequantisation). The vector variants decode
     * tiles of rows into ml_cpu_scratch and run their matmul_f32_f32 on them, so
     * matmul_f32_f32 must not use ml_cpu_scratch itself. */
    void (*matmul_f32_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                              int n_in, int n_tok, int row_begin, int row_end);
    /* Fast mode on block-quantised weights (the types of ml_q8_supports: Q8_0, Q4_0, Q4_1, Q5_0,
     * Q5_1, IQ4_NL): the activations are quantised to int8 per block of ML_Q8_BLOCK values by
     * quantize_q8 (n a multiple of the block; the blocks are independent, so a row may be
     * quantised in pieces), each block ML_Q8_BLOCK_BYTES: [32 int8 q][float d][int32 sum of q],
     * d = max|x| / 127 of the block, q = x / d rounded to nearest even (x ~ d * q). Then
     * matmul_q8_blocks, for each output (x: [n_tok] such rows, ldx bytes apart):
     *   acc = 0; for each block b in order: acc = fma(isum_b, d_w * d_x, acc)
     *   and for Q4_1 and Q5_1 also acc = fma(sum_x, m_w * d_x, acc)
     * with isum_b the exact integer dot product of the block's weight integers (Q8_0: q;
     * Q4_0: q - 8; Q5_0: q - 16; IQ4_NL: its level, -127..113; Q4_1, Q5_1: q, their m apart) and
     * x's int8 values (|isum_b| < 2^24: exact, and so is its float conversion). The integer
     * sums are exact, so every variant gives the same bits, whatever the split of rows and
     * tokens. */
    void (*quantize_q8)(uint8_t *out, const float *x, int n);
    void (*matmul_q8_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx, const uint8_t *w,
                             int n_in, int n_tok, int row_begin, int row_end);
    /* The same for the K-quants (ml_q8k_supports: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K), whose integer
     * sums stay integer across a whole super-block of 256 weights (as llama.cpp's Q8_K
     * activations do): quantize_q8k quantises per ML_Q8K_BLOCK = 256 values (n a multiple),
     * each block ML_Q8K_BLOCK_BYTES: [256 int8 q][float d][16 int16 sums of q, one per 16
     * values], d = max|x| / 127 of the 256 values, the rounding rule of quantize_q8. Then
     * matmul_q8k_blocks, for each output, acc = 0 and per super-block s in order (its integers
     * where core/quant_blocks.c reads them; dot_j = the exact integer dot product of sub-block
     * j's weight integers and x's int8 values; bsum_i = x's sum over values 16i..16i+15):
     *   Q4_K, Q5_K (6-bit scale sc_j and min m_j per 32, f16 d and dmin; q in 0..15 / 0..31):
     *     isum = sum_j sc_j * dot_j,  msum = sum_j m_j * (bsum_2j + bsum_2j+1)
     *     acc = fma((float)isum, d * d_x, acc);  acc = fma((float)msum, -(dmin * d_x), acc)
     *   Q6_K (int8 scales sc_i per 16, f16 d; q in 0..63, weight q - 32):
     *     isum = sum_i sc_i * dot_i - 32 * sum_i sc_i * bsum_i;  acc = fma((float)isum, d * d_x, acc)
     *   Q3_K (6-bit scales sc_i - 32 per 16, f16 d; q in 0..7 with the hmask bit as bit 2,
     *     weight q - 4): isum = sum_i sc_i * dot_i - 4 * sum_i sc_i * bsum_i; as Q6_K
     *   Q2_K (4-bit scale sc_i and min m_i per 16, f16 d and dmin; q in 0..3):
     *     isum = sum_i sc_i * dot_i,  msum = sum_i m_i * bsum_i; the two FMAs of Q4_K
     *   Q8_K (float32 d, int8 q): isum = dot over the 256;  acc = fma((float)isum, d * d_x, acc)
     * Every integer is exact in int32 (the largest, Q6_K's, below 2^29), so every variant gives
     * the same integers; the conversion to float (round to nearest even) and the FMAs are the
     * same operations in the same order, so the same bits, whatever the split of rows and
     * tokens and however a variant sums the integers (per sub-block, per lane, across tokens). */
    void (*quantize_q8k)(uint8_t *out, const float *x, int n);
    void (*matmul_q8k_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx, const uint8_t *w,
                              int n_in, int n_tok, int row_begin, int row_end);

    /* bf16 weights in row groups (ml_bf16_groups_pack, below): the layout the model gives every
     * bf16 matrix with an even n_in. rows [row_begin, row_end), row_begin a multiple of
     * ML_GROUP_ROWS; w points at group 0 of the packed matrix. Each output sums chunks of
     * ML_GROUP_CHUNK columns, each chunk one float32 chain in index order, every product fused:
     *   for chunk c: acc = 0; for i in chunk c: acc = fmaf(x[t*ldx + i], w[r][i], acc)
     *                y = c == 0 ? acc : y + acc             (y[t*ldy + r])
     * (chunks keep the error of long rows near a pairwise sum's: one chain over 8192 columns
     * doubled the 1B model's logit error against HF). The scalar reference is that loop, so
     * every table gives the same bits (whatever the split of rows and tokens, and the ISA).
     * The vector variants keep 16 rows in one 512-bit vector (two 256-bit ones on AVX2) and
     * several tokens beside them (an outer product per k), which is why the rows are grouped.
     * matmul_bf16_bf16g: x bf16 (fast mode); with bf16_dot_product set it uses vdpbf16ps per
     * pair of k, whose rounding differs (acc = (acc + x[2j+1]w[2j+1]) + x[2j]w[2j] on Intel,
     * chunks as above; its own bits for every split), otherwise x is widened and it equals
     * matmul_f32_bf16g on the widened x. */
    /* xt: NULL, or the same n_tok tokens of x interleaved (ml_groups_interleave_x; for
     * matmul_bf16_bf16g ml_groups_interleave_pairs), which the vector variants may read instead
     * of x from 3 tokens on (one x stream per block instead of one per token: read in place, 12
     * rows n_in apart can share one L1 set); the same bits either way. */
    void (*matmul_f32_bf16g)(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                             int n_in, int n_tok, int row_begin, int row_end);
    void (*matmul_bf16_bf16g)(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                              const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end);

    /* HF LlamaRMSNorm in float32: out[i] = weight[i] * (x[i] / sqrt(mean(x^2) + eps)).
     * out, x, weight: [n]; out may equal x. */
    void (*rmsnorm)(float *out, const float *x, const float *weight, int n, float eps);

    /* HF rotate-half RoPE, in place, on n_heads vectors: vec [n_heads, head_dim];
     * cos, sin: [head_dim / 2] for this position. For i < head_dim/2:
     *   a = vec[i], b = vec[i + head_dim/2]
     *   vec[i] = a*cos[i] - b*sin[i];   vec[i + head_dim/2] = b*cos[i] + a*sin[i] */
    void (*rope)(float *vec, int n_heads, int head_dim, const float *cos, const float *sin);

    /* out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may alias gate. [n] */
    void (*silu_mul)(float *out, const float *gate, const float *up, int n);

    /* Causal attention of n_q query heads sharing one KV head, for one token:
     *   out[h] = softmax_j(scale * q[h].k[j]) . v[j]  over j in [0, n_pos)
     * out, q: [n_q, head_dim]   k, v: [n_pos, head_dim] (the cache rows of this KV head).
     * scratch: at least n_pos floats (scores may be kept there). n_pos >= 1.
     * out must not overlap q, k or v (the vector variants accumulate in out). */
    void (*attention_f32)(float *out, const float *q, int n_q, const float *k, const float *v, int n_pos,
                          int head_dim, float scale, float *scratch);
    void (*attention_bf16)(float *out, const float *q, int n_q, const uint16_t *k, const uint16_t *v,
                           int n_pos, int head_dim, float scale, float *scratch);

    /* Conversions over n elements. f32 -> bf16 rounds to nearest even (NaN kept). */
    void (*f32_to_bf16)(uint16_t *out, const float *in, size_t n);
    void (*bf16_to_f32)(float *out, const uint16_t *in, size_t n);
    void (*f16_to_f32)(float *out, const uint16_t *in, size_t n);
    /* Dequantisation of n elements (a multiple of 32) of blocks at in, bit for bit as
     * ml_gguf_dequantize (embedding rows; row-parallel slices that cannot stay quantised). */
    void (*q8_0_to_f32)(float *out, const uint8_t *in, size_t n);
    void (*q4_0_to_f32)(float *out, const uint8_t *in, size_t n);
    void (*q4_1_to_f32)(float *out, const uint8_t *in, size_t n);
    /* The same for the block types of matmul_f32_blocks: n a multiple of the type's block. */
    void (*blocks_to_f32)(ml_dtype dtype, float *out, const uint8_t *in, size_t n);
} ml_cpu_kernels;

/* The int8 activations of quantize_q8 / matmul_q8_blocks: block size, which weight types have
 * the integer product, and where one token's row keeps its scales and sums. */
#define ML_Q8_BLOCK 32
#define ML_Q8_BLOCK_BYTES 40 /* q at 0, d at 32, sum at 36 */
int ml_q8_supports(ml_dtype w_dtype);
static inline size_t ml_q8_row_bytes(int n_in) { return (size_t)(n_in / ML_Q8_BLOCK) * ML_Q8_BLOCK_BYTES; }
/* The same for quantize_q8k / matmul_q8k_blocks (the K-quants' super-blocks of 256). */
#define ML_Q8K_BLOCK 256
#define ML_Q8K_BLOCK_BYTES 292 /* q at 0, d at 256, the 16 int16 sums at 260 */
int ml_q8k_supports(ml_dtype w_dtype);
static inline size_t ml_q8k_row_bytes(int n_in) { return (size_t)(n_in / ML_Q8K_BLOCK) * ML_Q8K_BLOCK_BYTES; }

/* bf16 rows in groups of ML_GROUP_ROWS (matmul_f32_bf16g): group g holds rows 16g .. 16g+15; in
 * it, pair j of columns (2j, 2j+1) is 64 bytes: row 0's two values, row 1's, ..., row 15's. So
 * w_group[j * 32 + 2 * lane + (i & 1)] is row 16g + lane, column i = 2j + (i & 1). A group is
 * n_in * 32 bytes; rows past n_rows in the last group are zeros. n_in must be even. */
#define ML_GROUP_ROWS 16
#define ML_GROUP_CHUNK 256 /* columns per chain (matmul_f32_bf16g); even */
static inline size_t ml_bf16_groups_bytes(int n_rows, int n_in) {
    return (size_t)((n_rows + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS) * ML_GROUP_ROWS * (size_t)n_in * 2;
}
/* Packs src [n_rows, n_in] (row-major bf16, rows src_ld elements apart) into dst
 * (ml_bf16_groups_bytes(n_rows, n_in) bytes, 64-byte aligned for the vector kernels). */
void ml_bf16_groups_pack(uint16_t *dst, const uint16_t *src, size_t src_ld, int n_rows, int n_in);
/* x's n_tok rows (ldx apart) in the order matmul_f32_bf16g's blocks read them: blocks of
 * ML_GROUP_TOKENS tokens from the first; block b (tb = min(ML_GROUP_TOKENS, n_tok - b *
 * ML_GROUP_TOKENS) tokens) at xt + b * ML_GROUP_TOKENS * n_in, its token t's element i at
 * [i * tb + t]. xt holds n_tok * n_in floats. */
#define ML_GROUP_TOKENS 12
void ml_groups_interleave_x(float *xt, const float *x, size_t ldx, int n_in, int n_tok);
/* bf16 x's n_tok rows in the order matmul_bf16_bf16g's vdpbf16ps blocks read them: the blocks of
 * ml_groups_interleave_x, each token's column pairs kept whole: block b at xt + b *
 * ML_GROUP_TOKENS * n_in, its token t's element i at [(i / 2 * tb + t) * 2 + i % 2]. n_in even;
 * xt holds n_tok * n_in elements. */
void ml_groups_interleave_pairs(uint16_t *xt, const uint16_t *x, size_t ldx, int n_in, int n_tok);
/* Element [r][i] of a packed matrix. */
static inline uint16_t ml_bf16_groups_at(const uint16_t *w, int n_in, int r, int i) {
    const uint16_t *group = w + (size_t)(r / ML_GROUP_ROWS) * ML_GROUP_ROWS * (size_t)n_in;
    return group[(size_t)(i / 2) * (2 * ML_GROUP_ROWS) + 2 * (r % ML_GROUP_ROWS) + (i & 1)];
}

/* The best table for this CPU. The environment variable MESHLLAMA_ISA (scalar, avx2, avx512,
 * avx512vnni, avx512bf16) forces a variant when the CPU supports it. */
const ml_cpu_kernels *ml_cpu_kernels_best(void);
/* A named variant, or NULL when it is not compiled in or this CPU cannot run it. */
const ml_cpu_kernels *ml_cpu_kernels_variant(const char *name);

/* Scratch of at least `floats` floats for the calling thread (backend/cpu/scratch.c), valid until
 * its next call on this thread; NULL when memory is short (callers then do without). */
float *ml_cpu_scratch(size_t floats);

/* The tables themselves (defined in the kernels_*.c files). */
extern const ml_cpu_kernels ml_cpu_kernels_scalar;
extern const ml_cpu_kernels ml_cpu_kernels_avx2;
extern const ml_cpu_kernels ml_cpu_kernels_avx512;
extern const ml_cpu_kernels ml_cpu_kernels_avx512vnni;
extern const ml_cpu_kernels ml_cpu_kernels_avx512bf16;

#endif
