/* The dtype table: names, and the block geometry every offset computation goes through. */
#include "core/dtype.h"

#include <string.h>

static const struct {
    const char *safetensors_name; /* NULL: not a safetensors dtype */
    const char *short_name;
    size_t block_elements;
    size_t block_bytes;
} dtype_table[ML_DTYPE_COUNT] = {
    [ML_DTYPE_F32] = {"F32", "f32", 1, 4},        [ML_DTYPE_F16] = {"F16", "f16", 1, 2},
    [ML_DTYPE_BF16] = {"BF16", "bf16", 1, 2},     [ML_DTYPE_F64] = {"F64", "f64", 1, 8},
    [ML_DTYPE_I8] = {"I8", "i8", 1, 1},           [ML_DTYPE_U8] = {"U8", "u8", 1, 1},
    [ML_DTYPE_I16] = {"I16", "i16", 1, 2},        [ML_DTYPE_U16] = {"U16", "u16", 1, 2},
    [ML_DTYPE_I32] = {"I32", "i32", 1, 4},        [ML_DTYPE_U32] = {"U32", "u32", 1, 4},
    [ML_DTYPE_I64] = {"I64", "i64", 1, 8},        [ML_DTYPE_U64] = {"U64", "u64", 1, 8},
    [ML_DTYPE_BOOL] = {"BOOL", "bool", 1, 1},     [ML_DTYPE_F8_E4M3] = {"F8_E4M3", "f8_e4m3", 1, 1},
    [ML_DTYPE_F8_E5M2] = {"F8_E5M2", "f8_e5m2", 1, 1},
    [ML_DTYPE_Q8_0] = {NULL, "q8_0", ML_QUANT_BLOCK, 2 + 32},
    [ML_DTYPE_Q4_0] = {NULL, "q4_0", ML_QUANT_BLOCK, 2 + 16},
    [ML_DTYPE_Q4_1] = {NULL, "q4_1", ML_QUANT_BLOCK, 2 + 2 + 16},
    [ML_DTYPE_Q5_0] = {NULL, "q5_0", ML_QUANT_BLOCK, 2 + 4 + 16},
    [ML_DTYPE_Q5_1] = {NULL, "q5_1", ML_QUANT_BLOCK, 2 + 2 + 4 + 16},
    [ML_DTYPE_IQ4_NL] = {NULL, "iq4_nl", ML_QUANT_BLOCK, 2 + 16},
    [ML_DTYPE_Q2_K] = {NULL, "q2_k", ML_QUANT_SUPER_BLOCK, 16 + 64 + 2 + 2},
    [ML_DTYPE_Q3_K] = {NULL, "q3_k", ML_QUANT_SUPER_BLOCK, 32 + 64 + 12 + 2},
    [ML_DTYPE_Q4_K] = {NULL, "q4_k", ML_QUANT_SUPER_BLOCK, 2 + 2 + 12 + 128},
    [ML_DTYPE_Q5_K] = {NULL, "q5_k", ML_QUANT_SUPER_BLOCK, 2 + 2 + 12 + 32 + 128},
    [ML_DTYPE_Q6_K] = {NULL, "q6_k", ML_QUANT_SUPER_BLOCK, 128 + 64 + 16 + 2},
    [ML_DTYPE_Q8_K] = {NULL, "q8_k", ML_QUANT_SUPER_BLOCK, 4 + 256 + 32},
};

static int known(ml_dtype dtype) { return (unsigned)dtype < ML_DTYPE_COUNT; }

size_t ml_dtype_size(ml_dtype dtype) {
    return known(dtype) && dtype_table[dtype].block_elements == 1 ? dtype_table[dtype].block_bytes : 0;
}

size_t ml_dtype_block_elements(ml_dtype dtype) { return known(dtype) ? dtype_table[dtype].block_elements : 0; }

size_t ml_dtype_block_bytes(ml_dtype dtype) { return known(dtype) ? dtype_table[dtype].block_bytes : 0; }

int ml_dtype_is_quantized(ml_dtype dtype) { return known(dtype) && dtype_table[dtype].block_elements > 1; }

size_t ml_dtype_row_bytes(ml_dtype dtype, size_t n) {
    if (!known(dtype)) return 0;
    return n / dtype_table[dtype].block_elements * dtype_table[dtype].block_bytes;
}

const char *ml_dtype_name(ml_dtype dtype) { return known(dtype) ? dtype_table[dtype].short_name : "unknown"; }

int ml_dtype_from_safetensors(const char *text, ml_dtype *out) {
    for (int i = 0; i < ML_DTYPE_COUNT; i++) {
        if (dtype_table[i].safetensors_name && strcmp(text, dtype_table[i].safetensors_name) == 0) {
            *out = (ml_dtype)i;
            return 0;
        }
    }
    return -1;
}
