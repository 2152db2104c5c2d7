/* AVX-512 kernels: three tables from this file (built with -mavx512f/bw/vl/dq/bf16 -mfma -mf16c;
 * dispatch.c hands them out only on CPUs that have the instructions).
 *   ml_cpu_kernels_avx512:     AVX-512 F/BW/VL/DQ only; no bf16 dot-product instruction.
 *   ml_cpu_kernels_avx512vnni: the same with the AVX512_VNNI int8 products (kernels_int8_*).
 *   ml_cpu_kernels_avx512bf16: the same, except matmul_bf16_bf16 uses vdpbf16ps; not the
 *       default on Intel, whose vdpbf16ps runs at half the f32 FMA rate (dispatch.c).
 * Semantics are those of kernels_scalar.c; tests/test_kernels.c compares them on CPUs that
 * can run them. The structure follows kernels_avx2.c with 16-lane vectors, masked tails
 * (maskz loads, mask stores) instead of copies, and more accumulators (32 zmm registers).
 *
 * Matrix products (f32/f16/bf16 weights; the ggml Q8_0/Q4_0/Q4_1 kernels further below follow
 * the same rule on decoded blocks): every output y[t, r] is one 16-lane accumulator,
 * acc = fma(x[i:i+16], w[i:i+16], acc) for i = 0, 16, 32, ... in order, then one fma with the
 * masked tail, then the fixed hsum16(); blocking only changes how many accumulators are in
 * flight, so results are bit-identical for any row/token split and any batch size (a sequence
 * decoded in a batch of 32 gets the bits it gets alone: tests/test_batch_invariance.c).
 * bf16 weights take the even/odd order instead: per chunk of 32, acc = fma(x[i, i+2, .., i+30],
 * w[same], acc) then acc = fma(x[i+1, i+3, .., i+31], w[same], acc), since one 512-bit load of
 * 32 weights widens to two vectors with one shift and one AND (exact), against a zero-extension
 * and a shift per 16 in the natural order (8 uops on the FMA ports per 24 FMAs of a 4 x 6 block
 * become 4); the n_in % 32 rest as above. x meets them permuted: copied once per call into that
 * order (x_even_odd) for 3+ tokens, split by one vpermt2ps per 16 in the loop for 1-2 tokens,
 * where 8 rows share it. The same order for every n_tok, so batch invariance holds. Intel Xeon,
 * one thread, 256 MiB of bf16 rows of 2048, thread CPU time, 4 rounds alternated: 8 tokens
 * 63-68 -> 69-81 GFLOP/s, 32 tokens 71-108 -> 83-121 (docs/BENCHMARKS.md).
 *   n_tok 1-2 (decode): blocks of 8 rows (8 or 16 accumulators), as kernels_avx2.c: the block
 *       is one contiguous 32 KiB stream. No software prefetch except on Intel, where each row
 *       also prefetches GEMV_LOOKAHEAD_INTEL bytes ahead of its loads, past its end in the same
 *       row of the next block (lookahead_offset: +8-15% over running into the following row,
 *       which the block already reads). Measured on an Intel Xeon
 *       with AMX (2 cores, 1 GiB of bf16, B = 1, each shape's time against a read probe of the
 *       same buffer run just before it, median of 5-9 rounds, machine load 6-11): 4 rows with
 *       the next block prefetched (the previous shape) 69-78% of the probe, 8 rows without
 *       prefetch 88-95%, 8 rows with a 256-512-byte look-ahead 97-109% (1024: 83-100%, 2048:
 *       75-91%), the f32 and the vdpbf16ps kernels alike (docs/BENCHMARKS.md). On Zen 5 the
 *       same 8 rows with a 512-byte look-ahead read 27-32 GB/s where 4 rows with the next-block
 *       prefetch read 49-50, and the AVX2 kernel's 8 rows without prefetch reached 82% of the
 *       probe; so other CPUs get the 8 rows without it.
 *   n_tok >= 3 (batched decode, prefill): a tile of weight rows (W_TILE_BYTES, kept in L2)
 *       meets the tokens 6 at a time in blocks of 4 rows x 6 tokens: the 4 widened weight
 *       vectors stay in registers and each feeds 6 FMAs (24 accumulators + 4 weights + 1 x =
 *       29 zmm); 1..5 leftover tokens go in blocks of 4, 2 and 1. While the tokens pass over a
 *       tile, the next tile is prefetched into L2 (prefetcht1), spread evenly over the passes,
 *       so no pass waits on DRAM at the start of a tile (on Zen 5, 8 and 32 tokens: +10-40% in the
 *       kernel, +11-15% for the model's fast batch-32 decode; MEASUREMENTS.md). On Intel that
 *       prefetch starts at GEMM_PREFETCH_MIN_TOKENS_INTEL tokens: below, the hardware
 *       prefetcher alone reads faster (Intel Xeon, 2 threads: 4 tokens +25-29%, 8 tokens
 *       +10-20% without it; 16 and 32 tokens 3-10% slower without it; docs/BENCHMARKS.md),
 *       and the first pass over a tile, which reads it from memory, takes the decode
 *       look-ahead instead (continuing into the next block's rows: 3-8 tokens +6-11% more).
 *       There 8-11 tokens go in blocks of 3 rows x 8 tokens (GEMM_ROWS_FEW x GEMM_TOKENS_FEW),
 *       one pass over each tile instead of a 6-token pass and a 2-token one: +13% at 8 tokens.
 *       3 rows x 8 tokens (no leftover at 8 or 32 tokens, one widening per 8 FMAs) measured 40%
 *       slower in accurate mode, side by side with this on the same machine; on the Intel Xeon
 *       that was gcc folding each token's x load into the 3 FMAs that use it (3 loads instead
 *       of 1); kept in a register (ML_IN_REGISTER) it ran as fast as 4 x 6 at 8 tokens and 5%
 *       slower at 32, and with the first-pass look-ahead 13% faster at 8 tokens (above). */
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

