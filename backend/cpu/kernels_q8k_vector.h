/* The K-quants' int8 products of fast mode (kernels.h: quantize_q8k, matmul_q8k_blocks) with
 * 256-bit vectors. Included by kernels_int8_avx2.c and kernels_int8_avx512vnni.c after
 * kernels_int8_vector.h (whose macros and helpers it uses); they also define
 *   Q8K_TILE_TOKENS   tokens per register block of the tile shape below.
 *
 * kernels.h's contract makes a super-block's sums exact integers, so any shape that computes
 * them gives the reference's bits; two shapes, chosen by the number of tokens:
 *  - few tokens (n_tok < Q8K_TILE_MIN_TOKENS; Q8_K always): eight rows stream past as stored
 *    (with the decode look-ahead); per row and sub-block, vpmaddubsw's int16 pair sums times
 *    the sub-block's scale as int16 (Q8_DOT_SCALED: vpdpwssd, or vpmaddwd + add), summed per
 *    lane over the whole super-block, one weight operand serving two tokens; one horizontal
 *    reduction of eight rows per super-block and token (q8_reduce8), where the products of
 *    blocks of 32 need one per 32 weights.
 *  - many tokens: the eight rows' weights of one super-block are unpacked to bytes and
 *    transposed once into a tile whose vector g holds weights 4g..4g+3 of each row (lane k is
 *    row k), so a token needs no horizontal sums at all: Q8_DOT of tile vector g with the
 *    token's four int8 values at 4g broadcast to every lane, eight such per sub-block (the
 *    types with scales per 16: four per 16), then one vpmulld by the eight rows' scales. The tile (2 KiB) stays in L1
 *    while every token of the call passes (Q8K_CHUNK at a time); register blocks of
 *    Q8K_TILE_TOKENS tokens share each tile load.
 *  - with Q8K_TILE16 (AVX-512 VNNI), the tile from Q8K_TILE16_MIN_TOKENS tokens holds sixteen
 *    rows in 512-bit vectors (q8k_tile16_group): one vpdpbusd per 16 rows x 4 weights.
 *  - with Q8K_ROW_STREAM (AVX2), few tokens go one row at a time instead
 *    (q8k_rows_tokens: one memory stream, which Zen 3's prefetchers follow where eight
 *    interleaved ones starve), and with Q8K_TILE_INT16 the tile adds vpmaddubsw's results in
 *    int16 before one vpmaddwd by the scales.
 * Both take Q2_K/Q4_K/Q5_K's mins and Q3_K's - 4 and Q6_K's - 32 from x's sums per 16 (the
 * activation block's) against the rows' mins or scales as int16 pairs, two products per lane (Q8_DOT16). The
 * rows' scales are decoded per row into a vector over the sub-blocks and transposed to
 * vectors over the rows (q8k_factors). Measured choices: docs/BENCHMARKS.md. */
#ifndef ML_BACKEND_CPU_KERNELS_Q8K_VECTOR_H
#define ML_BACKEND_CPU_KERNELS_Q8K_VECTOR_H

#include "backend/cpu/kernels_kquant_scales.h"

/* From this many tokens on, the tile shape (at 2 tokens the stream shape, whose operands serve
 * both, is as fast; at 3 the tile is faster; docs/BENCHMARKS.md). */
#ifndef Q8K_TILE_MIN_TOKENS
#define Q8K_TILE_MIN_TOKENS 3
#endif
/* Q8K_ROW_STREAM, Q8K_TILE_INT16: the AVX2 choices described above (0: off). */
#ifndef Q8K_ROW_STREAM
#define Q8K_ROW_STREAM 0
#endif
#ifndef Q8K_TILE_INT16
#define Q8K_TILE_INT16 0
#endif
/* Q8K_TILE16 (AVX-512 VNNI): from Q8K_TILE16_MIN_TOKENS tokens the tile holds sixteen rows in
 * 512-bit vectors (q8k_tile16_group), register blocks of Q8K_TILE16_TOKENS tokens. */
#ifndef Q8K_TILE16
#define Q8K_TILE16 0
#endif
#ifndef Q8K_TILE16_TOKENS
#define Q8K_TILE16_TOKENS 4
#endif
#ifndef Q8K_TILE16_MIN_TOKENS
#define Q8K_TILE16_MIN_TOKENS 8
#endif
/* Tokens whose float accumulators live on the stack while the super-blocks' tiles pass. */
#ifndef Q8K_CHUNK
#define Q8K_CHUNK 128
#endif

void Q8_PREFIX(quantize_q8k)(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8K_BLOCK;
    for (int b = 0; b < n_blocks; b++) {
        const float *xb = x + b * ML_Q8K_BLOCK;
        uint8_t *block = out + (size_t)b * ML_Q8K_BLOCK_BYTES;
        float inverse, d = q8_scale(xb, ML_Q8K_BLOCK, &inverse);
        int16_t sums[16];
        for (int c = 0; c < 8; c++) {
            __m256i q32[4];
            q8_quantize32(block + 32 * c, xb + 32 * c, inverse, q32);
            sums[2 * c] = (int16_t)q8_hsum(_mm256_add_epi32(q32[0], q32[1]));
            sums[2 * c + 1] = (int16_t)q8_hsum(_mm256_add_epi32(q32[2], q32[3]));
        }
        memcpy(block + 256, &d, sizeof d);
        memcpy(block + 260, sums, sizeof sums);
    }
}

static inline int32_t q8k_load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Sub-block j (0..7, 32 weights) of a K-quant super-block as the unsigned operand (the
 * integers of kernels_int8.c's kquant_sums: Q2_K/Q4_K/Q5_K's q, Q3_K's and Q6_K's q before the
 * - 4 or - 32; Q8_K by q8_signed_operand). */
