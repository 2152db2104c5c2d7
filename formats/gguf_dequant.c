/* ggml tensor types: block geometry of every type gguf-py 0.19.0 knows (constants.py,
 * GGML_QUANT_SIZES), and exact float32 conversion of F32, F16, BF16 and the block types
 * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K.
 *
 * The block layouts are listed in core/quant_blocks.c, which decodes the blocks for this file
 * and for the scalar kernels alike, computing each product and sum in float32 in gguf-py's
 * order (quants.py dequantize_blocks), one rounding per operation. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/numeric.h"
#include "core/quant_blocks.h"
#include "formats/gguf.h"

#define QK 32
#define QK_K 256

typedef struct {
    uint32_t id;
    ml_ggml_type_traits traits;
} type_entry;

/* Ids 4, 5, 31-33 and 36-38 were removed from ggml; they (and any id not here) are unknown. */
static const type_entry type_table[] = {
    {0, {"F32", 1, 4, 1}},
    {1, {"F16", 1, 2, 1}},
    {2, {"Q4_0", QK, 2 + 16, 1}},
    {3, {"Q4_1", QK, 2 + 2 + 16, 1}},
    {6, {"Q5_0", QK, 2 + 4 + 16, 1}},
    {7, {"Q5_1", QK, 2 + 2 + 4 + 16, 1}},
    {8, {"Q8_0", QK, 2 + 32, 1}},
    {9, {"Q8_1", QK, 4 + 4 + 32, 0}},
    {10, {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, 1}},
    {11, {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, 1}},
    {12, {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, 1}},
    {13, {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, 1}},
    {14, {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, 1}},
    {15, {"Q8_K", QK_K, 4 + QK_K + QK_K / 8, 1}},
    {16, {"IQ2_XXS", QK_K, 2 + QK_K / 4, 0}},
    {17, {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, 0}},
    {18, {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, 0}},
    {19, {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, 0}},
    {20, {"IQ4_NL", QK, 2 + 16, 1}},
    {21, {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, 0}},
    {22, {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, 0}},
    {23, {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, 0}},
    {24, {"I8", 1, 1, 0}},
    {25, {"I16", 1, 2, 0}},
    {26, {"I32", 1, 4, 0}},
    {27, {"I64", 1, 8, 0}},
    {28, {"F64", 1, 8, 0}},
    {29, {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, 0}},
    {30, {"BF16", 1, 2, 1}},
    {34, {"TQ1_0", QK_K, 2 + 4 * 13, 0}},
    {35, {"TQ2_0", QK_K, 2 + 64, 0}},
    {39, {"MXFP4", QK, 1 + 16, 0}},
    {40, {"NVFP4", 64, 4 + 32, 0}},
    {41, {"Q1_0", 128, 2 + 16, 0}},
};

const ml_ggml_type_traits *ml_ggml_traits(uint32_t type) {
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
        if (type_table[i].id == type) return &type_table[i].traits;
    return NULL;
}

const char *ml_ggml_type_name(uint32_t type) {
    const ml_ggml_type_traits *traits = ml_ggml_traits(type);
    return traits ? traits->name : "unknown";
}

int ml_ggml_type_dtype(uint32_t type, ml_dtype *out) {
    static const struct {
        uint32_t type;
        ml_dtype dtype;
    } held[] = {
        {ML_GGML_F32, ML_DTYPE_F32},     {ML_GGML_F16, ML_DTYPE_F16},       {ML_GGML_BF16, ML_DTYPE_BF16},
        {ML_GGML_Q8_0, ML_DTYPE_Q8_0},   {ML_GGML_Q4_0, ML_DTYPE_Q4_0},     {ML_GGML_Q4_1, ML_DTYPE_Q4_1},
        {ML_GGML_Q5_0, ML_DTYPE_Q5_0},   {ML_GGML_Q5_1, ML_DTYPE_Q5_1},     {ML_GGML_IQ4_NL, ML_DTYPE_IQ4_NL},
        {ML_GGML_Q2_K, ML_DTYPE_Q2_K},   {ML_GGML_Q3_K, ML_DTYPE_Q3_K},     {ML_GGML_Q4_K, ML_DTYPE_Q4_K},
        {ML_GGML_Q5_K, ML_DTYPE_Q5_K},   {ML_GGML_Q6_K, ML_DTYPE_Q6_K},     {ML_GGML_Q8_K, ML_DTYPE_Q8_K},
    };
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++) {
        if (held[i].type == type) {
            *out = held[i].dtype;
            return 1;
        }
    }
    return 0;
}

static float f16_at(const uint8_t *p) { return ml_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

int ml_gguf_dequantize(uint32_t type, const void *src, size_t n_elements, float *dst) {
    const ml_ggml_type_traits *traits = ml_ggml_traits(type);
    if (!traits || !traits->can_dequantize)
        return ml_set_error(ML_ERR_UNSUPPORTED, "ggml type %s (id %u) cannot be converted to float32",
                            traits ? traits->name : "unknown", type);
    if (n_elements % traits->block_size != 0)
        return ml_set_error(ML_ERR_ARG, "%zu %s elements are not whole blocks of %u", n_elements, traits->name,
                            traits->block_size);
    const uint8_t *bytes = src;
    size_t n_blocks = n_elements / traits->block_size;
    switch (type) {
    case ML_GGML_F32: memcpy(dst, bytes, n_elements * sizeof(float)); break;
    case ML_GGML_F16:
        for (size_t i = 0; i < n_elements; i++) dst[i] = f16_at(bytes + 2 * i);
        break;
    case ML_GGML_BF16:
        for (size_t i = 0; i < n_elements; i++) dst[i] = ml_bf16_to_f32((uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8)));
        break;
    default: {
        ml_dtype dtype;
        if (!ml_ggml_type_dtype(type, &dtype) || !ml_dtype_is_quantized(dtype) ||
            ml_dtype_block_bytes(dtype) != traits->type_size)
            return ml_set_error(ML_ERR_INTERNAL, "ggml type %s has no converter", traits->name);
        ml_quant_blocks_to_f32(dtype, bytes, n_blocks, dst);
        break;
    }
    }
    return ML_OK;
}

int ml_gguf_tensor_to_f32(const ml_gguf *g, const ml_gguf_tensor *t, float *dst) {
    const char *source = g && g->source ? g->source : "GGUF";
    if (!t || (!dst && t->n_elements)) return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_tensor_to_f32: invalid arguments", source);
    if (!t->type_known) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" has ggml type id %u, which this reader does not know "
                            "(supported: " ML_GGML_SUPPORTED_TYPES ")", source, t->name, t->type);
    }
    const ml_ggml_type_traits *traits = ml_ggml_traits(t->type);
    if (!traits->can_dequantize) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" has ggml type %s, which is not supported "
                            "(supported: " ML_GGML_SUPPORTED_TYPES ")", source, t->name, traits->name);
    }
    if (t->n_elements == 0) return ML_OK;
    int status = ml_gguf_dequantize(t->type, t->data, t->n_elements, dst);
    if (status != ML_OK) return ml_wrap_error(status, "%s: tensor \"%s\"", source, t->name);
    return ML_OK;
}