#define VEC 16                    /* floats per zmm */
#define STEP 64                   /* elements per unrolled step of the dot-product loop (4 vectors) */
#define W_TILE_BYTES (256 * 1024) /* n_tok >= 3: weight rows kept in L2 while tokens pass */
#define GEMV_ROWS 8               /* n_tok 1-2: rows per block */
#define GEMV_LOOKAHEAD_INTEL 512  /* n_tok 1-2 on Intel: bytes prefetched ahead in each row */
#define GEMM_ROWS 4               /* n_tok >= 3: rows x tokens per register block */
#define GEMM_TOKENS 6
#define GEMM_PREFETCH_MIN_TOKENS_INTEL 12 /* n_tok >= 3 on Intel: prefetch the next tile from here */
#define GEMM_ROWS_FEW 3           /* Intel, 8-11 tokens: 3 rows x 8 tokens in one pass */
#define GEMM_TOKENS_FEW 8
#define MAX_TB GEMM_TOKENS_FEW    /* the most tokens of any block */

/* ---- loads ------------------------------------------------------------------------------- */

/* Lanes [0, n) set, n in [0, 16]. */
ML_INLINE __mmask16 tail_mask16(int n) { return (__mmask16)((1u << n) - 1u); }

ML_INLINE __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

ML_INLINE size_t kind_size(int kind) { return kind == KIND_F32 || kind == KIND_F32_EO ? 4 : 2; }

ML_INLINE __m512 load16(const void *base, size_t index, int kind) {
    if (kind == KIND_F32 || kind == KIND_F32_EO) return _mm512_loadu_ps((const float *)base + index);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + index));
    return kind == KIND_F16 ? _mm512_cvtph_ps(h) : widen_bf16(h);
}

/* n in [1, 15] values, the other lanes zero; masked lanes are not read. */
ML_INLINE __m512 load_partial(const void *base, size_t index, int n, int kind) {
    __mmask16 m = tail_mask16(n);
    if (kind == KIND_F32 || kind == KIND_F32_EO) return _mm512_maskz_loadu_ps(m, (const float *)base + index);
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

/* ---- the even/odd order of bf16 weights ---------------------------------------------------
 * 32 bf16 weights in one zmm widen to float32 with one operation per 16: the even elements
 * (0, 2, .., 30) by a left shift of each 32-bit lane by 16, the odd ones (1, 3, .., 31) by
 * clearing each lane's low half; both exact. x meets them in the same order: the 16 even then
 * the 16 odd elements of each chunk of 32. */

/* Elements 2j (odd = 0) or 2j + 1 (odd = 1), j = 0..15, of the 32 bf16 values at base[index],
 * as floats. The weights are read twice (the second time from L1): as memory operands of the
 * shift and the AND, so no register holds them. */
ML_INLINE __m512 bf16_half(const void *base, size_t index, int odd) {
    __m512i v = _mm512_loadu_si512((const uint16_t *)base + index);
    v = odd ? _mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)) : _mm512_slli_epi32(v, 16);
    return _mm512_castsi512_ps(v);
}

/* The same 16 elements of the 32 values of x of `kind` at base[index]: KIND_F32_EO holds them
 * already apart (evens at index, odds at index + 16); natural float32 rows are split by one
 * two-source permute; bf16 rows as bf16 weights. */
ML_INLINE __m512 x_half(const void *base, size_t index, int kind, int odd) {
    const float *f = (const float *)base + index;
    if (kind == KIND_F32_EO) return _mm512_loadu_ps(f + (odd ? VEC : 0));
    if (kind == KIND_BF16) return bf16_half(base, index, odd);
    const __m512i pick = odd ? _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)
                             : _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(f), pick, _mm512_loadu_ps(f + VEC));
}

/* n_tok rows of x (kind x_kind, ldx elements apart) as float32 rows of n_in at out, each chunk
 * of 32 in the even/odd order and the last n_in % 32 elements as they are. */
