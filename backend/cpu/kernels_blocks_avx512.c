/* AVX-512 products and conversions for the block types of matmul_f32_blocks: the 8-lane decoders
 * of kernels_blocks_vector.h and the tiled product of kernels_blocks.c over the AVX-512 float32
 * kernel (ml_cpu_kernels_avx512.matmul_f32_f32), so each output equals that kernel on the
 * dequantised matrix bit for bit (the avx512bf16 table has the same matmul_f32_f32). The
 * decoders are the 8-lane ones for now, built with the AVX-512 flags. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_blocks_vector.h"
#include "backend/cpu/kernels_internal.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

void ml_avx512_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n) {
    bv_blocks_to_f32(dtype, out, in, n);
}

void ml_avx512_matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                               int n_in, int n_tok, int row_begin, int row_end) {
    ml_blocks_matmul_tiled(ml_cpu_kernels_avx512.matmul_f32_f32, ml_avx512_blocks_to_f32, w_dtype, y, ldy, x, ldx, w, n_in,
                           n_tok, row_begin, row_end);
}
