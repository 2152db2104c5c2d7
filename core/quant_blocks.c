/* ggml block decoding, one rounding per C operation: the pragmas keep a compiler from
 * contracting d * q + m into a fused multiply-add (gguf-py rounds the product and the sum
 * separately; the products here are exact, so a fused form would round alike, but the reference
 * should not rely on that).
 *
 * Layouts (ggml-common.h; gguf-py 0.19.0 quants.py), little-endian, no padding. Blocks of 32:
 *   Q8_0   f16 d, i8 q[32]                              x[i] = q[i] * d
 *   Q4_0   f16 d, u8 qs[16]                             x[i] = d * ((qs[i] & 15) - 8), x[i+16] from qs[i] >> 4
 *   Q4_1   f16 d, f16 m, u8 qs[16]                      x[i] = d * (qs[i] & 15) + m
 *   Q5_0   f16 d, u32 qh, u8 qs[16]                     q = nibble | bit i of qh << 4; x = d * (q - 16)
 *   Q5_1   f16 d, f16 m, u32 qh, u8 qs[16]              x = d * q + m
 *   IQ4_NL f16 d, u8 qs[16]                             x = d * levels[nibble]
 * Super-blocks of 256 (K-quants), sub-block scales applied as (d * scale) * q - (dmin * min):
 *   Q2_K   u8 scales[16], u8 qs[64], f16 d, f16 dmin    16 sub-blocks of 16; scale = low nibble,
 *                                                       min = high nibble; q 2 bits
 *   Q3_K   u8 hmask[32], u8 qs[64], u8 scales[12], f16 d   16 sub-blocks of 16; signed 6-bit
 *                                                       scales; q = 2 bits - 4 unless the hmask bit
 *   Q4_K   f16 d, f16 dmin, u8 scales[12], u8 qs[128]   8 sub-blocks of 32; 6-bit scales, mins
 *   Q5_K   f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]   Q4_K plus a fifth bit
 *   Q6_K   u8 ql[128], u8 qh[64], i8 scales[16], f16 d  16 sub-blocks of 16; q 6 bits - 32
 *   Q8_K   f32 d, i8 q[256], i16 bsums[16]              x = d * q (bsums unused here)
 * Where the bits of element e sit is spelled out per decoder below (gguf-py's reshapes). */
#include "core/quant_blocks.h"

#include <string.h>

#include "core/numeric.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QK ML_QUANT_BLOCK
#define QK_K ML_QUANT_SUPER_BLOCK

/* Little-endian f16 at p (any alignment). */
static float f16_at(const uint8_t *p) { return ml_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

const int8_t ml_iq4_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void ml_q8_0_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block);
    for (int i = 0; i < QK; i++) out[i] = (float)(int8_t)block[2 + i] * d;
}

void ml_q4_0_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block);
    const uint8_t *qs = block + 2; /* low nibbles: elements 0..15; high nibbles: 16..31 */
    for (int i = 0; i < QK / 2; i++) {
        out[i] = d * (float)((int)(qs[i] & 0x0f) - 8);
        out[i + QK / 2] = d * (float)((int)(qs[i] >> 4) - 8);
    }
}

void ml_q4_1_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block), m = f16_at(block + 2);
    const uint8_t *qs = block + 4;
    for (int i = 0; i < QK / 2; i++) {
        float low = d * (float)(qs[i] & 0x0f);
        float high = d * (float)(qs[i] >> 4);
        out[i] = low + m;
        out[i + QK / 2] = high + m;
    }
}

/* Q5_0/Q5_1: the 5-bit value of element i: its nibble (low nibbles 0..15, high 16..31) and bit
 * i of the little-endian qh as the fifth bit. */
static int q5_value(const uint8_t *qh, const uint8_t *qs, int i) {
    int nibble = i < QK / 2 ? qs[i] & 0x0f : qs[i - QK / 2] >> 4;
    int high = (qh[i / 8] >> (i % 8)) & 1;
    return nibble | (high << 4);
}

void ml_q5_0_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block);
    for (int i = 0; i < QK; i++) out[i] = d * (float)(q5_value(block + 2, block + 6, i) - 16);
}

void ml_q5_1_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block), m = f16_at(block + 2);
    for (int i = 0; i < QK; i++) {
        float scaled = d * (float)q5_value(block + 4, block + 8, i);
        out[i] = scaled + m;
    }
}

void ml_iq4_nl_block_to_f32(const uint8_t *block, float *out) {
    float d = f16_at(block);
    const uint8_t *qs = block + 2;
    for (int i = 0; i < QK / 2; i++) {
        out[i] = d * (float)ml_iq4_nl_levels[qs[i] & 0x0f];
        out[i + QK / 2] = d * (float)ml_iq4_nl_levels[qs[i] >> 4];
    }
}

/* Q2_K. Element e = 128*g + 32*j + l (g 0..1, j 0..3, l 0..31): bits 2j..2j+1 of qs[32*g + l];
 * sub-block e / 16. */
void ml_q2_k_block_to_f32(const uint8_t *block, float *out) {
    const uint8_t *scales = block, *qs = block + 16;
    float d = f16_at(block + 80), dmin = f16_at(block + 82);
    for (int e = 0; e < QK_K; e++) {
        int g = e / 128, j = (e % 128) / 32, l = e % 32;
        int q = (qs[32 * g + l] >> (2 * j)) & 3;
        int sub = e / 16;
        float scale = d * (float)(scales[sub] & 0x0f);
        float min = dmin * (float)(scales[sub] >> 4);
        float scaled = scale * (float)q;
        out[e] = scaled - min;
    }
}

