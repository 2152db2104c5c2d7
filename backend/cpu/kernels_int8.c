/* Fast mode on block-quantised weights: activations quantised to int8 per 32 values, integer
 * dot products per block, one float32 multiply-add per block. The scalar reference of
 * quantize_q8 and matmul_q8_blocks (kernels.h has the contract); the vector variants
 * (kernels_int8_vector.h) compute the same integers and do the same float operations in the
 * same order, so their outputs equal these bit for bit.
 *
 * Why exact integers make that cheap: a block's integer sum is exact whatever order the vector
 * code adds its products in (|sum| < 2^24, so its float conversion is exact too), and the only
 * float rounding is the per-block chain acc = fma(isum, d_w * d_x, acc) in block order, which a
 * vector variant keeps per output (lanes are rows, never parts of one row). The K-quants go
 * further (quantize_q8k, matmul_q8k_blocks): their sub-block scales and mins are integers, so a
 * whole super-block of 256 weights is one exact integer sum (sc_j * dot_j summed over j), and
 * the float chain is one or two FMAs per 256 activations; the vector code may sum those
 * integers in any order and layout (kernels_q8k_vector.h transposes a tile of weights so that
 * lanes are rows) and still gives these bits. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/numeric.h"
#include "core/quant_blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

int ml_q8_supports(ml_dtype w_dtype) {
    switch (w_dtype) {
    case ML_DTYPE_Q8_0:
    case ML_DTYPE_Q4_0:
    case ML_DTYPE_Q4_1:
    case ML_DTYPE_Q5_0:
    case ML_DTYPE_Q5_1:
    case ML_DTYPE_IQ4_NL: return 1;
    default: return 0;
    }
}

int ml_q8k_supports(ml_dtype w_dtype) {
    switch (w_dtype) {
    case ML_DTYPE_Q2_K:
    case ML_DTYPE_Q3_K:
    case ML_DTYPE_Q4_K:
    case ML_DTYPE_Q5_K:
    case ML_DTYPE_Q6_K:
    case ML_DTYPE_Q8_K: return 1;
    default: return 0;
    }
}

/* The scale of a block of values: d = max|x| / 127 and its inverse, both 0 where d is below
 * FLT_MIN (an all-zero block, or one so small that 1 / d would overflow); then
 * q = nearest-even(x * inverse) after clamping to [-127, 127] (NaN to -127, as a vector max
 * does), so every value is defined and every variant gives the same bytes. */
static float block_scale(const float *x, int n, float *inverse) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f;
    *inverse = 0.0f;
    if (d >= FLT_MIN)
        *inverse = 1.0f / d;
    else
        d = 0.0f;
    return d;
}

static int quantize_value(float x, float inverse) {
    float s = x * inverse;
    s = s > -127.0f ? s : -127.0f;
    s = s < 127.0f ? s : 127.0f;
    return (int)nearbyintf(s);
}

void ml_scalar_quantize_q8(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8_BLOCK;
    for (int b = 0; b < n_blocks; b++) {
        uint8_t *block = out + (size_t)b * ML_Q8_BLOCK_BYTES;
        const float *xb = x + b * ML_Q8_BLOCK;
        float inverse, d = block_scale(xb, ML_Q8_BLOCK, &inverse);
        int32_t sum = 0;
        for (int i = 0; i < ML_Q8_BLOCK; i++) {
            int v = quantize_value(xb[i], inverse);
            block[i] = (uint8_t)(int8_t)v;
            sum += v;
        }
        memcpy(block + 32, &d, sizeof d);
        memcpy(block + 36, &sum, sizeof sum);
    }
}

void ml_scalar_quantize_q8k(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8K_BLOCK;
    for (int b = 0; b < n_blocks; b++) {
        uint8_t *block = out + (size_t)b * ML_Q8K_BLOCK_BYTES;
        const float *xb = x + b * ML_Q8K_BLOCK;
        float inverse, d = block_scale(xb, ML_Q8K_BLOCK, &inverse);
        int16_t sums[16] = {0};
        for (int i = 0; i < ML_Q8K_BLOCK; i++) {
            int v = quantize_value(xb[i], inverse);
            block[i] = (uint8_t)(int8_t)v;
            sums[i / 16] = (int16_t)(sums[i / 16] + v);
        }
        memcpy(block + 256, &d, sizeof d);
        memcpy(block + 260, sums, sizeof sums);
    }
}

/* The weights of block b of one row as integers (Q4_0 already minus 8, Q5_0 minus 16, IQ4_NL's
 * levels), its scale d and, for Q4_1 and Q5_1, its offset m (0 otherwise). Q5's fifth bit of
 * element i is bit i of the little-endian 32 bits after d (and m). */
