/* AVX-512 kernels: two tables from this file (built with -mavx512f/bw/vl/dq/bf16 -mfma -mf16c;
 * dispatch.c hands them out only on CPUs that have the instructions).
 *   ml_cpu_kernels_avx512:     AVX-512 F/BW/VL/DQ only; no bf16 dot-product instruction.
 *   ml_cpu_kernels_avx512bf16: the same, except matmul_bf16_bf16 uses vdpbf16ps.
 * Semantics are those of kernels_scalar.c; tests/test_kernels.c compares them on CPUs that
 * can run them. The structure follows kernels_avx2.c with 16-lane vectors, masked tails
 * (maskz loads, mask stores) instead of copies, and more accumulators (32 zmm registers).
 *
 * Matrix products (f32/f16/bf16 weights; the ggml Q8_0/Q4_0/Q4_1 kernels further below follow
 * the same rule on decoded blocks): every output y[t, r] is one 16-lane accumulator,
 * acc = fma(x[i:i+16], w[i:i+16], acc) for i = 0, 16, 32, ... in order, then one fma with the
 * masked tail, then the
 * fixed hsum16(); blocking only changes how many accumulators are in flight, so results are
 * bit-identical for any row/token split.
 *   decode (n_tok = 1):  8 rows, 8 FMA chains, weights prefetched 512 bytes ahead;
 *   n_tok = 2:           8 rows x 2 tokens;
 *   prefill (n_tok >= 3): 4 rows x 6 tokens: 24 accumulators + 6 x vectors + 1 weight vector
 *                        = 31 zmm; each weight vector loaded feeds 6 tokens. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"
#include "backend/cpu/kernels_vector_common.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/numeric.h"

enum { KIND_F32 = 0, KIND_F16 = 1, KIND_BF16 = 2 };

#define VEC 16                 /* floats per zmm */
#define STEP 64                /* elements per unrolled step of the dot-product loop (4 vectors) */
#define PREFETCH_BYTES 512     /* how far ahead in each weight row to prefetch */
#define W_TILE_BYTES (256 * 1024) /* prefill: weight rows kept in L2 while tokens pass */
#define PREFILL_ROWS 4
#define PREFILL_TOKENS 6

/* ---- loads ------------------------------------------------------------------------------- */

/* Lanes [0, n) set, n in [0, 16]. */
ML_INLINE __mmask16 tail_mask16(int n) { return (__mmask16)((1u << n) - 1u); }

ML_INLINE __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

ML_INLINE size_t kind_size(int kind) { return kind == KIND_F32 ? 4 : 2; }

ML_INLINE __m512 load16(const void *base, size_t index, int kind) {
    if (kind == KIND_F32) return _mm512_loadu_ps((const float *)base + index);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + index));
    return kind == KIND_F16 ? _mm512_cvtph_ps(h) : widen_bf16(h);
}

/* n in [1, 15] values, the other lanes zero; masked lanes are not read. */
ML_INLINE __m512 load_partial(const void *base, size_t index, int n, int kind) {
    __mmask16 m = tail_mask16(n);
    if (kind == KIND_F32) return _mm512_maskz_loadu_ps(m, (const float *)base + index);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + index);
    return kind == KIND_F16 ? _mm512_cvtph_ps(h) : widen_bf16(h);
}

/* The one horizontal sum every dot product ends with (a fixed tree). */
ML_INLINE float hsum16(__m512 v) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- matrix products (f32 activations; f32, f16 or bf16 weights; fast mode widened) ------ */

