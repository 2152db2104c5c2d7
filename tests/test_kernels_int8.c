/* The int8 products of fast mode (kernels.h: quantize_q8 / matmul_q8_blocks for Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, IQ4_NL; quantize_q8k / matmul_q8k_blocks for the K-quants): the scalar reference on
 * hand-computed cases, then every variant the CPU has against it bit for bit (the contract
 * promises equal bits: integer sums are exact and the float operations are the same), on
 * seeded random data at awkward sizes, row splits and token counts (the vector K-quant kernels
 * change shape at 4 tokens and work in chunks of 64), and the size of the int8 error against
 * the float32 product of the dequantised weights. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/numeric.h"
#include "core/quant_blocks.h"
#include "test_kernel_variants.h"
#include "test_util.h"

/* The int8 error bound, per output: each activation moves by at most half its block's step d_x
 * (a block of 32 values, or of 256 for the K-quants)
 * (plus 1% for the rounding of d_x and x / d_x), so |y - exact| <= sum_i |w_i| d_x(i) / 2 * 1.01,
 * plus float32 accumulation, bounded by 1e-5 of sum_i |w_i x_i|. The test reports the worst
 * ratio of error to bound (<= 1 passes); a wrong scale, offset or lost block breaks it by far. */

static const ml_dtype types[] = {ML_DTYPE_Q8_0, ML_DTYPE_Q4_0, ML_DTYPE_Q4_1, ML_DTYPE_Q4_K,
                                 ML_DTYPE_Q5_K, ML_DTYPE_Q6_K, ML_DTYPE_Q8_K, ML_DTYPE_Q2_K,
                                 ML_DTYPE_Q3_K, ML_DTYPE_Q5_0, ML_DTYPE_Q5_1, ML_DTYPE_IQ4_NL};
static const char *const type_names[] = {"q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k",
                                         "q8_k", "q2_k", "q3_k", "q5_0", "q5_1", "iq4_nl"};
enum { N_TYPES = 12 };

/* Where a K-quant super-block keeps its f16 d (dmin, where it has one, right after). */
static size_t kquant_d_offset(ml_dtype dtype) {
    return dtype == ML_DTYPE_Q6_K ? 208 : dtype == ML_DTYPE_Q3_K ? 108 : dtype == ML_DTYPE_Q2_K ? 80 : 0;
}

static int has_dmin(ml_dtype dtype) {
    return dtype == ML_DTYPE_Q2_K || dtype == ML_DTYPE_Q4_K || dtype == ML_DTYPE_Q5_K;
}

static int is_kquant(ml_dtype dtype) { return ml_dtype_block_elements(dtype) == ML_QUANT_SUPER_BLOCK; }

/* The activation format a weight type takes: blocks of 32 (quantize_q8) or of 256 (quantize_q8k). */
static size_t act_row_bytes(ml_dtype dtype, int n) { return is_kquant(dtype) ? ml_q8k_row_bytes(n) : ml_q8_row_bytes(n); }

static void quantize(const ml_cpu_kernels *k, ml_dtype dtype, uint8_t *out, const float *x, int n) {
    if (is_kquant(dtype))
        k->quantize_q8k(out, x, n);
    else
        k->quantize_q8(out, x, n);
}

