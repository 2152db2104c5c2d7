/* The int8 products of fast mode (kernels.h: quantize_q8, matmul_q8_blocks) with 256-bit
 * vectors. Template by include: kernels_int8_avx2.c and kernels_int8_avx512.c each define
 *   Q8_PREFIX(name)   the prefix of their exported names (ml_avx2_##name, ...)
 *   Q8_DOT(acc, u, s) acc (8 x int32) plus, per lane, the four products of unsigned bytes u
 *                     and signed bytes s (|s| <= 127)
 *   Q8_OFFSET_SIGNED  1 where Q8_DOT has no intermediate saturation (any u <= 255): the signed
 *                     weights (Q8_0, IQ4_NL) then enter as q + 128; 0 (vpmaddubsw saturates int16
 *                     pairs) keeps u <= 128 by moving the weights' signs onto x
 *   Q8_DOT16(acc, a, b) acc (8 x int32) plus, per lane, the two products of int16 a and b
 *   Q8_DOT_SCALED(acc, u, s, scale16)  acc plus, per lane, the pair sums of u * s (vpmaddubsw,
 *                     so no pair may exceed 32767: u <= 63 where it is used) times the
 *                     int16 scale16, two pairs per lane
 *   Q8_HAS_PERMW      1 where vpermw (AVX512BW) may be used
 * and include it once. Everything else is the same code. The K-quants' products
 * (quantize_q8k, matmul_q8k_blocks) are in kernels_q8k_vector.h, included after this file.
 *
 * Order of operations (why the outputs equal the scalar reference bit for bit): eight rows are
 * one group; for each block and token the eight rows' exact integer sums land in the eight
 * lanes of one vector, which then takes exactly the reference's float operations,
 * acc = fma(isum, d_w * d_x, acc), lane by lane, blocks in order. No lane ever holds a part of
 * another lane's sum, so the split of rows and tokens cannot change a result. From
 * Q8_TILE_MIN_TOKENS tokens on, the same integers come from a transposed tile instead
 * (q8_tile_group: lane k of tile vector g holds weights 4g..4g+3 of row k, so the token's four
 * int8 values at 4g, broadcast, give row sums with no horizontal reduction); the float
 * operations stay the same, so do the bits. The signed types (Q8_0, IQ4_NL) without
 * Q8_OFFSET_SIGNED (AVX2) take the tile too: the tile holds |q| and, transposed alike, q
 * itself, whose signs go onto each broadcast x by vpsignb lane by lane (one more uop per
 * product, from Q8_0_TILE_MIN_TOKENS on).
 * With Q8_TILE16 (AVX-512 VNNI) the tile holds sixteen rows in 512-bit vectors from
 * Q8_TILE16_MIN_TOKENS tokens (q8_tile16_group): the same integers and float operations per lane. */
#ifndef ML_BACKEND_CPU_KERNELS_INT8_VECTOR_H
#define ML_BACKEND_CPU_KERNELS_INT8_VECTOR_H

#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/quant_blocks.h"

#define Q8_ROWS 8
/* From this many tokens on, the tile shape (q8_tile_group), chunks of Q8_TILE_CHUNK tokens,
 * register blocks of Q8_TILE_TOKENS (defined by the including file, default 4). */
#ifndef Q8_TILE_MIN_TOKENS
#define Q8_TILE_MIN_TOKENS 3
#endif
#ifndef Q8_TILE_CHUNK
#define Q8_TILE_CHUNK 128
#endif
#ifndef Q8_TILE_TOKENS
#define Q8_TILE_TOKENS 4
#endif
/* Set by the AVX2 file only (the defaults leave the VNNI table as it was):
 *   Q8_KEEP(v)            an empty asm that keeps each tile token's sum one chain of Q8_DOTs in a
 *                         register (GCC otherwise regroups the integer additions and spills)
 *   Q8_0_TILE_MIN_TOKENS  the tile's threshold for the signed types (AVX2: a vpsignb more per
 *                         product)
 *   Q8_NEXT_ROWS          1: the 1-2 token products prefetch the next group's rows in address
 *                         order alongside, where no look-ahead within rows is on
 *   Q8_REDUCE_UNPACK      1: q8_reduce8 by unpacks and adds instead of vphaddd
 *   Q8_GROUP_PER_TYPE     1: one q8_group instance per weight type (no type branches per block) */
