/* Inline helpers the vector kernel files share (kernels_avx2.c, kernels_avx512.c): ggml block
 * geometry and scales, read with 128-bit F16C instructions that every AVX2 and AVX-512 CPU has,
 * the attention heads' count-to-constant switch, and the online softmax's block size and
 * per-block rescale (the shared code built on top of the files' intrinsics is
 * kernels_vector_shared.h). Include only from files built with at least -mavx2 -mf16c. */
#ifndef ML_BACKEND_CPU_KERNELS_VECTOR_COMMON_H
#define ML_BACKEND_CPU_KERNELS_VECTOR_COMMON_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/kernels_internal.h"

#define ML_INLINE static inline __attribute__((always_inline))

/* ggml quantised blocks (core/dtype.h): 32 weights each. */
enum { QKIND_Q8_0 = 0, QKIND_Q4_0 = 1, QKIND_Q4_1 = 2 };
#define QK 32

ML_INLINE size_t q_block_bytes(int qkind) {
    return qkind == QKIND_Q8_0 ? 2 + QK : qkind == QKIND_Q4_0 ? 2 + QK / 2 : 4 + QK / 2;
}

/* The block's scale d (and Q4_1's m; 0 otherwise): f16 bits read by memcpy (blocks are not
 * aligned), converted by vcvtph2ps (exact). */
ML_INLINE void q_scales(const uint8_t *block, int qkind, float *d, float *m) {
    uint32_t bits = 0;
    memcpy(&bits, block, qkind == QKIND_Q4_1 ? 4 : 2);
    __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128((int)bits));
    *d = _mm_cvtss_f32(both);
    *m = _mm_cvtss_f32(_mm_movehdup_ps(both));
}

/* The attention blocks' heads: up to 8 (ML_FOR_COUNT_UP_TO, kernels_internal.h). */
#define ML_FOR_COUNT(count, CALL) ML_FOR_COUNT_UP_TO(8, count, CALL)

/* Attention positions per online-softmax block, in both files. */
#define ATT_BLOCK 32

/* Defined in kernels_vector_shared.h (included at the end of each file), called by each file's
 * attention_heads: the scores of NH heads for one block of positions. */
ML_INLINE void score_heads(float (*scores)[ATT_BLOCK], int n_block, const float *q, const void *k_rows,
                           int head_dim, float scale, int kv_kind, const int NH);

/* Online softmax, one block of n_block scores of one head: the running maximum m becomes
 * m' = max(m, max_j s_j); returns alpha = e^(m - m'), the factor for what was accumulated
 * before (0 on the first block, where m = -inf). */
ML_INLINE float softmax_block_rescale(const float *scores, int n_block, float *running_max) {
    float block_max = scores[0];
    for (int jj = 1; jj < n_block; jj++)
        if (scores[jj] > block_max) block_max = scores[jj];
    float new_max = block_max > *running_max ? block_max : *running_max;
    float alpha = expf(*running_max - new_max);
    *running_max = new_max;
    return alpha;
}

#endif
