#include "core/dtype.h"

#include <string.h>

static const struct {
    const char *safetensors_name;
    const char *short_name;
    size_t size;
} dtype_table[ML_DTYPE_COUNT] = {
    [ML_DTYPE_F32] = {"F32", "f32", 4},        [ML_DTYPE_F16] = {"F16", "f16", 2},
    [ML_DTYPE_BF16] = {"BF16", "bf16", 2},     [ML_DTYPE_F64] = {"F64", "f64", 8},
    [ML_DTYPE_I8] = {"I8", "i8", 1},           [ML_DTYPE_U8] = {"U8", "u8", 1},
    [ML_DTYPE_I16] = {"I16", "i16", 2},        [ML_DTYPE_U16] = {"U16", "u16", 2},
    [ML_DTYPE_I32] = {"I32", "i32", 4},        [ML_DTYPE_U32] = {"U32", "u32", 4},
    [ML_DTYPE_I64] = {"I64", "i64", 8},        [ML_DTYPE_U64] = {"U64", "u64", 8},
    [ML_DTYPE_BOOL] = {"BOOL", "bool", 1},     [ML_DTYPE_F8_E4M3] = {"F8_E4M3", "f8_e4m3", 1},
    [ML_DTYPE_F8_E5M2] = {"F8_E5M2", "f8_e5m2", 1},
};

size_t ml_dtype_size(ml_dtype dtype) {
    return (unsigned)dtype < ML_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

const char *ml_dtype_name(ml_dtype dtype) {
    return (unsigned)dtype < ML_DTYPE_COUNT ? dtype_table[dtype].short_name : "unknown";
}

int ml_dtype_from_safetensors(const char *text, ml_dtype *out) {
    for (int i = 0; i < ML_DTYPE_COUNT; i++) {
        if (strcmp(text, dtype_table[i].safetensors_name) == 0) {
            *out = (ml_dtype)i;
            return 0;
        }
    }
    return -1;
}
