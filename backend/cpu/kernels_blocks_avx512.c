/* AVX-512 products and conversions for the block types of matmul_f32_blocks: the 8-lane decoders
 * of kernels_blocks_vector.h and the tiled product of kernels_blocks.c over the AVX-512 float32
 * kernel (ml_cpu_kernels_avx512.matmul_f32_f32), so each output equals that kernel on the
 * dequantised matrix bit for bit (the avx512bf16 table has the same matmul_f32_f32). The
 * decoders are the 8-lane ones for now, built with the AVX-512 flags; the code is
 * kernels_blocks_isa.h's. */
#define BLOCKS_ISA avx512
#include "backend/cpu/kernels_blocks_isa.h"
