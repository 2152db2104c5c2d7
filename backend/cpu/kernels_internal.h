/* What the kernel files share among themselves (not for callers of the table). */
#ifndef ML_BACKEND_CPU_KERNELS_INTERNAL_H
#define ML_BACKEND_CPU_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The scalar conversions (kernels_scalar.c), which the vector versions call for the elements
 * after their last whole vector, so a tail is the reference's own code. */
void ml_scalar_f32_to_bf16(uint16_t *out, const float *in, size_t n);
void ml_scalar_bf16_to_f32(float *out, const uint16_t *in, size_t n);
void ml_scalar_f16_to_f32(float *out, const uint16_t *in, size_t n);

/* Every kernels_*.c file names its functions alike (static matmul_f32_f32, rmsnorm, ...); a
 * table lists them with this, plus .name, .bf16_dot_product and .matmul_bf16_bf16, which
 * differ between tables. */
#define ML_CPU_KERNEL_ENTRIES                                                                      \
    .matmul_f32_f32 = matmul_f32_f32, .matmul_f32_f16 = matmul_f32_f16, .matmul_f32_bf16 = matmul_f32_bf16, \
    .matmul_f32_q8_0 = matmul_f32_q8_0, .matmul_f32_q4_0 = matmul_f32_q4_0,                       \
    .matmul_f32_q4_1 = matmul_f32_q4_1, .rmsnorm = rmsnorm, .rope = rope, .silu_mul = silu_mul,    \
    .attention_f32 = attention_f32, .attention_bf16 = attention_bf16, .f32_to_bf16 = f32_to_bf16,  \
    .bf16_to_f32 = bf16_to_f32, .f16_to_f32 = f16_to_f32, .q8_0_to_f32 = q8_0_to_f32,              \
    .q4_0_to_f32 = q4_0_to_f32, .q4_1_to_f32 = q4_1_to_f32

#endif
