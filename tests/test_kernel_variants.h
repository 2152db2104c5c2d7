/* The kernel tables the kernel tests run, the scalar reference first (test_kernels.c,
 * test_kernels_int8.c): for v < ML_TEST_N_KERNEL_VARIANTS, ml_test_kernel_variant(v) is the
 * table, or NULL after a "SKIP <name>: CPU lacks it" line. */
#ifndef ML_TESTS_TEST_KERNEL_VARIANTS_H
#define ML_TESTS_TEST_KERNEL_VARIANTS_H

#include <stddef.h>
#include <stdio.h>

#include "backend/cpu/kernels.h"

static const char *const ml_test_kernel_variants[] = {"scalar", "avx2", "avx512", "avx512vnni", "avx512bf16"};
#define ML_TEST_N_KERNEL_VARIANTS (sizeof ml_test_kernel_variants / sizeof ml_test_kernel_variants[0])

static inline const ml_cpu_kernels *ml_test_kernel_variant(size_t v) {
    const ml_cpu_kernels *k = ml_cpu_kernels_variant(ml_test_kernel_variants[v]);
    if (!k) printf("SKIP %s: CPU lacks it\n", ml_test_kernel_variants[v]);
    return k;
}

#endif
