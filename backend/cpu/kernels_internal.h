/* What the kernel files share among themselves (not for callers of the table). */
#ifndef ML_BACKEND_CPU_KERNELS_INTERNAL_H
#define ML_BACKEND_CPU_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

/* The scalar conversions (kernels_scalar.c), which the vector versions call for the elements
 * after their last whole vector, so a tail is the reference's own code. */
void ml_scalar_f32_to_bf16(uint16_t *out, const float *in, size_t n);
void ml_scalar_bf16_to_f32(float *out, const uint16_t *in, size_t n);
void ml_scalar_f16_to_f32(float *out, const uint16_t *in, size_t n);

/* The block types of matmul_f32_blocks (kernels_blocks.c): the scalar reference, and the tiled
 * product the vector variants share: rows [row_begin, row_end) decoded a tile at a time by
 * decode_rows (n_rows whole rows of n_in elements at src, row_bytes apart, into dst
 * [n_rows, n_in]) into ml_cpu_scratch, then matmul_f32_f32 of the same table on the tile. */
typedef void (*ml_matmul_f32_f32_fn)(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in,
                                     int n_tok, int row_begin, int row_end);
typedef void (*ml_blocks_decode_fn)(ml_dtype dtype, float *dst, const uint8_t *src, size_t n);
void ml_scalar_matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                                 int n_in, int n_tok, int row_begin, int row_end);
void ml_scalar_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n);
void ml_blocks_matmul_tiled(ml_matmul_f32_f32_fn matmul_f32_f32, ml_blocks_decode_fn decode, ml_dtype w_dtype, float *y,
                            size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                            int row_begin, int row_end);
/* The vector variants (kernels_blocks_avx2.c, kernels_blocks_avx512.c). */
void ml_avx2_matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                               int n_in, int n_tok, int row_begin, int row_end);
void ml_avx2_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n);
void ml_avx512_matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                                 int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n);

/* The int8 products of fast mode (kernels_int8*.c): the scalar reference, and the vector
 * variants (AVX2 also serves the avx512 table; AVX512_VNNI the avx512vnni and avx512bf16 tables). */
void ml_scalar_quantize_q8(uint8_t *out, const float *x, int n);
void ml_scalar_matmul_q8_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end);
void ml_avx2_quantize_q8(uint8_t *out, const float *x, int n);
void ml_avx2_matmul_q8_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx, const uint8_t *w,
                              int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512vnni_quantize_q8(uint8_t *out, const float *x, int n);
void ml_avx512vnni_matmul_q8_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                    const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end);
/* How a block-of-32 type's integer sums are formed (kernels.h, matmul_q8_blocks): signed
 * weights (Q8_0 as stored, IQ4_NL's levels), or unsigned q with an offset taken from x's sum
 * (Q4_0's 8, Q5_0's 16) or with an f16 m (Q4_1, Q5_1). */
static inline int ml_q8_signed(ml_dtype t) { return t == ML_DTYPE_Q8_0 || t == ML_DTYPE_IQ4_NL; }
static inline int ml_q8_with_m(ml_dtype t) { return t == ML_DTYPE_Q4_1 || t == ML_DTYPE_Q5_1; }
static inline int ml_q8_offset(ml_dtype t) { return t == ML_DTYPE_Q4_0 ? 8 : t == ML_DTYPE_Q5_0 ? 16 : 0; }
/* Where a block's 16 bytes of nibbles start (after d, m and Q5's 32 high bits). */
static inline size_t ml_q8_nibbles_at(ml_dtype t) {
    return t == ML_DTYPE_Q4_1 ? 4 : t == ML_DTYPE_Q5_0 ? 6 : t == ML_DTYPE_Q5_1 ? 8 : 2;
}

/* How a K-quant's integer sums are formed (kernels.h, matmul_q8k_blocks): scales per 16 values
 * (Q2_K, Q3_K, Q6_K) or per 32 (Q4_K, Q5_K; Q8_K none), mins against x's sums per 16 (Q2_K,
 * Q4_K, Q5_K), and the weights' offset (Q3_K's - 4, Q6_K's - 32) as a left shift of the scales
 * against x's sums (2, 5; 0: none). */
static inline int ml_q8k_per16(ml_dtype t) { return t == ML_DTYPE_Q2_K || t == ML_DTYPE_Q3_K || t == ML_DTYPE_Q6_K; }
static inline int ml_q8k_with_min(ml_dtype t) { return t == ML_DTYPE_Q2_K || t == ML_DTYPE_Q4_K || t == ML_DTYPE_Q5_K; }
static inline int ml_q8k_offset_shift(ml_dtype t) { return t == ML_DTYPE_Q6_K ? 5 : t == ML_DTYPE_Q3_K ? 2 : 0; }
/* Where a K-quant super-block's f16 d is (its dmin, where it has one, right after it). */
static inline size_t ml_kq_d_offset(ml_dtype t) {
    return t == ML_DTYPE_Q6_K ? 208 : t == ML_DTYPE_Q3_K ? 108 : t == ML_DTYPE_Q2_K ? 80 : 0;
}
void ml_scalar_quantize_q8k(uint8_t *out, const float *x, int n);
void ml_scalar_matmul_q8k_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                 const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end);
void ml_avx2_quantize_q8k(uint8_t *out, const float *x, int n);
void ml_avx2_matmul_q8k_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                               const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512vnni_quantize_q8k(uint8_t *out, const float *x, int n);
void ml_avx512vnni_matmul_q8k_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                     const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end);

