/* AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; chosen at run time by
 * dispatch.c only on CPUs that have them). Semantics are those of kernels_scalar.c; the tests
 * compare every function against it.
 *
 * Matrix products (f32, f16, bf16 weights; ggml Q8_0/Q4_0/Q4_1 blocks further below, which
 * decode each block of weights and then follow the same rule). Every output y[t, r] is one dot
 * product computed by the same sequence of
 * operations whatever the blocking: one 8-lane accumulator, acc = fma(x[i:i+8], w[i:i+8], acc)
 * for i = 0, 8, 16, ... in order, then one fma with the zero-padded tail (n_in % 8 elements),
 * then the fixed horizontal sum hsum8(). Blocking over rows and tokens only changes how many
 * such independent accumulators are in flight (that is what hides the FMA latency), never the
 * order within one, so results are bit-identical for any row_begin/row_end/n_tok split.
 * f16 is widened with vcvtph2ps. bf16 weights take the even/odd order: per chunk of 16,
 * acc = fma(x[i, i+2, .., i+14], w[same], acc) then acc = fma(x[i+1, i+3, .., i+15], w[same],
 * acc), since one 256-bit load of 16 weights widens to two vectors with one shift and one AND
 * (exact), against a zero-extension and a shift per 8 in the natural order; the n_in % 16 tail
 * as above. x meets them permuted: copied once per call into that order (x_even_odd) for 2+
 * tokens, split by two shuffles per 16 in the loop for one token, which reuses it for 8 rows.
 * The same order for every n_tok, so batch invariance holds. On Zen 3, one thread, 8192 x 2048
 * bf16 weights from memory (thread CPU time, the other core busy): 8 tokens 65-70 -> 71-76
 * GFLOP/s, 32 tokens 75-77 -> 81-83 (docs/BENCHMARKS.md).
 *   decode (n_tok = 1): 8 rows at once, 8 independent FMA chains, no software prefetch: the
 *       block of 8 rows is one contiguous stream and the hardware prefetchers keep up. Both
 *       software schemes tried measured slower on Zen 3 (2 threads, 1 GiB of bf16 weights):
 *       a look-ahead within each row (512 bytes) and prefetching the next 8-row block in
 *       address order alongside (36-37 GB/s against 39-41 GB/s without; in the model, decode
 *       of the 1B shape went from 11.5 to 14.1 tokens/s when it was removed).
 *   n_tok >= 2 (prefill, batched decode): a tile of weight rows (W_TILE_BYTES, kept in L2)
 *       meets the tokens 4 at a time: 3 rows x 4 tokens = 12 accumulators + 3 widened weight
 *       vectors + 1 x vector = 16 ymm, so each widened weight vector feeds 4 FMAs and the
 *       widening (2 shuffle-port uops per 8 weights) stays below the FMA ports' load. The
 *       first token block of a tile reads it from memory and prefetches ahead. Leftover
 *       tokens use 4 x 3, 4 x 2 or 8 x 1 blocks. Measured on the 1B shape, 128 tokens, 2
 *       threads: 3 x 4 about 12% faster than 4 x 3 (fewer widenings per FMA).
 *   An alternative order (even/odd elements of 16-element chunks, which widens bf16 with one
 *   shift or AND per 8 weights) decoded about as fast in quiet conditions and prefilled about
 *   10% slower (x must be de-interleaved), so the natural order stayed. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"
#include "backend/cpu/kernels_kquant_scales.h"
#include "backend/cpu/kernels_vector_common.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/numeric.h"
#include "core/quant_blocks.h"

/* KIND_F32_EO: float32 rows already in the even/odd order of bf16 weights (x_even_odd). */
enum { KIND_F32 = 0, KIND_F16 = 1, KIND_BF16 = 2, KIND_F32_EO = 3 };

#define VEC 8                  /* floats per ymm */
#define STEP 32                /* elements per unrolled step of the dot-product loop (4 vectors) */
#define W_TILE_BYTES (256 * 1024) /* n_tok >= 2: weight rows kept in L2 while tokens pass */

/* ---- loads ------------------------------------------------------------------------------- */

static const int32_t tail_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* Lanes [0, n) all ones, n in [0, 8]. */
ML_INLINE __m256i tail_mask(int n) { return _mm256_loadu_si256((const __m256i *)(tail_mask_table + 8 - n)); }

/* bf16 -> f32 is exact: the bf16 bits are the top half of the float. */
ML_INLINE __m256 widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

ML_INLINE size_t kind_size(int kind) { return kind == KIND_F32 || kind == KIND_F32_EO ? 4 : 2; }

/* 8 values of `kind` at element `index` of base, as floats. */
ML_INLINE __m256 load8(const void *base, size_t index, int kind) {
    if (kind == KIND_F32 || kind == KIND_F32_EO) return _mm256_loadu_ps((const float *)base + index);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + index));
    return kind == KIND_F16 ? _mm256_cvtph_ps(h) : widen_bf16(h);
}

/* n in [1, 7] values, the other lanes zero; reads nothing past the n elements. */
ML_INLINE __m256 load_partial(const void *base, size_t index, int n, int kind) {
    if (kind == KIND_F32 || kind == KIND_F32_EO)
        return _mm256_maskload_ps((const float *)base + index, tail_mask(n));
    uint16_t buf[8] = {0};
    memcpy(buf, (const uint16_t *)base + index, (size_t)n * sizeof(uint16_t));
    __m128i h = _mm_loadu_si128((const __m128i *)buf);
    return kind == KIND_F16 ? _mm256_cvtph_ps(h) : widen_bf16(h);
}