static void x_even_odd(float *out, const void *x, size_t ldx, int x_kind, int n_in, int n_tok) {
    for (int t = 0; t < n_tok; t++) {
        const char *row = (const char *)x + (size_t)t * ldx * kind_size(x_kind);
        float *dst = out + (size_t)t * (size_t)n_in;
        int i = 0;
        for (; i + 2 * VEC <= n_in; i += 2 * VEC) {
            _mm512_storeu_ps(dst + i, x_half(row, (size_t)i, x_kind, 0));
            _mm512_storeu_ps(dst + i + VEC, x_half(row, (size_t)i, x_kind, 1));
        }
        for (; i < n_in; i++)
            dst[i] = x_kind == KIND_BF16 ? ml_bf16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
    }
}

/* ---- matrix products (f32 activations; f32, f16 or bf16 weights; fast mode widened) ------ */

/* Memory to prefetch while a block computes: n_lines cache lines from `at`, spread evenly over
 * the block's steps; into L1 (the next GEMV block) or, with l2, into L2 (the next GEMM tile). */
typedef struct {
    const char *at;
    size_t n_lines;
} prefetch_span;

ML_INLINE void prefetch_lines(prefetch_span pf, size_t from, size_t to, const int l2) {
    if (to > pf.n_lines) to = pf.n_lines;
    for (size_t j = from; j < to; j++) {
        if (l2)
            _mm_prefetch(pf.at + j * 64, _MM_HINT_T1);
        else
            _mm_prefetch(pf.at + j * 64, _MM_HINT_T0);
    }
}

/* n_tok 1-2 on Intel: the byte offset from a row's start to prefetch when its loads are at
 * `ahead - lookahead`. Past the row's end the look-ahead goes on in the same row of the next
 * block (RB rows further down), which this block's rows reach next, not into the following row,
 * which this block is already reading: so a block starts with its rows' first bytes in cache
 * instead of 8 demand misses at once (+7-10% read rate, docs/BENCHMARKS.md). Prefetches past the
 * matrix are harmless (a prefetch never faults). */
ML_INLINE size_t lookahead_offset(size_t ahead, size_t row_bytes, const int RB) {
    return ahead >= row_bytes ? ahead + (size_t)(RB - 1) * row_bytes : ahead;
}

/* Keeps v in a register: without it gcc folds a token's x load into each of the RB FMAs that use
 * it (RB loads instead of one), which made the 3 x 8 block load-bound. */
#define ML_IN_REGISTER(v) __asm__("" : "+v"(v))

/* acc[r][t] += x_t[at:at+16] * w_r[at:at+16] for all r, t. With RB < TB the RB weight vectors
 * stay in registers and each token's x is loaded once; otherwise the TB x vectors stay and each
 * weight vector is loaded (and widened) once. */
#define ML_DOT_STEP(LOADX, LOADW, at)                                                              \
    do {                                                                                           \
        if (RB < TB) {                                                                             \
            __m512 wv[GEMM_ROWS];                                                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) wv[r] = LOADW(w_rows[r], at);     \
            _Pragma("GCC unroll 8") for (int t = 0; t < TB; t++) {                                 \
                __m512 xv = LOADX(x_rows[t], at);                                                  \
                ML_IN_REGISTER(xv);                                                                \
                _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) acc[r][t] =                   \
                    _mm512_fmadd_ps(xv, wv[r], acc[r][t]);                                         \
            }                                                                                      \
        } else {                                                                                   \
            __m512 xv[GEMV_ROWS];                                                                  \
            _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) xv[t] = LOADX(x_rows[t], at);     \
            _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) {                                 \
                __m512 wv = LOADW(w_rows[r], at);                                                  \
                _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) acc[r][t] =                   \
                    _mm512_fmadd_ps(xv[t], wv, acc[r][t]);                                         \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* RB rows from `row` times TB tokens (RB <= 4, TB <= 8, RB >= TB when RB > 3); RB, TB and the
 * kinds are constants after inlining, so the accumulators live in registers. */
