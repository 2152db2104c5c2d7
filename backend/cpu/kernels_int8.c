/* Fast mode on block-quantised weights: activations quantised to int8 per 32 values, integer
 * dot products per block, one float32 multiply-add per block. The scalar reference of
 * quantize_q8 and matmul_q8_blocks (kernels.h has the contract); the vector variants
 * (kernels_int8_vector.h) compute the same integers and do the same float operations in the
 * same order, so their outputs equal these bit for bit.
 *
 * Why exact integers make that cheap: a block's integer sum is exact whatever order the vector
 * code adds its products in (|sum| < 2^24, so its float conversion is exact too), and the only
 * float rounding is the per-block chain acc = fma(isum, d_w * d_x, acc) in block order, which a
 * vector variant keeps per output (lanes are rows, never parts of one row). */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/numeric.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

int ml_q8_supports(ml_dtype w_dtype) {
    return w_dtype == ML_DTYPE_Q8_0 || w_dtype == ML_DTYPE_Q4_0 || w_dtype == ML_DTYPE_Q4_1;
}

/* The scale of one block of 32 values: d = max|x| / 127 and its inverse, both 0 where d is
 * below FLT_MIN (an all-zero block, or one so small that 1 / d would overflow); then
 * q = nearest-even(x * inverse) after clamping to [-127, 127] (NaN to -127, as a vector max
 * does), so every value is defined and every variant gives the same bytes. */
void ml_scalar_quantize_q8(uint8_t *out, const float *x, int n) {
    int n_blocks = n / ML_Q8_BLOCK;
    for (int b = 0; b < n_blocks; b++) {
        uint8_t *block = out + (size_t)b * ML_Q8_BLOCK_BYTES;
        const float *xb = x + b * ML_Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < ML_Q8_BLOCK; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f, inverse = 0.0f;
        if (d >= FLT_MIN)
            inverse = 1.0f / d;
        else
            d = 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < ML_Q8_BLOCK; i++) {
            float s = xb[i] * inverse;
            s = s > -127.0f ? s : -127.0f;
            s = s < 127.0f ? s : 127.0f;
            int v = (int)nearbyintf(s);
            block[i] = (uint8_t)(int8_t)v;
            sum += v;
        }
        memcpy(block + 32, &d, sizeof d);
        memcpy(block + 36, &sum, sizeof sum);
    }
}

/* The weights of block b of one row as integers (Q4_0 already minus 8), its scale d and, for
 * Q4_1, its offset m (0 otherwise). */
static void weight_block(ml_dtype w_dtype, const uint8_t *block, int q[ML_Q8_BLOCK], float *d, float *m) {
    uint16_t bits;
    memcpy(&bits, block, 2);
    *d = ml_f16_to_f32(bits);
    *m = 0.0f;
    if (w_dtype == ML_DTYPE_Q8_0) {
        for (int i = 0; i < ML_Q8_BLOCK; i++) q[i] = (int8_t)block[2 + i];
        return;
    }
    const uint8_t *nibbles = block + (w_dtype == ML_DTYPE_Q4_1 ? 4 : 2);
    int offset = w_dtype == ML_DTYPE_Q4_0 ? 8 : 0;
    for (int i = 0; i < ML_Q8_BLOCK / 2; i++) {
        q[i] = (nibbles[i] & 15) - offset;
        q[i + ML_Q8_BLOCK / 2] = (nibbles[i] >> 4) - offset;
    }
    if (w_dtype == ML_DTYPE_Q4_1) {
        memcpy(&bits, block + 2, 2);
        *m = ml_f16_to_f32(bits);
    }
}

void ml_scalar_matmul_q8_blocks(ml_dtype w_dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                                const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (!ml_q8_supports(w_dtype) || n_in <= 0) return;
    int n_blocks = n_in / ML_Q8_BLOCK;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype), row_bytes = (size_t)n_blocks * block_bytes;
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
                if (w_dtype == ML_DTYPE_Q4_1) {
                    memcpy(&sum_x, x_block + 36, sizeof sum_x);
                    acc = fmaf((float)sum_x, m_w * d_x, acc);
                }
            }
            y[(size_t)t * ldy + r] = acc;
        }
    }
}