#ifndef Q8_KEEP
#define Q8_KEEP(v) ((void)0)
#endif
#ifndef Q8_0_TILE_MIN_TOKENS
#define Q8_0_TILE_MIN_TOKENS Q8_TILE_MIN_TOKENS
#endif
#ifndef Q8_NEXT_ROWS
#define Q8_NEXT_ROWS 0
#endif
#ifndef Q8_REDUCE_UNPACK
#define Q8_REDUCE_UNPACK 0
#endif
#ifndef Q8_GROUP_PER_TYPE
#define Q8_GROUP_PER_TYPE 0
#endif
/* Q8_TILE16 (AVX-512 VNNI, Q8_OFFSET_SIGNED): from Q8_TILE16_MIN_TOKENS tokens the tile holds
 * sixteen rows in 512-bit vectors (q8_tile16_group), register blocks of Q8_TILE16_TOKENS. */
#ifndef Q8_TILE16
#define Q8_TILE16 0
#endif
#ifndef Q8_TILE16_TOKENS
#define Q8_TILE16_TOKENS 8
#endif
#ifndef Q8_TILE16_MIN_TOKENS
#define Q8_TILE16_MIN_TOKENS 6
#endif
/* n_tok 1-2 on Intel: bytes prefetched ahead in each of the eight row streams (0: none), as the
 * float decode kernels do (kernels_avx512.c); see docs/BENCHMARKS.md for the measurement. */
#ifndef Q8_LOOKAHEAD_INTEL
#define Q8_LOOKAHEAD_INTEL 256
#endif
/* Tokens whose accumulators live on the stack while a group's blocks stream past (a group's
 * weights stay in L1 for the next tokens). */
#define Q8_TOKENS 8

/* Q8_DOT of u with the four signed bytes at p in every lane. Where the including file does not
 * give its own (Q8_DOT_BROADCAST: one instruction with an embedded broadcast), a broadcast
 * then Q8_DOT. */
#ifndef Q8_DOT_BROADCAST
static inline __m256i q8_dot_broadcast(__m256i acc, __m256i u, const uint8_t *p) {
    int32_t four;
    memcpy(&four, p, sizeof four);
    return Q8_DOT(acc, u, _mm256_set1_epi32(four));
}
#define Q8_DOT_BROADCAST(acc, u, p) q8_dot_broadcast((acc), (u), (p))
#endif

/* The eight weight rows of the group at row r: rows past a range's end repeat its last row
 * (their lanes are computed and not stored). */
static inline void q8_group_rows(const uint8_t *row[Q8_ROWS], const uint8_t *w, size_t row_bytes, int r, int rows) {
    for (int k = 0; k < Q8_ROWS; k++) row[k] = w + (size_t)(r + (k < rows ? k : rows - 1)) * row_bytes;
}

/* Stores the first `rows` lanes of acc[t] (row k in lane k) at y + t * ldy, t < n_tok. */
static inline void q8_store_rows(float *y, size_t ldy, const __m256 *acc, int n_tok, int rows) {
    for (int t = 0; t < n_tok; t++) {
        float lanes[Q8_ROWS];
        _mm256_storeu_ps(lanes, acc[t]);
        memcpy(y + (size_t)t * ldy, lanes, (size_t)rows * sizeof(float));
    }
}

/* The per-row look-ahead of the 1-2 token products (Q8_LOOKAHEAD_INTEL on Intel, else none). */
static inline size_t q8_lookahead(int n_tok) {
    if (n_tok > 2) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") ? Q8_LOOKAHEAD_INTEL : 0;
}

static inline __m256 q8_abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* max|x| of n floats (a multiple of 8), NaN ignored as the reference's (a > amax ? a : amax)
 * ignores it; then the reference's scale rule (kernels_int8.c): d and its inverse. */
