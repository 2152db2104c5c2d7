/* The int8 products of fast mode (kernels.h: quantize_q8, matmul_q8_blocks) with 256-bit
 * vectors. Template by include: kernels_int8_avx2.c and kernels_int8_avx512.c each define
 *   Q8_PREFIX(name)   the prefix of their exported names (ml_avx2_##name, ...)
 *   Q8_DOT(acc, u, s) acc (8 x int32) plus, per lane, the four products of unsigned bytes u
 *                     and signed bytes s (|s| <= 127)
 *   Q8_OFFSET_SIGNED  1 where Q8_DOT has no intermediate saturation (any u <= 255): Q8_0's
 *                     signed weights then enter as q + 128; 0 (vpmaddubsw saturates int16
 *                     pairs) keeps u <= 128 by moving the weights' signs onto x
 * and include it once. Everything else is the same code.
 *
 * Order of operations (why the outputs equal the scalar reference bit for bit): eight rows are
 * one group; for each block and token the eight rows' exact integer sums land in the eight
 * lanes of one vector, which then takes exactly the reference's float operations,
 * acc = fma(isum, d_w * d_x, acc), lane by lane, blocks in order. No lane ever holds a part of
 * another lane's sum, so the split of rows and tokens cannot change a result. The K-quants
 * (q8k_group) keep that shape: their scales multiply the exact integer sums (vpmulld), Q6_K's
 * halves are reduced apart (q8_reduce8_halves) and scaled in float (exact: every product and
 * sum is an integer below 2^24), and Q6_K's - 32 enters as each lane's starting value
 * -32 * (its four x values), so its unsigned operand stays q in 0..63. */
#ifndef ML_BACKEND_CPU_KERNELS_INT8_VECTOR_H
#define ML_BACKEND_CPU_KERNELS_INT8_VECTOR_H

#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/quant_blocks.h"

#define Q8_ROWS 8
/* n_tok 1-2 on Intel: bytes prefetched ahead in each of the eight row streams (0: none), as the
 * float decode kernels do (kernels_avx512.c); see docs/BENCHMARKS.md for the measurement. */
#ifndef Q8_LOOKAHEAD_INTEL
#define Q8_LOOKAHEAD_INTEL 256
#endif
/* Tokens whose accumulators live on the stack while a group's blocks stream past (a group's
 * weights stay in L1 for the next tokens). */
#define Q8_TOKENS 8

static inline __m256 q8_abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

void Q8_PREFIX(quantize_q8)(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8_BLOCK;
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int b = 0; b < n_blocks; b++) {
        const float *xb = x + b * ML_Q8_BLOCK;
        __m256 v[4];
        /* max(|x|), NaN ignored as the reference's (a > amax ? a : amax) ignores it */
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(q8_abs(v[k]), amax);
        }
        float lanes[8], m = 0.0f;
        _mm256_storeu_ps(lanes, amax);
        for (int i = 0; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
        float d = m / 127.0f, inverse = 0.0f; /* the reference's rule (kernels_int8.c) */
        if (d >= FLT_MIN)
            inverse = 1.0f / d;
        else
            d = 0.0f;
        __m256 scale = _mm256_set1_ps(inverse);
        __m256i q32[4];
        __m256i sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            /* clamp first (max(NaN, -127) = -127, as the reference), then round to nearest even */
            __m256 s = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[k], scale), lo), hi);
            q32[k] = _mm256_cvtps_epi32(s);
            sum = _mm256_add_epi32(sum, q32[k]);
        }
        /* 32 x int32 -> 32 x int8 in order: packs interleave 128-bit lanes, the permute undoes it */
        __m256i q16a = _mm256_packs_epi32(q32[0], q32[1]), q16b = _mm256_packs_epi32(q32[2], q32[3]);
        __m256i q8 = _mm256_packs_epi16(q16a, q16b);
        q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        uint8_t *block = out + (size_t)b * ML_Q8_BLOCK_BYTES;
        _mm256_storeu_si256((__m256i *)block, q8);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        int32_t total = _mm_cvtsi128_si32(s4);
        memcpy(block + 32, &d, sizeof d);
        memcpy(block + 36, &total, sizeof total);
    }
}

