/* 8-lane decoders of the block types of matmul_f32_blocks (Q5_0, Q5_1, IQ4_NL, Q2_K..Q8_K),
 * shared by kernels_blocks_avx2.c and kernels_blocks_avx512.c (include only from files built
 * with at least -mavx2 -mfma -mf16c). Each writes a block's weights as float32, bit for bit as
 * core/quant_blocks.c (the layouts and the element order are documented there): the sub-block
 * scale d * scale (and dmin * min) is formed in scalar float32 as the reference forms it, the
 * integers are converted exactly (vcvtdq2ps), and then one vmulps and, for the types with a min
 * or m, one vsubps/vaddps. Every product is exact in float32 (an 11-bit f16 significand times at
 * most 7 + 5 bits of integers; Q8_K's f32 d times an int8 rounds once, as in the reference),
 * so a compiler that fused the last two operations would round alike. */
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

/* 8 bytes at p widened to 8 int32 lanes. */
BV_INLINE __m256i bv_u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* (scale * q) - min for 8 integer lanes q; min may be zero. */
BV_INLINE void bv_store_scaled(float *out, __m256i q, float scale, float min) {
    __m256 scaled = _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(q));
    _mm256_storeu_ps(out, _mm256_sub_ps(scaled, _mm256_set1_ps(min)));
}

/* Bit `bit` (0..7) of 8 bytes at p, as 0/1 in 8 lanes. */
BV_INLINE __m256i bv_bit(const uint8_t *p, int bit) {
    return _mm256_and_si256(_mm256_srl_epi32(bv_u8x8(p), _mm_cvtsi32_si128(bit)), _mm256_set1_epi32(1));
}

/* Bits [8k, 8k+8) of the little-endian 32-bit qh (Q5_0/Q5_1) as 0/16 in 8 lanes. */
BV_INLINE __m256i bv_qh_fifth_bits(const uint8_t *qh, int k) {
    __m256i lanes = _mm256_set1_epi32(qh[k]);
    __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(lanes, select), select);
    return _mm256_and_si256(set, _mm256_set1_epi32(16));
}

/* Nibbles of 8 bytes at p: low (high = 0) or high (high = 1). */
BV_INLINE __m256i bv_nibbles(const uint8_t *p, int high) {
    __m256i v = bv_u8x8(p);
    return high ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
}

BV_INLINE void bv_q5_0(const uint8_t *block, float *out) {
    float d = bv_f16_at(block);
    const uint8_t *qh = block + 2, *qs = block + 6;
    for (int u = 0; u < 4; u++) { /* elements 8u..8u+7: nibbles of qs[8(u%2)..], high when u >= 2 */
        __m256i q = _mm256_or_si256(bv_nibbles(qs + 8 * (u % 2), u / 2), bv_qh_fifth_bits(qh, u));
        bv_store_scaled(out + 8 * u, _mm256_sub_epi32(q, _mm256_set1_epi32(16)), d, 0.0f);
    }
}

BV_INLINE void bv_q5_1(const uint8_t *block, float *out) {
    float d = bv_f16_at(block), m = bv_f16_at(block + 2);
    const uint8_t *qh = block + 4, *qs = block + 8;
    for (int u = 0; u < 4; u++) {
        __m256i q = _mm256_or_si256(bv_nibbles(qs + 8 * (u % 2), u / 2), bv_qh_fifth_bits(qh, u));
        __m256 scaled = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q));
        _mm256_storeu_ps(out + 8 * u, _mm256_add_ps(scaled, _mm256_set1_ps(m)));
    }
}

BV_INLINE void bv_iq4_nl(const uint8_t *block, float *out) {
    float d = bv_f16_at(block);
    __m128i levels = _mm_loadu_si128((const __m128i *)ml_iq4_nl_levels);
    __m128i bytes = _mm_loadu_si128((const __m128i *)(block + 2));
    __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(15));
    __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
    __m128i level_low = _mm_shuffle_epi8(levels, low), level_high = _mm_shuffle_epi8(levels, high);
    bv_store_scaled(out, _mm256_cvtepi8_epi32(level_low), d, 0.0f);
    bv_store_scaled(out + 8, _mm256_cvtepi8_epi32(_mm_srli_si128(level_low, 8)), d, 0.0f);
    bv_store_scaled(out + 16, _mm256_cvtepi8_epi32(level_high), d, 0.0f);
    bv_store_scaled(out + 24, _mm256_cvtepi8_epi32(_mm_srli_si128(level_high, 8)), d, 0.0f);
}