static inline __m256i q8k_weight_operand(ml_dtype w_dtype, const uint8_t *sb, int j, __m256i *signs) {
    const __m256i low4 = _mm256_set1_epi8(15);
    *signs = _mm256_setzero_si256();
    if (w_dtype == ML_DTYPE_Q4_K || w_dtype == ML_DTYPE_Q5_K) {
        const uint8_t *qs = sb + (w_dtype == ML_DTYPE_Q5_K ? 48 : 16) + 32 * (j / 2);
        __m256i q = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)qs), 4 * (j % 2)), low4);
        if (w_dtype == ML_DTYPE_Q5_K) {
            __m256i qh = _mm256_loadu_si256((const __m256i *)(sb + 16));
            /* bit j of each byte to bit 4: shift the 16-bit lanes, mask per byte */
            __m256i high = j <= 4 ? _mm256_slli_epi16(qh, 4 - j) : _mm256_srli_epi16(qh, j - 4);
            q = _mm256_or_si256(q, _mm256_and_si256(high, _mm256_set1_epi8(16)));
        }
        return q;
    }
    if (w_dtype == ML_DTYPE_Q2_K || w_dtype == ML_DTYPE_Q3_K) {
        /* bits 2 (j % 4), +1 of qs[32 * (j / 4) + i]; Q3_K's bit j of hmask[i] to bit 2 */
        const uint8_t *qs = sb + (w_dtype == ML_DTYPE_Q3_K ? 32 : 16) + 32 * (j / 4);
        __m256i q = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)qs), 2 * (j % 4)),
                                     _mm256_set1_epi8(3));
        if (w_dtype == ML_DTYPE_Q3_K) {
            __m256i hmask = _mm256_loadu_si256((const __m256i *)sb);
            __m256i high = j <= 2 ? _mm256_slli_epi16(hmask, 2 - j) : _mm256_srli_epi16(hmask, j - 2);
            q = _mm256_or_si256(q, _mm256_and_si256(high, _mm256_set1_epi8(4)));
        }
        return q;
    }
    if (w_dtype == ML_DTYPE_Q6_K) {
        int g = j / 4, h = j % 4;
        __m256i ql = _mm256_loadu_si256((const __m256i *)(sb + 64 * g + 32 * (h % 2)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(sb + 128 + 32 * g));
        __m256i low = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (h / 2)), low4);
        /* bits 2h, 2h + 1 of qh to bits 4, 5 */
        __m256i high = 2 * h <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * h) : _mm256_srli_epi16(qh, 2 * h - 4);
        return _mm256_or_si256(low, _mm256_and_si256(high, _mm256_set1_epi8(0x30)));
    }
    return q8_signed_operand(_mm256_loadu_si256((const __m256i *)(sb + 4 + 32 * j)), signs); /* Q8_K */
}

/* The integer factors of eight rows' super-blocks, as vectors over the rows (lane k row k):
 *   scale[i]: Q4_K/Q5_K's sc_i (i < 8), the per-16 types' sc_i (i < 16);
 *   pairs[j]: int16 pairs against x's sums 2j and 2j + 1: Q4_K/Q5_K (m_j, m_j), Q2_K
 *   (m_2j, m_2j+1), Q3_K/Q6_K (sc_2j, sc_2j+1);
 * and, one row at a time, what the stream shape broadcasts: Q4_K/Q5_K's scale_pair_of[k][j]
 * = (sc_j, sc_j) as int16 pairs, the per-16 types' scales16[k] (the 16 scales as int16) and
 * scales8[k] (as int8). Decoded per row into a vector over the sub-blocks, then transposed
 * (q8_transpose8). */
typedef struct {
    __m256i scale[16];
#if Q8K_TILE_INT16
    __m256i scale16[16]; /* scale[i] as int16 pairs (sc_i, sc_i) */
#endif
    __m256i pairs[8];
    uint32_t scale_pair_of[Q8_ROWS][8];
    __m256i scales16[Q8_ROWS];
    int8_t scales8[Q8_ROWS][16];
} q8k_row_factors;

static inline void q8k_factors(ml_dtype w_dtype, const uint8_t *const sb[Q8_ROWS], q8k_row_factors *f) {
    if (ml_q8k_per16(w_dtype)) {
        __m256i mins16[Q8_ROWS], scale_pairs[8];
        for (int k = 0; k < Q8_ROWS; k++) {
            __m128i mins, scales = ml_kq_scales16(w_dtype, sb[k], &mins);
            _mm_storeu_si128((__m128i *)f->scales8[k], scales);
            f->scales16[k] = _mm256_cvtepi8_epi16(scales);
            mins16[k] = _mm256_cvtepu8_epi16(mins);
        }
        q8_transpose8(f->scales16, scale_pairs); /* dword j of a row's scales16 is (sc_2j, sc_2j+1) */
        for (int j = 0; j < 8; j++) {
            f->scale[2 * j] = _mm256_srai_epi32(_mm256_slli_epi32(scale_pairs[j], 16), 16);
            f->scale[2 * j + 1] = _mm256_srai_epi32(scale_pairs[j], 16);
        }
        if (ml_q8k_with_min(w_dtype))
            q8_transpose8(mins16, f->pairs);
        else
            for (int j = 0; j < 8; j++) f->pairs[j] = scale_pairs[j];
#if Q8K_TILE_INT16
        for (int i = 0; i < 16; i++)
            f->scale16[i] = _mm256_or_si256(_mm256_and_si256(f->scale[i], _mm256_set1_epi32(0xffff)),
                                            _mm256_slli_epi32(f->scale[i], 16));
#endif
        return;
    }
    __m256i row_scales[Q8_ROWS], row_mins[Q8_ROWS];
    for (int k = 0; k < Q8_ROWS; k++) {
        uint32_t scales[2], mins[2]; /* ml_k4_scale_min for the eight sub-blocks at once */
        ml_kq_scale_min8(sb[k], scales, mins);
        row_scales[k] = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)scales[1], (int)scales[0]));
        row_mins[k] = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)mins[1], (int)mins[0]));
        _mm256_storeu_si256((__m256i *)f->scale_pair_of[k],
                            _mm256_or_si256(row_scales[k], _mm256_slli_epi32(row_scales[k], 16)));
    }
    q8_transpose8(row_scales, f->scale);
    q8_transpose8(row_mins, f->pairs);
    for (int j = 0; j < 8; j++) f->pairs[j] = _mm256_or_si256(f->pairs[j], _mm256_slli_epi32(f->pairs[j], 16));