ML_INLINE void dot_block(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                         int n_in, int row, const int RB, const int TB) {
    const char *w_rows[8];
    const char *x_rows[PREFILL_TOKENS];
    __m512 acc[8][PREFILL_TOKENS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        w_rows[r] = (const char *)w + (size_t)(row + r) * (size_t)n_in * kind_size(w_kind);
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) x_rows[t] = (const char *)x + (size_t)t * ldx * kind_size(x_kind);

    size_t n = (size_t)n_in, i = 0;
    for (; i + STEP <= n; i += STEP) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const char *ahead = w_rows[r] + i * kind_size(w_kind) + PREFETCH_BYTES;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            if (w_kind == KIND_F32) { /* 256 bytes per step */
                _mm_prefetch(ahead + 128, _MM_HINT_T0);
                _mm_prefetch(ahead + 192, _MM_HINT_T0);
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < STEP / VEC; u++) {
            __m512 xv[PREFILL_TOKENS];
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) xv[t] = load16(x_rows[t], i + (size_t)u * VEC, x_kind);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                __m512 wv = load16(w_rows[r], i + (size_t)u * VEC, w_kind);
#pragma GCC unroll 6
                for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(xv[t], wv, acc[r][t]);
            }
        }
    }
    for (; i + VEC <= n; i += VEC) {
        __m512 xv[PREFILL_TOKENS];
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) xv[t] = load16(x_rows[t], i, x_kind);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m512 wv = load16(w_rows[r], i, w_kind);
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(xv[t], wv, acc[r][t]);
        }
    }
    if (i < n) {
        int rest = (int)(n - i);
        __m512 xv[PREFILL_TOKENS];
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) xv[t] = load_partial(x_rows[t], i, rest, x_kind);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m512 wv = load_partial(w_rows[r], i, rest, w_kind);
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(xv[t], wv, acc[r][t]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum16(acc[r][t]);
    }
}

/* Fast mode with vdpbf16ps: per 32 bf16 pairs, acc[k] += x[2k]*w[2k] + x[2k+1]*w[2k+1] (the
 * instruction's own order and rounding: round to nearest even, bf16 denormal inputs read as
 * zero, denormal results flushed). One accumulator per output, 32 elements per instruction in
 * order, then the masked tail, then hsum16: split-invariant like dot_block. */
ML_INLINE void dot_block_dpbf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                                int row, const int RB, const int TB) {
    const uint16_t *w_rows[8];
    const uint16_t *x_rows[PREFILL_TOKENS];
    __m512 acc[8][PREFILL_TOKENS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        w_rows[r] = w + (size_t)(row + r) * (size_t)n_in;
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) x_rows[t] = x + (size_t)t * ldx;

    size_t n = (size_t)n_in, i = 0;
    for (; i + 64 <= n; i += 64) { /* 64 bf16 = 128 bytes per row per step */
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const char *ahead = (const char *)(w_rows[r] + i) + PREFETCH_BYTES;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
        }
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++) {
            __m512i xv[PREFILL_TOKENS];
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) xv[t] = _mm512_loadu_si512(x_rows[t] + i + (size_t)u * 32);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                __m512i wv = _mm512_loadu_si512(w_rows[r] + i + (size_t)u * 32);
#pragma GCC unroll 6
                for (int t = 0; t < TB; t++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)xv[t], (__m512bh)wv);
            }
        }
    }
    for (; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - i)) - 1u);
        __m512i xv[PREFILL_TOKENS];
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) xv[t] = _mm512_maskz_loadu_epi16(m, x_rows[t] + i);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m512i wv = _mm512_maskz_loadu_epi16(m, w_rows[r] + i);
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)xv[t], (__m512bh)wv);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum16(acc[r][t]);
    }
}

/* One block of RB rows x TB tokens, by the plain widening kernel or the vdpbf16ps one. */
ML_INLINE void block(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w,
                     int w_kind, int n_in, int row, const int RB, const int TB) {
    if (use_dpbf16)
        dot_block_dpbf16(y, ldy, (const uint16_t *)x, ldx, (const uint16_t *)w, n_in, row, RB, TB);
    else
        dot_block(y, ldy, x, ldx, x_kind, w, w_kind, n_in, row, RB, TB);
}

ML_INLINE void rows_for_tokens(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind,
                               const void *w, int w_kind, int n_in, int row_begin, int row_end, const int RB,
                               const int TB) {
    int r = row_begin;
    for (; r + RB <= row_end; r += RB) block(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, RB, TB);
    for (; r < row_end; r++) block(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, 1, TB);
}