/* The one horizontal sum every dot product ends with: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)). */
ML_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- the even/odd order of bf16 weights ---------------------------------------------------
 * 16 bf16 weights in one ymm widen to float32 with one operation per 8: the even elements
 * (0, 2, .., 14) by a left shift of each 32-bit lane by 16, the odd ones (1, 3, .., 15) by
 * clearing each lane's low half. x meets them in the same order: the 8 even then the 8 odd
 * elements of each chunk of 16. */

/* Elements 2j (odd = 0) or 2j + 1 (odd = 1), j = 0..7, of the 16 bf16 values at base[index]. */
static const int32_t odd_mask[8] __attribute__((aligned(32))) = {
    (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u,
    (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u, (int32_t)0xFFFF0000u};

ML_INLINE __m256 bf16_half(const void *base, size_t index, int odd) {
    __m256i v = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + index));
    if (odd) /* the mask as a memory operand: a 3 x 4 block needs all 16 registers */
        __asm__("vpand %1, %0, %0" : "+x"(v) : "m"(*(const __m256i *)odd_mask));
    else
        v = _mm256_slli_epi32(v, 16);
    return _mm256_castsi256_ps(v);
}

/* The same 8 elements of 16 values of x of `kind` at base[index]: KIND_F32_EO holds them
 * already apart (evens at index, odds at index + 8); natural float32 rows are split by two
 * shuffles; bf16 rows as bf16 weights. */
ML_INLINE __m256 x_half(const void *base, size_t index, int kind, int odd) {
    const float *f = (const float *)base + index;
    if (kind == KIND_F32_EO) return _mm256_loadu_ps(f + (odd ? VEC : 0));
    if (kind == KIND_BF16) return bf16_half(base, index, odd);
    __m256 a = _mm256_loadu_ps(f), b = _mm256_loadu_ps(f + VEC);
    __m256 pairs = odd ? _mm256_shuffle_ps(a, b, 0xDD) : _mm256_shuffle_ps(a, b, 0x88); /* a0 a2 b0 b2 | a4 a6 b4 b6 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
}

/* n_tok rows of x (kind x_kind, ldx elements apart) as float32 rows of n_in at out, each chunk
 * of 16 in the even/odd order and the last n_in % 16 elements as they are. */
static void x_even_odd(float *out, const void *x, size_t ldx, int x_kind, int n_in, int n_tok) {
    for (int t = 0; t < n_tok; t++) {
        const char *row = (const char *)x + (size_t)t * ldx * kind_size(x_kind);
        float *dst = out + (size_t)t * (size_t)n_in;
        int i = 0;
        for (; i + 2 * VEC <= n_in; i += 2 * VEC) {
            _mm256_storeu_ps(dst + i, x_half(row, (size_t)i, x_kind, 0));
            _mm256_storeu_ps(dst + i + VEC, x_half(row, (size_t)i, x_kind, 1));
        }
        for (; i < n_in; i++)
            dst[i] = x_kind == KIND_BF16 ? ml_bf16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
    }
}

/* ---- matrix products: f32 and f16 weights (natural order) ------------------------------ */

/* RB rows starting at `row` times TB tokens; RB, TB and the kinds are constants after inlining,
 * so the accumulator array lives in registers. x rows of kind x_kind, w rows of kind w_kind.
 * prefetch: NULL, or the next block of rows, prefetched in address order alongside. */
ML_INLINE void dot_block(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                         int n_in, int row, const char *prefetch, const int RB, const int TB) {
    const size_t row_bytes = (size_t)n_in * kind_size(w_kind);
    const char *w_rows[8];
    const char *x_rows[4];
    __m256 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        w_rows[r] = (const char *)w + (size_t)(row + r) * row_bytes;
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) acc[r][t] = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++) x_rows[t] = (const char *)x + (size_t)t * ldx * kind_size(x_kind);

/* acc[r][t] += x_t[at:at+8] * w_r[at:at+8] for all r, t. With RB < TB the RB widened weight
 * vectors stay in registers and each token's x is loaded once; otherwise the TB x vectors stay
 * and each weight vector is loaded (and widened) once. */
#define ML_DOT_STEP(LOADX, LOADW, at)                                                              \
    do {                                                                                       \
        if (RB < TB) {                                                                         \
            __m256 wv[8];                                                                      \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++) wv[r] = LOADW(w_rows[r], at); \
            _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) {                             \
                __m256 xv = LOADX(x_rows[t], at);                                              \
                _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++) acc[r][t] =               \
                    _mm256_fmadd_ps(xv, wv[r], acc[r][t]);                                     \
            }                                                                                  \
        } else {                                                                               \
            __m256 xv[4];                                                                      \
            _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) xv[t] = LOADX(x_rows[t], at); \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++) {                             \
                __m256 wv = LOADW(w_rows[r], at);                                              \
                _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) acc[r][t] =               \
                    _mm256_fmadd_ps(xv[t], wv, acc[r][t]);                                     \
            }                                                                                  \
        }                                                                                      \
    } while (0)
#define ML_LOAD_X(base, at) load8(base, at, x_kind)
#define ML_LOAD_W(base, at) load8(base, at, w_kind)
#define ML_LOAD_X_TAIL(base, at) load_partial(base, at, rest, x_kind)
#define ML_LOAD_W_TAIL(base, at) load_partial(base, at, rest, w_kind)