#if Q8K_TILE_INT16
    for (int j = 0; j < 8; j++) f->scale16[j] = _mm256_or_si256(f->scale[j], _mm256_slli_epi32(f->scale[j], 16));
#endif
}

/* d (and Q2_K/Q4_K/Q5_K's dmin) of eight rows' super-blocks as floats. */
static inline __m256 q8k_row_d(ml_dtype w_dtype, const uint8_t *const sb[Q8_ROWS], __m256 *dmin) {
    *dmin = _mm256_setzero_ps();
    if (w_dtype == ML_DTYPE_Q8_K) {
        float d[Q8_ROWS];
        for (int k = 0; k < Q8_ROWS; k++) memcpy(&d[k], sb[k], sizeof(float));
        return _mm256_loadu_ps(d);
    }
    size_t at = ml_kq_d_offset(w_dtype);
    if (ml_q8k_with_min(w_dtype)) *dmin = q8_block_halves(sb, at + 2); /* dmin right after d */
    return q8_block_halves(sb, at);
}

/* The float chain of kernels.h for one super-block: acc = fma(isum, d * d_x, acc) and, with
 * mins, acc = fma(msum, -(dmin * d_x), acc), lane by lane. */
static inline __m256 q8k_accumulate(int with_min, __m256 acc, __m256i isum, __m256i msum, __m256 d_w, __m256 dmin_w,
                                    float d_x) {
    __m256 dx = _mm256_set1_ps(d_x);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d_w, dx), acc);
    if (with_min) acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dmin_w, dx), acc);
    return acc;
}

/* ---- few tokens: the rows as stored ------------------------------------------------------- */

/* A per-16 type's scales of sub-block j as int16 lanes against Q8_DOT_SCALED's pair sums:
 * lanes 0-7 (values 0-15) scale 2j, lanes 8-15 scale 2j + 1; scales16 and sc hold the row's 16
 * scales as int16 and int8. */
static inline __m256i q8k_per16_scale16(__m256i scales16, const int8_t *sc, int j) {
#if Q8_HAS_PERMW
    (void)sc;
    const __m256i index = _mm256_setr_epi16((short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j),
                                            (short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j),
                                            (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1),
                                            (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1),
                                            (short)(2 * j + 1), (short)(2 * j + 1));
    return _mm256_permutexvar_epi16(index, scales16);
#else
    (void)scales16;
    return _mm256_setr_m128i(_mm_set1_epi16(sc[2 * j]), _mm_set1_epi16(sc[2 * j + 1]));
#endif
}

/* Eight rows (row[k]) x TB (1 or 2) tokens: per row and sub-block, the products in int16
 * pairs (vpmaddubsw; no saturation: q <= 63) times the sub-block's scale as int16
 * (Q8_DOT_SCALED), summed per lane over the super-block; each weight operand serves the TB
 * tokens. */
static inline void q8k_stream_tokens(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                     const uint8_t *const row[Q8_ROWS], int n_in, size_t lookahead, const int TB) {
    int n_super = n_in / ML_Q8K_BLOCK;
    size_t super_bytes = ml_dtype_block_bytes(w_dtype);
    int k4 = w_dtype == ML_DTYPE_Q4_K || w_dtype == ML_DTYPE_Q5_K, q6 = ml_q8k_per16(w_dtype);
    int with_min = ml_q8k_with_min(w_dtype), shift = ml_q8k_offset_shift(w_dtype);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int s = 0; s < n_super; s++) {
        const uint8_t *sb[Q8_ROWS];
        for (int k = 0; k < Q8_ROWS; k++) {
            sb[k] = row[k] + (size_t)s * super_bytes;
            if (lookahead)
                for (size_t line = 0; line < super_bytes; line += 64)
                    _mm_prefetch((const char *)sb[k] + lookahead + line, _MM_HINT_T0);
        }
        q8k_row_factors f;
        if (k4 || q6) q8k_factors(w_dtype, sb, &f);
        __m256 dmin_w, d_w = q8k_row_d(w_dtype, sb, &dmin_w);
        const uint8_t *x_block[2];
        __m256i lanes[2][Q8_ROWS];
        for (int tb = 0; tb < TB; tb++) {
            x_block[tb] = x + (size_t)tb * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
            for (int k = 0; k < Q8_ROWS; k++) lanes[tb][k] = _mm256_setzero_si256();
        }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (int j = 0; j < 8; j++) { /* unrolled: the shifts and offsets become constants */
            __m256i xq[2];
            for (int tb = 0; tb < TB; tb++) xq[tb] = _mm256_loadu_si256((const __m256i *)(x_block[tb] + 32 * j));
            for (int k = 0; k < Q8_ROWS; k++) {
                __m256i sign, wq = q8k_weight_operand(w_dtype, sb[k], j, &sign);
                __m256i scale16 = k4   ? _mm256_set1_epi32((int)f.scale_pair_of[k][j])
                                  : q6 ? q8k_per16_scale16(f.scales16[k], f.scales8[k], j)
                                       : _mm256_setzero_si256();
                for (int tb = 0; tb < TB; tb++) {
                    if (k4 || q6)
                        lanes[tb][k] = Q8_DOT_SCALED(lanes[tb][k], wq, xq[tb], scale16);
                    else /* Q8_K: unscaled */
                        lanes[tb][k] =
                            Q8_DOT(lanes[tb][k], wq, Q8_OFFSET_SIGNED ? xq[tb] : _mm256_sign_epi8(xq[tb], sign));
                }
            }
        }
        for (int tb = 0; tb < TB; tb++) {
            __m256i isum = q8_reduce8(lanes[tb]), msum = _mm256_setzero_si256();
            if (k4 || q6)
                for (int j = 0; j < 8; j++)
                    msum = Q8_DOT16(msum, f.pairs[j], _mm256_set1_epi32(q8k_load32(x_block[tb] + 260 + 4 * j)));
            if (shift) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(msum, shift));
            if (!k4 && !q6 && Q8_OFFSET_SIGNED) {
                int16_t bsum[16];
                memcpy(bsum, x_block[tb] + 260, sizeof bsum);
                int32_t sum_x = 0;
                for (int i = 0; i < 16; i++) sum_x += bsum[i];
                isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(128 * sum_x));
            }
            float d_x;
            memcpy(&d_x, x_block[tb] + 256, sizeof d_x);
            acc[tb] = q8k_accumulate(with_min, acc[tb], isum, msum, d_w, dmin_w, d_x);
        }
    }
    q8_store_rows(y, ldy, acc, TB, rows);
}