static inline float q8_scale(const float *x, int n, float *inverse) {
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(q8_abs(_mm256_loadu_ps(x + i)), amax);
    float lanes[8], m = 0.0f;
    _mm256_storeu_ps(lanes, amax);
    for (int i = 0; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
    float d = m / 127.0f;
    *inverse = 0.0f;
    if (d >= FLT_MIN)
        *inverse = 1.0f / d;
    else
        d = 0.0f;
    return d;
}

/* 32 values times inverse, clamped (max(NaN, -127) = -127, as the reference), rounded to
 * nearest even, stored as 32 int8 in order; q32 keeps them as int32 (element 8k + i in q32[k]). */
static inline void q8_quantize32(uint8_t *out, const float *x, float inverse, __m256i q32[4]) {
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f), scale = _mm256_set1_ps(inverse);
    for (int k = 0; k < 4; k++) {
        __m256 s = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), scale), lo), hi);
        q32[k] = _mm256_cvtps_epi32(s);
    }
    /* 32 x int32 -> 32 x int8 in order: packs interleave 128-bit lanes, the permute undoes it */
    __m256i q16a = _mm256_packs_epi32(q32[0], q32[1]), q16b = _mm256_packs_epi32(q32[2], q32[3]);
    __m256i q8 = _mm256_packs_epi16(q16a, q16b);
    q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, q8);
}

static inline int32_t q8_hsum(__m256i v) {
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    return _mm_cvtsi128_si32(s4);
}

void Q8_PREFIX(quantize_q8)(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8_BLOCK;
    for (int b = 0; b < n_blocks; b++) {
        const float *xb = x + b * ML_Q8_BLOCK;
        uint8_t *block = out + (size_t)b * ML_Q8_BLOCK_BYTES;
        float inverse, d = q8_scale(xb, ML_Q8_BLOCK, &inverse);
        __m256i q32[4];
        q8_quantize32(block, xb, inverse, q32);
        int32_t total = q8_hsum(_mm256_add_epi32(_mm256_add_epi32(q32[0], q32[1]), _mm256_add_epi32(q32[2], q32[3])));
        memcpy(block + 32, &d, sizeof d);
        memcpy(block + 36, &total, sizeof total);
    }
}

/* The eight rows' integer sums, in row order, of eight 8-lane partial sums. */
static inline __m256i q8_reduce8(const __m256i s[Q8_ROWS]) {
#if Q8_REDUCE_UNPACK
    __m256i a01 = _mm256_add_epi32(_mm256_unpacklo_epi32(s[0], s[1]), _mm256_unpackhi_epi32(s[0], s[1]));
    __m256i a23 = _mm256_add_epi32(_mm256_unpacklo_epi32(s[2], s[3]), _mm256_unpackhi_epi32(s[2], s[3]));
    __m256i a45 = _mm256_add_epi32(_mm256_unpacklo_epi32(s[4], s[5]), _mm256_unpackhi_epi32(s[4], s[5]));
    __m256i a67 = _mm256_add_epi32(_mm256_unpacklo_epi32(s[6], s[7]), _mm256_unpackhi_epi32(s[6], s[7]));
    __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi64(a01, a23), _mm256_unpackhi_epi64(a01, a23));
    __m256i c = _mm256_add_epi32(_mm256_unpacklo_epi64(a45, a67), _mm256_unpackhi_epi64(a45, a67));
    return _mm256_add_epi32(_mm256_permute2x128_si256(b, c, 0x20), _mm256_permute2x128_si256(b, c, 0x31));
#endif
    __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    /* ab holds rows 0-3 twice (low and high halves of each row's lanes), cd rows 4-7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

/* 32 signed weights (Q8_0, IQ4_NL, Q8_K) as the unsigned operand: with Q8_OFFSET_SIGNED, q + 128
 * (the sum then holds 128 * sum_x too, taken off after), else |q| with *signs = q (its sign
 * goes onto x). */
static inline __m256i q8_signed_operand(__m256i q, __m256i *signs) {
    if (Q8_OFFSET_SIGNED) return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
    *signs = q;
    return _mm256_sign_epi8(q, q);
}

/* What a block's weights lose from x's sum: Q4_0's 8, Q5_0's 16, and the signed types' 128
 * where they enter as q + 128 (Q8_OFFSET_SIGNED). */
static inline int32_t q8_offset(ml_dtype w_dtype) {
    return ml_q8_signed(w_dtype) && Q8_OFFSET_SIGNED ? 128 : ml_q8_offset(w_dtype);
}

/* Block b of a row as the unsigned operand: the nibble types as their nibbles (element i < 16
 * the low nibble of byte i, element 16 + i its high nibble), Q5_0/Q5_1 with bit i of the 32
 * bits before them as bit 4; the signed types (Q8_0 as stored, IQ4_NL's nibbles looked up in
 * its levels) by q8_signed_operand. */