static void product(const ml_cpu_kernels *k, ml_dtype dtype, float *y, size_t ldy, const uint8_t *x, size_t ldx,
                    const uint8_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    if (is_kquant(dtype))
        k->matmul_q8k_blocks(dtype, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
    else
        k->matmul_q8_blocks(dtype, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
}

/* A normal f16 of either sign with magnitude in [2^-7, 2^1). */
static uint16_t random_f16(ml_test_rng *rng) {
    unsigned sign = ml_test_uniform(rng, 0.0f, 1.0f) < 0.5f ? 0x8000u : 0u;
    unsigned exponent = 8u + (unsigned)ml_test_uniform(rng, 0.0f, 8.0f);
    unsigned mantissa = (unsigned)ml_test_uniform(rng, 0.0f, 1024.0f) & 0x3ffu;
    return (uint16_t)(sign | exponent << 10 | mantissa);
}

/* Random blocks (n_blocks of the type's own size) with valid scales: f16 d (and m / dmin) where
 * the layout has them, Q8_K's float32 d from the same range. */
static void fill_blocks(ml_test_rng *rng, ml_dtype dtype, uint8_t *w, size_t n_blocks) {
    size_t block_bytes = ml_dtype_block_bytes(dtype);
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *block = w + b * block_bytes;
        for (size_t i = 0; i < block_bytes; i++) block[i] = (uint8_t)ml_test_uniform(rng, 0.0f, 256.0f);
        uint16_t d = random_f16(rng), m = random_f16(rng);
        float d32 = ml_f16_to_f32(d);
        if (dtype == ML_DTYPE_Q8_K) {
            memcpy(block, &d32, sizeof d32);
        } else if (is_kquant(dtype)) {
            memcpy(block + kquant_d_offset(dtype), &d, 2);
            if (has_dmin(dtype)) memcpy(block + kquant_d_offset(dtype) + 2, &m, 2);
        } else {
            memcpy(block, &d, 2);
            if (dtype == ML_DTYPE_Q4_1 || dtype == ML_DTYPE_Q5_1) memcpy(block + 2, &m, 2);
        }
    }
}

/* The dequantised weight i of a block, written here from the ggml layouts (core/dtype.h). */
static float dequantised(ml_dtype dtype, const uint8_t *block, int i) {
    uint16_t h;
    memcpy(&h, block, 2);
    float d = ml_f16_to_f32(h);
    if (dtype == ML_DTYPE_Q8_0) return d * (float)(int8_t)block[2 + i];
    const uint8_t *nibbles = block + (dtype == ML_DTYPE_Q4_1 ? 4 : 2);
    int q = i < 16 ? nibbles[i] & 15 : nibbles[i - 16] >> 4;
    if (dtype == ML_DTYPE_Q4_0) return d * (float)(q - 8);
    memcpy(&h, block + 2, 2);
    return d * (float)q + ml_f16_to_f32(h);
}

static float row_scale(const uint8_t *row, int b) {
    float d;
    memcpy(&d, row + (size_t)b * ML_Q8_BLOCK_BYTES + 32, sizeof d);
    return d;
}

/* The step d_x of activation i of an int8 row in dtype's format. */
static float step_of(ml_dtype dtype, const uint8_t *row, int i) {
    if (!is_kquant(dtype)) return row_scale(row, i / 32);
    float d;
    memcpy(&d, row + (size_t)(i / 256) * ML_Q8K_BLOCK_BYTES + 256, sizeof d);
    return d;
}

static int32_t row_sum(const uint8_t *row, int b) {
    int32_t s;
    memcpy(&s, row + (size_t)b * ML_Q8_BLOCK_BYTES + 36, sizeof s);
    return s;
}

static void test_reference_by_hand(void) {
    const ml_cpu_kernels *k = &ml_cpu_kernels_scalar;
    /* a block whose largest value is 127: d = 1, q = x rounded to nearest even */
    float x[64];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16);
    x[0] = -127.0f;
    x[1] = 2.5f;  /* tie: to 2 */
    x[2] = 3.5f;  /* tie: to 4 */
    x[3] = -2.5f; /* tie: to -2 */
    for (int i = 32; i < 64; i++) x[i] = 0.0f; /* all-zero block: d = 0, q = 0 */
    uint8_t *row = malloc(ml_q8_row_bytes(64));
    k->quantize_q8(row, x, 64);
    int8_t q[32];
    memcpy(q, row, 32);
    CHECK(row_scale(row, 0) == 1.0f, "scale of a block with max 127: %g", row_scale(row, 0));
    CHECK(q[0] == -127 && q[1] == 2 && q[2] == 4 && q[3] == -2 && q[20] == 4, "q = %d %d %d %d %d", q[0], q[1], q[2],
          q[3], q[20]);
    int32_t want_sum = -127 + 2 + 4 - 2;
    for (int i = 4; i < 32; i++) want_sum += i - 16;
    CHECK(row_sum(row, 0) == want_sum, "sum %d, want %d", row_sum(row, 0), want_sum);
    CHECK(row_scale(row, 1) == 0.0f && row_sum(row, 1) == 0, "zero block: d %g sum %d", row_scale(row, 1),
          row_sum(row, 1));
    /* one row of each type with scale 0.5 (f16 0x3800); Q4_1 with m = 0.25 (0x3400), against
     * the first block of x alone */
    uint8_t *row32 = malloc(ml_q8_row_bytes(32));
    k->quantize_q8(row32, x, 32);
    for (int t = 0; t < 3; t++) { /* the blocks of 32 (test_kquant_by_hand has the others) */
        uint8_t block[34] = {0};
        uint16_t half = 0x3800, quarter = 0x3400;
        memcpy(block, &half, 2);
        if (types[t] == ML_DTYPE_Q4_1) memcpy(block + 2, &quarter, 2);
        size_t data = types[t] == ML_DTYPE_Q4_1 ? 4 : 2;
        int data_bytes = types[t] == ML_DTYPE_Q8_0 ? 32 : 16; /* 32 int8, or 32 nibbles */
        for (int i = 0; i < data_bytes; i++) block[data + i] = (uint8_t)(types[t] == ML_DTYPE_Q8_0 ? (i * 7) % 256 : i * 37 + 11);
        double want = 0.0;
        for (int i = 0; i < 32; i++) want += (double)dequantised(types[t], block, i) * q[i];
        float y = -1.0f;
        k->matmul_q8_blocks(types[t], &y, 1, row32, 0, block, 32, 1, 0, 1);
        CHECK(y == (float)want, "scalar matmul_q8_blocks %s by hand: %.9g, want %.9g", type_names[t], y, want);
    }
    /* Q5_0, Q5_1, IQ4_NL: patterned bytes with d = 0.5 (Q5_1: m = 0.25), against core/quant_blocks.c's
     * dequantisation (every product a multiple of 1/4 far below 2^24: exact in float) */
    for (int t = 0; t < N_TYPES; t++) {
        if (types[t] != ML_DTYPE_Q5_0 && types[t] != ML_DTYPE_Q5_1 && types[t] != ML_DTYPE_IQ4_NL) continue;
        uint8_t block[24];
        for (size_t i = 0; i < sizeof block; i++) block[i] = (uint8_t)(i * 53 + 7 * t);
        uint16_t half = 0x3800, quarter = 0x3400;
        memcpy(block, &half, 2);
        if (types[t] == ML_DTYPE_Q5_1) memcpy(block + 2, &quarter, 2);
        float w[32];
        ml_quant_blocks_to_f32(types[t], block, 1, w);
        double want = 0.0;
        for (int i = 0; i < 32; i++) want += (double)w[i] * q[i];
        if (types[t] == ML_DTYPE_Q5_1) { /* m * sum_x: the sum over x's 32 int8 values */
            want = 0.0;
            for (int i = 0; i < 32; i++) want += (double)(w[i] - 0.25f) * q[i];
            want += 0.25 * row_sum(row32, 0);
        }
        float y = -1.0f;
        k->matmul_q8_blocks(types[t], &y, 1, row32, 0, block, 32, 1, 0, 1);
        CHECK(y == (float)want, "scalar matmul_q8_blocks %s by hand: %.9g, want %.9g", type_names[t], y, want);
    }
    free(row);
    free(row32);
}