/* The eight rows' integer sums, in row order, of eight 8-lane partial sums. */
static inline __m256i q8_reduce8(const __m256i s[Q8_ROWS]) {
    __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    /* ab holds rows 0-3 twice (low and high halves of each row's lanes), cd rows 4-7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

/* 32 signed weights (Q8_0, Q8_K) as the unsigned operand: with Q8_OFFSET_SIGNED, q + 128 (the
 * sum then holds 128 * sum_x too, taken off after), else |q| with *signs = q (its sign goes
 * onto x). */
static inline __m256i q8_signed_operand(const uint8_t *q_bytes, __m256i *signs) {
    __m256i q = _mm256_loadu_si256((const __m256i *)q_bytes);
    if (Q8_OFFSET_SIGNED) return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
    *signs = q;
    return _mm256_sign_epi8(q, q);
}

/* Block b of a row as the unsigned operand: 4-bit types as their nibbles (element i < 16 the
 * low nibble of byte i, element 16 + i its high nibble); Q8_0 by q8_signed_operand. */
static inline __m256i q8_weight_operand(ml_dtype w_dtype, const uint8_t *block, __m256i *signs) {
    *signs = _mm256_setzero_si256();
    if (w_dtype == ML_DTYPE_Q8_0) return q8_signed_operand(block + 2, signs);
    __m128i bytes = _mm_loadu_si128((const __m128i *)(block + (w_dtype == ML_DTYPE_Q4_1 ? 4 : 2)));
    const __m128i low4 = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
    return _mm256_set_m128i(hi, lo);
}

/* The f16 fields at the same offset of eight blocks (d at 0, Q4_1's m at 2), as floats. */
static inline __m256 q8_block_halves(const uint8_t *const block[Q8_ROWS], size_t offset) {
    uint16_t h[Q8_ROWS];
    for (int k = 0; k < Q8_ROWS; k++) memcpy(&h[k], block[k] + offset, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Eight rows (row[k], possibly repeated at a range's end) x n_tok (<= Q8_TOKENS) tokens: the
 * per-lane accumulators acc[t] (row k in lane k). */
static inline void q8_group(ml_dtype w_dtype, __m256 acc[Q8_TOKENS], const uint8_t *x, size_t ldx,
                            const uint8_t *const row[Q8_ROWS], int n_in, int n_tok, size_t lookahead) {
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype);
    /* what isum_b must lose: Q4_0's 8 * sum_x, or Q8_0's offset 128 * sum_x */
    int32_t offset = w_dtype == ML_DTYPE_Q4_0 ? 8 : (w_dtype == ML_DTYPE_Q8_0 && Q8_OFFSET_SIGNED) ? 128 : 0;
    for (int t = 0; t < n_tok; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        const uint8_t *block[Q8_ROWS];
        __m256i wq[Q8_ROWS], sign[Q8_ROWS];
        for (int k = 0; k < Q8_ROWS; k++) {
            block[k] = row[k] + (size_t)b * block_bytes;
            if (lookahead) _mm_prefetch((const char *)block[k] + lookahead, _MM_HINT_T0);
            wq[k] = q8_weight_operand(w_dtype, block[k], &sign[k]);
        }
        __m256 d_w = q8_block_halves(block, 0);
        __m256 m_w = w_dtype == ML_DTYPE_Q4_1 ? q8_block_halves(block, 2) : _mm256_setzero_ps();
        for (int t = 0; t < n_tok; t++) {
            const uint8_t *x_block = x + (size_t)t * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
            __m256i xq = _mm256_loadu_si256((const __m256i *)x_block);
            __m256i s[Q8_ROWS];
            for (int k = 0; k < Q8_ROWS; k++) {
                __m256i operand = (w_dtype == ML_DTYPE_Q8_0 && !Q8_OFFSET_SIGNED) ? _mm256_sign_epi8(xq, sign[k]) : xq;
                s[k] = Q8_DOT(_mm256_setzero_si256(), wq[k], operand);
            }
            __m256i isum = q8_reduce8(s);
            float d_x;
            int32_t sum_x;
            memcpy(&d_x, x_block + 32, sizeof d_x);
            memcpy(&sum_x, x_block + 36, sizeof sum_x);
            if (offset) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offset * sum_x));
            __m256 dx = _mm256_set1_ps(d_x);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d_w, dx), acc[t]);
            if (w_dtype == ML_DTYPE_Q4_1)
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps((float)sum_x), _mm256_mul_ps(m_w, dx), acc[t]);
        }
    }
}

/* The same eight rows' sums split in two: lo holds the sums of each row's lanes 0-3 (elements
 * 0-15 of the block), hi of lanes 4-7 (elements 16-31): Q6_K's sub-blocks of 16. */
static inline void q8_reduce8_halves(const __m256i s[Q8_ROWS], __m256i *lo, __m256i *hi) {
    __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    /* ab's low 128 bits: rows 0-3 over elements 0-15; its high 128 bits: the same over 16-31 */
    *lo = _mm256_permute2x128_si256(ab, cd, 0x20);
    *hi = _mm256_permute2x128_si256(ab, cd, 0x31);
}