/* ---- few tokens, AVX2 (Q8K_ROW_STREAM): one row at a time ----------------------------------- */
#if Q8K_ROW_STREAM
/* Super-blocks per pass of a group's rows: each row streams this many super-blocks
 * contiguously (one memory stream at a time, which the hardware prefetcher follows; eight
 * interleaved row streams it did not, on Zen 3), leaving its integer sums in a table. */
#ifndef Q8K_ROW_PASS
#define Q8K_ROW_PASS 64
#endif
/* Bytes prefetched ahead of each super-block of the row being read (0: none). */
#ifndef Q8K_ROW_PREFETCH
#define Q8K_ROW_PREFETCH 0
#endif
/* Tokens per pass of a row (each weight operand serves them all). */
#ifndef Q8K_ROW_TOKENS
#define Q8K_ROW_TOKENS 4
#endif

/* The int16 scale of sub-block j (Q4_K/Q5_K: in every lane; the per-16 types: 2j in lanes 0-7,
 * 2j + 1 in lanes 8-15) from the row's scales as int16 (Q4_K/Q5_K: sc_0..7 in both halves;
 * per 16: low = sc_0..7 in both halves, high = sc_8..15 in both halves). One vpshufb. */
static inline __m256i q8k_row_scale(int q6, __m256i low, __m256i high, int j) {
    char a, b;
    if (q6) {
        a = (char)(2 * ((2 * j) % 8));
        b = (char)(2 * ((2 * j + 1) % 8));
    } else {
        a = b = (char)(2 * j);
    }
    const __m256i index = _mm256_setr_epi8(a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a,
                                           (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), b,
                                           (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b,
                                           (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1));
    return _mm256_shuffle_epi8(q6 && j >= 4 ? high : low, index);
}

/* One row's super-block sb against TB tokens' activation blocks xb[tb]: lanes[tb] (8 int32
 * lanes) sums to isum (Q3_K's and Q6_K's offset, - 4 or - 32 times sum_i sc_i * bsum_i,
 * included), mlanes[tb] to Q2_K/Q4_K/Q5_K's msum; exact integers (kernels.h). */
static inline __attribute__((always_inline)) void q8k_row_super(ml_dtype w_dtype, const uint8_t *sb,
                                                                const uint8_t *const xb[], __m256i lanes[],
                                                                __m256i mlanes[], const int TB) {
    int q6 = ml_q8k_per16(w_dtype), shift = ml_q8k_offset_shift(w_dtype);
    __m256i low, high;
    if (q6) {
        __m128i mins, scales = ml_kq_scales16(w_dtype, sb, &mins);
        __m256i sc16 = _mm256_cvtepi8_epi16(scales), mins16 = _mm256_cvtepu8_epi16(mins);
        low = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        high = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        for (int tb = 0; tb < TB; tb++) {
            __m256i bsums = _mm256_loadu_si256((const __m256i *)(xb[tb] + 260));
            lanes[tb] = _mm256_setzero_si256();
            if (shift)
                lanes[tb] = _mm256_sub_epi32(lanes[tb], _mm256_slli_epi32(_mm256_madd_epi16(sc16, bsums), shift));
            else
                mlanes[tb] = _mm256_madd_epi16(mins16, bsums);
        }
    } else {
        uint32_t sc[2], m[2]; /* ml_k4_scale_min for the eight sub-blocks at once */
        ml_kq_scale_min8(sb, sc, m);
        uint64_t scales = (uint64_t)sc[0] | (uint64_t)sc[1] << 32, mins = (uint64_t)m[0] | (uint64_t)m[1] << 32;
        low = high = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales)));
        /* (m_0, m_0, m_1, m_1, ...) against the 16 sums of x */
        const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)mins), pairs));
        for (int tb = 0; tb < TB; tb++) {
            mlanes[tb] = _mm256_madd_epi16(mins16, _mm256_loadu_si256((const __m256i *)(xb[tb] + 260)));
            lanes[tb] = _mm256_setzero_si256();
        }
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
    for (int j = 0; j < 8; j++) {
        __m256i sign, wq = q8k_weight_operand(w_dtype, sb, j, &sign);
        __m256i scale = q8k_row_scale(q6, low, high, j);
        for (int tb = 0; tb < TB; tb++) {
            __m256i xq = _mm256_loadu_si256((const __m256i *)(xb[tb] + 32 * j));
            lanes[tb] = Q8_DOT_SCALED(lanes[tb], wq, xq, scale);
        }
    }
}

