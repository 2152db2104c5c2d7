/* The part of the vector kernel files whose shape does not depend on the vector width: the
 * table's matrix-product entry points (kernels_matmul_entries.h, which kernels_scalar.c shares),
 * the ggml block-quantised drivers, the attention driver over groups of heads and the block
 * conversions. Template by include: kernels_avx2.c and
 * kernels_avx512.c each include it once, at the end (before their tables), after defining
 * what it calls with their own intrinsics:
 *   constants  VEC, W_TILE_BYTES, Q_TOKENS (tokens per quantised register block),
 *              Q_TILE_TOKENS (from this many tokens, decode a tile of rows to float32 first),
 *              Q_TILE_ROWS (tile rows are a multiple of it), KQ_MAX_TOKENS (the K-quants'
 *              fused kernel up to this many tokens), ATT_HEADS (heads per
 *              attention_heads call), KIND_F32 / KIND_F16 / KIND_BF16;
 *   functions  matmul_driver (float32-accumulating product over rows x tokens, any kinds),
 *              q_dot_block (RB rows x TB tokens of quantised weights, RB <= 8, TB <= 8),
 *              kq_dot_block (the same for the K-quants, TB <= KQ_MAX_TOKENS),
 *              BLOCKS_TILED (a macro naming the file's tiled block product),
 *              q_decode_blocks (blocks to float32, bit for bit as the dequantiser),
 *              score_block (scores of NH heads x NP positions), attention_heads (up to
 *              ATT_HEADS heads over all positions).
 * Everything here is static and inlined into the including file, so each ISA keeps its own
 * compiled copy: the speed is that of writing it twice. */
#ifndef ML_BACKEND_CPU_KERNELS_VECTOR_SHARED_H
#define ML_BACKEND_CPU_KERNELS_VECTOR_SHARED_H

/* ---- matrix products ---------------------------------------------------------------------- */

/* The table's entry points come from kernels_matmul_entries.h, included after the quantised
 * driver below; that driver's tiles go through the float32 one. */
static void matmul_f32_f32(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in, int n_tok,
                           int row_begin, int row_end);

/* ---- matrix products: ggml block-quantised weights ---------------------------------------- */

/* Rows [row_begin, row_end) for TB tokens at x/y: blocks of RB rows, then single rows. With
 * prefetch_ahead, each block prefetches the next block of the range (none after the last). */
ML_INLINE void q_rows_for_tokens(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, size_t row_bytes,
                                 int n_blocks, int row_begin, int row_end, int prefetch_ahead, int qkind, const int RB,
                                 const int TB) {
    int r = row_begin;
    for (; r + RB <= row_end; r += RB) {
        const uint8_t *next = prefetch_ahead && r + 2 * RB <= row_end ? w + (size_t)(r + RB) * row_bytes : NULL;
        q_dot_block(y, ldy, x, ldx, w, row_bytes, n_blocks, r, next, qkind, RB, TB);
    }
    for (; r < row_end; r++) q_dot_block(y, ldy, x, ldx, w, row_bytes, n_blocks, r, NULL, qkind, 1, TB);
}

/* Many tokens: tiles of rows decoded to float32 (as matmul_driver tiles float32 weights), then
 * matmul_driver on them. Returns 0 when there is no scratch memory (nothing done). */
ML_INLINE int q_matmul_tiles(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                             int row_begin, int row_end, size_t row_bytes, int qkind) {
    int tile_rows = (int)(W_TILE_BYTES / ((size_t)n_in * sizeof(float))) / Q_TILE_ROWS * Q_TILE_ROWS;
    if (tile_rows < Q_TILE_ROWS) tile_rows = Q_TILE_ROWS;
    if (tile_rows > row_end - row_begin) tile_rows = row_end - row_begin;
    float *tile = ml_cpu_scratch((size_t)tile_rows * (size_t)n_in); /* [tile_rows, n_in] */
    if (!tile) return 0;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        for (int r = r0; r < r1; r++)
            q_decode_blocks(tile + (size_t)(r - r0) * n_in, w + (size_t)r * row_bytes, (size_t)n_in / QK, qkind);
        matmul_f32_f32(y + r0, ldy, x, ldx, tile, n_in, n_tok, 0, r1 - r0); /* a call: one copy of the GEMM */
    }
    return 1;
}

/* One token: blocks of 8 rows, the next block prefetched. 2..Q_TILE_TOKENS-1 tokens (or any
 * number when scratch memory is short): a tile of rows kept in L2 meets the tokens Q_TOKENS at
 * a time in blocks of 2 rows, the first pass prefetching ahead, then the leftover tokens
 * (2 x TB, or 8 x 1). Q_TILE_TOKENS tokens or more: q_matmul_tiles. Same bits every way. */