/* One super-block of each K-quant with d = 0.5 and dmin = 0.25 (Q8_K: d = 0.5f), patterned
 * quants and scales, against x whose blocks each have the maximum 127 (d_x = 1) and small
 * other values: every product and partial sum is a multiple of 1/4 below 2^22, so the float
 * result equals the exact sum of dequantised weights (core/quant_blocks.c) times x's integers. */
static void test_kquant_by_hand(void) {
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = i % 32 == 5 ? (i % 64 ? -127.0f : 127.0f) : (float)((i * 7) % 9 - 4);
    uint8_t *xq = malloc(ml_q8k_row_bytes(256));
    ml_cpu_kernels_scalar.quantize_q8k(xq, x, 256);
    int16_t sums[16];
    memcpy(sums, xq + 260, sizeof sums);
    for (int b = 0; b < 16; b++) {
        int want_sum = 0;
        for (int i = 0; i < 16; i++) want_sum += (int8_t)xq[16 * b + i];
        CHECK(sums[b] == want_sum, "quantize_q8k: sum %d is %d, want %d", b, sums[b], want_sum);
    }
    for (int t = 0; t < N_TYPES; t++) {
        if (!is_kquant(types[t])) continue;
        uint8_t block[292];
        size_t block_bytes = ml_dtype_block_bytes(types[t]);
        for (size_t i = 0; i < block_bytes; i++) block[i] = (uint8_t)(i * 37 + 11 * t);
        uint16_t half = 0x3800, quarter = 0x3400;
        float half32 = 0.5f;
        if (types[t] == ML_DTYPE_Q8_K) {
            memcpy(block, &half32, sizeof half32);
        } else {
            memcpy(block + kquant_d_offset(types[t]), &half, 2);
            if (has_dmin(types[t])) memcpy(block + kquant_d_offset(types[t]) + 2, &quarter, 2);
        }
        float w[256];
        ml_quant_blocks_to_f32(types[t], block, 1, w);
        double want = 0.0;
        for (int i = 0; i < 256; i++) want += (double)w[i] * (int8_t)xq[i];
        float y = -1.0f;
        ml_cpu_kernels_scalar.matmul_q8k_blocks(types[t], &y, 1, xq, 0, block, 256, 1, 0, 1);
        CHECK(y == (float)want && fabs(want) < 4194304.0, "scalar matmul_q8k_blocks %s by hand: %.9g, want %.9g",
              type_names[t], y, want);
    }
    free(xq);
}

