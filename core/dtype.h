/* Element types of tensors in files and in memory: plain element types (one value per element)
 * and ggml's block-quantised types, which store blocks of 32 elements (formats/gguf_dequant.c
 * has the layouts). Offsets into a tensor go through ml_dtype_row_bytes, which covers both. */
#ifndef ML_CORE_DTYPE_H
#define ML_CORE_DTYPE_H

#include <stddef.h>

typedef enum {
    ML_DTYPE_F32 = 0,
    ML_DTYPE_F16,
    ML_DTYPE_BF16,
    ML_DTYPE_F64,
    ML_DTYPE_I8,
    ML_DTYPE_U8,
    ML_DTYPE_I16,
    ML_DTYPE_U16,
    ML_DTYPE_I32,
    ML_DTYPE_U32,
    ML_DTYPE_I64,
    ML_DTYPE_U64,
    ML_DTYPE_BOOL,
    ML_DTYPE_F8_E4M3,
    ML_DTYPE_F8_E5M2,
    /* ggml blocks of ML_QUANT_BLOCK elements, little-endian, no padding:
     *   Q8_0: f16 d, int8 q[32]             34 bytes   x[i] = q[i] * d
     *   Q4_0: f16 d, u8 qs[16]              18 bytes   x[i] = d * ((qs[i] & 15) - 8), x[i+16] from qs[i] >> 4
     *   Q4_1: f16 d, f16 m, u8 qs[16]       20 bytes   x[i] = d * (qs[i] & 15) + m,   x[i+16] from qs[i] >> 4
     * and the other ggml types the engine keeps as stored (layouts in core/quant_blocks.c):
     *   Q5_0 (22 bytes), Q5_1 (24), IQ4_NL (18): blocks of 32;
     *   Q2_K (84), Q3_K (110), Q4_K (144), Q5_K (176), Q6_K (210), Q8_K (292): super-blocks of
     *   ML_QUANT_SUPER_BLOCK (256) elements. */
    ML_DTYPE_Q8_0,
    ML_DTYPE_Q4_0,
    ML_DTYPE_Q4_1,
    ML_DTYPE_Q5_0,
    ML_DTYPE_Q5_1,
    ML_DTYPE_IQ4_NL,
    ML_DTYPE_Q2_K,
    ML_DTYPE_Q3_K,
    ML_DTYPE_Q4_K,
    ML_DTYPE_Q5_K,
    ML_DTYPE_Q6_K,
    ML_DTYPE_Q8_K,
    ML_DTYPE_COUNT
} ml_dtype;

#define ML_QUANT_BLOCK 32
/* The K-quants' super-block, and the most elements any block of any type holds. */
#define ML_QUANT_SUPER_BLOCK 256

/* Bytes per element of a plain type; 0 for a block-quantised type (use ml_dtype_row_bytes). */
size_t ml_dtype_size(ml_dtype dtype);
/* Elements per block: 1 for plain types, 32 or 256 for the quantised ones (0 if unknown). */
size_t ml_dtype_block_elements(ml_dtype dtype);
/* Bytes per block: the element size for plain types (0 if unknown). */
size_t ml_dtype_block_bytes(ml_dtype dtype);
/* Non-zero for the ggml block types (Q8_0 ... Q8_K). */
int ml_dtype_is_quantized(ml_dtype dtype);
/* Bytes of n consecutive elements (a row, or the first n columns of one); n must be a multiple
 * of ml_dtype_block_elements (callers check; the result is rounded down otherwise). */
size_t ml_dtype_row_bytes(ml_dtype dtype, size_t n);
/* Lower-case short name: "f32", "bf16", "q4_1", ... */
const char *ml_dtype_name(ml_dtype dtype);
/* Parses a safetensors dtype string ("F32", "BF16", ...); returns 0 on success, -1 if unknown.
 * The quantised types have no safetensors name. */
int ml_dtype_from_safetensors(const char *text, ml_dtype *out);

#endif
