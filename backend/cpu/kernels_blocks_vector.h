/* 8-lane decoders of the block types of matmul_f32_blocks (Q5_0, Q5_1, IQ4_NL, Q2_K..Q8_K),
 * shared by kernels_blocks_avx2.c and kernels_blocks_avx512.c through kernels_blocks_isa.h
 * (include only from files built with at least -mavx2 -mfma -mf16c). Each writes a block's weights as float32, bit for bit as
 * core/quant_blocks.c (the layouts and the element order are documented there). The integer
 * codes of 32 elements are rebuilt at once with byte operations (each fits a signed byte), the
 * sub-block scale d * scale (and dmin * min) is formed in scalar float32 as the reference forms
 * it, the bytes are widened and converted exactly (vpmovsxbd, vcvtdq2ps), and then one vmulps,
 * or, for the types with a min or m, one FMA: every product is exact in float32 (an 11-bit f16
 * significand times at most 7 + 5 bits of integers), so fma(s, q, -m) rounds exactly as the
 * reference's s * q - m. Q8_K's float32 d times an int8 can round, so it has no FMA (one vmulps,
 * as the reference). */
#ifndef ML_BACKEND_CPU_KERNELS_BLOCKS_VECTOR_H
#define ML_BACKEND_CPU_KERNELS_BLOCKS_VECTOR_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/quant_blocks.h"

#define BV_INLINE static inline __attribute__((always_inline))

/* Little-endian f16 at p (any alignment), by vcvtph2ps (exact). */
BV_INLINE float bv_f16_at(const uint8_t *p) {
    uint16_t bits;
    memcpy(&bits, p, sizeof bits);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
}

BV_INLINE __m256i bv_load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
BV_INLINE __m256i bv_bytes(int v) { return _mm256_set1_epi8((char)v); }
/* Per byte: (v >> shift) & mask; shift 0..7 (a 16-bit shift, then the mask drops what came in
 * from the neighbouring byte). */
BV_INLINE __m256i bv_bits(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), bv_bytes(mask));
}

/* 8 signed bytes (the low 8 of `bytes`) as floats. */
BV_INLINE __m256 bv_i8x8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)); }

/* 32 signed byte values q (-128..127) of 32 consecutive elements as float32 at out:
 *   with_min: (s * q) - m, computed as fma(s, q, -m): the product is exact (see the top), so the
 *             fused form rounds as the reference's product and subtraction do, signed zeros
 *             included; without: s * q (one vmulps, the reference's one rounding).
 * s0, m0 apply to elements 0..15, s1, m1 to 16..31 (equal for sub-blocks of 32). */
BV_INLINE void bv_store32(float *out, __m256i q, float s0, float m0, float s1, float m1, int with_min) {
    __m128i low = _mm256_castsi256_si128(q), high = _mm256_extracti128_si256(q, 1);
    __m128i parts[4] = {low, _mm_srli_si128(low, 8), high, _mm_srli_si128(high, 8)};
    for (int u = 0; u < 4; u++) {
        __m256 scale = _mm256_set1_ps(u < 2 ? s0 : s1);
        __m256 values = bv_i8x8(parts[u]);
        __m256 result = with_min ? _mm256_fmadd_ps(scale, values, _mm256_set1_ps(-(u < 2 ? m0 : m1)))
                                 : _mm256_mul_ps(scale, values);
        _mm256_storeu_ps(out + 8 * u, result);
    }
}

/* 16 bytes at p as 32 nibbles: low nibbles (elements 0..15) then high nibbles (16..31). */
BV_INLINE __m256i bv_nibbles16(const uint8_t *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(15));
    __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1);
}

/* Q5_0/Q5_1's fifth bits: bit i of the little-endian 32-bit qh as 0 or 16 in byte i. */
BV_INLINE __m256i bv_qh_fifth_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    /* byte i gets byte i / 8 of qh, then keeps bit i % 8 */
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                         _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                                          2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    return _mm256_and_si256(set, bv_bytes(16));
}