ML_INLINE void matmul_driver(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind,
                             const void *w, int w_kind, int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin) return;
    size_t x_step = ldx * kind_size(x_kind);
    if (n_tok == 1) {
        rows_for_tokens(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, row_begin, row_end, 8, 1);
        return;
    }
    if (n_tok == 2) {
        rows_for_tokens(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, row_begin, row_end, 8, 2);
        return;
    }
    /* Prefill: a tile of weight rows (W_TILE_BYTES, kept in L2) meets every 6-token block of x
     * in turn, then the 1..5 leftover tokens; each weight byte comes from memory once per call. */
    size_t w_row_bytes = (size_t)(n_in > 0 ? n_in : 1) * kind_size(w_kind);
    int tile_rows = (int)(W_TILE_BYTES / w_row_bytes) / PREFILL_ROWS * PREFILL_ROWS;
    if (tile_rows < PREFILL_ROWS) tile_rows = PREFILL_ROWS;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        int t = 0;
        for (; t + PREFILL_TOKENS <= n_tok; t += PREFILL_TOKENS)
            rows_for_tokens(use_dpbf16, y + (size_t)t * ldy, ldy, (const char *)x + (size_t)t * x_step, ldx, x_kind,
                            w, w_kind, n_in, r0, r1, PREFILL_ROWS, PREFILL_TOKENS);
        float *yt = y + (size_t)t * ldy;
        const char *xt = (const char *)x + (size_t)t * x_step;
        switch (n_tok - t) {
        case 1: rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, 4, 1); break;
        case 2: rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, 4, 2); break;
        case 3: rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, 4, 3); break;
        case 4: rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, 4, 4); break;
        case 5: rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, 4, 5); break;
        default: break;
        }
    }
}

static void matmul_f32_f32(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in, int n_tok,
                       int row_begin, int row_end) {
    matmul_driver(0, y, ldy, x, ldx, KIND_F32, w, KIND_F32, n_in, n_tok, row_begin, row_end);
}

static void matmul_f32_f16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                       int row_begin, int row_end) {
    matmul_driver(0, y, ldy, x, ldx, KIND_F32, w, KIND_F16, n_in, n_tok, row_begin, row_end);
}

/* Accurate mode: float32 activations times exactly widened bf16 weights (no vdpbf16ps here). */
static void matmul_f32_bf16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    matmul_driver(0, y, ldy, x, ldx, KIND_F32, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
}

static void matmul_bf16_bf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                             int n_tok, int row_begin, int row_end) {
    matmul_driver(0, y, ldy, x, ldx, KIND_BF16, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
}

static void matmul_bf16_bf16_dpbf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w,
                                    int n_in, int n_tok, int row_begin, int row_end) {
    matmul_driver(1, y, ldy, x, ldx, KIND_BF16, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
}

/* ---- matrix products: ggml block-quantised weights (Q8_0, Q4_0, Q4_1) -------------------
 * As in kernels_avx2.c, with a block's 32 weights as 2 vectors of 16 (Q4: the low nibbles of
 * its 16 bytes, then the high ones), each rebuilt exactly as formats/gguf_dequant.c does
 * (vcvtph2ps, vcvtdq2ps, one exact vmulps, and one vaddps for Q4_1), then acc = fma(x[i:i+16],
 * w[i:i+16], acc) in order and hsum16: the bits of matmul_f32_f32 on the dequantised matrix.
 *   decode (n_tok = 1): 8 rows, the block of x in 2 registers, the next 8 rows prefetched in
 *       address order alongside;
 *   n_tok 2..7: a tile of rows meets the tokens in blocks of 2 rows x n_tok (up to 16
 *       accumulators + 8 x vectors + 2 decoded vectors): each decoded vector feeds n_tok FMAs;
 *   n_tok >= Q_TILE_TOKENS: as in kernels_avx2.c, a tile of rows decoded once into per-thread
 *       float32 scratch, then the float32 GEMM (4 rows x 6 tokens) on it; (the 2 x 8 blocks
 *       above serve when scratch memory is short). */

#define Q_TOKENS 8
#define Q_TILE_TOKENS 8 /* from this many tokens, decode a tile of rows to float32 first */

/* Weights [16h, 16h + 16) of a block, h in 0..1. */
ML_INLINE __m512 q_decode16(const uint8_t *block, int h, int qkind, __m512 d, __m512 m) {
    if (qkind == QKIND_Q8_0) {
        __m128i q = _mm_loadu_si128((const __m128i *)(block + 2 + 16 * h));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
    }
    const uint8_t *qs = block + (qkind == QKIND_Q4_0 ? 2 : 4);
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    q = h == 0 ? _mm512_and_si512(q, _mm512_set1_epi32(15)) : _mm512_srli_epi32(q, 4);
    if (qkind == QKIND_Q4_0) return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(8))));
    return _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(q)), m);
}