ML_INLINE void dot_block(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                         int n_in, int row, prefetch_span pf, const int l2, size_t lookahead, const int RB,
                         const int TB) {
    const char *w_rows[GEMV_ROWS];
    const char *x_rows[MAX_TB];
    __m512 acc[GEMV_ROWS][MAX_TB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        w_rows[r] = (const char *)w + (size_t)(row + r) * (size_t)n_in * kind_size(w_kind);
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) x_rows[t] = (const char *)x + (size_t)t * ldx * kind_size(x_kind);
#define ML_LOAD_X(base, at) load16(base, at, x_kind)
#define ML_LOAD_W(base, at) load16(base, at, w_kind)
#define ML_LOAD_X_TAIL(base, at) load_partial(base, at, rest, x_kind)
#define ML_LOAD_W_TAIL(base, at) load_partial(base, at, rest, w_kind)
/* bf16 weights: chunks of 32 in the even/odd order, the evens' FMA before the odds' */
#define ML_LOAD_X_EVEN(base, at) x_half(base, at, x_kind, 0)
#define ML_LOAD_X_ODD(base, at) x_half(base, at, x_kind, 1)
#define ML_LOAD_W_EVEN(base, at) bf16_half(base, at, 0)
#define ML_LOAD_W_ODD(base, at) bf16_half(base, at, 1)
#define ML_DOT_CHUNK32(at)                                                                         \
    do {                                                                                           \
        ML_DOT_STEP(ML_LOAD_X_EVEN, ML_LOAD_W_EVEN, at);                                           \
        ML_DOT_STEP(ML_LOAD_X_ODD, ML_LOAD_W_ODD, at);                                             \
    } while (0)
    size_t n = (size_t)n_in, i = 0, steps = n / STEP;
    size_t lines_per_step = steps ? (pf.n_lines + steps - 1) / steps : pf.n_lines;
    const size_t w_size = kind_size(w_kind), row_bytes = n * w_size;
    for (; i + STEP <= n; i += STEP) {
        size_t first = i / STEP * lines_per_step;
        prefetch_lines(pf, first, first + lines_per_step, l2);
        if (lookahead) {
            size_t ahead = lookahead_offset(i * w_size + lookahead, row_bytes, RB);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++)
                for (size_t j = 0; j < STEP * w_size; j += 64) _mm_prefetch(w_rows[r] + ahead + j, _MM_HINT_T0);
        }
        if (w_kind == KIND_BF16) {
            ML_DOT_CHUNK32(i);
            ML_DOT_CHUNK32(i + 2 * VEC);
        } else {
#pragma GCC unroll 4
            for (int u = 0; u < STEP / VEC; u++) ML_DOT_STEP(ML_LOAD_X, ML_LOAD_W, i + (size_t)u * VEC);
        }
    }
    if (!steps) prefetch_lines(pf, 0, pf.n_lines, l2);
    if (w_kind == KIND_BF16 && i + 2 * VEC <= n) {
        ML_DOT_CHUNK32(i);
        i += 2 * VEC;
    }
    for (; i + VEC <= n; i += VEC) ML_DOT_STEP(ML_LOAD_X, ML_LOAD_W, i);
    if (i < n) {
        int rest = (int)(n - i);
        ML_DOT_STEP(ML_LOAD_X_TAIL, ML_LOAD_W_TAIL, i);
    }
#undef ML_DOT_CHUNK32
#undef ML_LOAD_X_EVEN
#undef ML_LOAD_X_ODD
#undef ML_LOAD_W_EVEN
#undef ML_LOAD_W_ODD
#undef ML_LOAD_X
#undef ML_LOAD_W
#undef ML_LOAD_X_TAIL
#undef ML_LOAD_W_TAIL
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum16(acc[r][t]);
    }
}

/* Fast mode with vdpbf16ps: per 32 bf16 pairs, acc[k] += x[2k]*w[2k] + x[2k+1]*w[2k+1] (the
 * instruction's own order and rounding: round to nearest even, bf16 denormal inputs read as
 * zero, denormal results flushed). One accumulator per output, 32 elements per instruction in
 * order, then the masked tail, then hsum16: split- and batch-invariant like dot_block. */
#define ML_DP_STEP(LOADX, LOADW, at)                                                               \
    do {                                                                                           \
        if (RB < TB) {                                                                             \
            __m512i wv[GEMM_ROWS];                                                                 \
            _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) wv[r] = LOADW(w_rows[r] + (at));  \
            _Pragma("GCC unroll 8") for (int t = 0; t < TB; t++) {                                 \
                __m512i xv = LOADX(x_rows[t] + (at));                                              \
                _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) acc[r][t] =                   \
                    _mm512_dpbf16_ps(acc[r][t], (__m512bh)xv, (__m512bh)wv[r]);                    \
            }                                                                                      \
        } else {                                                                                   \
            __m512i xv[GEMV_ROWS];                                                                 \
            _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) xv[t] = LOADX(x_rows[t] + (at));  \
            _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) {                                 \
                __m512i wv = LOADW(w_rows[r] + (at));                                              \
                _Pragma("GCC unroll 4") for (int t = 0; t < TB; t++) acc[r][t] =                   \
                    _mm512_dpbf16_ps(acc[r][t], (__m512bh)xv[t], (__m512bh)wv);                    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

ML_INLINE void dot_block_dpbf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                                int row, prefetch_span pf, const int l2, size_t lookahead, const int RB, const int TB) {
    const uint16_t *w_rows[GEMV_ROWS];
    const uint16_t *x_rows[MAX_TB];
    __m512 acc[GEMV_ROWS][MAX_TB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        w_rows[r] = w + (size_t)(row + r) * (size_t)n_in;
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) x_rows[t] = x + (size_t)t * ldx;
#define ML_LOAD(p) _mm512_loadu_si512(p)
#define ML_LOAD_TAIL(p) _mm512_maskz_loadu_epi16(m, p)
    size_t n = (size_t)n_in, i = 0, steps = n / 64;
    size_t lines_per_step = steps ? (pf.n_lines + steps - 1) / steps : pf.n_lines;
    for (; i + 64 <= n; i += 64) { /* 64 bf16 = 128 bytes per row per step */
        size_t first = i / 64 * lines_per_step;
        prefetch_lines(pf, first, first + lines_per_step, l2);
        if (lookahead) {
            size_t ahead = lookahead_offset(i * 2 + lookahead, n * 2, RB);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                _mm_prefetch((const char *)w_rows[r] + ahead, _MM_HINT_T0);
                _mm_prefetch((const char *)w_rows[r] + ahead + 64, _MM_HINT_T0);
            }
        }
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++) ML_DP_STEP(ML_LOAD, ML_LOAD, i + (size_t)u * 32);
    }
    if (!steps) prefetch_lines(pf, 0, pf.n_lines, l2);
    for (; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - i)) - 1u);
        ML_DP_STEP(ML_LOAD_TAIL, ML_LOAD_TAIL, i);
    }