BV_INLINE void bv_q5_0(const uint8_t *block, float *out) {
    float d = bv_f16_at(block);
    __m256i q = _mm256_or_si256(bv_nibbles16(block + 6), bv_qh_fifth_bits(block + 2));
    bv_store32(out, _mm256_sub_epi8(q, bv_bytes(16)), d, 0.0f, d, 0.0f, 0);
}

/* d * q + m: fma(d, q, m) with -m passed as the "min" (d * q is exact). */
BV_INLINE void bv_q5_1(const uint8_t *block, float *out) {
    float d = bv_f16_at(block), m = bv_f16_at(block + 2);
    __m256i q = _mm256_or_si256(bv_nibbles16(block + 8), bv_qh_fifth_bits(block + 4));
    bv_store32(out, q, d, -m, d, -m, 1);
}

BV_INLINE void bv_iq4_nl(const uint8_t *block, float *out) {
    float d = bv_f16_at(block);
    __m128i levels = _mm_loadu_si128((const __m128i *)ml_iq4_nl_levels);
    __m256i nibbles = bv_nibbles16(block + 2);
    __m256i q = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(levels), nibbles);
    bv_store32(out, q, d, 0.0f, d, 0.0f, 0);
}

/* Q2_K: element 128g + 32j + l is bits 2j of qs[32g + l]; sub-blocks of 16. */
BV_INLINE void bv_q2_k(const uint8_t *block, float *out) {
    const uint8_t *scales = block, *qs = block + 16;
    float d = bv_f16_at(block + 80), dmin = bv_f16_at(block + 82);
    for (int g = 0; g < 2; g++) {
        __m256i bytes = bv_load32(qs + 32 * g);
        for (int j = 0; j < 4; j++) {
            int sub = 8 * g + 2 * j; /* (128g + 32j) / 16 */
            float s0 = d * (float)(scales[sub] & 0x0f), m0 = dmin * (float)(scales[sub] >> 4);
            float s1 = d * (float)(scales[sub + 1] & 0x0f), m1 = dmin * (float)(scales[sub + 1] >> 4);
            bv_store32(out + 128 * g + 32 * j, bv_bits(bytes, 2 * j, 3), s0, m0, s1, m1, 1);
        }
    }
}

/* Q3_K: low bits as Q2_K's; element e's high bit is bit e / 32 of hmask[e % 32]; q = low - 4
 * unless it is set. */
BV_INLINE void bv_q3_k(const uint8_t *block, float *out) {
    const uint8_t *hmask = block, *qs = block + 32, *scales = block + 96;
    float d = bv_f16_at(block + 108);
    float scale[16];
    for (int j = 0; j < 16; j++) scale[j] = d * (float)ml_q3_k_scale(scales, j);
    __m256i high_bits = bv_load32(hmask);
    for (int g = 0; g < 2; g++) {
        __m256i bytes = bv_load32(qs + 32 * g);
        for (int j = 0; j < 4; j++) {
            int group = 4 * g + j; /* e / 32 */
            __m256i low = bv_bits(bytes, 2 * j, 3);
            __m256i high = _mm256_slli_epi16(bv_bits(high_bits, group, 1), 2); /* 0 or 4 per byte */
            __m256i q = _mm256_sub_epi8(_mm256_add_epi8(low, high), bv_bytes(4));
            bv_store32(out + 32 * group, q, scale[2 * group], 0.0f, scale[2 * group + 1], 0.0f, 0);
        }
    }
}

/* Q4_K (qh NULL) and Q5_K: element 64g + 32h + l is nibble h of qs[32g + l]; Q5_K's fifth bit
 * is bit (64g + 32h) / 32 of qh[l]; sub-blocks of 32. */