ML_INLINE void q_dot_block(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, size_t row_bytes,
                           int n_blocks, int row, const uint8_t *prefetch, int qkind, const int RB, const int TB) {
    const size_t block_bytes = q_block_bytes(qkind);
    const uint8_t *w_rows[8];
    const float *x_rows[Q_TOKENS];
    __m512 acc[8][Q_TOKENS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        w_rows[r] = w + (size_t)(row + r) * row_bytes;
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) x_rows[t] = x + (size_t)t * ldx;
    size_t prefetched = 0;
    for (int b = 0; b < n_blocks; b++) {
        if (prefetch) {
            size_t until = (size_t)(b + 1) * (size_t)RB * block_bytes;
            for (; prefetched < until; prefetched += 64) _mm_prefetch((const char *)prefetch + prefetched, _MM_HINT_T0);
        }
        size_t at = (size_t)b * QK;
        float d[8], m[8];
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) q_scales(w_rows[r] + (size_t)b * block_bytes, qkind, &d[r], &m[r]);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512 xv[Q_TOKENS];
#pragma GCC unroll 8
            for (int t = 0; t < TB; t++) xv[t] = _mm512_loadu_ps(x_rows[t] + at + (size_t)h * VEC);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                __m512 wv = q_decode16(w_rows[r] + (size_t)b * block_bytes, h, qkind, _mm512_set1_ps(d[r]),
                                       _mm512_set1_ps(m[r]));
#pragma GCC unroll 8
                for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(xv[t], wv, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum16(acc[r][t]);
    }
}

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

/* n_blocks blocks at `in` as float32 at out (the dequantiser's values, bit for bit). */
ML_INLINE void q_decode_blocks(float *out, const uint8_t *in, size_t n_blocks, int qkind) {
    size_t block_bytes = q_block_bytes(qkind);
    for (size_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = in + b * block_bytes;
        float d, m;
        q_scales(block, qkind, &d, &m);
        __m512 dv = _mm512_set1_ps(d), mv = _mm512_set1_ps(m);
        for (int h = 0; h < 2; h++)
            _mm512_storeu_ps(out + b * QK + (size_t)h * VEC, q_decode16(block, h, qkind, dv, mv));
    }
}

/* Many tokens: tiles of rows decoded to float32 (as matmul_driver tiles float32 weights), then
 * matmul_driver on them. Returns 0 when there is no scratch memory (nothing done). */
ML_INLINE int q_matmul_tiles(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                             int row_begin, int row_end, size_t row_bytes, int qkind) {
    int tile_rows = (int)(W_TILE_BYTES / ((size_t)n_in * sizeof(float))) / PREFILL_ROWS * PREFILL_ROWS;
    if (tile_rows < PREFILL_ROWS) tile_rows = PREFILL_ROWS;
    if (tile_rows > row_end - row_begin) tile_rows = row_end - row_begin;
    float *tile = ml_cpu_scratch((size_t)tile_rows * (size_t)n_in); /* [tile_rows, n_in] */
    if (!tile) return 0;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        for (int r = r0; r < r1; r++)
            q_decode_blocks(tile + (size_t)(r - r0) * n_in, w + (size_t)r * row_bytes, (size_t)n_in / QK, qkind);
        matmul_driver(0, y + r0, ldy, x, ldx, KIND_F32, tile, KIND_F32, n_in, n_tok, 0, r1 - r0);
    }
    return 1;
}

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
        switch (n_tok - t) {
        case 1: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 8, 1); break;
        case 2: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 2); break;
        case 3: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 3); break;
        case 4: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 4); break;
        case 5: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 5); break;
        case 6: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 6); break;
        case 7: q_rows_for_tokens(yt, ldy, xt, ldx, w, row_bytes, n_blocks, r0, r1, p, qkind, 2, 7); break;
        default: break;
        }
    }
}

static void matmul_f32_q8_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q8_0);
}

static void matmul_f32_q4_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q4_0);
}

static void matmul_f32_q4_1(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                        int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q4_1);
}

/* ---- exp ---------------------------------------------------------------------------------- */

/* e^x, under 2 ulp: as exp8 in kernels_avx2.c (Cody-Waite reduction, degree-7 Taylor for e^r),
 * with vscalefps applying 2^n in one correctly rounded step (overflow to inf, gradual
 * underflow). x is clamped to [-104, 89] first (NaN kept: it is the second operand). */
