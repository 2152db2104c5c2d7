/* AVX2 products with bf16 weights in row groups (kernels.h, ML_GROUP_ROWS): the structure of
 * kernels_groups_avx512.c with 8-row halves of a group in 256-bit vectors. A group's pair of
 * columns (64 bytes) is two 32-byte loads, each widened by a shift (column 2j) and an AND
 * (column 2j+1); the odd column reloads the raw vectors from L1 rather than keep them (16 ymm:
 * 12 accumulators, 2 widened weights, the broadcast x). Register blocks: one group (2 halves) x
 * up to 6 tokens, or two groups (4 halves) x 1-2 tokens. x is read where it lies, one stream
 * per token (kernels_groups_avx512.c says why). The chain per output is the scalar reference's
 * (kernels_groups.c): the same bits as every table. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#define ML_INLINE static inline __attribute__((always_inline))

#include <immintrin.h>
#include <string.h>

#define TB_MAX 6      /* tokens per register block */
#define TILE_GROUPS 4 /* groups per row tile (kept in L2 while the token blocks pass) */
#define GROUP_ELEMS(n_in) ((size_t)ML_GROUP_ROWS * (size_t)(n_in))
#define HALF 8

#define ML_IN_REGISTER(v) __asm__("" : "+x"(v))

/* y rows [r0, r0 + 8), up to row_end, for TB tokens: the half's finished sums. */
ML_INLINE void store_half(float *y, size_t ldy, float (*sums)[HALF], int r0, int row_end, const int TB) {
    int n = row_end - r0;
    if (n <= 0) return;
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n < HALF ? n : HALF), lanes);
    for (int t = 0; t < TB; t++) {
        float *out = y + (size_t)t * ldy + r0;
        if (n >= HALF)
            _mm256_storeu_ps(out, _mm256_load_ps(sums[t]));
        else
            _mm256_maskstore_ps(out, m, _mm256_load_ps(sums[t]));
    }
}

/* acc[h][t] = the chains of GB groups (2 * GB halves) x TB tokens over column pairs
 * [p_begin, p_end); x float32 rows ldx apart. */
ML_INLINE void chunk_block(__m256 (*acc)[TB_MAX], const float *x, size_t ldx, const uint16_t *w, int n_in,
                           int p_begin, int p_end, size_t ahead, const int GB, const int TB) {
    const int NH = 2 * GB;
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < TB; t++) acc[h][t] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    for (int j = p_begin; j < p_end; j++) {
        const uint16_t *pair = w + (size_t)j * 2 * ML_GROUP_ROWS;
        if (ahead)
            for (int g = 0; g < GB; g++)
                _mm_prefetch((const char *)(pair + (size_t)g * GROUP_ELEMS(n_in) + ahead), _MM_HINT_T0);
        for (int odd = 0; odd < 2; odd++) {
            __m256 wv[4];
            for (int h = 0; h < NH; h++) {
                __m256i v = _mm256_loadu_si256(
                    (const __m256i *)(pair + (size_t)(h / 2) * GROUP_ELEMS(n_in) + (size_t)(h % 2) * 2 * HALF));
                wv[h] = _mm256_castsi256_ps(odd ? _mm256_and_si256(v, high) : _mm256_slli_epi32(v, 16));
            }
            for (int t = 0; t < TB; t++) {
                __m256 xb = _mm256_broadcast_ss(&x[(size_t)t * ldx + 2 * (size_t)j + (size_t)odd]);
                ML_IN_REGISTER(xb);
                for (int h = 0; h < NH; h++) acc[h][t] = _mm256_fmadd_ps(xb, wv[h], acc[h][t]);
            }
        }
    }
}

/* GB groups from row r0 x TB tokens, chunk by chunk of ML_GROUP_CHUNK columns: each chunk's
 * chains kept (the first) or added to the sums so far (kernels.h), on the stack, and y written
 * once at the end, as the AVX-512 kernel does (kernels_groups_avx512.c says why). */