/* Eight rows x TB (1 to Q8K_ROW_TOKENS) tokens: per pass of Q8K_ROW_PASS super-blocks, each
 * row in turn (q8k_row_super), its lane sums reduced eight super-blocks at a time (q8_reduce8:
 * a vector over super-blocks), transposed to vectors over rows (q8_transpose8), then
 * kernels.h's float chain per super-block in order, lane by lane as the other shapes do. */
static inline __attribute__((always_inline)) void q8k_rows_tokens(ml_dtype w_dtype, float *y, size_t ldy, int rows,
                                                                  const uint8_t *x, size_t ldx,
                                                                  const uint8_t *const row[Q8_ROWS], int n_in,
                                                                  const int TB) {
    int n_super = n_in / ML_Q8K_BLOCK;
    size_t super_bytes = ml_dtype_block_bytes(w_dtype);
    int k4 = ml_q8k_with_min(w_dtype);
    __m256 acc[Q8K_ROW_TOKENS];
    __m256i isum[Q8K_ROW_TOKENS][Q8_ROWS][Q8K_ROW_PASS / 8], msum[Q8K_ROW_TOKENS][Q8_ROWS][Q8K_ROW_PASS / 8];
    for (int tb = 0; tb < TB; tb++) acc[tb] = _mm256_setzero_ps();
    for (int s0 = 0; s0 < n_super; s0 += Q8K_ROW_PASS) {
        int ns = n_super - s0 < Q8K_ROW_PASS ? n_super - s0 : Q8K_ROW_PASS;
        for (int k = 0; k < Q8_ROWS; k++) {
            for (int c = 0; c * 8 < ns; c++) {
                __m256i lanes[Q8K_ROW_TOKENS][8], mlanes[Q8K_ROW_TOKENS][8];
                for (int i = 0; i < 8; i++) {
                    int s = s0 + 8 * c + i;
                    if (s >= s0 + ns) { /* a pass's last vector, partly used */
                        for (int tb = 0; tb < TB; tb++) lanes[tb][i] = mlanes[tb][i] = _mm256_setzero_si256();
                        continue;
                    }
                    const uint8_t *xb[Q8K_ROW_TOKENS];
                    __m256i l[Q8K_ROW_TOKENS], m[Q8K_ROW_TOKENS];
                    for (int tb = 0; tb < TB; tb++) xb[tb] = x + (size_t)tb * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                    if (Q8K_ROW_PREFETCH)
                        for (size_t line = 0; line < super_bytes; line += 64)
                            _mm_prefetch((const char *)row[k] + (size_t)s * super_bytes + Q8K_ROW_PREFETCH + line,
                                         _MM_HINT_T0);
                    q8k_row_super(w_dtype, row[k] + (size_t)s * super_bytes, xb, l, m, TB);
                    for (int tb = 0; tb < TB; tb++) {
                        lanes[tb][i] = l[tb];
                        if (k4) mlanes[tb][i] = m[tb];
                    }
                }
                for (int tb = 0; tb < TB; tb++) {
                    isum[tb][k][c] = q8_reduce8(lanes[tb]);
                    if (k4) msum[tb][k][c] = q8_reduce8(mlanes[tb]);
                }
            }
        }
        for (int c = 0; c * 8 < ns; c++) {
            __m256i is[Q8K_ROW_TOKENS][8], ms[Q8K_ROW_TOKENS][8];
            for (int tb = 0; tb < TB; tb++) {
                __m256i v[Q8_ROWS];
                for (int k = 0; k < Q8_ROWS; k++) v[k] = isum[tb][k][c];
                q8_transpose8(v, is[tb]);
                if (k4) {
                    for (int k = 0; k < Q8_ROWS; k++) v[k] = msum[tb][k][c];
                    q8_transpose8(v, ms[tb]);
                }
            }
            for (int i = 0; i < 8 && 8 * c + i < ns; i++) {
                int s = s0 + 8 * c + i;
                const uint8_t *sb[Q8_ROWS];
                for (int k = 0; k < Q8_ROWS; k++) sb[k] = row[k] + (size_t)s * super_bytes;
                __m256 dmin_w, d_w = q8k_row_d(w_dtype, sb, &dmin_w);
                for (int tb = 0; tb < TB; tb++) {
                    float d_x;
                    memcpy(&d_x, x + (size_t)tb * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES + 256, sizeof d_x);
                    acc[tb] = q8k_accumulate(k4, acc[tb], is[tb][i], k4 ? ms[tb][i] : _mm256_setzero_si256(), d_w,
                                             dmin_w, d_x);
                }
            }
        }
    }
    q8_store_rows(y, ldy, acc, TB, rows);
}
#endif

/* Eight rows x n_tok tokens, two at a time (the rows stay in L1 for the next pair). */
static inline void q8k_stream_group(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                    const uint8_t *const row[Q8_ROWS], int n_in, int n_tok, size_t lookahead) {
    int t = 0;
#if Q8K_ROW_STREAM
    if (w_dtype != ML_DTYPE_Q8_K) {
        for (; t + Q8K_ROW_TOKENS <= n_tok; t += Q8K_ROW_TOKENS)
            q8k_rows_tokens(w_dtype, y + (size_t)t * ldy, ldy, rows, x + (size_t)t * ldx, ldx, row, n_in,
                            Q8K_ROW_TOKENS);
        const uint8_t *xt = x + (size_t)t * ldx;
        float *yt = y + (size_t)t * ldy;
        switch (n_tok - t) {
        case 3: q8k_rows_tokens(w_dtype, yt, ldy, rows, xt, ldx, row, n_in, 3); break;
        case 2: q8k_rows_tokens(w_dtype, yt, ldy, rows, xt, ldx, row, n_in, 2); break;
        case 1: q8k_rows_tokens(w_dtype, yt, ldy, rows, xt, ldx, row, n_in, 1); break;
        default: break;
        }
        return;
    }
#endif
    for (; t + 2 <= n_tok; t += 2)
        q8k_stream_tokens(w_dtype, y + (size_t)t * ldy, ldy, rows, x + (size_t)t * ldx, ldx, row, n_in, lookahead, 2);
    if (t < n_tok)
        q8k_stream_tokens(w_dtype, y + (size_t)t * ldy, ldy, rows, x + (size_t)t * ldx, ldx, row, n_in, lookahead, 1);
}

