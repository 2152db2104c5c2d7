/* ggml tensor types: block geometry of every type gguf-py 0.19.0 knows (constants.py,
 * GGML_QUANT_SIZES), and exact float32 conversion of F32, F16, BF16, Q8_0, Q4_0 and Q4_1.
 *
 * Block layouts (ggml-common.h; gguf-py quants.py dequantize_blocks), 32 elements per block:
 *   Q8_0: f16 d, int8 q[32]             x[i] = q[i] * d
 *   Q4_0: f16 d, u8 qs[16]              x[i] = d * ((qs[i] & 15) - 8),  x[i+16] = d * ((qs[i] >> 4) - 8)
 *   Q4_1: f16 d, f16 m, u8 qs[16]       x[i] = d * (qs[i] & 15) + m,    x[i+16] = d * (qs[i] >> 4) + m
 * i.e. low nibbles are elements 0..15 and high nibbles 16..31. gguf-py computes each product and
 * sum in float32, one rounding per operation; so does core/quant_blocks.c, which decodes the
 * blocks for this file and for the scalar kernels alike. */
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
    {6, {"Q5_0", QK, 2 + 4 + 16, 0}},
    {7, {"Q5_1", QK, 2 + 2 + 4 + 16, 0}},
    {8, {"Q8_0", QK, 2 + 32, 1}},
    {9, {"Q8_1", QK, 4 + 4 + 32, 0}},
    {10, {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, 0}},
    {11, {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, 0}},
    {12, {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, 0}},
    {13, {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, 0}},
    {14, {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, 0}},
    {15, {"Q8_K", QK_K, 4 + QK_K + QK_K / 8, 0}},
    {16, {"IQ2_XXS", QK_K, 2 + QK_K / 4, 0}},
    {17, {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, 0}},
    {18, {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, 0}},
    {19, {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, 0}},
    {20, {"IQ4_NL", QK, 2 + 16, 0}},
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
    case ML_GGML_Q8_0: ml_quant_blocks_to_f32(ML_DTYPE_Q8_0, bytes, n_blocks, dst); break;
    case ML_GGML_Q4_0: ml_quant_blocks_to_f32(ML_DTYPE_Q4_0, bytes, n_blocks, dst); break;
    case ML_GGML_Q4_1: ml_quant_blocks_to_f32(ML_DTYPE_Q4_1, bytes, n_blocks, dst); break;
    default: return ml_set_error(ML_ERR_INTERNAL, "ggml type %s has no converter", traits->name);
    }
    return ML_OK;
}

int ml_gguf_tensor_to_f32(const ml_gguf *g, const ml_gguf_tensor *t, float *dst) {
    const char *source = g && g->source ? g->source : "GGUF";
    if (!t || (!dst && t->n_elements)) return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_tensor_to_f32: invalid arguments", source);
    if (!t->type_known) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" has ggml type id %u, which this reader does not know "
                            "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)", source, t->name, t->type);
    }
    const ml_ggml_type_traits *traits = ml_ggml_traits(t->type);
    if (!traits->can_dequantize) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" has ggml type %s, which is not supported "
                            "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)", source, t->name, traits->name);
    }
    if (t->n_elements == 0) return ML_OK;
    int status = ml_gguf_dequantize(t->type, t->data, t->n_elements, dst);
    if (status != ML_OK) return ml_wrap_error(status, "%s: tensor \"%s\"", source, t->name);
    return ML_OK;
}