BV_INLINE void bv_q2_k(const uint8_t *block, float *out) {
    const uint8_t *scales = block, *qs = block + 16;
    float d = bv_f16_at(block + 80), dmin = bv_f16_at(block + 82);
    for (int e = 0; e < ML_QUANT_SUPER_BLOCK; e += 8) {
        int g = e / 128, j = (e % 128) / 32, l = e % 32, sub = e / 16;
        __m256i q = _mm256_and_si256(_mm256_srl_epi32(bv_u8x8(qs + 32 * g + l), _mm_cvtsi32_si128(2 * j)),
                                     _mm256_set1_epi32(3));
        float scale = d * (float)(scales[sub] & 0x0f);
        float min = dmin * (float)(scales[sub] >> 4);
        bv_store_scaled(out + e, q, scale, min);
    }
}

BV_INLINE void bv_q3_k(const uint8_t *block, float *out) {
    const uint8_t *hmask = block, *qs = block + 32, *scales = block + 96;
    float d = bv_f16_at(block + 108);
    for (int e = 0; e < ML_QUANT_SUPER_BLOCK; e += 8) {
        int g = e / 128, j = (e % 128) / 32, l = e % 32;
        __m256i low = _mm256_and_si256(_mm256_srl_epi32(bv_u8x8(qs + 32 * g + l), _mm_cvtsi32_si128(2 * j)),
                                       _mm256_set1_epi32(3));
        /* q = low - 4 + 4 * bit */
        __m256i offset = _mm256_slli_epi32(bv_bit(hmask + l, e / 32), 2);
        __m256i q = _mm256_add_epi32(_mm256_sub_epi32(low, _mm256_set1_epi32(4)), offset);
        float scale = d * (float)ml_q3_k_scale(scales, e / 16);
        bv_store_scaled(out + e, q, scale, 0.0f);
    }
}

/* Q4_K (qh NULL) and Q5_K. */
BV_INLINE void bv_k4(const uint8_t *block, const uint8_t *qh, const uint8_t *qs, float *out) {
    float d = bv_f16_at(block), dmin = bv_f16_at(block + 2);
    for (int sub = 0; sub < 8; sub++) {
        int scale_bits, min_bits;
        ml_k4_scale_min(block + 4, sub, &scale_bits, &min_bits);
        float scale = d * (float)scale_bits;
        float min = dmin * (float)min_bits;
        for (int l = 0; l < 32; l += 8) {
            __m256i q = bv_nibbles(qs + 32 * (sub / 2) + l, sub % 2);
            if (qh) q = _mm256_or_si256(q, _mm256_slli_epi32(bv_bit(qh + l, sub), 4));
            bv_store_scaled(out + 32 * sub + l, q, scale, min);
        }
    }
}

BV_INLINE void bv_q6_k(const uint8_t *block, float *out) {
    const uint8_t *ql = block, *qh = block + 128;
    const int8_t *scales = (const int8_t *)(block + 192);
    float d = bv_f16_at(block + 208);
    for (int e = 0; e < ML_QUANT_SUPER_BLOCK; e += 8) {
        int g = e / 128, r = e % 128;
        __m256i low = bv_nibbles(ql + 64 * g + r % 64, r / 64);
        __m256i high = _mm256_and_si256(_mm256_srl_epi32(bv_u8x8(qh + 32 * g + r % 32), _mm_cvtsi32_si128(2 * (r / 32))),
                                        _mm256_set1_epi32(3));
        __m256i q = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32));
        float scale = d * (float)scales[e / 16];
        bv_store_scaled(out + e, q, scale, 0.0f);
    }
}

BV_INLINE void bv_q8_k(const uint8_t *block, float *out) {
    float d;
    memcpy(&d, block, sizeof d);
    for (int e = 0; e < ML_QUANT_SUPER_BLOCK; e += 8) {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(block + 4 + e)));
        _mm256_storeu_ps(out + e, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q)));
    }
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
