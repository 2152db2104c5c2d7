/* bf16 weights in row groups (kernels.h, ML_GROUP_ROWS): the packing, and the scalar reference
 * of matmul_f32_bf16g / matmul_bf16_bf16g, which the vector variants (kernels_groups_avx2.c,
 * kernels_groups_avx512.c) equal bit for bit: one fused chain per output in index order. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include <math.h>
#include <string.h>

#include "core/numeric.h"

void ml_bf16_groups_pack(uint16_t *dst, const uint16_t *src, size_t src_ld, int n_rows, int n_in) {
    int n_groups = (n_rows + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS, n_pairs = n_in / 2;
    for (int g = 0; g < n_groups; g++) {
        uint16_t *group = dst + (size_t)g * ML_GROUP_ROWS * (size_t)n_in; /* [n_pairs][16][2] */
        for (int lane = 0; lane < ML_GROUP_ROWS; lane++) {
            int r = g * ML_GROUP_ROWS + lane;
            uint16_t *out = group + 2 * lane;
            if (r >= n_rows) {
                for (int j = 0; j < n_pairs; j++) memset(out + (size_t)j * 2 * ML_GROUP_ROWS, 0, 4);
                continue;
            }
            const uint16_t *row = src + (size_t)r * src_ld;
            for (int j = 0; j < n_pairs; j++) memcpy(out + (size_t)j * 2 * ML_GROUP_ROWS, row + 2 * (size_t)j, 4);
        }
    }
}

/* One output: the chain of kernels.h over row r of the packed w and the float32 x row. */
static float chain(const float *x, const uint16_t *w, int n_in, int r) {
    float acc = 0.0f;
    for (int i = 0; i < n_in; i++) acc = fmaf(x[i], ml_bf16_to_f32(ml_bf16_groups_at(w, n_in, r, i)), acc);
    return acc;
}

void ml_scalar_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in,
                                int n_tok, int row_begin, int row_end) {
    for (int t = 0; t < n_tok; t++)
        for (int r = row_begin; r < row_end; r++) y[(size_t)t * ldy + r] = chain(x + (size_t)t * ldx, w, n_in, r);
}

/* Widened x (exact), a row at a time through a small buffer, then the same chain. */
void ml_scalar_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                                 int n_tok, int row_begin, int row_end) {
    enum { CHUNK = 256 };
    float widened[CHUNK];
    for (int t = 0; t < n_tok; t++) {
        const uint16_t *xt = x + (size_t)t * ldx;
        for (int r = row_begin; r < row_end; r++) {
            float acc = 0.0f;
            for (int i0 = 0; i0 < n_in; i0 += CHUNK) {
                int n = n_in - i0 < CHUNK ? n_in - i0 : CHUNK;
                for (int i = 0; i < n; i++) widened[i] = ml_bf16_to_f32(xt[i0 + i]);
                for (int i = 0; i < n; i++)
                    acc = fmaf(widened[i], ml_bf16_to_f32(ml_bf16_groups_at(w, n_in, r, i0 + i)), acc);
            }
            y[(size_t)t * ldy + r] = acc;
        }
    }
}