ML_INLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* ---- normalisation and elementwise ------------------------------------------------------- */

/* HF LlamaRMSNorm: out = (x * (1 / sqrt(mean(x^2) + eps))) * w. Sum of squares as 64 float32
 * partial sums (4 accumulators x 16 lanes), added at the end. */
static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
        acc0 = _mm512_fmadd_ps(a, a, acc0);
        acc1 = _mm512_fmadd_ps(b, b, acc1);
        acc2 = _mm512_fmadd_ps(c, c, acc2);
        acc3 = _mm512_fmadd_ps(d, d, acc3);
    }
    for (; i < n; i += VEC) {
        __m512 a = _mm512_maskz_loadu_ps(tail_mask16(n - i < VEC ? n - i : VEC), x + i);
        acc0 = _mm512_fmadd_ps(a, a, acc0);
    }
    float sum_squares = hsum16(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
    float inv = 1.0f / sqrtf(sum_squares / (float)n + eps);
    __m512 inv_v = _mm512_set1_ps(inv);
    for (i = 0; i < n; i += VEC) {
        __mmask16 m = tail_mask16(n - i < VEC ? n - i : VEC);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv_v);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + i)));
    }
}

/* Rotate-half RoPE with separate multiplies and add/sub (no FMA): bit-identical to scalar. */
static void rope(float *vec, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *lo = vec + (size_t)h * head_dim, *hi = lo + half;
        for (int i = 0; i < half; i += VEC) {
            __mmask16 m = tail_mask16(half - i < VEC ? half - i : VEC);
            __m512 a = _mm512_maskz_loadu_ps(m, lo + i), b = _mm512_maskz_loadu_ps(m, hi + i);
            __m512 c = _mm512_maskz_loadu_ps(m, cos + i), s = _mm512_maskz_loadu_ps(m, sin + i);
            _mm512_mask_storeu_ps(lo + i, m, _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, s)));
            _mm512_mask_storeu_ps(hi + i, m, _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, s)));
        }
    }
}

/* silu(g) * up = (g / (1 + e^-g)) * up, in the scalar reference's order. */
static void silu_mul(float *out, const float *gate, const float *up, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += VEC) {
        __mmask16 m = tail_mask16(n - i < VEC ? n - i : VEC);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u)));
        __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, exp16(neg)));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Online softmax over blocks of ATT_BLOCK positions, the query heads of one KV head together;
 * see kernels_avx2.c for the recurrence. Scores on the stack, accumulators in `out` (which must
 * not overlap q, k or v); `scratch` unused. */
#define ATT_BLOCK 32
#define ATT_HEADS 16
#define GROUP_HEADS 8 /* score loop: 8 heads x 2 positions = 16 accumulators; p.V loop: 8 heads */

ML_INLINE void score_block(float (*scores)[ATT_BLOCK], int jj, const float *q, const void *k_rows, int head_dim,
                           float scale, int kv_kind, const int NH, const int NP) {
    __m512 acc[GROUP_HEADS][2];
#pragma GCC unroll 8
    for (int h = 0; h < NH; h++) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) acc[h][p] = _mm512_setzero_ps();
    }
    size_t row0 = (size_t)jj * (size_t)head_dim;
    for (int d = 0; d < head_dim; d += VEC) {
        int rest = head_dim - d < VEC ? head_dim - d : VEC;
        __mmask16 m = tail_mask16(rest);
        __m512 kv[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            size_t at = row0 + (size_t)p * head_dim + d;
            kv[p] = rest == VEC ? load16(k_rows, at, kv_kind) : load_partial(k_rows, at, rest, kv_kind);
        }
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)h * head_dim + d);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) acc[h][p] = _mm512_fmadd_ps(qv, kv[p], acc[h][p]);
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < NH; h++) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) scores[h][jj + p] = hsum16(acc[h][p]) * scale;
    }
}

ML_INLINE void score_heads(float (*scores)[ATT_BLOCK], int n_block, const float *q, const void *k_rows,
                           int head_dim, float scale, int kv_kind, const int NH) {
    int jj = 0;
    for (; jj + 2 <= n_block; jj += 2) score_block(scores, jj, q, k_rows, head_dim, scale, kv_kind, NH, 2);
    if (jj < n_block) score_block(scores, jj, q, k_rows, head_dim, scale, kv_kind, NH, 1);
}

