/* ggml block decoding (Q8_0, Q4_0, Q4_1; layouts in core/dtype.h): the one scalar definition
 * that formats/gguf_dequant.c (ml_gguf_dequantize) and the scalar kernels both call, so the
 * dequantiser and the reference matmuls cannot drift apart. The vector kernels rebuild the same
 * values with their own instructions and are tested against these bit for bit. */
#ifndef ML_CORE_QUANT_BLOCKS_H
#define ML_CORE_QUANT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

/* One block of ML_QUANT_BLOCK weights at block (any alignment) as float32 in out [32], computed
 * as gguf-py computes them: the f16 scale converted exactly, one product per weight (exact: an
 * 11-bit significand times an integer of at most 8 bits), and for Q4_1 a separate sum, the one
 * rounding. */
void ml_q8_0_block_to_f32(const uint8_t *block, float *out);
void ml_q4_0_block_to_f32(const uint8_t *block, float *out);
void ml_q4_1_block_to_f32(const uint8_t *block, float *out);

/* n_blocks consecutive blocks of dtype (ML_DTYPE_Q8_0, _Q4_0 or _Q4_1) into dst
 * [n_blocks * 32]; any other dtype does nothing. */
void ml_quant_blocks_to_f32(ml_dtype dtype, const uint8_t *src, size_t n_blocks, float *dst);

#endif