/* bf16 weights: chunks of 16 in the even/odd order, the evens' FMA before the odds' */
#define ML_LOAD_X_EVEN(base, at) x_half(base, at, x_kind, 0)
#define ML_LOAD_X_ODD(base, at) x_half(base, at, x_kind, 1)
#define ML_LOAD_W_EVEN(base, at) bf16_half(base, at, 0)
#define ML_LOAD_W_ODD(base, at) bf16_half(base, at, 1)
#define ML_DOT_CHUNK16(at)                                       \
    do {                                                         \
        ML_DOT_STEP(ML_LOAD_X_EVEN, ML_LOAD_W_EVEN, at);         \
        ML_DOT_STEP(ML_LOAD_X_ODD, ML_LOAD_W_ODD, at);           \
    } while (0)

    const int lines_per_step = RB * (int)kind_size(w_kind) / 2; /* STEP elements of RB rows, in lines */
    size_t n = (size_t)n_in, i = 0;
    if (w_kind == KIND_BF16) {
        for (; i + 2 * VEC <= n; i += 2 * VEC) {
            if (prefetch && i % STEP == 0) {
                const char *line = prefetch + (i / STEP) * (size_t)lines_per_step * 64;
                for (int j = 0; j < lines_per_step; j++) _mm_prefetch(line + (size_t)j * 64, _MM_HINT_T0);
            }
            ML_DOT_CHUNK16(i);
        }
    }
    for (; i + STEP <= n; i += STEP) {
        if (prefetch) {
            const char *line = prefetch + (i / STEP) * (size_t)lines_per_step * 64;
            for (int j = 0; j < lines_per_step; j++) _mm_prefetch(line + (size_t)j * 64, _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int u = 0; u < STEP / VEC; u++) ML_DOT_STEP(ML_LOAD_X, ML_LOAD_W, i + (size_t)u * VEC);
    }
    for (; i + VEC <= n; i += VEC) ML_DOT_STEP(ML_LOAD_X, ML_LOAD_W, i);
    if (i < n) {
        int rest = (int)(n - i);
        ML_DOT_STEP(ML_LOAD_X_TAIL, ML_LOAD_W_TAIL, i);
    }
#undef ML_DOT_STEP
#undef ML_DOT_CHUNK16
#undef ML_LOAD_X_EVEN
#undef ML_LOAD_X_ODD
#undef ML_LOAD_W_EVEN
#undef ML_LOAD_W_ODD
#undef ML_LOAD_X
#undef ML_LOAD_W
#undef ML_LOAD_X_TAIL
#undef ML_LOAD_W_TAIL
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum8(acc[r][t]);
    }
}

/* Rows [row_begin, row_end) for TB tokens at x/y: blocks of RB rows, then single rows. With
 * prefetch_ahead, each block prefetches the next block of the range (none after the last). */
ML_INLINE void rows_for_tokens(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w,
                               int w_kind, int n_in, int row_begin, int row_end, int prefetch_ahead, const int RB,
                               const int TB) {
    const size_t row_bytes = (size_t)n_in * kind_size(w_kind);
    int r = row_begin;
    for (; r + RB <= row_end; r += RB) {
        const char *next = prefetch_ahead && r + 2 * RB <= row_end ? (const char *)w + (size_t)(r + RB) * row_bytes
                                                                    : NULL;
        dot_block(y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, next, RB, TB);
    }
    for (; r < row_end; r++) dot_block(y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, NULL, 1, TB);
}

/* Rows [row_begin, row_end) for n_tok tokens. A tile of weight rows (W_TILE_BYTES, kept in L2)
 * meets every token block of x in turn, so each weight byte comes from memory once per call
 * (prefetched ahead during the first token block) and from L2 once per block. Prefetching the
 * next tile during the second token block (into L1 or L2) measured 5-15% slower on Zen 3 for 8
 * and 32 tokens, and tiles of 12 rows to 64 KiB no faster. */
ML_INLINE void tiles_driver(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                            int n_in, int n_tok, int row_begin, int row_end) {
    size_t x_step = ldx * kind_size(x_kind); /* bytes per x row */
    if (n_tok == 1) {
        rows_for_tokens(y, ldy, x, ldx, x_kind, w, w_kind, n_in, row_begin, row_end, 0, 8, 1);
        return;
    }
    size_t w_row_bytes = (size_t)(n_in > 0 ? n_in : 1) * kind_size(w_kind);
    int tile_rows = (int)(W_TILE_BYTES / w_row_bytes) / 12 * 12;
    if (tile_rows < 12) tile_rows = 12;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        int t = 0;
        for (; t + 4 <= n_tok; t += 4)
            rows_for_tokens(y + (size_t)t * ldy, ldy, (const char *)x + (size_t)t * x_step, ldx, x_kind, w, w_kind,
                            n_in, r0, r1, t == 0, 3, 4);
        const char *xt = (const char *)x + (size_t)t * x_step;
        float *yt = y + (size_t)t * ldy;
        switch (n_tok - t) {
        case 3: rows_for_tokens(yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, t == 0, 4, 3); break;
        case 2: rows_for_tokens(yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, t == 0, 4, 2); break;
        case 1: rows_for_tokens(yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, t == 0, 8, 1); break;
        default: break;
        }
    }
}

/* bf16 weights with n_tok >= 2 take x in groups of up to X_GROUP_TOKENS tokens, each copied
 * once into the even/odd order (per-thread scratch: 2 MiB for 64 x 8192) so that the register
 * blocks load it as it is; a group streams the weights from memory once. */
#define X_GROUP_TOKENS 64

ML_INLINE void matmul_driver(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                             int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin) return;
    int group = n_tok < X_GROUP_TOKENS ? n_tok : X_GROUP_TOKENS;
    float *xs = w_kind == KIND_BF16 && n_tok >= 2 ? ml_cpu_scratch((size_t)group * (size_t)n_in) : NULL;
    if (!xs) { /* decode, other weights, or no memory: the same order with x as it is */
        tiles_driver(y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end);
        return;
    }
    size_t x_step = ldx * kind_size(x_kind);
    for (int t0 = 0; t0 < n_tok; t0 += group) {
        int g = n_tok - t0 < group ? n_tok - t0 : group;
        x_even_odd(xs, (const char *)x + (size_t)t0 * x_step, ldx, x_kind, n_in, g);
        tiles_driver(y + (size_t)t0 * ldy, ldy, xs, (size_t)n_in, KIND_F32_EO, w, w_kind, n_in, g, row_begin, row_end);
    }
}