/* Block j (0..7) of a K-quant super-block as the unsigned operand (the integers of
 * kernels_int8.c's kquant_block: Q4_K/Q5_K's q, Q6_K's q before the - 32; Q8_K as Q8_0). */
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
    if (w_dtype == ML_DTYPE_Q6_K) {
        int g = j / 4, h = j % 4;
        __m256i ql = _mm256_loadu_si256((const __m256i *)(sb + 64 * g + 32 * (h % 2)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(sb + 128 + 32 * g));
        __m256i low = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (h / 2)), low4);
        /* bits 2h, 2h + 1 of qh to bits 4, 5 */
        __m256i high = 2 * h <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * h) : _mm256_srli_epi16(qh, 2 * h - 4);
        return _mm256_or_si256(low, _mm256_and_si256(high, _mm256_set1_epi8(0x30)));
    }
    return q8_signed_operand(sb + 4 + 32 * j, signs); /* Q8_K */
}

/* q8_group for the K-quants (kernels.h: the per-block operations; lanes are rows). A
 * super-block's eight sub-block scales (and Q4_K/Q5_K's mins) are decoded once per row into
 * tables whose rows are vectors over the eight weight rows. */
static inline void q8k_group(ml_dtype w_dtype, __m256 acc[Q8_TOKENS], const uint8_t *x, size_t ldx,
                             const uint8_t *const row[Q8_ROWS], int n_in, int n_tok, size_t lookahead) {
    int n_super = n_in / ML_QUANT_SUPER_BLOCK;
    size_t super_bytes = ml_dtype_block_bytes(w_dtype);
    int k4 = w_dtype == ML_DTYPE_Q4_K || w_dtype == ML_DTYPE_Q5_K, q6 = w_dtype == ML_DTYPE_Q6_K;
    for (int t = 0; t < n_tok; t++) acc[t] = _mm256_setzero_ps();
    for (int s = 0; s < n_super; s++) {
        const uint8_t *sb[Q8_ROWS];
        int32_t scale_a[8][Q8_ROWS], scale_b[8][Q8_ROWS]; /* k4: scale, min; q6: the two sub-blocks' scales */
        float d_rows[Q8_ROWS];
        for (int k = 0; k < Q8_ROWS; k++) {
            sb[k] = row[k] + (size_t)s * super_bytes;
            if (lookahead)
                for (size_t line = 0; line < super_bytes; line += 64)
                    _mm_prefetch((const char *)sb[k] + lookahead + line, _MM_HINT_T0);
            if (k4) {
                /* ml_k4_scale_min for the eight sub-blocks at once, four bytes per word: bytes
                 * 0-3 hold scales 0-3 (and the top bits of scales 4-7), 4-7 the mins alike,
                 * 8-11 the low nibbles of scales 4-7 and mins 4-7 */
                uint32_t word[3];
                memcpy(word, sb[k] + 4, sizeof word);
                uint32_t scales[2] = {word[0] & 0x3f3f3f3fu,
                                      (word[2] & 0x0f0f0f0fu) | ((word[0] >> 2) & 0x30303030u)};
                uint32_t mins[2] = {word[1] & 0x3f3f3f3fu,
                                    ((word[2] >> 4) & 0x0f0f0f0fu) | ((word[1] >> 2) & 0x30303030u)};
                for (int j = 0; j < 8; j++) {
                    scale_a[j][k] = (int32_t)((scales[j / 4] >> (8 * (j % 4))) & 0xff);
                    scale_b[j][k] = (int32_t)((mins[j / 4] >> (8 * (j % 4))) & 0xff);
                }
            } else if (q6) {
                const int8_t *scales = (const int8_t *)(sb[k] + 192);
                for (int j = 0; j < 8; j++) {
                    scale_a[j][k] = scales[2 * j];
                    scale_b[j][k] = scales[2 * j + 1];
                }
            } else {
                memcpy(&d_rows[k], sb[k], sizeof(float));
            }
        }
        __m256 d_w = k4 ? q8_block_halves(sb, 0) : q6 ? q8_block_halves(sb, 208) : _mm256_loadu_ps(d_rows);
        __m256 dmin_w = k4 ? q8_block_halves(sb, 2) : _mm256_setzero_ps();
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (int j = 0; j < 8; j++) { /* unrolled: the shifts and offsets below become constants */
            __m256i wq[Q8_ROWS], sign[Q8_ROWS];
            for (int k = 0; k < Q8_ROWS; k++) wq[k] = q8k_weight_operand(w_dtype, sb[k], j, &sign[k]);
            __m256i sc_a = _mm256_loadu_si256((const __m256i *)scale_a[j]);
            __m256i sc_b = _mm256_loadu_si256((const __m256i *)scale_b[j]);
            __m256 sc_a_f = _mm256_cvtepi32_ps(sc_a), sc_b_f = _mm256_cvtepi32_ps(sc_b);
            for (int t = 0; t < n_tok; t++) {
                const uint8_t *x_block = x + (size_t)t * ldx + (size_t)(8 * s + j) * ML_Q8_BLOCK_BYTES;
                __m256i xq = _mm256_loadu_si256((const __m256i *)x_block);
                float d_x;
                int32_t sum_x;
                memcpy(&d_x, x_block + 32, sizeof d_x);
                memcpy(&sum_x, x_block + 36, sizeof sum_x);
                __m256 dx = _mm256_set1_ps(d_x);
                /* Q6_K: every lane starts at -32 times its four x values, so the sums are of q - 32 */
                __m256i base = q6 ? _mm256_sub_epi32(_mm256_setzero_si256(),
                                                     Q8_DOT(_mm256_setzero_si256(), _mm256_set1_epi8(32), xq))
                                  : _mm256_setzero_si256();
                __m256i sums[Q8_ROWS];
                for (int k = 0; k < Q8_ROWS; k++) {
                    __m256i operand = (!k4 && !q6 && !Q8_OFFSET_SIGNED) ? _mm256_sign_epi8(xq, sign[k]) : xq;
                    sums[k] = Q8_DOT(base, wq[k], operand);
                }
                if (q6) {
                    __m256i lo, hi;
                    q8_reduce8_halves(sums, &lo, &hi);
                    /* sc_a * lo + sc_b * hi in float: each product and the sum are integers below
                     * 2^24 (kernels.h), so exact, the same value as the integer sum's conversion
                     * and cheaper than two vpmulld */
                    __m256 isum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), sc_a_f,
                                                  _mm256_mul_ps(_mm256_cvtepi32_ps(hi), sc_b_f));
                    acc[t] = _mm256_fmadd_ps(isum, _mm256_mul_ps(d_w, dx), acc[t]);
                } else if (k4) {
                    __m256i isum = _mm256_mullo_epi32(q8_reduce8(sums), sc_a);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d_w, dx), acc[t]);
                    __m256i min_sum = _mm256_mullo_epi32(sc_b, _mm256_set1_epi32(sum_x));
                    acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(min_sum), _mm256_mul_ps(dmin_w, dx), acc[t]);
                } else {
                    __m256i isum = q8_reduce8(sums);
                    if (Q8_OFFSET_SIGNED) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(128 * sum_x));
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d_w, dx), acc[t]);
                }
            }
        }
    }
}