static void weight_block(ml_dtype w_dtype, const uint8_t *block, int q[ML_Q8_BLOCK], float *d, float *m) {
    uint16_t bits;
    memcpy(&bits, block, 2);
    *d = ml_f16_to_f32(bits);
    *m = 0.0f;
    if (w_dtype == ML_DTYPE_Q8_0) {
        for (int i = 0; i < ML_Q8_BLOCK; i++) q[i] = (int8_t)block[2 + i];
        return;
    }
    const uint8_t *nibbles = block + ml_q8_nibbles_at(w_dtype);
    int offset = ml_q8_offset(w_dtype), five = w_dtype == ML_DTYPE_Q5_0 || w_dtype == ML_DTYPE_Q5_1;
    uint32_t high = 0;
    if (five) memcpy(&high, nibbles - 4, sizeof high);
    for (int i = 0; i < ML_Q8_BLOCK; i++) {
        int n = i < ML_Q8_BLOCK / 2 ? nibbles[i] & 15 : nibbles[i - ML_Q8_BLOCK / 2] >> 4;
        if (w_dtype == ML_DTYPE_IQ4_NL) {
            q[i] = ml_iq4_nl_levels[n];
            continue;
        }
        q[i] = (n | (int)((high >> i) & 1) << 4) - offset;
    }
    if (ml_q8_with_m(w_dtype)) {
        memcpy(&bits, block + 2, 2);
        *m = ml_f16_to_f32(bits);
    }
}

/* The exact integers of one K-quant super-block sb against one activation block x_block
 * (kernels.h: isum, and Q2_K/Q4_K/Q5_K's msum, 0 for the others), read where core/quant_blocks.c
 * reads them (element 32 * j + i of sub-block j). */
static void kquant_sums(ml_dtype w_dtype, const uint8_t *sb, const uint8_t *x_block, int32_t *isum, int32_t *msum) {
    const int8_t *xq = (const int8_t *)x_block;
    int16_t bsum[16];
    memcpy(bsum, x_block + 260, sizeof bsum);
    *isum = 0;
    *msum = 0;
    if (w_dtype == ML_DTYPE_Q4_K || w_dtype == ML_DTYPE_Q5_K) {
        /* q: nibble j % 2 of qs[32 * (j / 2) + i], Q5_K's fifth bit bit j of qh[i] */
        const uint8_t *qh = w_dtype == ML_DTYPE_Q5_K ? sb + 16 : NULL;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = sb + (w_dtype == ML_DTYPE_Q5_K ? 48 : 16) + 32 * (j / 2);
            int scale, min;
            ml_k4_scale_min(sb + 4, j, &scale, &min);
            int32_t dot = 0;
            for (int i = 0; i < 32; i++) {
                int q = (qs[i] >> (4 * (j % 2))) & 15;
                if (qh) q |= ((qh[i] >> j) & 1) << 4;
                dot += q * xq[32 * j + i];
            }
            *isum += scale * dot;
            *msum += min * (bsum[2 * j] + bsum[2 * j + 1]);
        }
        return;
    }
    if (w_dtype == ML_DTYPE_Q6_K) {
        /* element 128 * g + 32 * h + i (g = j / 4, h = j % 4): low 4 bits nibble h / 2 of
         * ql[64 * g + 32 * (h % 2) + i], high 2 bits bits 2 * h of qh[32 * g + i]; minus 32 */
        const int8_t *scales = (const int8_t *)(sb + 192);
        int32_t offset = 0;
        for (int j = 0; j < 8; j++) {
            int g = j / 4, h = j % 4;
            const uint8_t *ql = sb + 64 * g + 32 * (h % 2), *qh = sb + 128 + 32 * g;
            int32_t half[2] = {0, 0};
            for (int i = 0; i < 32; i++) {
                int q = ((ql[i] >> (4 * (h / 2))) & 15) | (((qh[i] >> (2 * h)) & 3) << 4);
                half[i / 16] += q * xq[32 * j + i];
            }
            *isum += scales[2 * j] * half[0] + scales[2 * j + 1] * half[1];
            offset += scales[2 * j] * bsum[2 * j] + scales[2 * j + 1] * bsum[2 * j + 1];
        }
        *isum -= 32 * offset;
        return;
    }
    if (w_dtype == ML_DTYPE_Q2_K || w_dtype == ML_DTYPE_Q3_K) {
        /* element 128 * g + 32 * h + i (g = e / 128, h = e % 128 / 32): bits 2h, 2h + 1 of
         * qs[32 * g + i]; Q3_K's third bit bit e / 32 of hmask[i], its weight q - 4 (the - 4
         * as Q6_K's - 32); Q2_K's scale and min the nibbles of scales[e / 16] */
        int q3 = w_dtype == ML_DTYPE_Q3_K;
        const uint8_t *qs = sb + (q3 ? 32 : 16);
        int32_t offset = 0;
        for (int sub = 0; sub < 16; sub++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * sub + l, g = e / 128, h = e % 128 / 32, i = e % 32;
                int q = (qs[32 * g + i] >> (2 * h)) & 3;
                if (q3) q |= ((sb[i] >> (e / 32)) & 1) << 2;
                dot += q * xq[e];
            }
            if (q3) {
                int scale = ml_q3_k_scale(sb + 96, sub);
                *isum += scale * dot;
                offset += scale * bsum[sub];
            } else {
                *isum += (sb[sub] & 15) * dot;
                *msum += (sb[sub] >> 4) * bsum[sub];
            }
        }
        *isum -= 4 * offset;
        return;
    }
    for (int i = 0; i < 256; i++) *isum += (int8_t)sb[4 + i] * xq[i]; /* Q8_K: float32 d, int8 q[256] */
}