BV_INLINE void bv_k4(const uint8_t *block, const uint8_t *qh, const uint8_t *qs, float *out) {
    float d = bv_f16_at(block), dmin = bv_f16_at(block + 2);
    __m256i fifth = qh ? bv_load32(qh) : _mm256_setzero_si256();
    for (int g = 0; g < 4; g++) {
        __m256i bytes = bv_load32(qs + 32 * g);
        for (int h = 0; h < 2; h++) {
            int sub = 2 * g + h, scale_bits, min_bits;
            ml_k4_scale_min(block + 4, sub, &scale_bits, &min_bits);
            float scale = d * (float)scale_bits, min = dmin * (float)min_bits;
            __m256i q = bv_bits(bytes, 4 * h, 15);
            if (qh) q = _mm256_or_si256(q, _mm256_slli_epi16(bv_bits(fifth, sub, 1), 4));
            bv_store32(out + 32 * sub, q, scale, min, scale, min, 1);
        }
    }
}

/* Q6_K: element 128g + r: low 4 bits nibble r / 64 of ql[64g + r % 64], high 2 bits
 * bits 2 * (r / 32) of qh[32g + r % 32]; q - 32; sub-blocks of 16. */
BV_INLINE void bv_q6_k(const uint8_t *block, float *out) {
    const uint8_t *ql = block, *qh = block + 128;
    const int8_t *scales = (const int8_t *)(block + 192);
    float d = bv_f16_at(block + 208);
    for (int g = 0; g < 2; g++) {
        __m256i low_bytes[2] = {bv_load32(ql + 64 * g), bv_load32(ql + 64 * g + 32)};
        __m256i high_bytes = bv_load32(qh + 32 * g);
        for (int j = 0; j < 4; j++) { /* r in [32j, 32j + 32) */
            __m256i low = bv_bits(low_bytes[j % 2], 4 * (j / 2), 15);
            __m256i high = _mm256_slli_epi16(bv_bits(high_bytes, 2 * j, 3), 4);
            __m256i q = _mm256_sub_epi8(_mm256_or_si256(low, high), bv_bytes(32));
            int sub = 8 * g + 2 * j;
            bv_store32(out + 128 * g + 32 * j, q, d * (float)scales[sub], 0.0f, d * (float)scales[sub + 1], 0.0f, 0);
        }
    }
}

/* Q8_K: d (float32) * q, one rounding. */
BV_INLINE void bv_q8_k(const uint8_t *block, float *out) {
    float d;
    memcpy(&d, block, sizeof d);
    for (int e = 0; e < ML_QUANT_SUPER_BLOCK; e += 32) bv_store32(out + e, bv_load32(block + 4 + e), d, 0.0f, d, 0.0f, 0);
}

/* n elements (whole blocks) of dtype at in as float32 at out; the generic reference for a type
 * this header has no decoder for (none today). */
BV_INLINE void bv_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n) {
    size_t block = ml_dtype_block_elements(dtype), block_bytes = ml_dtype_block_bytes(dtype);
    if (block <= 1) return;
    size_t n_blocks = n / block;
#define BV_EACH(call)                                                                              \
    for (size_t b = 0; b < n_blocks; b++) call(in + b * block_bytes, out + b * block);             \
    return
    switch (dtype) {
    case ML_DTYPE_Q5_0: BV_EACH(bv_q5_0);
    case ML_DTYPE_Q5_1: BV_EACH(bv_q5_1);
    case ML_DTYPE_IQ4_NL: BV_EACH(bv_iq4_nl);
    case ML_DTYPE_Q2_K: BV_EACH(bv_q2_k);
    case ML_DTYPE_Q3_K: BV_EACH(bv_q3_k);
    case ML_DTYPE_Q4_K:
        for (size_t b = 0; b < n_blocks; b++) bv_k4(in + b * block_bytes, NULL, in + b * block_bytes + 16, out + b * block);
        return;
    case ML_DTYPE_Q5_K:
        for (size_t b = 0; b < n_blocks; b++)
            bv_k4(in + b * block_bytes, in + b * block_bytes + 16, in + b * block_bytes + 48, out + b * block);
        return;
    case ML_DTYPE_Q6_K: BV_EACH(bv_q6_k);
    case ML_DTYPE_Q8_K: BV_EACH(bv_q8_k);
    default: ml_quant_blocks_to_f32(dtype, in, n_blocks, out); return;
    }
#undef BV_EACH
}

#endif