/* One problem: x [n_tok, n_in] float, its int8 rows (by the reference), weights. */
typedef struct {
    ml_dtype dtype;
    int n_in, n_out, n_tok;
    size_t ldx;
    float *x;
    uint8_t *xq, *w;
    float *wf; /* [n_out, n_in] the dequantised weights */
} problem;

static void make(problem *p, ml_test_rng *rng, ml_dtype dtype, int n_in, int n_out, int n_tok) {
    p->dtype = dtype;
    p->n_in = n_in;
    p->n_out = n_out;
    p->n_tok = n_tok;
    p->ldx = act_row_bytes(dtype, n_in) + 64; /* rows further apart than they need */
    p->x = malloc((size_t)n_tok * n_in * sizeof(float));
    ml_test_fill(rng, p->x, (size_t)n_tok * n_in, -1.0f, 1.0f);
    p->xq = calloc((size_t)n_tok, p->ldx);
    for (int t = 0; t < n_tok; t++)
        quantize(&ml_cpu_kernels_scalar, dtype, p->xq + t * p->ldx, p->x + (size_t)t * n_in, n_in);
    size_t row_bytes = ml_dtype_row_bytes(dtype, (size_t)n_in);
    p->w = malloc((size_t)n_out * row_bytes + 1) + 1; /* every block misaligned */
    size_t block_elements = ml_dtype_block_elements(dtype), block_bytes = ml_dtype_block_bytes(dtype);
    fill_blocks(rng, dtype, p->w, (size_t)n_out * n_in / block_elements);
    p->wf = malloc((size_t)n_out * n_in * sizeof(float));
    for (int r = 0; r < n_out; r++) {
        const uint8_t *w_row = p->w + r * row_bytes;
        float *out = p->wf + (size_t)r * n_in;
        if (is_kquant(dtype) || dtype == ML_DTYPE_Q5_0 || dtype == ML_DTYPE_Q5_1 || dtype == ML_DTYPE_IQ4_NL)
            ml_quant_blocks_to_f32(dtype, w_row, (size_t)n_in / block_elements, out); /* core/quant_blocks.c */
        else
            for (int i = 0; i < n_in; i++) out[i] = dequantised(dtype, w_row + (size_t)(i / 32) * block_bytes, i % 32);
    }
}

static void release(problem *p) {
    free(p->x);
    free(p->xq);
    free(p->w - 1);
    free(p->wf);
}

static float *outputs(const problem *p) {
    float *y = malloc((size_t)p->n_tok * p->n_out * sizeof(float));
    for (size_t i = 0; i < (size_t)p->n_tok * p->n_out; i++) y[i] = NAN;
    return y;
}

