/* AVX-512 products with bf16 weights in row groups (kernels.h, ML_GROUP_ROWS): an outer product
 * per column. One 64-byte load holds a group's 16 rows at columns 2j and 2j+1; one shift and one
 * AND widen it to the two columns' 16-row vectors (exact), and each feeds one FMA per token of
 * the block, the token's x value broadcast. So per output the sum is the scalar reference's
 * fused chains over chunks of ML_GROUP_CHUNK columns (kernels_groups.c), and the bits are the
 * same for every table, split and batch size. Register blocks: GB groups x TB tokens of
 * accumulators (2 x 12 = 24, plus 4 widened weight vectors and the broadcast x: 29 of 32
 * zmm), so each widened weight vector feeds 12 FMAs and each broadcast 2, against a dot-product block's horizontal work
 * (the 4 x 6 dot block reached 65-75% of the FMA peak with its data in L1; this block 78-82%
 * with a 512 KiB tile in L2, on an Intel Xeon; docs/BENCHMARKS.md).
 *
 * x: for 3+ tokens the caller may pass x interleaved (ml_groups_interleave_x, made once per job
 * by model/matmul_jobs.c), so a block's 12 values of a column are adjacent: one x pointer in the
 * loop. Read in place instead, the 12 row pointers and the look-ahead's addresses outrun the
 * general registers and the loop reloads pointers from the stack (17-27 per 48 FMAs; none
 * interleaved). A copy made per call instead cost as much as the product for a 48-row task
 * (one thread, 32 rows x 2048 x 12 tokens in L2: 37 GFLOP/s with the copy, 155 without).
 * bf16 x without vdpbf16ps is widened into the thread's scratch first (as rows).
 *
 * Rows go in tiles of TILE_GROUPS groups (64 rows: 256 KiB at n_in 2048, 1 MiB at 8192, kept
 * in L2) that every token block passes over: the first pass reads the tile from memory, the
 * others from L2. One or two tokens take 4 groups per block (4 or 8 independent chains, which
 * is what keeps the loads in flight: each chain does 2 dependent FMAs per 64 bytes).
 *
 * matmul_bf16_bf16g with vdpbf16ps (the avx512bf16 table): x as bf16 pairs (x[2j] low), one
 * vdpbf16ps per group and token per pair of columns: half the instructions, its own rounding.
 * From 3 tokens it reads the pairs interleaved too (ml_groups_interleave_pairs) when given them:
 * read in place, a block's 12 rows of 2 x n_in bytes (4 KiB at 2048) all fall in one set of an
 * 8-way L1 (AMD Zen 4) and evict each other every 16 column pairs. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#define ML_INLINE static inline __attribute__((always_inline))

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TB_MAX 12      /* tokens per register block */
#define TILE_GROUPS 4  /* groups per row tile */
#define GROUP_ELEMS(n_in) ((size_t)ML_GROUP_ROWS * (size_t)(n_in))

/* Keeps v in a register (gcc would otherwise fold the broadcast load into each FMA using it). */
#define ML_IN_REGISTER(v) __asm__("" : "+v"(v))

/* The software prefetch of the pass that reads a tile from memory: `elements` ahead of each
 * group's loads (0: none), into L2 rather than L1 where ml_groups_lookahead_to_l2 says so. */
typedef struct {
    size_t elements;
    int to_l2;
} lookahead;

/* MODE_WIDEN: float32 x rows; MODE_INTERLEAVED: float32 x blocks of ml_groups_interleave_x;
 * MODE_DP: bf16 x rows read as pairs, for vdpbf16ps; MODE_DP_INTERLEAVED: bf16 x blocks of
 * ml_groups_interleave_pairs, for vdpbf16ps. */
enum { MODE_WIDEN = 0, MODE_DP = 1, MODE_INTERLEAVED = 2, MODE_DP_INTERLEAVED = 3 };
#define MODE_IS_DP(mode) ((mode) == MODE_DP || (mode) == MODE_DP_INTERLEAVED)
#define MODE_IS_INTERLEAVED(mode) ((mode) == MODE_INTERLEAVED || (mode) == MODE_DP_INTERLEAVED)