/* ---- matrix products: ggml block-quantised weights (Q8_0, Q4_0, Q4_1) -------------------
 * A row is n_in / 32 blocks (core/dtype.h). Each block's 32 weights are rebuilt as 4 vectors of
 * 8 exactly as formats/gguf_dequant.c rebuilds them: the f16 scale by vcvtph2ps (exact), the
 * integers by vcvtdq2ps (exact), one vmulps (exact too: 11 x at most 8 significant bits), and
 * for Q4_1 one vaddps of m, the one rounding (the same if a compiler fused it). Then they
 * meet x as in matmul_f32_f32: acc = fma(x[i:i+8], w[i:i+8], acc) for i = 0, 8, 16, ... in order and
 * hsum8, so every output equals matmul_f32_f32 on the dequantised matrix bit for bit, for any split.
 *   decode (n_tok = 1): 8 rows at once; the 4 x vectors of a block stay in registers while the
 *       8 rows' blocks are decoded; the next 8 rows are prefetched in address order alongside,
 *       as for bf16 (rows of 576 Q4_1 weights are 360 bytes, so a row block is one stream).
 *   n_tok 2..7 (small batches): a tile of rows (W_TILE_BYTES) meets the tokens 6 at a time in
 *       blocks of 2 rows x 6 tokens (12 accumulators + 2 decoded vectors + 1 x vector): each
 *       decoded vector (load, widen, mask or shift, convert, scale: 5-7 uops) feeds 6 FMAs,
 *       where the bf16 kernel's 3 x 4 feeds 4, since decoding costs more than widening.
 *       Leftover tokens: 2 x (2..5), or 8 x 1.
 *   n_tok >= Q_TILE_TOKENS (prefill, large batches): a tile of rows is decoded once into a
 *       per-thread float32 buffer (W_TILE_BYTES of it, kept in L2) and the float32 kernel's
 *       register-blocked GEMM (3 rows x 4 tokens) runs on it: each weight is decoded once per
 *       call instead of once per 6 tokens, so prefill runs at the float32 kernel's speed plus
 *       one decode per weight (register-blocked decoding alone measured about 2x slower than
 *       float32 weights for a 323-token prompt of the default model). Same bits either way. */

#define Q_TOKENS 6 /* n_tok >= 2: tokens per register block */
#define Q_TILE_ROWS 12 /* q_matmul_tiles: tile rows a multiple of the 3- and 4-row blocks */
#define Q_TILE_TOKENS 8 /* from this many tokens, decode a tile of rows to float32 first */

/* Weights [8u, 8u + 8) of a block, u in 0..3 (Q4: u 0, 1 are low nibbles of bytes 0..15, u 2, 3
 * the high nibbles). d, m: the block's scales, broadcast. */
ML_INLINE __m256 q_decode8(const uint8_t *block, int u, int qkind, __m256 d, __m256 m) {
    if (qkind == QKIND_Q8_0) {
        __m128i q = _mm_loadl_epi64((const __m128i *)(block + 2 + 8 * u));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
    const uint8_t *qs = block + (qkind == QKIND_Q4_0 ? 2 : 4);
    __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8 * (u & 1))));
    q = u < 2 ? _mm256_and_si256(q, _mm256_set1_epi32(15)) : _mm256_srli_epi32(q, 4);
    if (qkind == QKIND_Q4_0) return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8))));
    return _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m);
}

/* RB rows starting at `row` times TB tokens, all n_blocks blocks. prefetch: NULL, or the next
 * RB rows (contiguous), prefetched in address order alongside. */
ML_INLINE void q_dot_block(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, size_t row_bytes,
                           int n_blocks, int row, const uint8_t *prefetch, int qkind, const int RB, const int TB) {
    const size_t block_bytes = q_block_bytes(qkind);
    const uint8_t *w_rows[8];
    const float *x_rows[Q_TOKENS];
    __m256 acc[8][Q_TOKENS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        w_rows[r] = w + (size_t)(row + r) * row_bytes;
#pragma GCC unroll 6
        for (int t = 0; t < TB; t++) acc[r][t] = _mm256_setzero_ps();
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) x_rows[t] = x + (size_t)t * ldx;
    size_t prefetched = 0; /* bytes of the next rows prefetched so far */
    for (int b = 0; b < n_blocks; b++) {
        if (prefetch) {
            size_t until = (size_t)(b + 1) * (size_t)RB * block_bytes;
            for (; prefetched < until; prefetched += 64) _mm_prefetch((const char *)prefetch + prefetched, _MM_HINT_T0);
        }
        size_t at = (size_t)b * QK;
        float d[8], m[8];
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) q_scales(w_rows[r] + (size_t)b * block_bytes, qkind, &d[r], &m[r]);
        if (TB == 1) { /* the block of x in registers, each row's block decoded once */
            __m256 xv[4];
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) xv[u] = _mm256_loadu_ps(x_rows[0] + at + (size_t)u * VEC);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                const uint8_t *block = w_rows[r] + (size_t)b * block_bytes;
                __m256 dv = _mm256_set1_ps(d[r]), mv = _mm256_set1_ps(m[r]);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++)
                    acc[r][0] = _mm256_fmadd_ps(xv[u], q_decode8(block, u, qkind, dv, mv), acc[r][0]);
            }
        } else { /* RB decoded vectors in registers, each token's x loaded once per vector */
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                __m256 wv[8];
#pragma GCC unroll 8
                for (int r = 0; r < RB; r++)
                    wv[r] = q_decode8(w_rows[r] + (size_t)b * block_bytes, u, qkind, _mm256_set1_ps(d[r]),
                                      _mm256_set1_ps(m[r]));
#pragma GCC unroll 6
                for (int t = 0; t < TB; t++) {
                    __m256 xv = _mm256_loadu_ps(x_rows[t] + at + (size_t)u * VEC);
#pragma GCC unroll 8
                    for (int r = 0; r < RB; r++) acc[r][t] = _mm256_fmadd_ps(xv, wv[r], acc[r][t]);
                }
            }
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum8(acc[r][t]);
    }
}