/* The quantiser on data with special blocks: ties, zeros, NaN, infinities, subnormals, huge. */
static void test_quantize(const ml_cpu_kernels *k, ml_test_rng *rng) {
    enum { N = 32 * 12 };
    float x[N];
    ml_test_fill(rng, x, N, -3.0f, 3.0f);
    for (int i = 32; i < 64; i++) x[i] = 0.0f;
    for (int i = 64; i < 96; i++) x[i] = (float)(i - 80) + 0.5f; /* max 15.5: ties after scaling */
    x[100] = NAN;
    x[140] = INFINITY;
    x[170] = -INFINITY;
    for (int i = 192; i < 224; i++) x[i] = 1e-40f * (float)(i - 200); /* subnormal */
    for (int i = 224; i < 256; i++) x[i] = 3e38f * (i % 2 ? 1.0f : -1.0f);
    x[300] = -0.0f;
    uint8_t *want = calloc(1, ml_q8_row_bytes(N)), *got = calloc(1, ml_q8_row_bytes(N));
    for (int n = 32; n <= N; n += 32 * 5) {
        memset(got, 0xa5, ml_q8_row_bytes(N));
        memset(want, 0xa5, ml_q8_row_bytes(N));
        ml_cpu_kernels_scalar.quantize_q8(want, x, n);
        k->quantize_q8(got, x, n);
        CHECK(memcmp(want, got, ml_q8_row_bytes(n)) == 0, "%s quantize_q8 n=%d differs from the reference", k->name, n);
    }
    /* the blocks of 256: x's first 256 values (every special kind), then random ones */
    enum { NK = 256 * 3 };
    float xk[NK];
    memcpy(xk, x, sizeof x);
    ml_test_fill(rng, xk + N, NK - N, -0.01f, 0.01f);
    uint8_t *want_k = calloc(1, ml_q8k_row_bytes(NK)), *got_k = calloc(1, ml_q8k_row_bytes(NK));
    for (int n = 256; n <= NK; n += 256) {
        memset(got_k, 0xa5, ml_q8k_row_bytes(NK));
        memset(want_k, 0xa5, ml_q8k_row_bytes(NK));
        ml_cpu_kernels_scalar.quantize_q8k(want_k, xk + NK - n, n);
        k->quantize_q8k(got_k, xk + NK - n, n);
        CHECK(memcmp(want_k, got_k, ml_q8k_row_bytes(n)) == 0, "%s quantize_q8k n=%d differs from the reference",
              k->name, n);
    }
    free(want_k);
    free(got_k);
    free(want);
    free(got);
}

/* The blocks of 32 at every token count 1..70 (the vector kernels change shape at 3 and 6
 * tokens and work in register blocks of 4 and chunks of 128), 13 rows (a group of 8 and a tail),
 * on random data and then at the extremes: Q8_0 weights -128 and 127 against activations
 * -127 and 127 in every sign combination (each pair of products 2 * 128 * 127 = 32512, the most
 * vpmaddubsw meets), Q4 nibbles 0 and 15. */
static void test_token_counts(const ml_cpu_kernels *k, ml_test_rng *rng) {
    for (int t = 0; t < N_TYPES; t++)
        for (int extreme = 0; extreme < 2 && !is_kquant(types[t]); extreme++)
            for (int n_tok = 1; n_tok <= 70; n_tok++) {
                problem p;
                make(&p, rng, types[t], 96, 13, n_tok);
                if (extreme) {
                    size_t block_bytes = ml_dtype_block_bytes(p.dtype), n_blocks = (size_t)p.n_out * p.n_in / 32;
                    int data = p.dtype == ML_DTYPE_Q4_1 || p.dtype == ML_DTYPE_Q5_1 ? 4 : 2;
                    for (size_t b = 0; b < n_blocks; b++)
                        for (int i = data; i < (int)block_bytes; i++) {
                            int pick = (int)((b * 7 + (size_t)i * 3) % 5) < 2;
                            p.w[b * block_bytes + i] = p.dtype == ML_DTYPE_Q8_0 ? (pick ? 0x80 : 0x7f) : (pick ? 0x00 : 0xff);
                        }
                    for (int tok = 0; tok < n_tok; tok++) {
                        float *x = p.x + (size_t)tok * p.n_in;
                        for (int i = 0; i < p.n_in; i++) x[i] = (i + tok) % 3 == 0 ? -1.0f : 1.0f;
                        quantize(&ml_cpu_kernels_scalar, p.dtype, p.xq + tok * p.ldx, x, p.n_in);
                    }
                }
                float *want = outputs(&p), *got = outputs(&p);
                product(&ml_cpu_kernels_scalar, p.dtype, want, (size_t)p.n_out, p.xq, p.ldx, p.w, p.n_in, n_tok, 0, p.n_out);
                product(k, p.dtype, got, (size_t)p.n_out, p.xq, p.ldx, p.w, p.n_in, n_tok, 0, p.n_out);
                CHECK(memcmp(want, got, (size_t)n_tok * p.n_out * sizeof(float)) == 0,
                      "%s int8 product %s%s n_tok=%d differs from the reference", k->name, type_names[t],
                      extreme ? " (extremes)" : "", n_tok);
                free(want);
                free(got);
                release(&p);
            }
}

