/* AVX2 products and conversions for the block types of matmul_f32_blocks: the 8-lane decoders
 * of kernels_blocks_vector.h and the tiled product of kernels_blocks.c over the AVX2 float32
 * kernel (ml_cpu_kernels_avx2.matmul_f32_f32), so each output equals that kernel on the
 * dequantised matrix bit for bit. The code is kernels_blocks_isa.h's, built with -mavx2. */
#define BLOCKS_ISA avx2
#include "backend/cpu/kernels_blocks_isa.h"