/* n_blocks blocks at `in` as float32 at out (the dequantiser's values, bit for bit). */
ML_INLINE void q_decode_blocks(float *out, const uint8_t *in, size_t n_blocks, int qkind) {
    size_t block_bytes = q_block_bytes(qkind);
    for (size_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = in + b * block_bytes;
        float d, m;
        q_scales(block, qkind, &d, &m);
        __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
        for (int u = 0; u < 4; u++)
            _mm256_storeu_ps(out + b * QK + (size_t)u * VEC, q_decode8(block, u, qkind, dv, mv));
    }
}

/* ---- exp ---------------------------------------------------------------------------------- */

/* e^x, max error under 2 ulp over the float range (inf above ~88.72, 0 below ~-103.9, NaN kept).
 * x = n*ln2 + r with n = round(x/ln2), |r| <= ln2/2 (Cody-Waite: ln2 split in a 9-bit head,
 * exact in n*head, and a tail); e^r by its degree-7 Taylor polynomial (truncation 7e-9
 * relative); 2^n applied as two factors 2^(n/2) so no intermediate overflows or goes subnormal
 * before the single final rounding. */
ML_INLINE __m256 exp8(__m256 x) {
    /* max/min return their second operand when one is NaN: keep x second so NaN survives. */
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n); /* n in [-150, 129]: exact */
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* ---- normalisation and elementwise ------------------------------------------------------- */

/* HF LlamaRMSNorm: out = (x * (1 / sqrt(mean(x^2) + eps))) * w. The sum of squares is kept as
 * 32 float32 partial sums (4 accumulators of 8 lanes, element i goes to lane i % 32) added
 * together at the end; only its rounding differs from the scalar reference. */
static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
        acc0 = _mm256_fmadd_ps(a, a, acc0);
        acc1 = _mm256_fmadd_ps(b, b, acc1);
        acc2 = _mm256_fmadd_ps(c, c, acc2);
        acc3 = _mm256_fmadd_ps(d, d, acc3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        acc0 = _mm256_fmadd_ps(a, a, acc0);
    }
    if (i < n) {
        __m256 a = _mm256_maskload_ps(x + i, tail_mask(n - i));
        acc0 = _mm256_fmadd_ps(a, a, acc0);
    }
    float sum_squares = hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    float inv = 1.0f / sqrtf(sum_squares / (float)n + eps);
    __m256 inv_v = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), inv_v);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, _mm256_loadu_ps(weight + i)));
    }
    if (i < n) {
        __m256i mask = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, mask), inv_v);
        _mm256_maskstore_ps(out + i, mask, _mm256_mul_ps(v, _mm256_maskload_ps(weight + i, mask)));
    }
}

/* Rotate-half RoPE (see kernels_scalar.c); separate multiplies and an add/sub, no FMA, so the
 * result is bit-identical to the scalar reference. */
ML_INLINE void rope_pairs(float *lo, float *hi, const float *cos, const float *sin, __m256i mask, int masked) {
    __m256 a = masked ? _mm256_maskload_ps(lo, mask) : _mm256_loadu_ps(lo);
    __m256 b = masked ? _mm256_maskload_ps(hi, mask) : _mm256_loadu_ps(hi);
    __m256 c = masked ? _mm256_maskload_ps(cos, mask) : _mm256_loadu_ps(cos);
    __m256 s = masked ? _mm256_maskload_ps(sin, mask) : _mm256_loadu_ps(sin);
    __m256 new_lo = _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s));
    __m256 new_hi = _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s));
    if (masked) {
        _mm256_maskstore_ps(lo, mask, new_lo);
        _mm256_maskstore_ps(hi, mask, new_hi);
    } else {
        _mm256_storeu_ps(lo, new_lo);
        _mm256_storeu_ps(hi, new_hi);
    }
}

static void rope(float *vec, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    __m256i none = _mm256_setzero_si256();
    for (int h = 0; h < n_heads; h++) {
        float *head = vec + (size_t)h * head_dim;
        int i = 0;
        for (; i + 8 <= half; i += 8) rope_pairs(head + i, head + half + i, cos + i, sin + i, none, 0);
        if (i < half) rope_pairs(head + i, head + half + i, cos + i, sin + i, tail_mask(half - i), 1);
    }
}