/* The K-quants at their extremes, at the token counts where the vector kernels change shape
 * (1-4 rows at a time, the 8-row tile from 3 or 24 tokens, the 16-row tile from 8): every byte
 * but d and dmin 0xff (the largest q of every type: 3, 7, 15, 31, 63; Q3_K's scales 31, Q2_K's
 * scale and min 15, Q6_K's scales -1) against activations all 127 or all -127, so every int16
 * pair sum the kernels form meets its largest magnitude. */
static void test_kquant_extremes(const ml_cpu_kernels *k, ml_test_rng *rng) {
    static const int token_counts[] = {1, 2, 3, 5, 8, 16, 24, 33};
    for (int t = 0; t < N_TYPES; t++)
        for (size_t c = 0; c < sizeof token_counts / sizeof token_counts[0] && is_kquant(types[t]); c++)
            for (int sign = 0; sign < 2; sign++) {
                problem p;
                make(&p, rng, types[t], 512, 19, token_counts[c]);
                size_t block_bytes = ml_dtype_block_bytes(p.dtype), n_blocks = (size_t)p.n_out * p.n_in / 256;
                for (size_t b = 0; b < n_blocks; b++) {
                    uint8_t *block = p.w + b * block_bytes;
                    uint8_t d[4];
                    size_t at = kquant_d_offset(p.dtype), keep = p.dtype == ML_DTYPE_Q8_K ? 4 : has_dmin(p.dtype) ? 4 : 2;
                    memcpy(d, block + at, keep);
                    memset(block, 0xff, block_bytes);
                    memcpy(block + at, d, keep);
                }
                for (int tok = 0; tok < p.n_tok; tok++) {
                    float *x = p.x + (size_t)tok * p.n_in;
                    for (int i = 0; i < p.n_in; i++) x[i] = sign ? -1.0f : 1.0f;
                    quantize(&ml_cpu_kernels_scalar, p.dtype, p.xq + tok * p.ldx, x, p.n_in);
                }
                float *want = outputs(&p), *got = outputs(&p);
                product(&ml_cpu_kernels_scalar, p.dtype, want, (size_t)p.n_out, p.xq, p.ldx, p.w, p.n_in, p.n_tok, 0,
                        p.n_out);
                product(k, p.dtype, got, (size_t)p.n_out, p.xq, p.ldx, p.w, p.n_in, p.n_tok, 0, p.n_out);
                CHECK(memcmp(want, got, (size_t)p.n_tok * p.n_out * sizeof(float)) == 0,
                      "%s int8 product %s at its extremes (x %s127) n_tok=%d differs from the reference", k->name,
                      type_names[t], sign ? "-" : "+", p.n_tok);
                free(want);
                free(got);
                release(&p);
            }
}