static inline __m256i q8_weight_operand(ml_dtype w_dtype, const uint8_t *block, __m256i *signs) {
    *signs = _mm256_setzero_si256();
    if (w_dtype == ML_DTYPE_Q8_0) return q8_signed_operand(_mm256_loadu_si256((const __m256i *)(block + 2)), signs);
    const uint8_t *nibbles = block + ml_q8_nibbles_at(w_dtype);
    __m128i bytes = _mm_loadu_si128((const __m128i *)nibbles);
    const __m128i low4 = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
    __m256i q = _mm256_set_m128i(hi, lo);
    if (w_dtype == ML_DTYPE_IQ4_NL) {
        __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ml_iq4_nl_levels));
        return q8_signed_operand(_mm256_shuffle_epi8(levels, q), signs);
    }
    if (w_dtype == ML_DTYPE_Q5_0 || w_dtype == ML_DTYPE_Q5_1) {
        /* byte i gets byte i / 8 of the 32 bits, then its bit i % 8 tested */
        int32_t high;
        memcpy(&high, nibbles - 4, sizeof high);
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                                3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        __m256i bytes_of = _mm256_shuffle_epi8(_mm256_set1_epi32(high), spread);
        __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes_of, bit), bit);
        q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
    return q;
}

/* The f16 fields at the same offset of eight blocks (d at 0, Q4_1's and Q5_1's m at 2), as floats. */
static inline __m256 q8_block_halves(const uint8_t *const block[Q8_ROWS], size_t offset) {
    uint16_t h[Q8_ROWS];
    for (int k = 0; k < Q8_ROWS; k++) memcpy(&h[k], block[k] + offset, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Eight rows (row[k], possibly repeated at a range's end) x n_tok (<= Q8_TOKENS) tokens: the
 * per-lane accumulators acc[t] (row k in lane k). */
static inline void q8_group(ml_dtype w_dtype, __m256 acc[Q8_TOKENS], const uint8_t *x, size_t ldx,
                            const uint8_t *const row[Q8_ROWS], int n_in, int n_tok, size_t lookahead,
                            const uint8_t *next) {
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype), prefetched = 0;
    int32_t offset = q8_offset(w_dtype); /* isum_b loses offset * sum_x */
    for (int t = 0; t < n_tok; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < n_blocks; b++) {
        const uint8_t *block[Q8_ROWS];
        __m256i wq[Q8_ROWS], sign[Q8_ROWS];
        if (next) {
            size_t until = (size_t)(b + 1) * Q8_ROWS * block_bytes;
            for (; prefetched < until; prefetched += 64) _mm_prefetch((const char *)next + prefetched, _MM_HINT_T0);
        }
        for (int k = 0; k < Q8_ROWS; k++) {
            block[k] = row[k] + (size_t)b * block_bytes;
            if (lookahead) _mm_prefetch((const char *)block[k] + lookahead, _MM_HINT_T0);
            wq[k] = q8_weight_operand(w_dtype, block[k], &sign[k]);
        }
        __m256 d_w = q8_block_halves(block, 0);
        __m256 m_w = ml_q8_with_m(w_dtype) ? q8_block_halves(block, 2) : _mm256_setzero_ps();
        for (int t = 0; t < n_tok; t++) {
            const uint8_t *x_block = x + (size_t)t * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
            __m256i xq = _mm256_loadu_si256((const __m256i *)x_block);
            __m256i s[Q8_ROWS];
            for (int k = 0; k < Q8_ROWS; k++) {
                __m256i operand = (ml_q8_signed(w_dtype) && !Q8_OFFSET_SIGNED) ? _mm256_sign_epi8(xq, sign[k]) : xq;
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
            if (ml_q8_with_m(w_dtype))
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps((float)sum_x), _mm256_mul_ps(m_w, dx), acc[t]);
        }
    }
}

/* ---- many tokens: a transposed tile (as kernels_q8k_vector.h's, one block of 32 at a time) */

/* v[k] = 8 x 4 bytes of row k; out[g] = bytes 4g..4g+3 of every row (lane k row k). */
static inline void q8_transpose8(const __m256i v[Q8_ROWS], __m256i out[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    /* u0: rows 0-3 of groups 0 (low half) and 4 (high half); u1: 1 and 5; u2: 2 and 6; u3: 3 and 7 */
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    out[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    out[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    out[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    out[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    out[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    out[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    out[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    out[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* TB tokens (x_block[tb]: their activation blocks of block b) against the tile of block b:
 * the eight rows' exact integer sums without horizontal sums, then q8_group's float
 * operations, lane by lane. */
static inline void q8_tile_tokens(ml_dtype w_dtype, __m256 *acc, const uint8_t *const x_block[], const __m256i tile[8],
                                  const __m256i sign_tile[8], __m256 d_w, __m256 m_w, int32_t offset, const int TB) {
    __m256i sum[Q8_TILE_TOKENS];
    for (int tb = 0; tb < TB; tb++) sum[tb] = _mm256_setzero_si256();
    for (int g = 0; g < 8; g++) {
        __m256i w = _mm256_load_si256(&tile[g]);
        if (ml_q8_signed(w_dtype) && !Q8_OFFSET_SIGNED) { /* tile |q|: each lane's sign onto x */
            __m256i sign = _mm256_load_si256(&sign_tile[g]);
            for (int tb = 0; tb < TB; tb++) {
                int32_t four;
                memcpy(&four, x_block[tb] + 4 * g, sizeof four);
                sum[tb] = Q8_DOT(sum[tb], w, _mm256_sign_epi8(_mm256_set1_epi32(four), sign));
                Q8_KEEP(sum[tb]);
            }
            continue;
        }
        for (int tb = 0; tb < TB; tb++) {
            sum[tb] = Q8_DOT_BROADCAST(sum[tb], w, x_block[tb] + 4 * g);
            Q8_KEEP(sum[tb]);
        }
    }
    for (int tb = 0; tb < TB; tb++) {
        float d_x;
        int32_t sum_x;
        memcpy(&d_x, x_block[tb] + 32, sizeof d_x);
        memcpy(&sum_x, x_block[tb] + 36, sizeof sum_x);
        __m256i isum = offset ? _mm256_sub_epi32(sum[tb], _mm256_set1_epi32(offset * sum_x)) : sum[tb];
        __m256 dx = _mm256_set1_ps(d_x);
        acc[tb] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d_w, dx), acc[tb]);
        if (ml_q8_with_m(w_dtype))
            acc[tb] = _mm256_fmadd_ps(_mm256_set1_ps((float)sum_x), _mm256_mul_ps(m_w, dx), acc[tb]);
    }
}

/* Eight rows x n_tok tokens, Q8_TILE_CHUNK tokens at a time: per block, the rows' operands
 * transposed once, then every token of the chunk. The signed types without Q8_OFFSET_SIGNED
 * tile |q| and q, whose signs go onto each token's x lane by lane. */
static inline void q8_tile_group(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                 const uint8_t *const row[Q8_ROWS], int n_in, int n_tok) {
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype);
    int32_t offset = q8_offset(w_dtype);
    __m256i tile[8], sign_tile[8];
    __m256 acc[Q8_TILE_CHUNK];
    for (int t0 = 0; t0 < n_tok; t0 += Q8_TILE_CHUNK) {
        int nt = n_tok - t0 < Q8_TILE_CHUNK ? n_tok - t0 : Q8_TILE_CHUNK;
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < n_blocks; b++) {
            const uint8_t *block[Q8_ROWS];
            __m256i wq[Q8_ROWS], sign[Q8_ROWS];
            for (int k = 0; k < Q8_ROWS; k++) {
                block[k] = row[k] + (size_t)b * block_bytes;
                wq[k] = q8_weight_operand(w_dtype, block[k], &sign[k]);
            }
            if (ml_q8_signed(w_dtype) && !Q8_OFFSET_SIGNED) { /* q transposed, then |q| from it */
                q8_transpose8(sign, sign_tile);
                for (int g = 0; g < 8; g++) tile[g] = _mm256_sign_epi8(sign_tile[g], sign_tile[g]);
            } else {
                q8_transpose8(wq, tile);
            }
            __m256 d_w = q8_block_halves(block, 0);
            __m256 m_w = ml_q8_with_m(w_dtype) ? q8_block_halves(block, 2) : _mm256_setzero_ps();
            const uint8_t *x_block[Q8_TILE_TOKENS];
            int t = 0;
            for (; t + Q8_TILE_TOKENS <= nt; t += Q8_TILE_TOKENS) {
                for (int tb = 0; tb < Q8_TILE_TOKENS; tb++)
                    x_block[tb] = x + (size_t)(t0 + t + tb) * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
                q8_tile_tokens(w_dtype, acc + t, x_block, tile, sign_tile, d_w, m_w, offset, Q8_TILE_TOKENS);
            }
            for (; t < nt; t++) {
                x_block[0] = x + (size_t)(t0 + t) * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
                q8_tile_tokens(w_dtype, acc + t, x_block, tile, sign_tile, d_w, m_w, offset, 1);
            }
        }
        q8_store_rows(y + (size_t)t0 * ldy, ldy, acc, nt, rows);
    }
}

/* ---- many tokens, 512-bit (Q8_TILE16: AVX-512 VNNI): sixteen rows per tile ------------------ */
#if Q8_TILE16 || (defined(Q8K_TILE16) && Q8K_TILE16) /* the helpers, kernels_q8k_vector.h's too */
/* vpdpbusd on 512-bit vectors with the four int8 values at p broadcast by the instruction. */
static inline __m512i q8_dot_broadcast16(__m512i acc, __m512i u, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)p));
    return acc;
}

/* Rows 0-7 in the low half, 8-15 in the high half. */
static inline __m512i q8_join(__m256i rows_low, __m256i rows_high) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(rows_low), rows_high, 1);
}
static inline __m512 q8_join_ps(__m256 rows_low, __m256 rows_high) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(rows_low), rows_high, 1);
}
#endif

#if Q8_TILE16
/* q8_tile_tokens on a tile of sixteen rows (the signed types as q + 128: Q8_OFFSET_SIGNED). */
static inline __attribute__((always_inline)) void q8_tile16_tokens(ml_dtype w_dtype, __m512 *acc,
                                                                   const uint8_t *const x_block[],
                                                                   const __m512i tile[8], __m512 d_w, __m512 m_w,
                                                                   int32_t offset, const int TB) {
    __m512i sum[Q8_TILE16_TOKENS];
    for (int tb = 0; tb < TB; tb++) sum[tb] = _mm512_setzero_si512();
    for (int g = 0; g < 8; g++) {
        __m512i w = _mm512_load_si512(&tile[g]);
        for (int tb = 0; tb < TB; tb++) sum[tb] = q8_dot_broadcast16(sum[tb], w, x_block[tb] + 4 * g);
    }
    for (int tb = 0; tb < TB; tb++) {
        float d_x;
        int32_t sum_x;
        memcpy(&d_x, x_block[tb] + 32, sizeof d_x);
        memcpy(&sum_x, x_block[tb] + 36, sizeof sum_x);
        __m512i isum = offset ? _mm512_sub_epi32(sum[tb], _mm512_set1_epi32(offset * sum_x)) : sum[tb];
        __m512 dx = _mm512_set1_ps(d_x);
        acc[tb] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d_w, dx), acc[tb]);
        if (ml_q8_with_m(w_dtype))
            acc[tb] = _mm512_fmadd_ps(_mm512_set1_ps((float)sum_x), _mm512_mul_ps(m_w, dx), acc[tb]);
    }
}

