/* K-quant super-blocks' integer sub-block scales and mins, read with 128-bit integer
 * instructions, bit for bit as core/quant_blocks.c reads the bytes: the decoding that the fused
 * float32 kernels (kernels_avx2.c, kernels_avx512.c) and the int8 kernels (kernels_q8k_vector.h)
 * share. Include only from files built with at least -mavx2 -mf16c. */
#ifndef ML_BACKEND_CPU_KERNELS_KQUANT_SCALES_H
#define ML_BACKEND_CPU_KERNELS_KQUANT_SCALES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/kernels_internal.h"

/* The 16 scales of a per-16 type (Q2_K, Q3_K, Q6_K) as int8 lanes: Q2_K's low nibbles, Q3_K's
 * six bits minus 32 (ml_q3_k_scale: the low 4 bits nibble i / 8 of byte 96 + i % 8, the top 2
 * bits 2 (i / 4) of byte 104 + i % 4), Q6_K's bytes. *mins: Q2_K's high nibbles, else zero. */
static inline __m128i ml_kq_scales16(ml_dtype t, const uint8_t *sb, __m128i *mins) {
    const __m128i low4 = _mm_set1_epi8(15);
    *mins = _mm_setzero_si128();
    if (t == ML_DTYPE_Q6_K) return _mm_loadu_si128((const __m128i *)(sb + 192));
    if (t == ML_DTYPE_Q2_K) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)sb);
        *mins = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
        return _mm_and_si128(bytes, low4);
    }
    __m128i bytes = _mm_loadl_epi64((const __m128i *)(sb + 96));
    __m128i low = _mm_and_si128(_mm_unpacklo_epi64(bytes, _mm_srli_epi16(bytes, 4)), low4);
    /* dword i of the four: bytes 104-107 shifted right by 2i, so byte 4i + k holds the top bits
     * of scale 4i + k */
    int32_t top_bytes;
    memcpy(&top_bytes, sb + 104, sizeof top_bytes);
    __m128i top = _mm_srlv_epi32(_mm_set1_epi32(top_bytes), _mm_setr_epi32(0, 2, 4, 6));
    top = _mm_slli_epi16(_mm_and_si128(top, _mm_set1_epi8(3)), 4);
    return _mm_sub_epi8(_mm_or_si128(low, top), _mm_set1_epi8(32));
}

/* Q4_K/Q5_K's eight 6-bit scales and mins (ml_k4_scale_min), four bytes per word: bytes 4-7 of
 * the block hold scales 0-3 (and the top bits of scales 4-7), 8-11 the mins alike, 12-15 the low
 * nibbles of scales 4-7 and mins 4-7. */
static inline void ml_kq_scale_min8(const uint8_t *sb, uint32_t scales[2], uint32_t mins[2]) {
    uint32_t word[3];
    memcpy(word, sb + 4, sizeof word);
    scales[0] = word[0] & 0x3f3f3f3fu;
    scales[1] = (word[2] & 0x0f0f0f0fu) | ((word[0] >> 2) & 0x30303030u);
    mins[0] = word[1] & 0x3f3f3f3fu;
    mins[1] = ((word[2] >> 4) & 0x0f0f0f0fu) | ((word[1] >> 2) & 0x30303030u);
}

/* A super-block's d and (Q2_K, Q4_K, Q5_K) dmin as float32 (exact: vcvtph2ps); dmin 0 without. */
static inline float ml_kq_d(ml_dtype t, const uint8_t *sb, float *dmin) {
    int32_t halves = 0;
    memcpy(&halves, sb + ml_kq_d_offset(t), ml_q8k_with_min(t) ? 4 : 2);
    __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));
    *dmin = _mm_cvtss_f32(_mm_movehdup_ps(both));
    return _mm_cvtss_f32(both);
}

/* A super-block's sub-block scales d * sc (16, or Q4_K/Q5_K's 8) and Q2_K/Q4_K/Q5_K's mins
 * dmin * m as float32, as core/quant_blocks.c forms them (exact products); min is left alone
 * for Q3_K and Q6_K. The fused float32 kernels' per-super-block factors. */
static inline __attribute__((always_inline)) void ml_kq_scales_f32(ml_dtype t, const uint8_t *sb, float scale[16], float min[16]) {
    float dmin, d = ml_kq_d(t, sb, &dmin);
    __m256 dv = _mm256_set1_ps(d), dminv = _mm256_set1_ps(dmin);
    if (ml_q8k_per16(t)) {
        __m128i mins, bytes = ml_kq_scales16(t, sb, &mins);
        for (int half = 0; half < 2; half++) {
            __m128i sc = half ? _mm_srli_si128(bytes, 8) : bytes, m = half ? _mm_srli_si128(mins, 8) : mins;
            _mm256_storeu_ps(scale + 8 * half, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
            if (t == ML_DTYPE_Q2_K)
                _mm256_storeu_ps(min + 8 * half, _mm256_mul_ps(dminv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(m))));
        }
        return;
    }
    uint32_t sc[2], m[2];
    ml_kq_scale_min8(sb, sc, m);
    __m256i sc32 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc[1], (int)sc[0]));
    __m256i m32 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)m[1], (int)m[0]));
    _mm256_storeu_ps(scale, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(sc32)));
    _mm256_storeu_ps(min, _mm256_mul_ps(dminv, _mm256_cvtepi32_ps(m32)));
}

#endif