/* ---- many tokens: a transposed tile ------------------------------------------------------ */

/* TB tokens (x_block[tb]: their activation blocks of this super-block) against the tile: the
 * float accumulators acc[tb] take the super-block's two (or one) FMAs. Q4_K/Q5_K: eight Q8_DOT
 * per sub-block, then the sub-block's scales; the per-16 types: four per half, then the
 * half's scales. */
static inline void q8k_tile_tokens(ml_dtype w_dtype, __m256 *acc, const uint8_t *const x_block[], const __m256i tile[64],
                                   const q8k_row_factors *f, __m256 d_w, __m256 dmin_w, const int TB) {
    int q6 = ml_q8k_per16(w_dtype), shift = ml_q8k_offset_shift(w_dtype);
    __m256i isum[Q8K_TILE_TOKENS], msum[Q8K_TILE_TOKENS];
    for (int tb = 0; tb < TB; tb++) isum[tb] = msum[tb] = _mm256_setzero_si256();
#if Q8K_TILE_INT16
    /* vpmaddubsw's int16 pair sums added in int16 over `span` groups (|q * x| <= q_max * 127:
     * Q4_K 8 x 2 x 15 x 127, Q5_K 4 x 2 x 31 x 127, Q6_K 2 x 2 x 63 x 127, Q2_K and Q3_K at
     * most 4 x 2 x 7 x 127, all below 2^15), then one vpmaddwd by the rows' scale as int16
     * pairs: exact, and the same integers */
    int span = w_dtype == ML_DTYPE_Q4_K ? 8 : w_dtype == ML_DTYPE_Q6_K ? 2 : 4;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 2 /* 16 (all): the scheduler interleaves the parts and spills (Zen 3 -20-35%) */
#endif
    for (int part = 0; part < 16; part += q6 ? 1 : 2) {
        int groups = q6 ? 4 : 8;
        __m256i scale16 = f->scale16[q6 ? part : part / 2];
        for (int g0 = 0; g0 < groups; g0 += span) {
            __m256i sum[Q8K_TILE_TOKENS];
            for (int tb = 0; tb < TB; tb++) sum[tb] = _mm256_setzero_si256();
            for (int g = g0; g < g0 + span; g++) {
                __m256i w = _mm256_load_si256(&tile[4 * part + g]);
                for (int tb = 0; tb < TB; tb++) {
                    __m256i x4 = _mm256_set1_epi32(q8k_load32(x_block[tb] + 16 * part + 4 * g));
                    sum[tb] = _mm256_add_epi16(sum[tb], _mm256_maddubs_epi16(w, x4));
                }
            }
            for (int tb = 0; tb < TB; tb++) isum[tb] = _mm256_add_epi32(isum[tb], _mm256_madd_epi16(sum[tb], scale16));
        }
    }
#else
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
    for (int part = 0; part < 16; part += q6 ? 1 : 2) { /* sub-blocks of 16 (per-16 types) or 32 values */
        int groups = q6 ? 4 : 8;
        __m256i sum[Q8K_TILE_TOKENS];
        for (int tb = 0; tb < TB; tb++) sum[tb] = _mm256_setzero_si256();
        for (int g = 0; g < groups; g++) {
            __m256i w = _mm256_load_si256(&tile[4 * part + g]);
            for (int tb = 0; tb < TB; tb++)
                sum[tb] = Q8_DOT_BROADCAST(sum[tb], w, x_block[tb] + 16 * part + 4 * g);
        }
        __m256i scale = f->scale[q6 ? part : part / 2];
        for (int tb = 0; tb < TB; tb++) isum[tb] = _mm256_add_epi32(isum[tb], _mm256_mullo_epi32(sum[tb], scale));
    }
#endif
    for (int tb = 0; tb < TB; tb++) {
        for (int j = 0; j < 8; j++)
            msum[tb] = Q8_DOT16(msum[tb], f->pairs[j], _mm256_set1_epi32(q8k_load32(x_block[tb] + 260 + 4 * j)));
        if (shift) isum[tb] = _mm256_sub_epi32(isum[tb], _mm256_slli_epi32(msum[tb], shift));
        float d_x;
        memcpy(&d_x, x_block[tb] + 256, sizeof d_x);
        acc[tb] = q8k_accumulate(ml_q8k_with_min(w_dtype), acc[tb], isum[tb], msum[tb], d_w, dmin_w, d_x);
    }
}

/* Eight rows x n_tok tokens (every K-quant but Q8_K), Q8K_CHUNK tokens at a time: per super-block,
 * the tile and the rows' factors once, then every token of the chunk. */
