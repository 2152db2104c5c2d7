/* ggml block decoding, one rounding per C operation: the pragmas keep a compiler from
 * contracting Q4_1's d * q + m into a fused multiply-add (gguf-py rounds the product and the
 * sum separately). */
#include "core/quant_blocks.h"

#include "core/numeric.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QK ML_QUANT_BLOCK

/* Little-endian f16 at p (any alignment). */
static float f16_at(const uint8_t *p) { return ml_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

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

void ml_quant_blocks_to_f32(ml_dtype dtype, const uint8_t *src, size_t n_blocks, float *dst) {
    void (*decode)(const uint8_t *, float *) = dtype == ML_DTYPE_Q8_0   ? ml_q8_0_block_to_f32
                                               : dtype == ML_DTYPE_Q4_0 ? ml_q4_0_block_to_f32
                                               : dtype == ML_DTYPE_Q4_1 ? ml_q4_1_block_to_f32
                                                                        : NULL;
    if (!decode) return;
    size_t block_bytes = ml_dtype_block_bytes(dtype);
    for (size_t b = 0; b < n_blocks; b++) decode(src + b * block_bytes, dst + b * QK);
}