/* Rows [r0, r0 + 16) of the group starting at row r0 for the TB tokens of acc, up to row_end:
 * stored, or added to y (kernels.h's sum over chunks). */
ML_INLINE void store_group(float *y, size_t ldy, const __m512 *acc, int r0, int row_end, int add, const int TB) {
    int n = row_end - r0 < ML_GROUP_ROWS ? row_end - r0 : ML_GROUP_ROWS;
    __mmask16 m = (__mmask16)((1u << n) - 1u);
    for (int t = 0; t < TB; t++) {
        float *out = y + (size_t)t * ldy + r0;
        __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), acc[t]) : acc[t];
        _mm512_mask_storeu_ps(out, m, v);
    }
}

/* acc[g][t] = the chains of GB groups (w: the first of them) x TB tokens over column pairs
 * [p_begin, p_end); x: float32 rows (MODE_WIDEN) or bf16 rows read as pairs (MODE_DP), ldx
 * elements apart, or one block of ml_groups_interleave_x / _pairs (MODE_INTERLEAVED /
 * MODE_DP_INTERLEAVED; ldx = its width in tokens). */
ML_INLINE void chunk_block(__m512 (*acc)[TB_MAX], const void *x, size_t ldx, const uint16_t *w, int n_in, int p_begin,
                           int p_end, lookahead ahead, const int mode, const int GB, const int TB) {
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    for (int g = 0; g < GB; g++)
        for (int t = 0; t < TB; t++) acc[g][t] = _mm512_setzero_ps();
    for (int j = p_begin; j < p_end; j++) {
        for (int g = 0; ahead.elements && g < GB; g++) {
            const char *at = (const char *)(w + (size_t)g * GROUP_ELEMS(n_in) + (size_t)j * 2 * ML_GROUP_ROWS +
                                            ahead.elements);
            if (ahead.to_l2)
                _mm_prefetch(at, _MM_HINT_T1);
            else
                _mm_prefetch(at, _MM_HINT_T0);
        }
        if (!MODE_IS_DP(mode)) {
            const float *xf = x;
            __m512 even[4], odd[4];
            for (int g = 0; g < GB; g++) {
                __m512i v = _mm512_loadu_si512(w + (size_t)g * GROUP_ELEMS(n_in) + (size_t)j * 2 * ML_GROUP_ROWS);
                even[g] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
                odd[g] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
            }
            for (int t = 0; t < TB; t++) {
                __m512 xb = _mm512_set1_ps(mode == MODE_INTERLEAVED ? xf[2 * (size_t)j * ldx + (size_t)t]
                                                                   : xf[(size_t)t * ldx + 2 * (size_t)j]);
                ML_IN_REGISTER(xb);
                for (int g = 0; g < GB; g++) acc[g][t] = _mm512_fmadd_ps(xb, even[g], acc[g][t]);
            }
            for (int t = 0; t < TB; t++) {
                __m512 xb = _mm512_set1_ps(mode == MODE_INTERLEAVED ? xf[(2 * (size_t)j + 1) * ldx + (size_t)t]
                                                                   : xf[(size_t)t * ldx + 2 * (size_t)j + 1]);
                ML_IN_REGISTER(xb);
                for (int g = 0; g < GB; g++) acc[g][t] = _mm512_fmadd_ps(xb, odd[g], acc[g][t]);
            }
        } else {
            const uint16_t *xh = x;
            __m512bh wv[4];
            for (int g = 0; g < GB; g++)
                wv[g] = (__m512bh)_mm512_loadu_si512(w + (size_t)g * GROUP_ELEMS(n_in) + (size_t)j * 2 * ML_GROUP_ROWS);
            for (int t = 0; t < TB; t++) {
                uint32_t pair; /* x[2j] in the low half, as the weights' pair */
                memcpy(&pair, mode == MODE_DP_INTERLEAVED ? xh + ((size_t)j * ldx + (size_t)t) * 2
                                                          : xh + (size_t)t * ldx + 2 * (size_t)j,
                       4);
                __m512i xb = _mm512_set1_epi32((int)pair);
                ML_IN_REGISTER(xb);
                for (int g = 0; g < GB; g++) acc[g][t] = _mm512_dpbf16_ps(acc[g][t], (__m512bh)xb, wv[g]);
            }
        }
    }
}