/* matmul_q8_blocks / matmul_q8k_blocks against the reference, and its own splits against its whole product. */
static void test_matmul(const ml_cpu_kernels *k, ml_test_rng *rng, double worst[N_TYPES]) {
    /* 37 rows x 133 tokens: the AVX-512 VNNI tile's two groups of 16 rows and a tail, a chunk of
     * 128 tokens and 5 more (under a register block of 8) */
    static const int sizes[][3] = {{32, 1, 1},    {64, 5, 1},    {96, 13, 3},  {576, 37, 1},
                                   {576, 9, 9},   {992, 22, 17}, {96, 13, 130}, {576, 37, 133}};
    /* K-quants: rows of 1 to 5 super-blocks, 9 (a reduction of eight and one more) and 65 (the
     * AVX2 row shape's passes of 64 and one more); 1-4 tokens per pass of a row, 23/24 tokens
     * (AVX2's last row shape / first tile); 37 rows x 133 tokens: the AVX-512 VNNI tile's two
     * groups of 16 rows and a tail, a chunk of 128 tokens and 5 more (a register block of 4 and 1) */
    static const int k_sizes[][3] = {{256, 1, 1}, {512, 5, 4},  {256, 13, 3},   {768, 37, 1}, {512, 9, 9},
                                     {1280, 22, 17}, {256, 13, 70}, {2304, 11, 2}, {2304, 6, 5}, {2304, 7, 23},
                                     {512, 9, 24},   {16640, 9, 6},  {512, 37, 133}};
    for (int t = 0; t < N_TYPES; t++) {
        size_t n_sizes = is_kquant(types[t]) ? sizeof k_sizes / sizeof k_sizes[0] : sizeof sizes / sizeof sizes[0];
        for (size_t s = 0; s < n_sizes; s++) {
            const int *size = is_kquant(types[t]) ? k_sizes[s] : sizes[s];
            problem p;
            make(&p, rng, types[t], size[0], size[1], size[2]);
            float *want = outputs(&p), *got = outputs(&p), *split = outputs(&p);
            size_t ldy = (size_t)p.n_out;
            product(&ml_cpu_kernels_scalar, p.dtype, want, ldy, p.xq, p.ldx, p.w, p.n_in, p.n_tok, 0, p.n_out);
            product(k, p.dtype, got, ldy, p.xq, p.ldx, p.w, p.n_in, p.n_tok, 0, p.n_out);
            CHECK(memcmp(want, got, (size_t)p.n_tok * ldy * sizeof(float)) == 0,
                  "%s int8 product %s n_in=%d rows=%d n_tok=%d differs from the reference", k->name, type_names[t],
                  p.n_in, p.n_out, p.n_tok);
            /* rows cut at 1, 6 and 7 (not multiples of the 4-row groups), one token at a time */
            int cuts[] = {0, 1, 7, 13, p.n_out};
            for (int tok = 0; tok < p.n_tok; tok++)
                for (int c = 0; c + 1 < 5; c++) {
                    int b = cuts[c] < p.n_out ? cuts[c] : p.n_out, e = cuts[c + 1] < p.n_out ? cuts[c + 1] : p.n_out;
                    if (e > b)
                        product(k, p.dtype, split + (size_t)tok * ldy, ldy, p.xq + tok * p.ldx, p.ldx, p.w, p.n_in, 1,
                                b, e);
                }
            CHECK(memcmp(got, split, (size_t)p.n_tok * ldy * sizeof(float)) == 0,
                  "%s int8 product %s n_in=%d: split rows / single tokens differ from the whole", k->name,
                  type_names[t], p.n_in);
            /* the int8 error against the float32 product on the dequantised weights */
            double ratio = 0.0;
            for (int tok = 0; tok < p.n_tok; tok++)
                for (int r = 0; r < p.n_out; r++) {
                    const float *x = p.x + (size_t)tok * p.n_in;
                    const uint8_t *xq = p.xq + tok * p.ldx;
                    double exact = 0.0, step_bound = 0.0, magnitude = 0.0;
                    for (int i = 0; i < p.n_in; i++) {
                        double w = p.wf[(size_t)r * p.n_in + i];
                        exact += (double)x[i] * w;
                        step_bound += fabs(w) * step_of(p.dtype, xq, i) / 2 * 1.01;
                        magnitude += fabs(w * x[i]);
                    }
                    double e = fabs(exact - got[(size_t)tok * ldy + r]) / (step_bound + 1e-5 * magnitude + 1e-30);
                    ratio = e > ratio ? e : ratio;
                }
            worst[t] = ratio > worst[t] ? ratio : worst[t];
            CHECK(ratio <= 1.0, "%s %s n_in=%d: int8 error %.3g of its bound", k->name, type_names[t], p.n_in, ratio);
            free(want);
            free(got);
            free(split);
            release(&p);
        }
    }
}

int main(void) {
    test_reference_by_hand();
    test_kquant_by_hand();
    for (size_t v = 0; v < ML_TEST_N_KERNEL_VARIANTS; v++) {
        const ml_cpu_kernels *k = ml_test_kernel_variant(v);
        if (!k) continue;
        ml_test_rng rng;
        ml_test_rng_seed(&rng, 99 + v);
        double worst[N_TYPES] = {0};
        test_quantize(k, &rng);
        test_matmul(k, &rng, worst);
        test_token_counts(k, &rng);
        test_kquant_extremes(k, &rng);
        printf("%-10s int8 products equal the reference bit for bit%s; worst error against the float32 "
               "product, as a share of its bound:",
               k->name, k == &ml_cpu_kernels_scalar ? " (itself: splits only)" : "");
        for (int t = 0; t < N_TYPES; t++) printf(" %s %.2g", type_names[t], worst[t]);
        printf("\n");
    }
    return ml_test_finish("kernels_int8");
}