#undef ML_LOAD
#undef ML_LOAD_TAIL
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) {
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) y[(size_t)t * ldy + (size_t)(row + r)] = hsum16(acc[r][t]);
    }
}

/* One block of RB rows x TB tokens, by the plain widening kernel or the vdpbf16ps one. */
ML_INLINE void block(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w,
                     int w_kind, int n_in, int row, prefetch_span pf, const int l2, size_t lookahead, const int RB,
                     const int TB) {
    if (use_dpbf16)
        dot_block_dpbf16(y, ldy, (const uint16_t *)x, ldx, (const uint16_t *)w, n_in, row, pf, l2, lookahead, RB, TB);
    else
        dot_block(y, ldy, x, ldx, x_kind, w, w_kind, n_in, row, pf, l2, lookahead, RB, TB);
}

/* n_tok 1-2: how far ahead in each row to prefetch, in bytes (0: no software prefetch; see the
 * top of the file for the measurements behind the choice). */
static size_t gemv_lookahead_bytes(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") ? GEMV_LOOKAHEAD_INTEL : 0;
}

/* Rows [row_begin, row_end) for TB tokens: blocks of RB rows, then single rows.
 *   l2 = 0: decode (n_tok 1-2): no prefetch of later blocks, the look-ahead within rows above;
 *   l2 = 1: the blocks share out `next` (a later tile) evenly and prefetch it into L2;
 *   l2 = 2: n_tok >= 3 where the next tile is not prefetched (Intel, few tokens): the first
 *           pass over a tile, which reads it from memory, with the decode look-ahead. */
ML_INLINE void rows_for_tokens(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind,
                               const void *w, int w_kind, int n_in, int row_begin, int row_end, prefetch_span next,
                               const int l2, const int RB, const int TB) {
    const size_t lookahead = l2 == 1 ? 0 : gemv_lookahead_bytes();
    int n_blocks = (row_end - row_begin) / RB + (row_end - row_begin) % RB;
    size_t share = n_blocks > 0 ? (next.n_lines + (size_t)n_blocks - 1) / (size_t)n_blocks : 0;
    int r = row_begin, b = 0;
    for (; r + RB <= row_end; r += RB, b++) {
        prefetch_span pf = {NULL, 0};
        if (l2 && (size_t)b * share < next.n_lines) pf = (prefetch_span){next.at + (size_t)b * share * 64, share};
        if (l2 && pf.at && (size_t)b * share + share > next.n_lines) pf.n_lines = next.n_lines - (size_t)b * share;
        block(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, pf, l2, lookahead, RB, TB);
    }
    for (; r < row_end; r++, b++) {
        prefetch_span pf = {NULL, 0};
        if (l2 && (size_t)b * share < next.n_lines) {
            pf = (prefetch_span){next.at + (size_t)b * share * 64, share};
            if ((size_t)b * share + share > next.n_lines) pf.n_lines = next.n_lines - (size_t)b * share;
        }
        block(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, r, pf, l2, lookahead, 1, TB);
    }
}

/* n_tok >= 3: a tile of weight rows (W_TILE_BYTES, kept in L2) meets every GT-token block of x
 * in turn (blocks of GR rows x GT tokens), then the leftover tokens in blocks of 4, 2 and 1; each
 * weight byte comes from memory once per call. With prefetch_next, pass p of n_passes prefetches
 * the p-th share of the next tile into L2. */