/* GB groups from row r0 x TB tokens, chunk by chunk of ML_GROUP_CHUNK columns: each chunk's
 * chains stored (the first) or added to the sums so far (kernels.h). From 3 tokens the sums wait
 * on the stack and y is written once: a block's y rows are ldy apart, 8 or 32 KiB for the 1B
 * shape's projections, so all of its outputs share one L1 set, and adding every chunk into y
 * missed L1 each time (12% of a 24-token product's samples). Zen 4, 1B-shape rows (2048 wide)
 * from memory, 2 threads, against adding into y, alternated call by call: 12 tokens 1.10-1.16x,
 * 24 tokens 1.16x, 32 tokens 1.09-1.17x (fast mode); accurate 8-32 tokens 1.02-1.15x. One or two
 * tokens add into y as before: their few rows do not crowd a set, and read-bound they had nothing
 * to gain (1 token on the stack: 0.91-0.99x, within the VM's drift). */
ML_INLINE void group_block(float *y, size_t ldy, const void *x, size_t ldx, const uint16_t *w, int n_in, int r0,
                           int row_end, lookahead ahead, const int mode, const int GB, const int TB) {
    const int n_pairs = n_in / 2, chunk_pairs = ML_GROUP_CHUNK / 2, on_stack = TB >= 3;
    float sums[4][TB_MAX][ML_GROUP_ROWS] __attribute__((aligned(64)));
    for (int p0 = 0; p0 < n_pairs; p0 += chunk_pairs) {
        int p1 = n_pairs - p0 < chunk_pairs ? n_pairs : p0 + chunk_pairs;
        __m512 acc[4][TB_MAX];
        chunk_block(acc, x, ldx, w, n_in, p0, p1, ahead, mode, GB, TB);
        if (!on_stack) {
            for (int g = 0; g < GB; g++)
                if (r0 + g * ML_GROUP_ROWS < row_end)
                    store_group(y, ldy, acc[g], r0 + g * ML_GROUP_ROWS, row_end, p0 > 0, TB);
            continue;
        }
        for (int g = 0; g < GB; g++)
            for (int t = 0; t < TB; t++)
                _mm512_store_ps(sums[g][t], p0 > 0 ? _mm512_add_ps(_mm512_load_ps(sums[g][t]), acc[g][t]) : acc[g][t]);
        __asm__ volatile("" : : "r"(sums) : "memory"); /* sums stay in memory: the accumulators need the registers */
    }
    for (int g = 0; on_stack && g < GB; g++) {
        __m512 sum[TB_MAX];
        for (int t = 0; t < TB; t++) sum[t] = _mm512_load_ps(sums[g][t]);
        if (r0 + g * ML_GROUP_ROWS < row_end) store_group(y, ldy, sum, r0 + g * ML_GROUP_ROWS, row_end, 0, TB);
    }
}

/* Groups [g_begin, g_end) for one token block: GB at a time, then one at a time. */
ML_INLINE void groups_for_block(float *y, size_t ldy, const void *x, size_t ldx, const uint16_t *w, int n_in,
                                int g_begin, int g_end, int row_end, lookahead ahead, const int mode, const int GB,
                                const int TB) {
    int g = g_begin;
    for (; g + GB <= g_end; g += GB)
        group_block(y, ldy, x, ldx, w + (size_t)g * GROUP_ELEMS(n_in), n_in, g * ML_GROUP_ROWS, row_end, ahead, mode,
                    GB, TB);
    for (; g < g_end; g++)
        group_block(y, ldy, x, ldx, w + (size_t)g * GROUP_ELEMS(n_in), n_in, g * ML_GROUP_ROWS, row_end, ahead, mode, 1,
                    TB);
}