static inline void q8k_tile_group(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                  const uint8_t *const row[Q8_ROWS], int n_in, int n_tok) {
    int n_super = n_in / ML_Q8K_BLOCK;
    size_t super_bytes = ml_dtype_block_bytes(w_dtype);
    __m256i tile[64];
    __m256 acc[Q8K_CHUNK];
    q8k_row_factors f;
    for (int t0 = 0; t0 < n_tok; t0 += Q8K_CHUNK) {
        int nt = n_tok - t0 < Q8K_CHUNK ? n_tok - t0 : Q8K_CHUNK;
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
        for (int s = 0; s < n_super; s++) {
            const uint8_t *sb[Q8_ROWS];
            for (int k = 0; k < Q8_ROWS; k++) sb[k] = row[k] + (size_t)s * super_bytes;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
            for (int j = 0; j < 8; j++) {
                __m256i v[Q8_ROWS], sign;
                for (int k = 0; k < Q8_ROWS; k++) v[k] = q8k_weight_operand(w_dtype, sb[k], j, &sign);
                q8_transpose8(v, tile + 8 * j);
            }
            q8k_factors(w_dtype, sb, &f);
            __m256 dmin_w, d_w = q8k_row_d(w_dtype, sb, &dmin_w);
            const uint8_t *x_block[Q8K_TILE_TOKENS];
            int t = 0;
            for (; t + Q8K_TILE_TOKENS <= nt; t += Q8K_TILE_TOKENS) {
                for (int tb = 0; tb < Q8K_TILE_TOKENS; tb++)
                    x_block[tb] = x + (size_t)(t0 + t + tb) * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                q8k_tile_tokens(w_dtype, acc + t, x_block, tile, &f, d_w, dmin_w, Q8K_TILE_TOKENS);
            }
            for (; t < nt; t++) {
                x_block[0] = x + (size_t)(t0 + t) * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                q8k_tile_tokens(w_dtype, acc + t, x_block, tile, &f, d_w, dmin_w, 1);
            }
        }
        q8_store_rows(y + (size_t)t0 * ldy, ldy, acc, nt, rows);
    }
}

/* ---- many tokens, 512-bit (Q8K_TILE16: AVX-512 VNNI): sixteen rows per tile ----------------- */
#if Q8K_TILE16
/* The tile of q8k_tile_group for sixteen rows: tile vector g holds weights 4g..4g+3 of rows
 * 0-15 (lane k row k), so one vpdpbusd on 512-bit vectors, the token's four int8 values
 * broadcast by the instruction ({1to16}), does sixteen rows' products; the integers, and the
 * float chain lane by lane, are q8k_tile_group's. Rows 0-7 and 8-15 are built as two 8-row
 * tiles (q8k_weight_operand, q8_transpose8, q8k_factors) and joined. */
#define Q8K_ROWS16 16

/* acc plus the int16 pair products of *pairs (loaded here: GCC otherwise keeps all eight of a
 * super-block in registers across the tokens and spills the sums) and the pair at p. */
static inline __m512i q8k_dot16_broadcast16(__m512i acc, const __m512i *pairs, const void *p) {
    __m512i loaded;
    __asm__("vmovdqa64 %2, %1\n\tvpdpwssd %3%{1to16%}, %1, %0"
            : "+v"(acc), "=&v"(loaded)
            : "m"(*pairs), "m"(*(const int32_t *)p));
    return acc;
}

typedef struct {
    __m512i scale[16]; /* q8k_row_factors' scale and pairs, for rows 0-15 */
    __m512i pairs[8];
} q8k_factors16;

/* TB tokens against the sixteen-row tile: q8k_tile_tokens with 512-bit vectors. */
static inline __attribute__((always_inline)) void q8k_tile16_tokens(ml_dtype w_dtype, __m512 *acc,
                                                                    const uint8_t *const x_block[],
                                                                    const __m512i tile[64], const q8k_factors16 *f,
                                                                    __m512 d_w, __m512 dmin_w, const int TB) {
    int q6 = ml_q8k_per16(w_dtype), shift = ml_q8k_offset_shift(w_dtype);
    __m512i isum[Q8K_TILE16_TOKENS], msum[Q8K_TILE16_TOKENS];
    for (int tb = 0; tb < TB; tb++) isum[tb] = msum[tb] = _mm512_setzero_si512();
    /* two sub-blocks at a time, their sums interleaved: 2 TB chains of vpdpbusd (latency 5-6
     * cycles, two per cycle: TB = 4 chains alone left half the issue slots empty) */
    int step = q6 ? 1 : 2, groups = q6 ? 4 : 8;
    for (int part = 0; part < 16; part += 2 * step) { /* sub-blocks of 16 (per-16 types) or 32 values */
        __m512i sum_a[Q8K_TILE16_TOKENS], sum_b[Q8K_TILE16_TOKENS];
        for (int tb = 0; tb < TB; tb++) sum_a[tb] = sum_b[tb] = _mm512_setzero_si512();
        for (int g = 0; g < groups; g++) {
            __m512i w_a = _mm512_load_si512(&tile[4 * part + g]), w_b = _mm512_load_si512(&tile[4 * (part + step) + g]);
            for (int tb = 0; tb < TB; tb++) {
                sum_a[tb] = q8_dot_broadcast16(sum_a[tb], w_a, x_block[tb] + 16 * part + 4 * g);
                sum_b[tb] = q8_dot_broadcast16(sum_b[tb], w_b, x_block[tb] + 16 * (part + step) + 4 * g);
            }
        }
        __m512i scale_a = f->scale[q6 ? part : part / 2], scale_b = f->scale[q6 ? part + 1 : part / 2 + 1];
        for (int tb = 0; tb < TB; tb++) {
            isum[tb] = _mm512_add_epi32(isum[tb], _mm512_mullo_epi32(sum_a[tb], scale_a));
            isum[tb] = _mm512_add_epi32(isum[tb], _mm512_mullo_epi32(sum_b[tb], scale_b));
            __asm__("" : "+v"(isum[tb])); /* in a register: GCC kept them on the stack */
        }
    }
    for (int tb = 0; tb < TB; tb++) {
        for (int j = 0; j < 8; j++)
            msum[tb] = q8k_dot16_broadcast16(msum[tb], &f->pairs[j], x_block[tb] + 260 + 4 * j);
        if (shift) isum[tb] = _mm512_sub_epi32(isum[tb], _mm512_slli_epi32(msum[tb], (unsigned)shift));
        float d_x;
        memcpy(&d_x, x_block[tb] + 256, sizeof d_x);
        __m512 dx = _mm512_set1_ps(d_x);
        acc[tb] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[tb]), _mm512_mul_ps(d_w, dx), acc[tb]);
        if (ml_q8k_with_min(w_dtype)) acc[tb] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[tb]), _mm512_mul_ps(dmin_w, dx), acc[tb]);
    }
}