/* Q3_K. Element e = 128*g + 32*j + l: low bits as Q2_K's; high bit: bit e / 32 of hmask[l]
 * (hmask[e % 32]); q = low - 4 when that bit is clear. Sub-block e / 16. */
void ml_q3_k_block_to_f32(const uint8_t *block, float *out) {
    const uint8_t *hmask = block, *qs = block + 32, *scales = block + 96;
    float d = f16_at(block + 108);
    for (int e = 0; e < QK_K; e++) {
        int g = e / 128, j = (e % 128) / 32, l = e % 32;
        int low = (qs[32 * g + l] >> (2 * j)) & 3;
        int high = (hmask[l] >> (e / 32)) & 1;
        int q = low - (high ? 0 : 4);
        float scale = d * (float)ml_q3_k_scale(scales, e / 16);
        out[e] = scale * (float)q;
    }
}

/* Q4_K and Q5_K. Element e = 64*g + 32*h + l (g 0..3, h 0..1, l 0..31): nibble h of
 * qs[32*g + l]; Q5_K's fifth bit: bit e / 32 of qh[l]. Sub-block e / 32. */
static void k4_block_to_f32(const uint8_t *block, const uint8_t *qh, const uint8_t *qs, float *out) {
    float d = f16_at(block), dmin = f16_at(block + 2);
    const uint8_t *scales = block + 4;
    for (int sub = 0; sub < 8; sub++) {
        int scale_bits, min_bits;
        ml_k4_scale_min(scales, sub, &scale_bits, &min_bits);
        float scale = d * (float)scale_bits;
        float min = dmin * (float)min_bits;
        for (int l = 0; l < 32; l++) {
            int e = 32 * sub + l;
            int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0x0f;
            if (qh) q |= ((qh[l] >> sub) & 1) << 4;
            float scaled = scale * (float)q;
            out[e] = scaled - min;
        }
    }
}

void ml_q4_k_block_to_f32(const uint8_t *block, float *out) { k4_block_to_f32(block, NULL, block + 16, out); }

void ml_q5_k_block_to_f32(const uint8_t *block, float *out) { k4_block_to_f32(block, block + 16, block + 48, out); }

/* Q6_K. Element e = 128*g + r (g 0..1, r 0..127): low 4 bits: nibble r / 64 of ql[64*g + r % 64];
 * high 2 bits: bits 2*(r / 32) of qh[32*g + r % 32]. Sub-block e / 16. */
void ml_q6_k_block_to_f32(const uint8_t *block, float *out) {
    const uint8_t *ql = block, *qh = block + 128;
    const int8_t *scales = (const int8_t *)(block + 192);
    float d = f16_at(block + 208);
    for (int e = 0; e < QK_K; e++) {
        int g = e / 128, r = e % 128;
        int low = (ql[64 * g + r % 64] >> (4 * (r / 64))) & 0x0f;
        int high = (qh[32 * g + r % 32] >> (2 * (r / 32))) & 3;
        int q = (low | (high << 4)) - 32;
        float scale = d * (float)scales[e / 16];
        out[e] = scale * (float)q;
    }
}

void ml_q8_k_block_to_f32(const uint8_t *block, float *out) {
    float d;
    memcpy(&d, block, sizeof d); /* little-endian hosts only, as the rest of the GGUF reader */
    for (int e = 0; e < QK_K; e++) out[e] = d * (float)(int8_t)block[4 + e];
}

ml_block_decoder ml_quant_block_decoder(ml_dtype dtype) {
    switch (dtype) {
    case ML_DTYPE_Q8_0: return ml_q8_0_block_to_f32;
    case ML_DTYPE_Q4_0: return ml_q4_0_block_to_f32;
    case ML_DTYPE_Q4_1: return ml_q4_1_block_to_f32;
    case ML_DTYPE_Q5_0: return ml_q5_0_block_to_f32;
    case ML_DTYPE_Q5_1: return ml_q5_1_block_to_f32;
    case ML_DTYPE_IQ4_NL: return ml_iq4_nl_block_to_f32;
    case ML_DTYPE_Q2_K: return ml_q2_k_block_to_f32;
    case ML_DTYPE_Q3_K: return ml_q3_k_block_to_f32;
    case ML_DTYPE_Q4_K: return ml_q4_k_block_to_f32;
    case ML_DTYPE_Q5_K: return ml_q5_k_block_to_f32;
    case ML_DTYPE_Q6_K: return ml_q6_k_block_to_f32;
    case ML_DTYPE_Q8_K: return ml_q8_k_block_to_f32;
    default: return NULL;
    }
}

void ml_quant_blocks_to_f32(ml_dtype dtype, const uint8_t *src, size_t n_blocks, float *dst) {
    ml_block_decoder decode = ml_quant_block_decoder(dtype);
    if (!decode) return;
    size_t block_bytes = ml_dtype_block_bytes(dtype), block_elements = ml_dtype_block_elements(dtype);
    for (size_t b = 0; b < n_blocks; b++) decode(src + b * block_bytes, dst + b * block_elements);
}