/* Row tiles of TILE_GROUPS groups, each passed by every block of up to TB_MAX tokens; x rows of
 * x_elem bytes per element, ldx elements apart. One or two tokens take 4 groups per block. */
ML_INLINE void groups_driver(float *y, size_t ldy, const void *x, size_t ldx, size_t x_elem, const uint16_t *w,
                          int n_in, int n_tok, int row_begin, int row_end, int mode) {
    int g_begin = row_begin / ML_GROUP_ROWS, g_end = (row_end + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS;
    lookahead first_pass = {ml_groups_lookahead_elements(n_tok), ml_groups_lookahead_to_l2()}, none = {0, 0};
    for (int tile = g_begin; tile < g_end; tile += TILE_GROUPS) {
        int tile_end = tile + TILE_GROUPS < g_end ? tile + TILE_GROUPS : g_end;
        for (int t0 = 0; t0 < n_tok; t0 += TB_MAX) {
            int tb = n_tok - t0 < TB_MAX ? n_tok - t0 : TB_MAX;
            lookahead ahead = t0 == 0 ? first_pass : none; /* the pass that reads the tile from memory */
            const void *xb = (const uint8_t *)x + (size_t)t0 * (MODE_IS_INTERLEAVED(mode) ? (size_t)n_in : ldx) * x_elem;
            size_t ldb = MODE_IS_INTERLEAVED(mode) ? (size_t)tb : ldx; /* a block's width, or the rows' */
            float *yb = y + (size_t)t0 * ldy;
            if (tb == 1) {
                groups_for_block(yb, ldy, xb, ldb, w, n_in, tile, tile_end, row_end, ahead, mode, 4, 1);
            } else if (tb == 2) {
                groups_for_block(yb, ldy, xb, ldb, w, n_in, tile, tile_end, row_end, ahead, mode, 4, 2);
            } else {
#define BLOCK_CALL(TB)                                                                             \
    groups_for_block(yb, ldy, xb, ldb, w, n_in, tile, tile_end, row_end, ahead, mode, 2, (TB) < 3 ? 3 : (TB))
                ML_FOR_COUNT_UP_TO(TB_MAX, tb, BLOCK_CALL)
#undef BLOCK_CALL
            }
        }
    }
}

void ml_avx512_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                                int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0) return;
    if (xt && n_tok >= 3)
        groups_driver(y, ldy, xt, 0, sizeof(float), w, n_in, n_tok, row_begin, row_end, MODE_INTERLEAVED);
    else
        groups_driver(y, ldy, x, ldx, sizeof(float), w, n_in, n_tok, row_begin, row_end, MODE_WIDEN);
}

/* bf16 x widened into the thread's scratch (exact), then the float32 product: the same bits. */
void ml_avx512_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
    const uint16_t *w, int n_in,
                                 int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0) return;
    float *wide = ml_cpu_scratch((size_t)n_tok * (size_t)n_in);
    if (!wide) { /* no memory for the copy: the reference gives the same bits */
        ml_scalar_matmul_bf16_bf16g(y, ldy, x, ldx, NULL, w, n_in, n_tok, row_begin, row_end);
        return;
    }
    for (int t = 0; t < n_tok; t++) ml_scalar_bf16_to_f32(wide + (size_t)t * n_in, x + (size_t)t * ldx, (size_t)n_in);
    groups_driver(y, ldy, wide, (size_t)n_in, sizeof(float), w, n_in, n_tok, row_begin, row_end, MODE_WIDEN);
}

void ml_avx512bf16_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                                     const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0) return;
    if (xt && n_tok >= 3)
        groups_driver(y, ldy, xt, 0, sizeof(uint16_t), w, n_in, n_tok, row_begin, row_end, MODE_DP_INTERLEAVED);
    else
        groups_driver(y, ldy, x, ldx, sizeof(uint16_t), w, n_in, n_tok, row_begin, row_end, MODE_DP);
}