ML_INLINE void gemm_tiles(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w,
                          int w_kind, int n_in, int n_tok, int row_begin, int row_end, const int prefetch_next,
                          const int GR, const int GT) {
    const prefetch_span none = {NULL, 0};
    size_t x_step = ldx * kind_size(x_kind); /* bytes per x row */
    size_t w_row_bytes = (size_t)(n_in > 0 ? n_in : 1) * kind_size(w_kind);
    int tile_rows = (int)(W_TILE_BYTES / w_row_bytes) / GR * GR;
    if (tile_rows < GR) tile_rows = GR;
    size_t n_passes = (size_t)(n_tok + GT - 1) / GT;
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        int r2 = r1 + tile_rows < row_end ? r1 + tile_rows : row_end;
        const char *next_tile = (const char *)w + (size_t)r1 * w_row_bytes;
        size_t next_lines = prefetch_next ? ((size_t)(r2 - r1) * w_row_bytes + 63) / 64 : 0;
        size_t share = (next_lines + n_passes - 1) / n_passes;
        int t = 0;
        for (size_t p = 0; t < n_tok; p++, t += GT) {
            prefetch_span next = {next_tile + p * share * 64, 0};
            if (p * share < next_lines) next.n_lines = next_lines - p * share < share ? next_lines - p * share : share;
            float *yt = y + (size_t)t * ldy;
            const char *xt = (const char *)x + (size_t)t * x_step;
            if (t + GT <= n_tok) {
                /* l2 a constant in each call (as prefetch_next, for the same reason) */
                if (!prefetch_next && p == 0)
                    rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, none, 2, GR, GT);
                else
                    rows_for_tokens(use_dpbf16, yt, ldy, xt, ldx, x_kind, w, w_kind, n_in, r0, r1, next, 1, GR, GT);
                continue;
            }
            /* 1..GT-1 leftover tokens as blocks of 4, 2 and 1 (3 block shapes compiled instead of
             * GT - 1; the bits do not depend on the blocking) */
            int left = n_tok - t, done = 0;
#define TAIL_CALL(TB, L2)                                                                          \
    rows_for_tokens(use_dpbf16, yt + (size_t)done * ldy, ldy, xt + (size_t)done * x_step, ldx, x_kind, w, w_kind,  \
                    n_in, r0, r1, done ? none : next, L2, GR, TB)
            if (left - done >= 4) {
                if (!prefetch_next && p == 0)
                    TAIL_CALL(4, 2);
                else
                    TAIL_CALL(4, 1);
                done += 4;
            }
            if (left - done >= 2) {
                if (!prefetch_next && p == 0 && done == 0)
                    TAIL_CALL(2, 2);
                else
                    TAIL_CALL(2, 1);
                done += 2;
            }
            if (left - done >= 1) TAIL_CALL(1, 1);
#undef TAIL_CALL
        }
    }
}

/* Whether a product of n_tok >= 3 tokens prefetches the next tile into L2 while it works on
 * one: on Intel only from GEMM_PREFETCH_MIN_TOKENS_INTEL tokens (below that the hardware
 * prefetcher does better alone: see the top of the file), elsewhere always. */
static int gemm_prefetch_next(int n_tok) {
    __builtin_cpu_init();
    return !__builtin_cpu_is("intel") || n_tok >= GEMM_PREFETCH_MIN_TOKENS_INTEL;
}

ML_INLINE void matmul_driver_dp(int use_dpbf16, float *y, size_t ldy, const void *x, size_t ldx, int x_kind,
                             const void *w, int w_kind, int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin) return;
    const prefetch_span none = {NULL, 0};
    if (n_tok == 1) {
        rows_for_tokens(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, row_begin, row_end, none, 0, GEMV_ROWS, 1);
        return;
    }
    if (n_tok == 2) {
        rows_for_tokens(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, row_begin, row_end, none, 0, GEMV_ROWS, 2);
        return;
    }
    /* prefetch_next is a constant in each call, so the one without it has no prefetch code left
     * in its inner loops (with it as a run-time 0, batch 8 ran 10% slower) */
    if (!gemm_prefetch_next(n_tok) && n_tok >= GEMM_TOKENS_FEW)
        gemm_tiles(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end, 0, GEMM_ROWS_FEW,
                   GEMM_TOKENS_FEW);
    else if (gemm_prefetch_next(n_tok))
        gemm_tiles(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end, 1, GEMM_ROWS,
                   GEMM_TOKENS);
    else
        gemm_tiles(use_dpbf16, y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end, 0, GEMM_ROWS,
                   GEMM_TOKENS);
}

/* bf16 weights with n_tok >= 3 take x in groups of up to X_GROUP_TOKENS tokens, each copied
 * once into the even/odd order (per-thread scratch: 2 MiB for 64 x 8192), so that the register
 * blocks load it as it is; each group streams the weights once. 1-2 tokens split x with a
 * permute in the loop, where 8 rows share it. */
#define X_GROUP_TOKENS 64