ML_INLINE void pv_heads(float *out, float (*probs)[ATT_BLOCK], const float *alpha, int first, int n_block,
                        const void *v_rows, int head_dim, int kv_kind, const int NH) {
    for (int d = 0; d < head_dim; d += VEC) {
        int rest = head_dim - d < VEC ? head_dim - d : VEC;
        __mmask16 m = tail_mask16(rest);
        __m512 acc[GROUP_HEADS];
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++)
            acc[h] = first ? _mm512_setzero_ps()
                           : _mm512_mul_ps(_mm512_maskz_loadu_ps(m, out + (size_t)h * head_dim + d),
                                           _mm512_set1_ps(alpha[h]));
        for (int jj = 0; jj < n_block; jj++) {
            size_t at = (size_t)jj * (size_t)head_dim + (size_t)d;
            __m512 vv = rest == VEC ? load16(v_rows, at, kv_kind) : load_partial(v_rows, at, rest, kv_kind);
#pragma GCC unroll 8
            for (int h = 0; h < NH; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(probs[h][jj]), vv, acc[h]);
        }
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) _mm512_mask_storeu_ps(out + (size_t)h * head_dim + d, m, acc[h]);
    }
}

#define FOR_GROUP(count, CALL)                                                                     \
    switch (count) {                                                                               \
    case 1: CALL(1); break;                                                                        \
    case 2: CALL(2); break;                                                                        \
    case 3: CALL(3); break;                                                                        \
    case 4: CALL(4); break;                                                                        \
    case 5: CALL(5); break;                                                                        \
    case 6: CALL(6); break;                                                                        \
    case 7: CALL(7); break;                                                                        \
    default: CALL(8); break;                                                                       \
    }

ML_INLINE void attention_heads(float *out, const float *q, int n_heads, const void *k, const void *v, int n_pos,
                               int head_dim, float scale, int kv_kind) {
    float scores[ATT_HEADS][ATT_BLOCK];
    float running_max[ATT_HEADS], running_sum[ATT_HEADS], alpha[ATT_HEADS];
    for (int h = 0; h < n_heads; h++) {
        running_max[h] = -INFINITY;
        running_sum[h] = 0.0f;
    }
    size_t kv_size = kind_size(kv_kind);
    for (int j0 = 0; j0 < n_pos; j0 += ATT_BLOCK) {
        int n_block = n_pos - j0 < ATT_BLOCK ? n_pos - j0 : ATT_BLOCK;
        const char *k_rows = (const char *)k + (size_t)j0 * (size_t)head_dim * kv_size;
        const char *v_rows = (const char *)v + (size_t)j0 * (size_t)head_dim * kv_size;
        for (int h = 0; h < n_heads; h += GROUP_HEADS) {
            const float *qh = q + (size_t)h * head_dim;
#define SCORE_CALL(NH) score_heads(scores + h, n_block, qh, k_rows, head_dim, scale, kv_kind, NH)
            FOR_GROUP(n_heads - h, SCORE_CALL)
#undef SCORE_CALL
        }
        for (int h = 0; h < n_heads; h++) {
            alpha[h] = softmax_block_rescale(scores[h], n_block, &running_max[h]);
            float new_max = running_max[h];
            __m512 mv = _mm512_set1_ps(new_max), sum = _mm512_setzero_ps();
            for (int jj = 0; jj < n_block; jj += VEC) {
                __mmask16 m = tail_mask16(n_block - jj < VEC ? n_block - jj : VEC);
                /* lanes past the block become 0: they are not positions */
                __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, &scores[h][jj]), mv)));
                _mm512_storeu_ps(&scores[h][jj], e);
                sum = _mm512_add_ps(sum, e);
            }
            running_sum[h] = running_sum[h] * alpha[h] + hsum16(sum);
        }
        int first = j0 == 0;
        for (int h = 0; h < n_heads; h += GROUP_HEADS) {
            float *oh = out + (size_t)h * head_dim;
#define PV_CALL(NH) pv_heads(oh, scores + h, alpha + h, first, n_block, v_rows, head_dim, kv_kind, NH)
            FOR_GROUP(n_heads - h, PV_CALL)
#undef PV_CALL
        }
    }
    for (int h = 0; h < n_heads; h++) {
        float *o = out + (size_t)h * head_dim;
        __m512 l = _mm512_set1_ps(running_sum[h]);
        for (int d = 0; d < head_dim; d += VEC) {
            __mmask16 m = tail_mask16(head_dim - d < VEC ? head_dim - d : VEC);
            _mm512_mask_storeu_ps(o + d, m, _mm512_div_ps(_mm512_maskz_loadu_ps(m, o + d), l));
        }
    }
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
    attention_all_heads(out, q, n_q, k, v, n_pos, head_dim, scale, KIND_F32);
}