/* silu(g) * up = (g / (1 + e^-g)) * up, the operations in the scalar reference's order. */
static void silu_mul(float *out, const float *gate, const float *up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    if (i < n) {
        __m256i mask = tail_mask(n - i);
        __m256 g = _mm256_maskload_ps(gate + i, mask);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
        _mm256_maskstore_ps(out + i, mask, _mm256_mul_ps(silu, _mm256_maskload_ps(up + i, mask)));
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Online softmax (Milakov & Gimelshein 2018; the FlashAttention recurrence) over blocks of
 * ATT_BLOCK positions, the query heads of one KV head together:
 *   per block: s_j = scale * q.k_j for every head (each K row read once for all heads),
 *              m' = max(m, max_j s_j), alpha = e^(m - m'), p_j = e^(s_j - m'),
 *              l = l*alpha + sum_j p_j,  acc = acc*alpha + sum_j p_j v_j (each V row read once);
 *   finally out = acc / l.
 * Equal to HF's two-pass softmax up to float rounding. The scores of a block live on the stack
 * (ATT_HEADS x ATT_BLOCK floats), so `scratch` is not needed; acc is kept in `out`, which must
 * not overlap q, k or v. More than ATT_HEADS query heads are done ATT_HEADS at a time. */
#define ATT_HEADS 16
#define SCORE_HEADS 4 /* heads x 2 positions = 8 accumulators in the score loop */
#define PV_HEADS 8    /* heads whose accumulator chunk stays in a register in the p.V loop */

/* s[h][jj + p] = scale * q[h].k[jj + p] for NH heads and NP positions. */
ML_INLINE void score_block(float (*scores)[ATT_BLOCK], int jj, const float *q, const void *k_rows, int head_dim,
                           float scale, int kv_kind, const int NH, const int NP) {
    __m256 acc[SCORE_HEADS][2];
#pragma GCC unroll 4
    for (int h = 0; h < NH; h++) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) acc[h][p] = _mm256_setzero_ps();
    }
    size_t row0 = (size_t)jj * (size_t)head_dim;
    int d = 0;
    for (; d + VEC <= head_dim; d += VEC) {
        __m256 kv[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) kv[p] = load8(k_rows, row0 + (size_t)p * head_dim + d, kv_kind);
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            __m256 qv = _mm256_loadu_ps(q + (size_t)h * head_dim + d);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) acc[h][p] = _mm256_fmadd_ps(qv, kv[p], acc[h][p]);
        }
    }
    if (d < head_dim) {
        int rest = head_dim - d;
        __m256 kv[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) kv[p] = load_partial(k_rows, row0 + (size_t)p * head_dim + d, rest, kv_kind);
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            __m256 qv = _mm256_maskload_ps(q + (size_t)h * head_dim + d, tail_mask(rest));
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) acc[h][p] = _mm256_fmadd_ps(qv, kv[p], acc[h][p]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < NH; h++) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) scores[h][jj + p] = hsum8(acc[h][p]) * scale;
    }
}

/* The cache rows of the next block, K and V, `bytes` each from k and v: prefetched while this
 * block computes, so the two streams are read ahead (the p.V loop walks V column-wise, which
 * the hardware prefetcher does not follow, and a block's misses would otherwise come in one
 * burst). Measured at 8192 positions: about 2x the bandwidth without it. */
ML_INLINE void prefetch_block(const char *k, const char *v, size_t bytes) {
    for (size_t at = 0; at < bytes; at += 64) {
        _mm_prefetch(k + at, _MM_HINT_T0);
        _mm_prefetch(v + at, _MM_HINT_T0);
    }
}

/* acc[h] = (first ? 0 : out[h] * alpha[h]) + sum_jj p[h][jj] v[jj], chunk by chunk of head_dim. */
ML_INLINE void pv_heads(float *out, float (*probs)[ATT_BLOCK], const float *alpha, int first, int n_block,
                        const void *v_rows, int head_dim, int kv_kind, const int NH) {
    for (int d = 0; d < head_dim; d += VEC) {
        int rest = head_dim - d < VEC ? head_dim - d : VEC;
        __m256i mask = tail_mask(rest);
        __m256 acc[PV_HEADS];
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) {
            if (first) {
                acc[h] = _mm256_setzero_ps();
            } else {
                float *o = out + (size_t)h * head_dim + d;
                __m256 prev = rest == VEC ? _mm256_loadu_ps(o) : _mm256_maskload_ps(o, mask);
                acc[h] = _mm256_mul_ps(prev, _mm256_set1_ps(alpha[h]));
            }
        }
        for (int jj = 0; jj < n_block; jj++) {
            size_t at = (size_t)jj * (size_t)head_dim + (size_t)d;
            __m256 vv = rest == VEC ? load8(v_rows, at, kv_kind) : load_partial(v_rows, at, rest, kv_kind);
#pragma GCC unroll 8
            for (int h = 0; h < NH; h++) acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(&probs[h][jj]), vv, acc[h]);
        }
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) {
            float *o = out + (size_t)h * head_dim + d;
            if (rest == VEC)
                _mm256_storeu_ps(o, acc[h]);
            else
                _mm256_maskstore_ps(o, mask, acc[h]);
        }
    }
}

