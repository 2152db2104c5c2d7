/* ggml block decoding (every block type of core/dtype.h): the one scalar definition that
 * formats/gguf_dequant.c (ml_gguf_dequantize) and the scalar kernels both call, so the
 * dequantiser and the reference matmuls cannot drift apart. The vector kernels rebuild the same
 * values with their own instructions and are tested against these bit for bit. */
#ifndef ML_CORE_QUANT_BLOCKS_H
#define ML_CORE_QUANT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

/* One block at block (any alignment) as float32 in out [ml_dtype_block_elements(type)],
 * computed as gguf-py 0.19.0 (quants.py, dequantize_blocks) computes it: f16 scales converted
 * exactly, each product and sum in float32 in gguf-py's order, one rounding per operation.
 * Q8_K, which gguf-py cannot dequantise, follows ggml's dequantize_row_q8_K (d * q). */
void ml_q8_0_block_to_f32(const uint8_t *block, float *out);
void ml_q4_0_block_to_f32(const uint8_t *block, float *out);
void ml_q4_1_block_to_f32(const uint8_t *block, float *out);
void ml_q5_0_block_to_f32(const uint8_t *block, float *out);
void ml_q5_1_block_to_f32(const uint8_t *block, float *out);
void ml_iq4_nl_block_to_f32(const uint8_t *block, float *out);
void ml_q2_k_block_to_f32(const uint8_t *block, float *out);
void ml_q3_k_block_to_f32(const uint8_t *block, float *out);
void ml_q4_k_block_to_f32(const uint8_t *block, float *out);
void ml_q5_k_block_to_f32(const uint8_t *block, float *out);
void ml_q6_k_block_to_f32(const uint8_t *block, float *out);
void ml_q8_k_block_to_f32(const uint8_t *block, float *out);

/* The decoder of a block type, or NULL for any other dtype. */
typedef void (*ml_block_decoder)(const uint8_t *block, float *out);
ml_block_decoder ml_quant_block_decoder(ml_dtype dtype);

/* The K-quants' 6-bit sub-block scales and mins (Q4_K, Q5_K: 12 bytes for 8 sub-blocks of 32;
 * gguf-py Q4_K.get_scale_min): scale j and min j, j in 0..7, as integers 0..63. Inline: the
 * vector decoders call it once per sub-block. */
static inline void ml_k4_scale_min(const uint8_t *scales, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = scales[j] & 0x3f;
        *min = scales[4 + j] & 0x3f;
    } else {
        *scale = (scales[8 + j - 4] & 0x0f) | ((scales[j - 4] >> 2) & 0x30);
        *min = (scales[8 + j - 4] >> 4) | ((scales[4 + j - 4] >> 2) & 0x30);
    }
}

/* Q3_K's 16 signed 6-bit scales (12 bytes; gguf-py Q3_K.dequantize_blocks): scale j in -32..31:
 * its low 4 bits are nibble j / 8 of byte j % 8, its top 2 bits bits 2 * (j / 4) of byte
 * 8 + j % 4. */
static inline int ml_q3_k_scale(const uint8_t *scales, int j) {
    int low = (scales[j % 8] >> (4 * (j / 8))) & 0x0f;
    int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}
/* IQ4_NL's 16 levels (ggml kvalues_iq4nl). */
extern const int8_t ml_iq4_nl_levels[16];

/* n_blocks consecutive blocks of dtype into dst [n_blocks * ml_dtype_block_elements(dtype)];
 * any other dtype does nothing. */
void ml_quant_blocks_to_f32(ml_dtype dtype, const uint8_t *src, size_t n_blocks, float *dst);

#endif