void Q8_PREFIX(matmul_q8_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                 const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8_supports(w_dtype) || n_in <= 0) return;
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in);
    size_t lookahead = 0;
    if (n_tok <= 2) {
        __builtin_cpu_init();
        lookahead = __builtin_cpu_is("intel") ? Q8_LOOKAHEAD_INTEL : 0;
    }
    for (int r = row_begin; r < row_end; r += Q8_ROWS) {
        int rows = row_end - r < Q8_ROWS ? row_end - r : Q8_ROWS;
        const uint8_t *row[Q8_ROWS];
        for (int k = 0; k < Q8_ROWS; k++) row[k] = w + (size_t)(r + (k < rows ? k : rows - 1)) * row_bytes;
        for (int t0 = 0; t0 < n_tok; t0 += Q8_TOKENS) {
            int nt = n_tok - t0 < Q8_TOKENS ? n_tok - t0 : Q8_TOKENS;
            __m256 acc[Q8_TOKENS];
            switch (w_dtype) { /* one instance per type: the compiler drops the other types' branches */
            case ML_DTYPE_Q4_K: q8k_group(ML_DTYPE_Q4_K, acc, x + (size_t)t0 * ldx, ldx, row, n_in, nt, lookahead); break;
            case ML_DTYPE_Q5_K: q8k_group(ML_DTYPE_Q5_K, acc, x + (size_t)t0 * ldx, ldx, row, n_in, nt, lookahead); break;
            case ML_DTYPE_Q6_K: q8k_group(ML_DTYPE_Q6_K, acc, x + (size_t)t0 * ldx, ldx, row, n_in, nt, lookahead); break;
            case ML_DTYPE_Q8_K: q8k_group(ML_DTYPE_Q8_K, acc, x + (size_t)t0 * ldx, ldx, row, n_in, nt, lookahead); break;
            default: q8_group(w_dtype, acc, x + (size_t)t0 * ldx, ldx, row, n_in, nt, lookahead); break;
            }
            for (int t = 0; t < nt; t++) {
                float lanes[Q8_ROWS];
                _mm256_storeu_ps(lanes, acc[t]);
                memcpy(y + (size_t)(t0 + t) * ldy + r, lanes, (size_t)rows * sizeof(float));
            }
        }
    }
}

#endif