ML_INLINE void q_matmul_driver(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                               int row_begin, int row_end, int qkind) {
    if (n_tok <= 0 || row_end <= row_begin) return;
    int n_blocks = n_in / QK;
    size_t row_bytes = (size_t)n_blocks * q_block_bytes(qkind);
    if (n_tok == 1) {
        q_rows_for_tokens(y, ldy, x, ldx, w, row_bytes, n_blocks, row_begin, row_end, 1, qkind, 8, 1);
        return;
    }
    if (n_tok >= Q_TILE_TOKENS && n_in > 0 &&
        q_matmul_tiles(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, row_bytes, qkind))
        return;
    int tile_rows = (int)(W_TILE_BYTES / (row_bytes > 0 ? row_bytes : 1)) / 8 * 8;
    if (tile_rows < 8) tile_rows = 8;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        int t = 0;
        for (; t + Q_TOKENS <= n_tok; t += Q_TOKENS)
            q_rows_for_tokens(y + (size_t)t * ldy, ldy, x + (size_t)t * ldx, ldx, w, row_bytes, n_blocks, r0, r1,
                              t == 0, qkind, 2, Q_TOKENS);
        const float *xt = x + (size_t)t * ldx;
        float *yt = y + (size_t)t * ldy;
        int p = t == 0;
        if (n_tok - t == 1) {
            q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 8, 1);
        } else if (n_tok > t) {
/* leftover 2..Q_TOKENS-1; the clamp keeps larger sizes from being compiled */
#define Q_TAIL_CALL(TB)                                                                            \
    q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2,               \
                      (TB) < Q_TOKENS ? (TB) : Q_TOKENS - 1)
            ML_FOR_COUNT(n_tok - t, Q_TAIL_CALL)
#undef Q_TAIL_CALL
        }
    }
}

/* ---- matrix products: K-quant weights, few tokens (Q2_K ... Q6_K) ------------------------- */

/* Rows [row_begin, row_end) x TB tokens of kq_dot_block: 8 rows at a time for one token (the
 * next 8 prefetched), 2 for more, then single rows. */
ML_INLINE void kq_rows(ml_dtype t, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in,
                       int row_begin, int row_end, const int TB) {
    size_t row_bytes = ml_dtype_row_bytes(t, (size_t)n_in);
    int n_super = n_in / 256, r = row_begin;
    const int RB = TB == 1 ? 8 : 2;
    for (; r + RB <= row_end; r += RB) {
        const uint8_t *next = r + 2 * RB <= row_end ? w + (size_t)(r + RB) * row_bytes : NULL;
        kq_dot_block(t, y, ldy, x, ldx, w, row_bytes, n_super, r, next, RB, TB);
    }
    for (; r < row_end; r++) kq_dot_block(t, y, ldy, x, ldx, w, row_bytes, n_super, r, NULL, 1, TB);
}

/* kq_rows for a run-time token count of 1..KQ_MAX_TOKENS (t a constant where inlined). */
ML_INLINE void kq_rows_for_tokens(ml_dtype t, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                                  int n_in, int n_tok, int row_begin, int row_end) {
#define KQ_CALL(TB) kq_rows(t, y, ldy, x, ldx, w, n_in, row_begin, row_end, (TB))
    ML_FOR_COUNT_UP_TO(KQ_MAX_TOKENS, n_tok, KQ_CALL)
#undef KQ_CALL
}

/* matmul_f32_blocks: Q2_K ... Q6_K with up to KQ_MAX_TOKENS tokens fused (one compiled copy per
 * type and token count), everything else by the file's tiled product BLOCKS_TILED. */
static void matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                              int n_in, int n_tok, int row_begin, int row_end) {
    int fused = ml_q8k_per16(w_dtype) || ml_q8k_with_min(w_dtype); /* ML_FOR_KQUANT's five types */
    if (!fused || n_tok > KQ_MAX_TOKENS || n_tok <= 0 || n_in <= 0 || row_end <= row_begin) {
        BLOCKS_TILED(w_dtype, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
        return;
    }
#define KQ_TYPE(T) kq_rows_for_tokens(T, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end)
    ML_FOR_KQUANT(w_dtype, KQ_TYPE)
#undef KQ_TYPE
}

#include "backend/cpu/kernels_matmul_entries.h"

/* Whole blocks, decoded as the matmuls decode them (so bit for bit as the dequantiser). */
static void q8_0_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q8_0); }
static void q4_0_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q4_0); }
static void q4_1_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q4_1); }

/* ---- attention ---------------------------------------------------------------------------- */

/* Scores of NH heads for the n_block positions of a block, two positions per pass. */
ML_INLINE void score_heads(float (*scores)[ATT_BLOCK], int n_block, const float *q, const void *k_rows,
                           int head_dim, float scale, int kv_kind, const int NH) {
    int jj = 0;
    for (; jj + 2 <= n_block; jj += 2) score_block(scores, jj, q, k_rows, head_dim, scale, kv_kind, NH, 2);
    if (jj < n_block) score_block(scores, jj, q, k_rows, head_dim, scale, kv_kind, NH, 1);
}

/* ATT_HEADS query heads at a time. */
ML_INLINE void attention_all_heads(float *out, const float *q, int n_q, const void *k, const void *v, int n_pos,
                                   int head_dim, float scale, int kv_kind) {
    for (int h = 0; h < n_q; h += ATT_HEADS) {
        int n_heads = n_q - h < ATT_HEADS ? n_q - h : ATT_HEADS;
        attention_heads(out + (size_t)h * head_dim, q + (size_t)h * head_dim, n_heads, k, v, n_pos, head_dim,
                        scale, kv_kind);
    }
}

static void attention_f32(float *out, const float *q, int n_q, const float *k, const float *v, int n_pos,
                          int head_dim, float scale, float *scratch) {
    (void)scratch;
    attention_all_heads(out, q, n_q, k, v, n_pos, head_dim, scale, KIND_F32);
}

static void attention_bf16(float *out, const float *q, int n_q, const uint16_t *k, const uint16_t *v, int n_pos,
                           int head_dim, float scale, float *scratch) {
    (void)scratch;
    attention_all_heads(out, q, n_q, k, v, n_pos, head_dim, scale, KIND_BF16);
}

#endif