/* At most ATT_HEADS heads. */
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
        if (j0 + ATT_BLOCK < n_pos) {
            int next = n_pos - j0 - ATT_BLOCK < ATT_BLOCK ? n_pos - j0 - ATT_BLOCK : ATT_BLOCK;
            size_t block_bytes = (size_t)ATT_BLOCK * (size_t)head_dim * kv_size;
            prefetch_block(k_rows + block_bytes, v_rows + block_bytes, (size_t)next * (size_t)head_dim * kv_size);
        }
        for (int h = 0; h < n_heads; h += SCORE_HEADS) {
            const float *qh = q + (size_t)h * head_dim;
            switch (n_heads - h) {
            case 1: score_heads(scores + h, n_block, qh, k_rows, head_dim, scale, kv_kind, 1); break;
            case 2: score_heads(scores + h, n_block, qh, k_rows, head_dim, scale, kv_kind, 2); break;
            case 3: score_heads(scores + h, n_block, qh, k_rows, head_dim, scale, kv_kind, 3); break;
            default: score_heads(scores + h, n_block, qh, k_rows, head_dim, scale, kv_kind, 4); break;
            }
        }
        for (int h = 0; h < n_heads; h++) {
            alpha[h] = softmax_block_rescale(scores[h], n_block, &running_max[h]);
            float new_max = running_max[h];
            __m256 m = _mm256_set1_ps(new_max), sum = _mm256_setzero_ps();
            for (int jj = 0; jj < n_block; jj += VEC) {
                if (n_block - jj >= VEC) {
                    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(&scores[h][jj]), m));
                    _mm256_storeu_ps(&scores[h][jj], e);
                    sum = _mm256_add_ps(sum, e);
                } else { /* lanes past the block are zeroed: they are not positions */
                    __m256i mask = tail_mask(n_block - jj);
                    __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(&scores[h][jj], mask), m));
                    e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
                    _mm256_storeu_ps(&scores[h][jj], e);
                    sum = _mm256_add_ps(sum, e);
                }
            }
            running_sum[h] = running_sum[h] * alpha[h] + hsum8(sum);
        }
        int first = j0 == 0;
        for (int h = 0; h < n_heads; h += PV_HEADS) {
            float *oh = out + (size_t)h * head_dim;
#define PV_CALL(NH) pv_heads(oh, scores + h, alpha + h, first, n_block, v_rows, head_dim, kv_kind, NH)
            ML_FOR_COUNT(n_heads - h, PV_CALL)
#undef PV_CALL
        }
    }
    for (int h = 0; h < n_heads; h++) {
        float *o = out + (size_t)h * head_dim;
        __m256 l = _mm256_set1_ps(running_sum[h]);
        int d = 0;
        for (; d + VEC <= head_dim; d += VEC) _mm256_storeu_ps(o + d, _mm256_div_ps(_mm256_loadu_ps(o + d), l));
        if (d < head_dim) {
            __m256i mask = tail_mask(head_dim - d);
            _mm256_maskstore_ps(o + d, mask, _mm256_div_ps(_mm256_maskload_ps(o + d, mask), l));
        }
    }
}

/* ---- conversions -------------------------------------------------------------------------- */

/* Round to nearest even on the integer bits, exactly ml_f32_to_bf16: bits + 0x7fff + lsb, then
 * the top half; NaN keeps its top half with the quiet bit set. Denormals round like any value
 * (no flush to zero, unlike vcvtneps2bf16). */
static void f32_to_bf16(uint16_t *out, const float *in, size_t n) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i bits = _mm256_loadu_si256((const __m256i *)(in + i));
        __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf);
        __m256i top = _mm256_srli_epi32(bits, 16);
        __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, bias), _mm256_and_si256(top, one)), 16);
        __m256i result = _mm256_blendv_epi8(rounded, _mm256_or_si256(top, quiet), is_nan);
        __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(result), _mm256_extracti128_si256(result, 1));
        _mm_storeu_si128((__m128i *)(out + i), packed);
    }
    ml_scalar_f32_to_bf16(out + i, in + i, n - i);
}

static void bf16_to_f32(float *out, const uint16_t *in, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, widen_bf16(_mm_loadu_si128((const __m128i *)(in + i))));
    ml_scalar_bf16_to_f32(out + i, in + i, n - i);
}

/* vcvtph2ps is exact for every finite value, subnormals included, but quiets signalling NaNs;
 * NaN lanes are rebuilt from the bits (sign, all-ones exponent, mantissa << 13) so that every
 * bit pattern converts exactly as ml_f16_to_f32. */
static void f16_to_f32(float *out, const uint16_t *in, size_t n) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fff), inf = _mm256_set1_epi32(0x7c00);
    const __m256i sign_mask = _mm256_set1_epi32(0x8000), exponent_fix = _mm256_set1_epi32(0x70000000);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(in + i));
        __m256 f = _mm256_cvtph_ps(h);
        __m256i wide = _mm256_cvtepu16_epi32(h);
        __m256i magnitude = _mm256_and_si256(wide, abs_mask);
        __m256i is_nan = _mm256_cmpgt_epi32(magnitude, inf);
        if (!_mm256_testz_si256(is_nan, is_nan)) {
            __m256i nan_bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(wide, sign_mask), 16),
                                               _mm256_add_epi32(_mm256_slli_epi32(magnitude, 13), exponent_fix));
            f = _mm256_blendv_ps(f, _mm256_castsi256_ps(nan_bits), _mm256_castsi256_ps(is_nan));
        }
        _mm256_storeu_ps(out + i, f);
    }
    ml_scalar_f16_to_f32(out + i, in + i, n - i);
}

/* ---- matrix products: K-quant weights, few tokens (Q2_K ... Q6_K) ----------------------------
 * As q_dot_block for the K-quants (kernels_avx512.c has the 16-lane twin): each 8 weights
 * rebuilt in registers exactly as core/quant_blocks.c does (scale = d * sc and min = dmin * m as
 * it forms them; scale * q exact in float32, so fmsub(scale, q, min) rounds as its
 * scale * q - min), then acc = fma(x[i:i+8], w[i:i+8], acc) in order and hsum8: the bits of
 * matmul_f32_f32 on the dequantised matrix, with no tile of decoded rows in between. */
#define KQ_MAX_TOKENS 7 /* from 8 tokens, the tiled path (decoded once per tile) */