/* The widening kernels for matmul_f32_* and matmul_bf16_bf16 (kernels_vector_shared.h). */
ML_INLINE void matmul_driver(float *y, size_t ldy, const void *x, size_t ldx, int x_kind, const void *w, int w_kind,
                             int n_in, int n_tok, int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin) return;
    if (w_kind != KIND_BF16 || n_tok <= 2) {
        /* bf16 weights reach here only for 1-2 tokens: saying so keeps the compiler from
         * building the GEMM for x in its natural order */
        if (w_kind == KIND_BF16 && n_tok > 2) __builtin_unreachable();
        matmul_driver_dp(0, y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end);
        return;
    }
    size_t x_step = ldx * kind_size(x_kind);
    int group = n_tok < X_GROUP_TOKENS ? n_tok : X_GROUP_TOKENS;
    float *xs = ml_cpu_scratch((size_t)group * (size_t)n_in);
    if (!xs) { /* no memory: token by token, in the same order */
        for (int t = 0; t < n_tok; t++)
            matmul_driver_dp(0, y + (size_t)t * ldy, ldy, (const char *)x + (size_t)t * x_step, ldx, x_kind, w, w_kind,
                             n_in, 1, row_begin, row_end);
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += group) {
        int g = n_tok - t0 < group ? n_tok - t0 : group;
        x_even_odd(xs, (const char *)x + (size_t)t0 * x_step, ldx, x_kind, n_in, g);
        matmul_driver_dp(0, y + (size_t)t0 * ldy, ldy, xs, (size_t)n_in, KIND_F32_EO, w, w_kind, n_in, g, row_begin,
                         row_end);
    }
}

static void matmul_bf16_bf16_dpbf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w,
                                    int n_in, int n_tok, int row_begin, int row_end) {
    matmul_driver_dp(1, y, ldy, x, ldx, KIND_BF16, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
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
#define Q_TILE_ROWS GEMM_ROWS /* q_matmul_tiles: tile rows a multiple of the GEMM block */
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
            ML_FOR_COUNT(n_heads - h, SCORE_CALL)
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
            ML_FOR_COUNT(n_heads - h, PV_CALL)
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

/* ---- matrix products: K-quant weights, few tokens (Q2_K ... Q6_K) ----------------------------
 * As q_dot_block for the K-quants: each 16 weights rebuilt in registers exactly as
 * core/quant_blocks.c does (scale = d * sc and min = dmin * m in scalar float32 as it forms
 * them; scale * q exact in float32, so fmsub(scale, q, min) rounds as its scale * q - min), then
 * acc = fma(x[i:i+16], w[i:i+16], acc) in order and hsum16: the bits of matmul_f32_f32 on the
 * dequantised matrix, without writing the decoded rows to a tile and reading them back. */
#define KQ_MAX_TOKENS 7 /* from Q_TILE_TOKENS tokens, the tiled path (decoded once per tile) */

/* Weights [16v, 16v + 16) of a super-block (core/quant_blocks.c's element order). */
ML_INLINE __m512 kq_decode16(ml_dtype t, const uint8_t *sb, int v, __m512 scale, __m512 min) {
    if (t == ML_DTYPE_Q2_K || t == ML_DTYPE_Q3_K) {
        /* element 128 g + 32 h + l: bits 2h, 2h + 1 of qs[32 g + l]; Q3_K: minus 4 unless bit
         * e / 32 of hmask[l] is set */
        int g = v / 8, h = (v % 8) / 2, l0 = 16 * (v % 2);
        __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + (t == ML_DTYPE_Q3_K ? 32 : 16) + 32 * g + l0)));
        q = _mm512_and_si512(_mm512_srli_epi32(q, 2 * h), _mm512_set1_epi32(3));
        if (t == ML_DTYPE_Q2_K) return _mm512_fmsub_ps(scale, _mm512_cvtepi32_ps(q), min);
        __m512i hm = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + l0)));
        __m512i bit = _mm512_and_si512(_mm512_srli_epi32(hm, 4 * g + h), _mm512_set1_epi32(1));
        q = _mm512_sub_epi32(_mm512_or_si512(q, _mm512_slli_epi32(bit, 2)), _mm512_set1_epi32(4));
        return _mm512_mul_ps(scale, _mm512_cvtepi32_ps(q));
    }
    if (t == ML_DTYPE_Q6_K) { /* element 128 g + r: nibble r / 64 of ql[64 g + r % 64], bits 2 (r / 32) of qh[32 g + r % 32] */
        int g = v / 8, r0 = 16 * (v % 8);
        __m512i low = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + 64 * g + r0 % 64)));
        __m512i high = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + 128 + 32 * g + r0 % 32)));
        low = r0 >= 64 ? _mm512_srli_epi32(low, 4) : _mm512_and_si512(low, _mm512_set1_epi32(15));
        high = _mm512_and_si512(_mm512_srli_epi32(high, 2 * (r0 / 32)), _mm512_set1_epi32(3));
        __m512i q = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
        return _mm512_mul_ps(scale, _mm512_cvtepi32_ps(q));
    }
    /* Q4_K, Q5_K: sub-block j = v / 2, nibble j % 2 of qs[32 (j / 2) + l]; Q5_K's bit j of qh[l] */
    int j = v / 2, l0 = 16 * (v % 2);
    const uint8_t *qs = sb + (t == ML_DTYPE_Q5_K ? 48 : 16) + 32 * (j / 2) + l0;
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    q = j % 2 ? _mm512_srli_epi32(q, 4) : _mm512_and_si512(q, _mm512_set1_epi32(15));
    if (t == ML_DTYPE_Q5_K) {
        __m512i qh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + 16 + l0)));
        q = _mm512_or_si512(q, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, j), _mm512_set1_epi32(1)), 4));
    }
    return _mm512_fmsub_ps(scale, _mm512_cvtepi32_ps(q), min);
}