/* Sixteen rows (row[k]; rows past `rows` repeat the last) x n_tok tokens, as q8k_tile_group. */
static inline void q8k_tile16_group(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                    const uint8_t *const row[Q8K_ROWS16], int n_in, int n_tok) {
    int n_super = n_in / ML_Q8K_BLOCK;
    size_t super_bytes = ml_dtype_block_bytes(w_dtype);
    __m512i tile[64];
    __m512 acc[Q8K_CHUNK];
    q8k_factors16 f;
    for (int t0 = 0; t0 < n_tok; t0 += Q8K_CHUNK) {
        int nt = n_tok - t0 < Q8K_CHUNK ? n_tok - t0 : Q8K_CHUNK;
        for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
        for (int s = 0; s < n_super; s++) {
            const uint8_t *sb[Q8K_ROWS16];
            for (int k = 0; k < Q8K_ROWS16; k++) sb[k] = row[k] + (size_t)s * super_bytes;
            for (int j = 0; j < 8; j++) {
                __m256i v[Q8_ROWS], low[8], high[8], sign;
                for (int k = 0; k < Q8_ROWS; k++) v[k] = q8k_weight_operand(w_dtype, sb[k], j, &sign);
                q8_transpose8(v, low);
                for (int k = 0; k < Q8_ROWS; k++) v[k] = q8k_weight_operand(w_dtype, sb[Q8_ROWS + k], j, &sign);
                q8_transpose8(v, high);
                for (int g = 0; g < 8; g++) tile[8 * j + g] = q8_join(low[g], high[g]);
            }
            q8k_row_factors half[2];
            q8k_factors(w_dtype, sb, &half[0]);
            q8k_factors(w_dtype, sb + Q8_ROWS, &half[1]);
            for (int i = 0; i < 16; i++) f.scale[i] = q8_join(half[0].scale[i], half[1].scale[i]);
            for (int j = 0; j < 8; j++) f.pairs[j] = q8_join(half[0].pairs[j], half[1].pairs[j]);
            __m256 dmin_low, dmin_high, d_low = q8k_row_d(w_dtype, sb, &dmin_low);
            __m256 d_high = q8k_row_d(w_dtype, sb + Q8_ROWS, &dmin_high);
            __m512 d_w = q8_join_ps(d_low, d_high);
            __m512 dmin_w = q8_join_ps(dmin_low, dmin_high);
            const uint8_t *x_block[Q8K_TILE16_TOKENS];
            int t = 0;
            for (; t + Q8K_TILE16_TOKENS <= nt; t += Q8K_TILE16_TOKENS) {
                for (int tb = 0; tb < Q8K_TILE16_TOKENS; tb++)
                    x_block[tb] = x + (size_t)(t0 + t + tb) * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                q8k_tile16_tokens(w_dtype, acc + t, x_block, tile, &f, d_w, dmin_w, Q8K_TILE16_TOKENS);
            }
            for (; t < nt; t++) {
                x_block[0] = x + (size_t)(t0 + t) * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                q8k_tile16_tokens(w_dtype, acc + t, x_block, tile, &f, d_w, dmin_w, 1);
            }
        }
        for (int t = 0; t < nt; t++) {
            float lanes[Q8K_ROWS16];
            _mm512_storeu_ps(lanes, acc[t]);
            memcpy(y + (size_t)(t0 + t) * ldy, lanes, (size_t)rows * sizeof(float));
        }
    }
}
#endif

void Q8_PREFIX(matmul_q8k_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                  const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8k_supports(w_dtype) || n_in <= 0) return;
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in);
    size_t lookahead = q8_lookahead(n_tok);
    int tile = n_tok >= Q8K_TILE_MIN_TOKENS && w_dtype != ML_DTYPE_Q8_K;
#if Q8K_TILE16
    if (tile && n_tok >= Q8K_TILE16_MIN_TOKENS) {
        for (int r = row_begin; r < row_end; r += Q8K_ROWS16) {
            int rows = row_end - r < Q8K_ROWS16 ? row_end - r : Q8K_ROWS16;
            const uint8_t *row[Q8K_ROWS16];
            for (int k = 0; k < Q8K_ROWS16; k++) row[k] = w + (size_t)(r + (k < rows ? k : rows - 1)) * row_bytes;
#define TILE16_CALL(T) q8k_tile16_group(T, y + r, ldy, rows, x, ldx, row, n_in, n_tok)
            ML_FOR_KQUANT(w_dtype, TILE16_CALL)
#undef TILE16_CALL
        }
        return;
    }
#endif
    for (int r = row_begin; r < row_end; r += Q8_ROWS) {
        int rows = row_end - r < Q8_ROWS ? row_end - r : Q8_ROWS;
        const uint8_t *row[Q8_ROWS];
        q8_group_rows(row, w, row_bytes, r, rows);
        float *y_rows = y + r;
        if (w_dtype == ML_DTYPE_Q8_K) {
            q8k_stream_group(ML_DTYPE_Q8_K, y_rows, ldy, rows, x, ldx, row, n_in, n_tok, lookahead);
            continue;
        }
#define GROUP_CALL(T)                                                                              \
    if (tile) q8k_tile_group(T, y_rows, ldy, rows, x, ldx, row, n_in, n_tok);                      \
    else q8k_stream_group(T, y_rows, ldy, rows, x, ldx, row, n_in, n_tok, lookahead)
        ML_FOR_KQUANT(w_dtype, GROUP_CALL)
#undef GROUP_CALL
    }
}

#endif
