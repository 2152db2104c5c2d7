/* The two entry points of a vector block-type file, named for BLOCKS_ISA (avx2 or avx512):
 * ml_<isa>_blocks_to_f32, the decoders of kernels_blocks_vector.h, and
 * ml_<isa>_matmul_f32_blocks, the tiled product of kernels_blocks.c over that ISA's float32
 * kernel (ml_cpu_kernels_<isa>.matmul_f32_f32), so each output equals that kernel on the
 * dequantised matrix bit for bit. Template by include: kernels_blocks_avx2.c and
 * kernels_blocks_avx512.c define BLOCKS_ISA and include it once; what differs between them is
 * their compile flags (cmake/layers.cmake), so each ISA gets its own compiled copy. */
#ifndef ML_BACKEND_CPU_KERNELS_BLOCKS_ISA_H
#define ML_BACKEND_CPU_KERNELS_BLOCKS_ISA_H

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_blocks_vector.h"
#include "backend/cpu/kernels_internal.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define BLOCKS_PASTE(prefix, isa, suffix) prefix##isa##suffix
#define BLOCKS_NAME(prefix, isa, suffix) BLOCKS_PASTE(prefix, isa, suffix)
#define BLOCKS_TO_F32 BLOCKS_NAME(ml_, BLOCKS_ISA, _blocks_to_f32)

void BLOCKS_TO_F32(ml_dtype dtype, float *out, const uint8_t *in, size_t n) { bv_blocks_to_f32(dtype, out, in, n); }

void BLOCKS_NAME(ml_, BLOCKS_ISA, _matmul_f32_blocks)(ml_dtype w_dtype, float *y, size_t ldy, const float *x,
                                                      size_t ldx, const uint8_t *w, int n_in, int n_tok,
                                                      int row_begin, int row_end) {
    ml_blocks_matmul_tiled(BLOCKS_NAME(ml_cpu_kernels_, BLOCKS_ISA, ).matmul_f32_f32, BLOCKS_TO_F32, w_dtype, y, ldy,
                           x, ldx, w, n_in, n_tok, row_begin, row_end);
}

#endif
