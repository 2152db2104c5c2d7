/* The kernel table's matrix-product entry points for float and legacy ggml weights (kernels.h),
 * alike in every kernel file: each passes its element kinds to the file's own
 * matmul_driver(y, ldy, x, ldx, x_kind, w, w_kind, n_in, n_tok, row_begin, row_end) or its
 * block type to q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, qkind).
 * Template by include, once per file, after the file defines both drivers, KIND_F32 / KIND_F16
 * / KIND_BF16 and QKIND_Q8_0 / QKIND_Q4_0 / QKIND_Q4_1 (kernels_scalar.c: element readers and
 * ml_dtype values; kernels_vector_shared.h for the vector files: their kind numbers). */
#ifndef ML_BACKEND_CPU_KERNELS_MATMUL_ENTRIES_H
#define ML_BACKEND_CPU_KERNELS_MATMUL_ENTRIES_H

static void matmul_f32_f32(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int n_in, int n_tok,
                           int row_begin, int row_end) {
    matmul_driver(y, ldy, x, ldx, KIND_F32, w, KIND_F32, n_in, n_tok, row_begin, row_end);
}

static void matmul_f32_f16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                           int row_begin, int row_end) {
    matmul_driver(y, ldy, x, ldx, KIND_F32, w, KIND_F16, n_in, n_tok, row_begin, row_end);
}

/* Accurate mode: float32 activations times exactly widened bf16 weights. */
static void matmul_f32_bf16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int n_in, int n_tok,
                            int row_begin, int row_end) {
    matmul_driver(y, ldy, x, ldx, KIND_F32, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
}

/* Fast mode without a bf16 dot-product instruction: both operands widened to f32 (exact),
 * products exact, f32 accumulation. */
static void matmul_bf16_bf16(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *w, int n_in,
                             int n_tok, int row_begin, int row_end) {
    matmul_driver(y, ldy, x, ldx, KIND_BF16, w, KIND_BF16, n_in, n_tok, row_begin, row_end);
}


static void matmul_f32_q8_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                            int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q8_0);
}

static void matmul_f32_q4_0(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                            int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q4_0);
}

static void matmul_f32_q4_1(float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                            int row_begin, int row_end) {
    q_matmul_driver(y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end, QKIND_Q4_1);
}

#endif