/* Products with bf16 weights in row groups (kernels_groups*.c; kernels.h matmul_f32_bf16g): the
 * scalar reference and the vector variants, all with the same bits (the vdpbf16ps one apart). */
void ml_scalar_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                                int n_in, int n_tok, int row_begin, int row_end);
void ml_scalar_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                                 const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end);
/* How far ahead of its loads each group's stream prefetches in the pass that reads a tile from
 * memory, in elements, for a product of n_tok tokens (0: not at all); kernels_groups.c says why. */
size_t ml_groups_lookahead_elements(int n_tok);
/* Whether the AVX-512 row groups prefetch into L2 (prefetcht1) rather than L1 (AMD: kernels_groups.c). */
int ml_groups_lookahead_to_l2(void);
void ml_avx2_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                              int n_in, int n_tok, int row_begin, int row_end);
void ml_avx2_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                               const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                                int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                                 const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end);
void ml_avx512bf16_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                                     const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end);

/* Every kernels_*.c file names its functions alike (static matmul_f32_f32, rmsnorm, ...); a
 * table lists them with this, plus .name, .bf16_dot_product and .matmul_bf16_bf16, which
 * differ between tables. */
#define ML_CPU_KERNEL_ENTRIES                                                                      \
    .matmul_f32_f32 = matmul_f32_f32, .matmul_f32_f16 = matmul_f32_f16, .matmul_f32_bf16 = matmul_f32_bf16, \
    .matmul_f32_q8_0 = matmul_f32_q8_0, .matmul_f32_q4_0 = matmul_f32_q4_0,                       \
    .matmul_f32_q4_1 = matmul_f32_q4_1, .rmsnorm = rmsnorm, .rope = rope, .silu_mul = silu_mul,    \
    .attention_f32 = attention_f32, .attention_bf16 = attention_bf16, .f32_to_bf16 = f32_to_bf16,  \
    .bf16_to_f32 = bf16_to_f32, .f16_to_f32 = f16_to_f32, .q8_0_to_f32 = q8_0_to_f32,              \
    .q4_0_to_f32 = q4_0_to_f32, .q4_1_to_f32 = q4_1_to_f32

/* CALL(n) for n = count in 1..max-1, else CALL(max) (max a constant, at most 12): turns a run-time
 * count into the compile-time block size of an inlined kernel (every size up to max is
 * compiled; the switch's operand is clamped, so the cases above max are never compiled in). */
#define ML_CLAMP_COUNT(n, max) ((n) < (max) ? (n) : (max))
#define ML_FOR_COUNT_UP_TO(max, count, CALL)                                                       \
    switch (ML_CLAMP_COUNT(count, max)) {                                                          \
    case 1: CALL(ML_CLAMP_COUNT(1, max)); break;                                                   \
    case 2: CALL(ML_CLAMP_COUNT(2, max)); break;                                                   \
    case 3: CALL(ML_CLAMP_COUNT(3, max)); break;                                                   \
    case 4: CALL(ML_CLAMP_COUNT(4, max)); break;                                                   \
    case 5: CALL(ML_CLAMP_COUNT(5, max)); break;                                                   \
    case 6: CALL(ML_CLAMP_COUNT(6, max)); break;                                                   \
    case 7: CALL(ML_CLAMP_COUNT(7, max)); break;                                                   \
    case 8: CALL(ML_CLAMP_COUNT(8, max)); break;                                                   \
    case 9: CALL(ML_CLAMP_COUNT(9, max)); break;                                                   \
    case 10: CALL(ML_CLAMP_COUNT(10, max)); break;                                                 \
    case 11: CALL(ML_CLAMP_COUNT(11, max)); break;                                                 \
    default: CALL(max); break;                                                                     \
    }

/* CALL(T) with T the constant equal to the run-time type t: one inlined instance per type, whose
 * other types' branches the compiler drops. The K-quants with sub-block scales (Q6_K when t is
 * none of the others), and the int8 products' blocks of 32 (IQ4_NL when none of the others). */
#define ML_FOR_KQUANT(t, CALL)                                                                     \
    switch (t) {                                                                                   \
    case ML_DTYPE_Q2_K: CALL(ML_DTYPE_Q2_K); break;                                                \
    case ML_DTYPE_Q3_K: CALL(ML_DTYPE_Q3_K); break;                                                \
    case ML_DTYPE_Q4_K: CALL(ML_DTYPE_Q4_K); break;                                                \
    case ML_DTYPE_Q5_K: CALL(ML_DTYPE_Q5_K); break;                                                \
    default: CALL(ML_DTYPE_Q6_K); break;                                                           \
    }
#define ML_FOR_Q32(t, CALL)                                                                        \
    switch (t) {                                                                                   \
    case ML_DTYPE_Q8_0: CALL(ML_DTYPE_Q8_0); break;                                                \
    case ML_DTYPE_Q4_0: CALL(ML_DTYPE_Q4_0); break;                                                \
    case ML_DTYPE_Q4_1: CALL(ML_DTYPE_Q4_1); break;                                                \
    case ML_DTYPE_Q5_0: CALL(ML_DTYPE_Q5_0); break;                                                \
    case ML_DTYPE_Q5_1: CALL(ML_DTYPE_Q5_1); break;                                                \
    default: CALL(ML_DTYPE_IQ4_NL); break;                                                         \
    }

#endif