ML_INLINE void group_block(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int r0,
                           int row_end, size_t ahead, const int GB, const int TB) {
    const int n_pairs = n_in / 2, chunk_pairs = ML_GROUP_CHUNK / 2;
    float sums[4][TB_MAX][HALF] __attribute__((aligned(32))); /* 2 * GB <= 4 halves */
    for (int p0 = 0; p0 < n_pairs; p0 += chunk_pairs) {
        int p1 = n_pairs - p0 < chunk_pairs ? n_pairs : p0 + chunk_pairs;
        __m256 acc[4][TB_MAX];
        chunk_block(acc, x, ldx, w, n_in, p0, p1, ahead, GB, TB);
        for (int h = 0; h < 2 * GB; h++)
            for (int t = 0; t < TB; t++)
                _mm256_store_ps(sums[h][t], p0 > 0 ? _mm256_add_ps(_mm256_load_ps(sums[h][t]), acc[h][t]) : acc[h][t]);
        __asm__ volatile("" : : "r"(sums) : "memory"); /* sums stay in memory: the accumulators need the registers */
    }
    for (int h = 0; h < 2 * GB; h++) store_half(y, ldy, sums[h], r0 + h * HALF, row_end, TB);
}

ML_INLINE void groups_for_block(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in,
                                int g_begin, int g_end, int row_end, size_t ahead, const int GB, const int TB) {
    int g = g_begin;
    for (; g + GB <= g_end; g += GB)
        group_block(y, ldy, x, ldx, w + (size_t)g * GROUP_ELEMS(n_in), n_in, g * ML_GROUP_ROWS, row_end, ahead, GB,
                    TB);
    for (; g < g_end; g++)
        group_block(y, ldy, x, ldx, w + (size_t)g * GROUP_ELEMS(n_in), n_in, g * ML_GROUP_ROWS, row_end, ahead, 1,
                    TB);
}

/* Row tiles of TILE_GROUPS groups, each passed by every block of up to TB_MAX tokens; the first
 * pass, which reads the tile from memory, prefetches ml_groups_lookahead_elements(n_tok) ahead. */
static void groups_driver(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                          int row_begin, int row_end) {
    int g_begin = row_begin / ML_GROUP_ROWS, g_end = (row_end + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS;
    size_t lookahead = ml_groups_lookahead_elements(n_tok);
    for (int tile = g_begin; tile < g_end; tile += TILE_GROUPS) {
        int tile_end = tile + TILE_GROUPS < g_end ? tile + TILE_GROUPS : g_end;
        for (int t0 = 0; t0 < n_tok; t0 += TB_MAX) {
            int tb = n_tok - t0 < TB_MAX ? n_tok - t0 : TB_MAX;
            size_t ahead = t0 == 0 ? lookahead : 0; /* the pass that reads the tile from memory */
            const float *xb = x + (size_t)t0 * ldx;
            float *yb = y + (size_t)t0 * ldy;
#define BLOCK_CALL(TB)                                                                             \
    groups_for_block(yb, ldy, xb, ldx, w, n_in, tile, tile_end, row_end, ahead, (TB) <= 2 ? 2 : 1, TB)
            ML_FOR_COUNT_UP_TO(TB_MAX, tb, BLOCK_CALL)
#undef BLOCK_CALL
        }
    }
}

/* xt unused: 6 tokens' row pointers fit the registers beside the loop's own. */
void ml_avx2_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                              int n_in, int n_tok, int row_begin, int row_end) {
    (void)xt;
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0) return;
    groups_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
}

/* bf16 x widened into the thread's scratch (exact), then the float32 product: the same bits. */
void ml_avx2_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                               const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    (void)xt;
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0) return;
    float *wide = ml_cpu_scratch((size_t)n_tok * (size_t)n_in);
    if (!wide) { /* no memory for the copy: the reference gives the same bits */
        ml_scalar_matmul_bf16_bf16g(y, ldy, x, ldx, NULL, w, n_in, n_tok, row_begin, row_end);
        return;
    }
    for (int t = 0; t < n_tok; t++) ml_scalar_bf16_to_f32(wide + (size_t)t * n_in, x + (size_t)t * ldx, (size_t)n_in);
    groups_driver(y, ldy, wide, (size_t)n_in, w, n_in, n_tok, row_begin, row_end);
}