/* RB rows from `row` x TB tokens; the next RB rows' bytes prefetched alongside (prefetch). */
ML_INLINE void kq_dot_block(ml_dtype t, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                            size_t row_bytes, int n_super, int row, const uint8_t *prefetch, const int RB,
                            const int TB) {
    const size_t super_bytes = ml_dtype_block_bytes(t);
    const int per16 = ml_q8k_per16(t); /* sub-blocks of 16, or of 32 */
    __m512 acc[8][KQ_MAX_TOKENS];
    for (int r = 0; r < RB; r++)
        for (int k = 0; k < TB; k++) acc[r][k] = _mm512_setzero_ps();
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
        for (int v = 0; v < 16; v++) {
            __m512 xv[KQ_MAX_TOKENS];
            for (int k = 0; k < TB; k++) xv[k] = _mm512_loadu_ps(x + (size_t)k * ldx + (size_t)s * 256 + 16 * (size_t)v);
            for (int r = 0; r < RB; r++) {
                int i = per16 ? v : v / 2;
                __m512 m = ml_q8k_with_min(t) ? _mm512_set1_ps(min[r][i]) : _mm512_setzero_ps();
                __m512 wv = kq_decode16(t, sb[r], v, _mm512_set1_ps(scale[r][i]), m);
                for (int k = 0; k < TB; k++) acc[r][k] = _mm512_fmadd_ps(xv[k], wv, acc[r][k]);
            }
        }
    }
    for (int k = 0; k < TB; k++)
        for (int r = 0; r < RB; r++) y[(size_t)k * ldy + (size_t)(row + r)] = hsum16(acc[r][k]);
}

#define BLOCKS_TILED ml_avx512_matmul_f32_blocks

#include "backend/cpu/kernels_vector_shared.h"

const ml_cpu_kernels ml_cpu_kernels_avx512 = {
    .name = "avx512",
    .bf16_dot_product = 0,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = matmul_f32_blocks,
    .quantize_q8 = ml_avx2_quantize_q8,
    .matmul_q8_blocks = ml_avx2_matmul_q8_blocks,
    .quantize_q8k = ml_avx2_quantize_q8k,
    .matmul_q8k_blocks = ml_avx2_matmul_q8k_blocks,
    .blocks_to_f32 = ml_avx512_blocks_to_f32,
    .matmul_f32_bf16g = ml_avx512_matmul_f32_bf16g,
    .matmul_bf16_bf16g = ml_avx512_matmul_bf16_bf16g,
};

/* avx512bf16 without vdpbf16ps: the VNNI int8 products with the widening bf16 product, for
 * CPUs with AVX512_VNNI and no AVX512_BF16, and for Intel ones, whose vdpbf16ps is half the f32
 * FMA rate (dispatch.c). */
const ml_cpu_kernels ml_cpu_kernels_avx512vnni = {
    .name = "avx512vnni",
    .bf16_dot_product = 0,
    .matmul_bf16_bf16 = matmul_bf16_bf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = matmul_f32_blocks,
    .quantize_q8 = ml_avx512vnni_quantize_q8,
    .matmul_q8_blocks = ml_avx512vnni_matmul_q8_blocks,
    .quantize_q8k = ml_avx512vnni_quantize_q8k,
    .matmul_q8k_blocks = ml_avx512vnni_matmul_q8k_blocks,
    .blocks_to_f32 = ml_avx512_blocks_to_f32,
    .matmul_f32_bf16g = ml_avx512_matmul_f32_bf16g,
    .matmul_bf16_bf16g = ml_avx512_matmul_bf16_bf16g,
};

const ml_cpu_kernels ml_cpu_kernels_avx512bf16 = {
    .name = "avx512bf16",
    .bf16_dot_product = 1,
    .matmul_bf16_bf16 = matmul_bf16_bf16_dpbf16,
    ML_CPU_KERNEL_ENTRIES,
    .matmul_f32_blocks = matmul_f32_blocks,
    .quantize_q8 = ml_avx512vnni_quantize_q8,
    .matmul_q8_blocks = ml_avx512vnni_matmul_q8_blocks,
    .quantize_q8k = ml_avx512vnni_quantize_q8k,
    .matmul_q8k_blocks = ml_avx512vnni_matmul_q8k_blocks,
    .blocks_to_f32 = ml_avx512_blocks_to_f32,
    .matmul_f32_bf16g = ml_avx512_matmul_f32_bf16g,
    .matmul_bf16_bf16g = ml_avx512bf16_matmul_bf16_bf16g,
};