/* Sixteen rows (row[k]; rows past `rows` repeat the last) x n_tok tokens, as q8_tile_group. */
static inline void q8_tile16_group(ml_dtype w_dtype, float *y, size_t ldy, int rows, const uint8_t *x, size_t ldx,
                                   const uint8_t *const row[2 * Q8_ROWS], int n_in, int n_tok) {
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype);
    int32_t offset = q8_offset(w_dtype);
    __m512i tile[8];
    __m512 acc[Q8_TILE_CHUNK];
    for (int t0 = 0; t0 < n_tok; t0 += Q8_TILE_CHUNK) {
        int nt = n_tok - t0 < Q8_TILE_CHUNK ? n_tok - t0 : Q8_TILE_CHUNK;
        for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
        for (int b = 0; b < n_blocks; b++) {
            const uint8_t *block[2 * Q8_ROWS];
            __m256i wq[Q8_ROWS], sign, low[8], high[8];
            for (int k = 0; k < 2 * Q8_ROWS; k++) block[k] = row[k] + (size_t)b * block_bytes;
            for (int k = 0; k < Q8_ROWS; k++) wq[k] = q8_weight_operand(w_dtype, block[k], &sign);
            q8_transpose8(wq, low);
            for (int k = 0; k < Q8_ROWS; k++) wq[k] = q8_weight_operand(w_dtype, block[Q8_ROWS + k], &sign);
            q8_transpose8(wq, high);
            for (int g = 0; g < 8; g++) tile[g] = q8_join(low[g], high[g]);
            __m512 d_w = q8_join_ps(q8_block_halves(block, 0), q8_block_halves(block + Q8_ROWS, 0));
            __m512 m_w = ml_q8_with_m(w_dtype)
                             ? q8_join_ps(q8_block_halves(block, 2), q8_block_halves(block + Q8_ROWS, 2))
                             : _mm512_setzero_ps();
            const uint8_t *x_block[Q8_TILE16_TOKENS];
            int t = 0;
            for (; t + Q8_TILE16_TOKENS <= nt; t += Q8_TILE16_TOKENS) {
                for (int tb = 0; tb < Q8_TILE16_TOKENS; tb++)
                    x_block[tb] = x + (size_t)(t0 + t + tb) * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
                q8_tile16_tokens(w_dtype, acc + t, x_block, tile, d_w, m_w, offset, Q8_TILE16_TOKENS);
            }
            for (; t < nt; t++) {
                x_block[0] = x + (size_t)(t0 + t) * ldx + (size_t)b * ML_Q8_BLOCK_BYTES;
                q8_tile16_tokens(w_dtype, acc + t, x_block, tile, d_w, m_w, offset, 1);
            }
        }
        for (int t = 0; t < nt; t++) {
            float lanes[2 * Q8_ROWS];
            _mm512_storeu_ps(lanes, acc[t]);
            memcpy(y + (size_t)(t0 + t) * ldy, lanes, (size_t)rows * sizeof(float));
        }
    }
}
#endif

