/* Element types of tensors in files and in memory. */
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
    ML_DTYPE_COUNT
} ml_dtype;

/* Bytes per element. */
size_t ml_dtype_size(ml_dtype dtype);
/* Lower-case short name: "f32", "bf16", ... */
const char *ml_dtype_name(ml_dtype dtype);
/* Parses a safetensors dtype string ("F32", "BF16", ...); returns 0 on success, -1 if unknown. */
int ml_dtype_from_safetensors(const char *text, ml_dtype *out);

#endif