/* The float factors of a super-block: d (and Q2_K/Q4_K/Q5_K's dmin) as float32. */
static float kquant_scale(ml_dtype w_dtype, const uint8_t *sb, float *dmin) {
    uint16_t bits;
    float d;
    *dmin = 0.0f;
    if (w_dtype == ML_DTYPE_Q8_K) {
        memcpy(&d, sb, sizeof d);
        return d;
    }
    size_t at = ml_kq_d_offset(w_dtype);
    memcpy(&bits, sb + at, 2);
    d = ml_f16_to_f32(bits);
    if (ml_q8k_with_min(w_dtype)) { /* dmin right after d */
        memcpy(&bits, sb + at + 2, 2);
        *dmin = ml_f16_to_f32(bits);
    }
    return d;
}

void ml_scalar_matmul_q8k_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                 const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8k_supports(w_dtype) || n_in <= 0) return;
    int n_super = n_in / ML_Q8K_BLOCK, with_min = ml_q8k_with_min(w_dtype);
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in), super_bytes = ml_dtype_block_bytes(w_dtype);
    for (int t = 0; t < n_tok; t++)
        for (int r = row_begin; r < row_end; r++) {
            float acc = 0.0f;
            for (int s = 0; s < n_super; s++) {
                const uint8_t *sb = w + (size_t)r * row_bytes + (size_t)s * super_bytes;
                const uint8_t *x_block = x + (size_t)t * ldx + (size_t)s * ML_Q8K_BLOCK_BYTES;
                float d_x, dmin, d = kquant_scale(w_dtype, sb, &dmin);
                memcpy(&d_x, x_block + 256, sizeof d_x);
                int32_t isum, msum;
                kquant_sums(w_dtype, sb, x_block, &isum, &msum);
                acc = fmaf((float)isum, d * d_x, acc);
                if (with_min) acc = fmaf((float)msum, -(dmin * d_x), acc);
            }
            y[(size_t)t * ldy + r] = acc;
        }
}

void ml_scalar_matmul_q8_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8_supports(w_dtype) || n_in <= 0) return;
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in);
    size_t block_bytes = ml_dtype_block_bytes(w_dtype);
    for (int t = 0; t < n_tok; t++) {
        const uint8_t *x_row = x + (size_t)t * ldx;
        for (int r = row_begin; r < row_end; r++) {
            const uint8_t *w_row = w + (size_t)r * row_bytes;
            float acc = 0.0f;
            for (int b = 0; b < n_blocks; b++) {
                int q[ML_Q8_BLOCK];
                float d_w, m_w, d_x;
                int32_t sum_x, isum = 0;
                weight_block(w_dtype, w_row + (size_t)b * block_bytes, q, &d_w, &m_w);
                const uint8_t *x_block = x_row + (size_t)b * ML_Q8_BLOCK_BYTES;
                memcpy(&d_x, x_block + 32, sizeof d_x);
                for (int i = 0; i < ML_Q8_BLOCK; i++) isum += q[i] * (int8_t)x_block[i];
                acc = fmaf((float)isum, d_w * d_x, acc);
                if (ml_q8_with_m(w_dtype)) {
                    memcpy(&sum_x, x_block + 36, sizeof sum_x);
                    acc = fmaf((float)sum_x, m_w * d_x, acc);
                }
            }
            y[(size_t)t * ldy + r] = acc;
        }
    }
}