/* 8 bytes at p as int32 lanes. */
ML_INLINE __m256i kq_bytes8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* Weights [8v, 8v + 8) of a super-block (core/quant_blocks.c's element order). */
ML_INLINE __m256 kq_decode8(ml_dtype t, const uint8_t *sb, int v, __m256 scale, __m256 min) {
    if (t == ML_DTYPE_Q2_K || t == ML_DTYPE_Q3_K) {
        /* element 128 g + 32 h + l: bits 2h, 2h + 1 of qs[32 g + l]; Q3_K: minus 4 unless bit
         * e / 32 of hmask[l] is set */
        int g = v / 16, h = (v % 16) / 4, l0 = 8 * (v % 4);
        __m256i q = kq_bytes8(sb + (t == ML_DTYPE_Q3_K ? 32 : 16) + 32 * g + l0);
        q = _mm256_and_si256(_mm256_srli_epi32(q, 2 * h), _mm256_set1_epi32(3));
        if (t == ML_DTYPE_Q2_K) return _mm256_fmsub_ps(scale, _mm256_cvtepi32_ps(q), min);
        __m256i bit = _mm256_and_si256(_mm256_srli_epi32(kq_bytes8(sb + l0), 4 * g + h), _mm256_set1_epi32(1));
        q = _mm256_sub_epi32(_mm256_or_si256(q, _mm256_slli_epi32(bit, 2)), _mm256_set1_epi32(4));
        return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(q));
    }
    if (t == ML_DTYPE_Q6_K) { /* element 128 g + r: nibble r / 64 of ql[64 g + r % 64], bits 2 (r / 32) of qh[32 g + r % 32] */
        int g = v / 16, r0 = 8 * (v % 16);
        __m256i low = kq_bytes8(sb + 64 * g + r0 % 64), high = kq_bytes8(sb + 128 + 32 * g + r0 % 32);
        low = r0 >= 64 ? _mm256_srli_epi32(low, 4) : _mm256_and_si256(low, _mm256_set1_epi32(15));
        high = _mm256_and_si256(_mm256_srli_epi32(high, 2 * (r0 / 32)), _mm256_set1_epi32(3));
        __m256i q = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32));
        return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(q));
    }
    /* Q4_K, Q5_K: sub-block j = v / 4, nibble j % 2 of qs[32 (j / 2) + l]; Q5_K's bit j of qh[l] */
    int j = v / 4, l0 = 8 * (v % 4);
    __m256i q = kq_bytes8(sb + (t == ML_DTYPE_Q5_K ? 48 : 16) + 32 * (j / 2) + l0);
    q = j % 2 ? _mm256_srli_epi32(q, 4) : _mm256_and_si256(q, _mm256_set1_epi32(15));
    if (t == ML_DTYPE_Q5_K) {
        __m256i qh = kq_bytes8(sb + 16 + l0);
        q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh, j), _mm256_set1_epi32(1)), 4));
    }
    return _mm256_fmsub_ps(scale, _mm256_cvtepi32_ps(q), min);
}

/* RB rows from `row` x TB tokens; the next RB rows' bytes prefetched alongside (prefetch). */
ML_INLINE void kq_dot_block(ml_dtype t, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                            size_t row_bytes, int n_super, int row, const uint8_t *prefetch, const int RB,
                            const int TB) {
    const size_t super_bytes = ml_dtype_block_bytes(t);
    const int per16 = ml_q8k_per16(t); /* sub-blocks of 16, or of 32 */
    __m256 acc[8][KQ_MAX_TOKENS];
    for (int r = 0; r < RB; r++)
        for (int k = 0; k < TB; k++) acc[r][k] = _mm256_setzero_ps();
    size_t prefetched = 0;
    for (int s = 0; s < n_super; s++) {
        if (prefetch) {
            size_t until = (size_t)(s + 1) * (size_t)RB * super_bytes;
            for (; prefetched < until; prefetched += 64) _mm_prefetch((const char *)prefetch + prefetched, _MM_HINT_T0);
        }
        const uint8_t *sb[8];
        float scale[8][16], min[8][16];
        for (int r = 0; r < RB; r++) {
            sb[r] = w + (size_t)(row + r) * row_bytes + (size_t)s * super_bytes;
            ml_kq_scales_f32(t, sb[r], scale[r], min[r]);
        }
        for (int v = 0; v < 32; v++) {
            __m256 xv[KQ_MAX_TOKENS];
            for (int k = 0; k < TB; k++) xv[k] = _mm256_loadu_ps(x + (size_t)k * ldx + (size_t)s * 256 + 8 * (size_t)v);
            for (int r = 0; r < RB; r++) {
                int i = per16 ? v / 2 : v / 4;
                __m256 m = ml_q8k_with_min(t) ? _mm256_set1_ps(min[r][i]) : _mm256_setzero_ps();
                __m256 wv = kq_decode8(t, sb[r], v, _mm256_set1_ps(scale[r][i]), m);
                for (int k = 0; k < TB; k++) acc[r][k] = _mm256_fmadd_ps(xv[k], wv, acc[r][k]);
            }
        }
    }
    for (int k = 0; k < TB; k++)
        for (int r = 0; r < RB; r++) y[(size_t)k * ldy + (size_t)(row + r)] = hsum8(acc[r][k]);
}

#define BLOCKS_TILED ml_avx2_matmul_f32_blocks

#include "backend/cpu/kernels_vector_shared.h"

const ml_cpu_kernels ml_cpu_kernels_avx2 = {
    .name = "avx2",
    .bf16_dot_product = 0,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = matmul_f32_blocks,
    .quantize_q8 = ml_avx2_quantize_q8,
    .matmul_q8_blocks = ml_avx2_matmul_q8_blocks,
    .quantize_q8k = ml_avx2_quantize_q8k,
    .matmul_q8k_blocks = ml_avx2_matmul_q8k_blocks,
    .blocks_to_f32 = ml_avx2_blocks_to_f32,
    .matmul_f32_bf16g = ml_avx2_matmul_f32_bf16g,
    .matmul_bf16_bf16g = ml_avx2_matmul_bf16_bf16g,
};