static void attention_bf16(float *out, const float *q, int n_q, const uint16_t *k, const uint16_t *v, int n_pos,
                           int head_dim, float scale, float *scratch) {
    attention_all_heads(out, q, n_q, k, v, n_pos, head_dim, scale, KIND_BF16);
}

/* ---- conversions -------------------------------------------------------------------------- */

/* Integer round-to-nearest-even exactly as ml_f32_to_bf16 (vcvtneps2bf16 would flush
 * denormals, so it is not used). */
static void f32_to_bf16(uint16_t *out, const float *in, size_t n) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
    for (size_t i = 0; i < n; i += VEC) {
        __mmask16 m = tail_mask16(n - i < VEC ? (int)(n - i) : VEC);
        __m512i bits = _mm512_maskz_loadu_epi32(m, in + i);
        __mmask16 is_nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, abs_mask), inf);
        __m512i top = _mm512_srli_epi32(bits, 16);
        __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, bias), _mm512_and_si512(top, one)), 16);
        __m512i result = _mm512_mask_blend_epi32(is_nan, rounded, _mm512_or_si512(top, quiet));
        _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(result));
    }
}

static void bf16_to_f32(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i += VEC) {
        __mmask16 m = tail_mask16(n - i < VEC ? (int)(n - i) : VEC);
        _mm512_mask_storeu_ps(out + i, m, widen_bf16(_mm256_maskz_loadu_epi16(m, in + i)));
    }
}

/* vcvtph2ps, with NaN lanes rebuilt from the bits (it would quiet signalling NaNs), so every
 * pattern converts exactly as ml_f16_to_f32. */
static void f16_to_f32(float *out, const uint16_t *in, size_t n) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fff), inf = _mm512_set1_epi32(0x7c00);
    const __m512i sign_mask = _mm512_set1_epi32(0x8000), exponent_fix = _mm512_set1_epi32(0x70000000);
    for (size_t i = 0; i < n; i += VEC) {
        __mmask16 m = tail_mask16(n - i < VEC ? (int)(n - i) : VEC);
        __m256i h = _mm256_maskz_loadu_epi16(m, in + i);
        __m512 f = _mm512_cvtph_ps(h);
        __m512i wide = _mm512_cvtepu16_epi32(h);
        __m512i magnitude = _mm512_and_si512(wide, abs_mask);
        __mmask16 is_nan = _mm512_cmpgt_epi32_mask(magnitude, inf);
        if (is_nan) {
            __m512i nan_bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(wide, sign_mask), 16),
                                               _mm512_add_epi32(_mm512_slli_epi32(magnitude, 13), exponent_fix));
            f = _mm512_mask_mov_ps(f, is_nan, _mm512_castsi512_ps(nan_bits));
        }
        _mm512_mask_storeu_ps(out + i, m, f);
    }
}

/* Whole blocks, decoded as the matmuls decode them (so bit for bit as the dequantiser). */
static void q8_0_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q8_0); }
static void q4_0_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q4_0); }
static void q4_1_to_f32(float *out, const uint8_t *in, size_t n) { q_decode_blocks(out, in, n / QK, QKIND_Q4_1); }

const ml_cpu_kernels ml_cpu_kernels_avx512 = {
    .name = "avx512",
    .bf16_dot_product = 0,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = ml_avx512_matmul_f32_blocks,
    .blocks_to_f32 = ml_avx512_blocks_to_f32,
};

const ml_cpu_kernels ml_cpu_kernels_avx512bf16 = {
    .name = "avx512bf16",
    .bf16_dot_product = 1,
    .matmul_bf16_bf16 = matmul_bf16_bf16_dpbf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = ml_avx512_matmul_f32_blocks,
    .blocks_to_f32 = ml_avx512_blocks_to_f32,
};