void Q8_PREFIX(matmul_q8_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                 const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8_supports(w_dtype) || n_in <= 0) return;
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in);
    size_t lookahead = q8_lookahead(n_tok);
#if Q8_TILE16
    if (n_tok >= Q8_TILE16_MIN_TOKENS) {
        for (int r = row_begin; r < row_end; r += 2 * Q8_ROWS) {
            int rows = row_end - r < 2 * Q8_ROWS ? row_end - r : 2 * Q8_ROWS;
            const uint8_t *row[2 * Q8_ROWS];
            for (int k = 0; k < 2 * Q8_ROWS; k++) row[k] = w + (size_t)(r + (k < rows ? k : rows - 1)) * row_bytes;
#define TILE16_CALL(T) q8_tile16_group(T, y + r, ldy, rows, x, ldx, row, n_in, n_tok)
            ML_FOR_Q32(w_dtype, TILE16_CALL)
#undef TILE16_CALL
        }
        return;
    }
#endif
    for (int r = row_begin; r < row_end; r += Q8_ROWS) {
        int rows = row_end - r < Q8_ROWS ? row_end - r : Q8_ROWS;
        const uint8_t *row[Q8_ROWS];
        q8_group_rows(row, w, row_bytes, r, rows);
        if (n_tok >= (ml_q8_signed(w_dtype) ? Q8_0_TILE_MIN_TOKENS : Q8_TILE_MIN_TOKENS)) {
#define TILE_CALL(T) q8_tile_group(T, y + r, ldy, rows, x, ldx, row, n_in, n_tok)
            ML_FOR_Q32(w_dtype, TILE_CALL)
#undef TILE_CALL
            continue;
        }
        /* Q8_NEXT_ROWS: the next group's rows (one contiguous range) prefetched in address
         * order alongside, where the look-ahead within rows is off */
        const uint8_t *next = Q8_NEXT_ROWS && !lookahead && n_tok <= 2 && r + Q8_ROWS < row_end
                                  ? w + (size_t)(r + Q8_ROWS) * row_bytes : NULL;
        for (int t0 = 0; t0 < n_tok; t0 += Q8_TOKENS) {
            int nt = n_tok - t0 < Q8_TOKENS ? n_tok - t0 : Q8_TOKENS;
            __m256 acc[Q8_TOKENS];
            const uint8_t *xt = x + (size_t)t0 * ldx;
#define GROUP_CALL(T) q8_group(T, acc, xt, ldx, row, n_in, nt, lookahead, next)
            if (!Q8_GROUP_PER_TYPE) {
                GROUP_CALL(w_dtype);
            } else {
                ML_FOR_Q32(w_dtype, GROUP_CALL)
            }
#undef GROUP_CALL
            q8_store_rows(y + (size_t)t0 * ldy + r, ldy, acc, nt, rows);
        }
    }
}

#endif
