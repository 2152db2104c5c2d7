/* Every CPU kernel variant the machine can run (avx2, avx512, avx512vnni, avx512bf16) against the scalar
 * reference, on seeded random data in [-1, 1] at awkward sizes, by normalised error
 * max|a - b| / max|b|; a variant the CPU lacks prints SKIP. The scalar reference itself is
 * checked on hand-computed examples, never against itself; every variant, the reference
 * included, must also give the same bits however rows, tokens and threads split the work.
 *
 * Tolerances (why):
 *   matmuls               1e-5  same exact products (bf16/f16 widening and bf16 x bf16 are
 *                               exact in f32) summed in another order. Float summation of n
 *                               terms errs by ~u*sqrt(n) relative (u = 2^-24): observed <= 2e-6
 *                               for n_in <= 1000, mostly the scalar reference's own error (the
 *                               blocked vector sums are closer to a double-precision result).
 *                               1e-5 leaves a 5x margin and still catches a lost or doubled
 *                               term (error ~1e-2). vdpbf16ps rounds each of its two adds to
 *                               nearest even like an FMA chain, so the same bound holds (the
 *                               inputs have no bf16 denormals, which it would read as zero).
 *   attention             1e-5  the same summation error in q.k and p.v, plus the scores' own
 *                               rounding (~|s| * u, from the dot's order), which moves the
 *                               softmax weights by that much relative: observed <= 3e-6 with
 *                               |scores| up to ~9 (the rising-score case). Holds for |s| up to
 *                               ~20 (HF scales by 1/sqrt(head_dim)); at |s| ~ 250 even two
 *                               correct float implementations differ by ~3e-5.
 *   rmsnorm               4e-6  only 1/sqrt(mean) differs: half the relative error of a float
 *                               sum of n squares, ~u*sqrt(n)/3 RMS (about 1e-6 at n = 4096).
 *   silu_mul              1e-6  vector exp within 2 ulp of expf, then the same operations.
 *   rope, conversions     exact (bit-identical): same operations, no FMA, integer rounding.
 *   split / threads       exact: an output must not depend on how the rows/tokens are split.
 *   quantised matmuls     exact against matmul_f32_f32 of the same variant on the matrix that
 *   (Q8_0, Q4_0, Q4_1,    formats/gguf_dequant.c dequantises (same weights, same order), so
 *   Q5_0, Q5_1, IQ4_NL,
 *   Q2_K ... Q8_K)
 *                         also within 1e-5 of the scalar reference (the f32 bound above);
 *                         the quantised conversions are bit-identical to the dequantiser. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/numeric.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "meshllama.h"
#include "test_kernel_variants.h"
#include "test_util.h"

#define TOL_MATMUL 1e-5
#define TOL_ATTENTION 1e-5
#define TOL_RMSNORM 4e-6
#define TOL_SILU 1e-6
#define TOL_HAND 1e-6

static const ml_cpu_kernels *const ref = &ml_cpu_kernels_scalar;

/* The block types under test (the first three have their own table entries; the others go
 * through matmul_f32_blocks / blocks_to_f32). */
enum { N_QKINDS = 12 };
static const ml_dtype q_dtypes[N_QKINDS] = {ML_DTYPE_Q8_0, ML_DTYPE_Q4_0, ML_DTYPE_Q4_1, ML_DTYPE_Q5_0,
                                            ML_DTYPE_Q5_1, ML_DTYPE_IQ4_NL, ML_DTYPE_Q2_K, ML_DTYPE_Q3_K,
                                            ML_DTYPE_Q4_K, ML_DTYPE_Q5_K, ML_DTYPE_Q6_K, ML_DTYPE_Q8_K};
static const uint32_t q_ggml_types[N_QKINDS] = {ML_GGML_Q8_0, ML_GGML_Q4_0, ML_GGML_Q4_1, ML_GGML_Q5_0,
                                                ML_GGML_Q5_1, ML_GGML_IQ4_NL, ML_GGML_Q2_K, ML_GGML_Q3_K,
                                                ML_GGML_Q4_K, ML_GGML_Q5_K, ML_GGML_Q6_K, ML_GGML_Q8_K};

/* Worst error seen per variant and function, printed at the end of each variant. */
typedef struct {
    double matmul[4], quant[N_QKINDS], attention[2], rmsnorm, silu;
} worst_errors;

static void note(double *worst, double err) {
    if (!(err <= *worst)) *worst = err;
}

/* Buffers deliberately misaligned by one element (vector loads must be unaligned-safe). */
static float *alloc_f32(size_t n) { return (float *)malloc((n + 1) * sizeof(float)) + 1; }
static void free_f32(float *p) { free(p - 1); }
static uint16_t *alloc_u16(size_t n) { return (uint16_t *)malloc((n + 1) * sizeof(uint16_t)) + 1; }
static void free_u16(uint16_t *p) { free(p - 1); }

static uint32_t float_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}
static float bits_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t random_u32(ml_test_rng *rng) {
    uint32_t hi = (uint32_t)ml_test_uniform(rng, 0.0f, 65536.0f) & 0xffffu;
    uint32_t lo = (uint32_t)ml_test_uniform(rng, 0.0f, 65536.0f) & 0xffffu;
    return hi << 16 | lo;
}

/* A finite f16 with a random sign, exponent field 0..15 (subnormals included) and mantissa. */
static uint16_t random_f16(ml_test_rng *rng) {
    uint32_t sign = ml_test_uniform(rng, 0.0f, 1.0f) < 0.5f ? 0x8000u : 0u;
    uint32_t exponent = (uint32_t)ml_test_uniform(rng, 0.0f, 16.0f) & 15u;
    uint32_t mantissa = (uint32_t)ml_test_uniform(rng, 0.0f, 1024.0f) & 0x3ffu;
    return (uint16_t)(sign | exponent << 10 | mantissa);
}

static void to_bf16(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f32_to_bf16(in[i]);
}

enum { MM_F32, MM_F16, MM_BF16, MM_BF16_BF16 };
static const char *const mm_names[4] = {"matmul_f32_f32", "matmul_f32_f16", "matmul_f32_bf16", "matmul_bf16_bf16"};

/* The operands of one matmul problem in every dtype. */
typedef struct {
    int n_in, n_out;
    size_t ldx;
    float *x;       /* [n_tok, ldx] */
    uint16_t *x16;  /* [n_tok, ldx] bf16 of x */
    float *w32;     /* [n_out, n_in] */
    uint16_t *wf16; /* [n_out, n_in] */
    uint16_t *wbf;  /* [n_out, n_in] */
} mm_problem;

static void mm_make(mm_problem *p, ml_test_rng *rng, int n_in, int n_out, int n_tok) {
    p->n_in = n_in;
    p->n_out = n_out;
    p->ldx = (size_t)n_in + 3;
    size_t nx = (size_t)n_tok * p->ldx, nw = (size_t)n_out * n_in;
    p->x = alloc_f32(nx);
    p->x16 = alloc_u16(nx);
    p->w32 = alloc_f32(nw);
    p->wf16 = alloc_u16(nw);
    p->wbf = alloc_u16(nw);
    ml_test_fill(rng, p->x, nx, -1.0f, 1.0f);
    to_bf16(p->x16, p->x, nx);
    ml_test_fill(rng, p->w32, nw, -1.0f, 1.0f);
    to_bf16(p->wbf, p->w32, nw);
    for (size_t i = 0; i < nw; i++) p->wf16[i] = random_f16(rng);
}

static void mm_free(mm_problem *p) {
    free_f32(p->x);
    free_u16(p->x16);
    free_f32(p->w32);
    free_u16(p->wf16);
    free_u16(p->wbf);
}

/* Calls one matmul kind with x and y already offset to the first token. */
static void mm_call(const ml_cpu_kernels *k, int kind, const mm_problem *p, float *y, size_t ldy, int tok0,
                    int n_tok, int row_begin, int row_end) {
    const float *x = p->x + (size_t)tok0 * p->ldx;
    const uint16_t *x16 = p->x16 + (size_t)tok0 * p->ldx;
    y += (size_t)tok0 * ldy;
    switch (kind) {
    case MM_F32: k->matmul_f32_f32(y, ldy, x, p->ldx, p->w32, p->n_in, n_tok, row_begin, row_end); break;
    case MM_F16: k->matmul_f32_f16(y, ldy, x, p->ldx, p->wf16, p->n_in, n_tok, row_begin, row_end); break;
    case MM_BF16: k->matmul_f32_bf16(y, ldy, x, p->ldx, p->wbf, p->n_in, n_tok, row_begin, row_end); break;
    default: k->matmul_bf16_bf16(y, ldy, x16, p->ldx, p->wbf, p->n_in, n_tok, row_begin, row_end); break;
    }
}

#define SENTINEL (-12345.0f)

/* ---- the reference itself, on hand-computed examples ------------------------------------- */

static int close_to(float got, double want) { return fabs((double)got - want) <= TOL_HAND * fabs(want) + 1e-12; }

static void test_reference_by_hand(void) {
    /* w = [[1,2,3],[4,5,6]]; x0 = [1,-1,2] -> [5, 11]; x1 = [0.5,0.25,-1] -> [-2, -2.75]. */
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const float x[6] = {1, -1, 2, 0.5f, 0.25f, -1};
    uint16_t wbf[6], wf16[6], xbf[6];
    const uint16_t f16_of_1to6[6] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
    for (int i = 0; i < 6; i++) {
        wbf[i] = ml_f32_to_bf16(w[i]);
        xbf[i] = ml_f32_to_bf16(x[i]);
        wf16[i] = f16_of_1to6[i];
    }
    const float want[4] = {5, 11, -2, -2.75f};
    for (int kind = 0; kind < 4; kind++) {
        float y[4] = {0, 0, 0, 0};
        switch (kind) {
        case MM_F32: ref->matmul_f32_f32(y, 2, x, 3, w, 3, 2, 0, 2); break;
        case MM_F16: ref->matmul_f32_f16(y, 2, x, 3, wf16, 3, 2, 0, 2); break;
        case MM_BF16: ref->matmul_f32_bf16(y, 2, x, 3, wbf, 3, 2, 0, 2); break;
        default: ref->matmul_bf16_bf16(y, 2, xbf, 3, wbf, 3, 2, 0, 2); break;
        }
        for (int i = 0; i < 4; i++) CHECK(y[i] == want[i], "scalar %s y[%d] = %g, want %g", mm_names[kind], i, y[i], want[i]);
    }

    /* rmsnorm([3,4]) with weight [1,2], eps 0: mean of squares 12.5. */
    float norm_in[2] = {3, 4}, norm_w[2] = {1, 2}, norm_out[2];
    ref->rmsnorm(norm_out, norm_in, norm_w, 2, 0.0f);
    CHECK(close_to(norm_out[0], 3.0 / sqrt(12.5)), "rmsnorm[0] = %.9g", norm_out[0]);
    CHECK(close_to(norm_out[1], 8.0 / sqrt(12.5)), "rmsnorm[1] = %.9g", norm_out[1]);

    /* rope, head_dim 4: pair (1, 3) at angle pi/3, pair (2, 4) at cos 0.6, sin 0.8. */
    float vec[4] = {1, 2, 3, 4};
    const float c[2] = {0.5f, 0.6f}, s[2] = {(float)(sqrt(3.0) / 2), 0.8f};
    ref->rope(vec, 1, 4, c, s);
    CHECK(close_to(vec[0], 0.5 - 3 * sqrt(3.0) / 2), "rope[0] = %.9g", vec[0]);
    CHECK(close_to(vec[2], 1.5 + sqrt(3.0) / 2), "rope[2] = %.9g", vec[2]);
    CHECK(close_to(vec[1], -2.0), "rope[1] = %.9g", vec[1]);
    CHECK(close_to(vec[3], 4.0), "rope[3] = %.9g", vec[3]);

    /* silu(1)*2, silu(0)*5, silu(-1)*1. */
    float gate[3] = {1, 0, -1}, up[3] = {2, 5, 1}, act[3];
    ref->silu_mul(act, gate, up, 3);
    CHECK(close_to(act[0], 2.0 / (1.0 + exp(-1.0))), "silu(1)*2 = %.9g", act[0]);
    CHECK(act[1] == 0.0f, "silu(0) = %g", act[1]);
    CHECK(close_to(act[2], -1.0 / (1.0 + exp(1.0))), "silu(-1) = %.9g", act[2]);

    /* Attention: two equal scores average the two value rows; scores ln 3 and 0 weigh 3:1. */
    const float q1[2] = {1, 0}, k1[4] = {1, 1, 1, -1}, v1[4] = {2, 4, 4, 0};
    float out[2], scratch[2];
    ref->attention_f32(out, q1, 1, k1, v1, 2, 2, 1.0f, scratch);
    CHECK(close_to(out[0], 3.0) && close_to(out[1], 2.0), "equal scores: out = [%g, %g]", out[0], out[1]);
    const float k2[4] = {(float)log(3.0), 0, 0, 0}, v2[4] = {1, 0, 0, 1};
    ref->attention_f32(out, q1, 1, k2, v2, 2, 2, 1.0f, scratch);
    CHECK(close_to(out[0], 0.75) && close_to(out[1], 0.25), "3:1 scores: out = [%g, %g]", out[0], out[1]);
    uint16_t k2b[4], v2b[4];
    to_bf16(k2b, k2, 4);
    to_bf16(v2b, v2, 4);
    ref->attention_bf16(out, q1, 1, k2b, v2b, 2, 2, 1.0f, scratch);
    double w0 = 3.0 * exp((double)ml_round_bf16((float)log(3.0)) - log(3.0)); /* bf16(ln 3) */
    CHECK(close_to(out[0], w0 / (w0 + 1)), "bf16 3:1 scores: out[0] = %g", out[0]);

    /* f32 -> bf16 rounding: ties to even, NaN stays NaN (quiet), overflow to inf, denormals. */
    static const uint32_t in_bits[][2] = {
        {0x3f800000u, 0x3f80}, {0x3f808000u, 0x3f80}, {0x3f818000u, 0x3f82}, {0x3f808001u, 0x3f81},
        {0x3f80ffffu, 0x3f81}, {0xbf808000u, 0xbf80}, {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80},
        {0x7f7fffffu, 0x7f80}, {0x7fc00000u, 0x7fc0}, {0x7f800001u, 0x7fc0}, {0xff800001u, 0xffc0},
        {0x00008000u, 0x0000}, {0x00018000u, 0x0002}, {0x00008001u, 0x0001}, {0x80008000u, 0x8000},
        {0x00000000u, 0x0000}, {0x80000000u, 0x8000}, {0x007fffffu, 0x0080},
    };
    for (size_t i = 0; i < sizeof in_bits / sizeof in_bits[0]; i++) {
        float f = bits_float(in_bits[i][0]);
        uint16_t got;
        ref->f32_to_bf16(&got, &f, 1);
        CHECK(got == in_bits[i][1], "f32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", in_bits[i][0], got, in_bits[i][1]);
    }
    /* f16: 1, -2, smallest subnormal 2^-24, largest 65504, inf. */
    const uint16_t halves[5] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00};
    const float full[5] = {1.0f, -2.0f, 5.9604644775390625e-8f, 65504.0f, INFINITY};
    float converted[5];
    ref->f16_to_f32(converted, halves, 5);
    for (int i = 0; i < 5; i++) CHECK(converted[i] == full[i], "f16 0x%04x -> %g", halves[i], converted[i]);
}

/* ---- matrix products -------------------------------------------------------------------- */

static void test_matmul(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    static const int n_ins[] = {1, 3, 15, 17, 31, 64, 100, 257, 1000};
    static const int n_toks[] = {1, 2, 3, 5, 8, 13};
    const int n_out = 45, row_begin = 6, row_end = 45; /* 39 rows: not a multiple of 4, 8 or 16 */
    const size_t ldy = n_out + 2;
    for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
        for (size_t b = 0; b < sizeof n_toks / sizeof n_toks[0]; b++) {
            int n_in = n_ins[a], n_tok = n_toks[b];
            mm_problem p;
            mm_make(&p, rng, n_in, n_out, n_tok);
            size_t ny = (size_t)n_tok * ldy;
            float *y_ref = alloc_f32(ny), *y = alloc_f32(ny);
            float *got = alloc_f32(ny), *want = alloc_f32(ny);
            for (int kind = 0; kind < 4; kind++) {
                for (size_t i = 0; i < ny; i++) y_ref[i] = y[i] = SENTINEL;
                mm_call(ref, kind, &p, y_ref, ldy, 0, n_tok, row_begin, row_end);
                mm_call(k, kind, &p, y, ldy, 0, n_tok, row_begin, row_end);
                size_t n_cmp = 0;
                int untouched = 1;
                for (int t = 0; t < n_tok; t++) {
                    for (size_t r = 0; r < ldy; r++) {
                        size_t at = (size_t)t * ldy + r;
                        if ((int)r >= row_begin && (int)r < row_end) {
                            got[n_cmp] = y[at];
                            want[n_cmp++] = y_ref[at];
                        } else if (y[at] != SENTINEL) {
                            untouched = 0;
                        }
                    }
                }
                double err = ml_test_norm_error(got, want, n_cmp);
                note(&worst->matmul[kind], err);
                CHECK(err <= TOL_MATMUL, "%s %s n_in=%d n_tok=%d: error %.3g > %.1g", k->name, mm_names[kind], n_in,
                      n_tok, err, TOL_MATMUL);
                CHECK(untouched, "%s %s n_in=%d n_tok=%d wrote outside rows [%d, %d)", k->name, mm_names[kind], n_in,
                      n_tok, row_begin, row_end);
            }
            free_f32(y_ref);
            free_f32(y);
            free_f32(got);
            free_f32(want);
            mm_free(&p);
        }
    }
}

/* One call over everything must equal, bit for bit, any split into row ranges and token
 * subsets (GEMV, 2-token and prefill paths, row blocks and row tails all mixed). */
static void test_matmul_split(const ml_cpu_kernels *k, ml_test_rng *rng) {
    static const int n_ins[] = {17, 64, 257, 1000, 4100};
    static const int row_cuts[] = {0, 1, 6, 19, 30, 45};
    static const int tok_cuts[] = {0, 1, 3, 8, 17, 83}; /* 83: more than one group of bf16 x (64) */
    const int n_out = 45, n_tok = 83;
    const size_t ldy = n_out;
    for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
        mm_problem p;
        mm_make(&p, rng, n_ins[a], n_out, n_tok);
        size_t ny = (size_t)n_tok * ldy;
        float *whole = alloc_f32(ny), *split = alloc_f32(ny);
        for (int kind = 0; kind < 4; kind++) {
            mm_call(k, kind, &p, whole, ldy, 0, n_tok, 0, n_out);
            for (size_t i = 0; i < ny; i++) split[i] = SENTINEL;
            for (size_t rc = 0; rc + 1 < sizeof row_cuts / sizeof row_cuts[0]; rc++)
                for (size_t tc = 0; tc + 1 < sizeof tok_cuts / sizeof tok_cuts[0]; tc++)
                    mm_call(k, kind, &p, split, ldy, tok_cuts[tc], tok_cuts[tc + 1] - tok_cuts[tc], row_cuts[rc],
                            row_cuts[rc + 1]);
            CHECK(memcmp(whole, split, ny * sizeof(float)) == 0, "%s %s n_in=%d: split result differs from whole",
                  k->name, mm_names[kind], n_ins[a]);
            /* and token by token, 8 rows at a time */
            for (size_t i = 0; i < ny; i++) split[i] = SENTINEL;
            for (int t = 0; t < n_tok; t++)
                for (int r = 0; r < n_out; r += 8) mm_call(k, kind, &p, split, ldy, t, 1, r, r + 8 < n_out ? r + 8 : n_out);
            CHECK(memcmp(whole, split, ny * sizeof(float)) == 0, "%s %s n_in=%d: per-token result differs from whole",
                  k->name, mm_names[kind], n_ins[a]);
        }
        free_f32(whole);
        free_f32(split);
        mm_free(&p);
    }
}

/* Several threads computing disjoint row ranges at once give the single-thread bits. */
typedef struct {
    const ml_cpu_kernels *k;
    const mm_problem *p;
    float *y;
    int n_tok, row_begin, row_end;
} mm_thread_job;

static void *mm_thread(void *arg) {
    const mm_thread_job *job = arg;
    for (int kind = 0; kind < 4; kind++) {
        float *y = job->y + (size_t)kind * job->n_tok * job->p->n_out;
        mm_call(job->k, kind, job->p, y, (size_t)job->p->n_out, 0, job->n_tok, job->row_begin, job->row_end);
    }
    return NULL;
}

static void test_matmul_threads(const ml_cpu_kernels *k, ml_test_rng *rng) {
    enum { THREADS = 4 };
    const int n_in = 300, n_out = 61, n_tok = 7;
    mm_problem p;
    mm_make(&p, rng, n_in, n_out, n_tok);
    size_t ny = (size_t)4 * n_tok * n_out;
    float *single = alloc_f32(ny), *threaded = alloc_f32(ny);
    mm_thread_job all = {k, &p, single, n_tok, 0, n_out};
    mm_thread(&all);
    pthread_t threads[THREADS];
    mm_thread_job jobs[THREADS];
    int started[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (mm_thread_job){k, &p, threaded, n_tok, n_out * i / THREADS, n_out * (i + 1) / THREADS};
        started[i] = pthread_create(&threads[i], NULL, mm_thread, &jobs[i]) == 0;
        if (!started[i]) mm_thread(&jobs[i]);
    }
    for (int i = 0; i < THREADS; i++)
        if (started[i]) pthread_join(threads[i], NULL);
    CHECK(memcmp(single, threaded, ny * sizeof(float)) == 0, "%s: threaded matmuls differ from one thread", k->name);
    free_f32(single);
    free_f32(threaded);
    mm_free(&p);
}

/* Batched products at model-like sizes must equal, bit for bit, each token alone (the decode
 * GEMV path) and any row split: inputs longer than the vector kernels' slices (1024) and tiles
 * (several tiles of rows), token counts that leave every remainder (4-token blocks + 1, 2, 3),
 * and a split across tasks like the model's (row blocks x token blocks). Also within tolerance
 * of the reference. */
static void test_matmul_batch_vs_alone(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    static const int n_ins[] = {2048, 2063, 3000};
    static const int n_toks[] = {5, 34, 67};
    const int n_out = 151;
    for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
        int n_in = n_ins[a], n_tok = n_toks[a];
        mm_problem p;
        mm_make(&p, rng, n_in, n_out, n_tok);
        size_t ldy = (size_t)n_out + 1, ny = (size_t)n_tok * ldy;
        float *whole = alloc_f32(ny), *alone = alloc_f32(ny), *split = alloc_f32(ny), *want = alloc_f32(ny);
        for (int kind = 0; kind < 4; kind++) {
            for (size_t i = 0; i < ny; i++) whole[i] = alone[i] = split[i] = want[i] = 0.0f;
            mm_call(k, kind, &p, whole, ldy, 0, n_tok, 0, n_out);
            for (int t = 0; t < n_tok; t++) mm_call(k, kind, &p, alone, ldy, t, 1, 0, n_out);
            static const int row_cuts[] = {0, 48, 96, 100, 151};
            for (size_t rc = 0; rc + 1 < sizeof row_cuts / sizeof row_cuts[0]; rc++)
                for (int t0 = 0; t0 < n_tok; t0 += 32)
                    mm_call(k, kind, &p, split, ldy, t0, n_tok - t0 < 32 ? n_tok - t0 : 32, row_cuts[rc],
                            row_cuts[rc + 1]);
            CHECK(memcmp(whole, alone, ny * sizeof(float)) == 0,
                  "%s %s n_in=%d n_tok=%d: batched result differs from each token alone", k->name, mm_names[kind],
                  n_in, n_tok);
            CHECK(memcmp(whole, split, ny * sizeof(float)) == 0,
                  "%s %s n_in=%d n_tok=%d: task-split result differs from whole", k->name, mm_names[kind], n_in,
                  n_tok);
            if (k == ref) continue; /* never the reference against itself */
            mm_call(ref, kind, &p, want, ldy, 0, n_tok, 0, n_out);
            double err = ml_test_norm_error(whole, want, ny);
            note(&worst->matmul[kind], err);
            CHECK(err <= TOL_MATMUL, "%s %s n_in=%d n_tok=%d: error %.3g > %.1g", k->name, mm_names[kind], n_in,
                  n_tok, err, TOL_MATMUL);
        }
        /* fast mode: without a bf16 dot-product instruction, matmul_f32_bf16 on the widened bf16
         * activations gives matmul_bf16_bf16's bits (the model relies on it) */
        if (!k->bf16_dot_product) {
            for (size_t i = 0; i < (size_t)n_tok * p.ldx; i++) p.x[i] = ml_bf16_to_f32(p.x16[i]);
            mm_call(k, MM_BF16, &p, whole, ldy, 0, n_tok, 0, n_out);
            mm_call(k, MM_BF16_BF16, &p, alone, ldy, 0, n_tok, 0, n_out);
            CHECK(memcmp(whole, alone, ny * sizeof(float)) == 0,
                  "%s n_in=%d: matmul_f32_bf16 on widened bf16 activations differs from matmul_bf16_bf16", k->name, n_in);
        }
        free_f32(whole);
        free_f32(alone);
        free_f32(split);
        free_f32(want);
        mm_free(&p);
    }
}

/* The thread pool under the model's use: many regions in a row, task counts below, at and far
 * above the thread count, more threads than cores (the pool must back off, not livelock), and
 * every task index run exactly once per region; then, for every variant, matmuls split into
 * tasks over the pool give the one-call bits (and the reference's values within TOL_MATMUL). */
typedef struct {
    int *counts;      /* [n_tasks] */
    int n_tasks;
    int n_threads;
    int bad_thread;
} pool_probe;

static void pool_probe_task(void *ctx, int task, int thread_index) {
    pool_probe *p = ctx;
    if (thread_index < 0 || thread_index >= p->n_threads) __atomic_store_n(&p->bad_thread, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->counts[task], 1, __ATOMIC_RELAXED);
}

/* pool_probe_task's twin for the alternating-jobs check: adds 2 instead of 1 */
static void pool_probe_task_b(void *ctx, int task, int thread_index) {
    pool_probe *p = ctx;
    if (thread_index < 0 || thread_index >= p->n_threads) __atomic_store_n(&p->bad_thread, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->counts[task], 2, __ATOMIC_RELAXED);
}

typedef struct {
    const ml_cpu_kernels *k;
    const mm_problem *p;
    float *y;
    size_t ldy;
    int n_tok;
} pool_matmul;

static void pool_matmul_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const pool_matmul *m = ctx;
    int row_begin = task * 8, row_end = row_begin + 8 < m->p->n_out ? row_begin + 8 : m->p->n_out;
    mm_call(m->k, MM_BF16, m->p, m->y, m->ldy, 0, m->n_tok, row_begin, row_end);
}

static void test_pool(void) {
    static const int thread_counts[] = {1, 2, 3, 8};
    static const int task_counts[] = {1, 2, 7, 64, 1000};
    for (size_t a = 0; a < sizeof thread_counts / sizeof thread_counts[0]; a++) {
        ml_pool *pool;
        CHECK(ml_pool_create(thread_counts[a], &pool) == 0, "ml_pool_create(%d) failed", thread_counts[a]);
        if (!pool) continue;
        CHECK(ml_pool_threads(pool) == thread_counts[a], "pool has %d threads, want %d", ml_pool_threads(pool),
              thread_counts[a]);
        int counts[1000];
        int all_once = 1;
        for (int round = 0; round < 200; round++) {
            int n = task_counts[round % 5];
            memset(counts, 0, sizeof counts);
            pool_probe probe = {counts, n, thread_counts[a], 0};
            ml_pool_run(pool, pool_probe_task, &probe, n);
            for (int i = 0; i < n; i++) all_once &= counts[i] == 1;
            CHECK(!probe.bad_thread, "pool of %d: thread index out of range", thread_counts[a]);
        }
        CHECK(all_once, "pool of %d threads: a task did not run exactly once", thread_counts[a]);
        /* Many short jobs back to back, alternating two contexts and two functions: with more
         * threads than cores, workers often arrive after a job's tasks are all taken (or after
         * the next job is published) and must then claim nothing of it, nor run one job's task
         * with the other's function or context. */
        int counts_a[64], counts_b[64];
        int wrong_pairing = 0;
        for (int job = 0; job < 20000; job++) {
            int n = 1 + job % 13 + (job % 7 == 0 ? 50 : 0);
            pool_probe *probe = &(pool_probe){job % 2 ? counts_a : counts_b, n, thread_counts[a], 0};
            memset(probe->counts, 0, sizeof counts_a);
            ml_pool_run(pool, job % 2 ? pool_probe_task : pool_probe_task_b, probe, n);
            for (int i = 0; i < 64; i++) all_once &= probe->counts[i] == (i < n ? (job % 2 ? 1 : 2) : 0);
            wrong_pairing |= probe->bad_thread;
        }
        CHECK(all_once && !wrong_pairing, "pool of %d threads, 20000 short jobs: a task did not run exactly once "
              "with its own job's function and context", thread_counts[a]);
        ml_pool_run(pool, pool_probe_task, NULL, 0); /* no tasks: returns at once */
        ml_pool_destroy(pool);
    }
    ml_pool_destroy(NULL);
}

static void test_pool_matmul(const ml_cpu_kernels *k, ml_test_rng *rng) {
    static const int thread_counts[] = {1, 2, 3, 8};
    mm_problem p;
    mm_make(&p, rng, 1000, 77, 9);
    size_t ldy = 77, ny = 9 * ldy;
    float *one = alloc_f32(ny), *pooled = alloc_f32(ny), *want = alloc_f32(ny);
    mm_call(k, MM_BF16, &p, one, ldy, 0, 9, 0, 77);
    mm_call(ref, MM_BF16, &p, want, ldy, 0, 9, 0, 77);
    for (size_t a = 0; a < sizeof thread_counts / sizeof thread_counts[0]; a++) {
        ml_pool *pool;
        CHECK(ml_pool_create(thread_counts[a], &pool) == 0, "ml_pool_create(%d) failed", thread_counts[a]);
        if (!pool) continue;
        memset(pooled, 0, ny * sizeof(float));
        pool_matmul job = {k, &p, pooled, ldy, 9};
        ml_pool_run(pool, pool_matmul_task, &job, (77 + 7) / 8);
        CHECK(memcmp(one, pooled, ny * sizeof(float)) == 0, "%s, pool of %d: split matmul differs from one call",
              k->name, thread_counts[a]);
        if (k != ref) { /* never the reference against itself */
            double err = ml_test_norm_error(pooled, want, ny);
            CHECK(err <= TOL_MATMUL, "%s, pool of %d: error %.3g against the reference > %.1g", k->name,
                  thread_counts[a], err, TOL_MATMUL);
        }
        ml_pool_destroy(pool);
    }
    free_f32(one);
    free_f32(pooled);
    free_f32(want);
    mm_free(&p);
}

/* ---- block-quantised weights (q_dtypes) ---------------------------------------------------- */

/* One quantised matmul problem: random blocks and their dequantisation by formats/. */
typedef struct {
    int kind; /* index into q_dtypes */
    int n_in, n_out;
    size_t ldx, row_bytes;
    float *x;       /* [n_tok, ldx] */
    uint8_t *w;     /* [n_out, row_bytes], one byte past a malloc'd address: every f16 scale misaligned */
    float *w_f32;   /* [n_out, n_in] ml_gguf_dequantize of w */
} q_problem;

/* Byte offsets of a block's f16 scales (d, and m or dmin; -1: none); Q8_K's d is a float32. */
static void q_scale_offsets(ml_dtype dtype, int *d, int *m) {
    *m = -1;
    switch (dtype) {
    case ML_DTYPE_Q4_1: case ML_DTYPE_Q5_1: case ML_DTYPE_Q4_K: case ML_DTYPE_Q5_K: *d = 0; *m = 2; break;
    case ML_DTYPE_Q2_K: *d = 80; *m = 82; break;
    case ML_DTYPE_Q3_K: *d = 108; break;
    case ML_DTYPE_Q6_K: *d = 208; break;
    case ML_DTYPE_Q8_K: *d = -1; break;
    default: *d = 0; break;
    }
}

/* Random blocks: scales from random_f16 (subnormals included; m and dmin with either sign; Q8_K's
 * float32 d uniform in [-0.1, 0.1)) and random bytes for everything else (quants, sub-block
 * scales and mins). */
static void q_fill_blocks(ml_test_rng *rng, int kind, uint8_t *w, size_t n_blocks) {
    ml_dtype dtype = q_dtypes[kind];
    size_t block_bytes = ml_dtype_block_bytes(dtype);
    int d_at, m_at;
    q_scale_offsets(dtype, &d_at, &m_at);
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *block = w + b * block_bytes;
        for (size_t i = 0; i < block_bytes; i++) block[i] = (uint8_t)ml_test_uniform(rng, 0.0f, 256.0f);
        uint16_t d = random_f16(rng), m = random_f16(rng);
        if (d_at >= 0) memcpy(block + d_at, &d, 2);
        if (m_at >= 0) memcpy(block + m_at, &m, 2);
        if (dtype == ML_DTYPE_Q8_K) {
            float d32 = ml_test_uniform(rng, -0.1f, 0.1f);
            memcpy(block, &d32, 4);
        }
    }
}

static void q_make(q_problem *p, ml_test_rng *rng, int kind, int n_in, int n_out, int n_tok) {
    p->kind = kind;
    p->n_in = n_in;
    p->n_out = n_out;
    p->ldx = (size_t)n_in + 5;
    p->row_bytes = ml_dtype_row_bytes(q_dtypes[kind], (size_t)n_in);
    size_t nx = (size_t)n_tok * p->ldx, nw = (size_t)n_out * n_in;
    p->x = alloc_f32(nx);
    ml_test_fill(rng, p->x, nx, -1.0f, 1.0f);
    p->w = (uint8_t *)malloc((size_t)n_out * p->row_bytes + 1) + 1;
    q_fill_blocks(rng, kind, p->w, nw / ml_dtype_block_elements(q_dtypes[kind]));
    p->w_f32 = alloc_f32(nw);
    CHECK(ml_gguf_dequantize(q_ggml_types[kind], p->w, nw, p->w_f32) == 0, "dequantize: %s", ml_last_error());
}

static void q_free(q_problem *p) {
    free_f32(p->x);
    free(p->w - 1);
    free_f32(p->w_f32);
}

static void q_call(const ml_cpu_kernels *k, const q_problem *p, float *y, size_t ldy, int tok0, int n_tok,
                   int row_begin, int row_end) {
    const float *x = p->x + (size_t)tok0 * p->ldx;
    y += (size_t)tok0 * ldy;
    switch (q_dtypes[p->kind]) {
    case ML_DTYPE_Q8_0: k->matmul_f32_q8_0(y, ldy, x, p->ldx, p->w, p->n_in, n_tok, row_begin, row_end); break;
    case ML_DTYPE_Q4_0: k->matmul_f32_q4_0(y, ldy, x, p->ldx, p->w, p->n_in, n_tok, row_begin, row_end); break;
    case ML_DTYPE_Q4_1: k->matmul_f32_q4_1(y, ldy, x, p->ldx, p->w, p->n_in, n_tok, row_begin, row_end); break;
    default:
        k->matmul_f32_blocks(q_dtypes[p->kind], y, ldy, x, p->ldx, p->w, p->n_in, n_tok, row_begin, row_end);
        break;
    }
}

static void q_convert(const ml_cpu_kernels *k, int kind, float *out, const uint8_t *in, size_t n) {
    switch (q_dtypes[kind]) {
    case ML_DTYPE_Q8_0: k->q8_0_to_f32(out, in, n); break;
    case ML_DTYPE_Q4_0: k->q4_0_to_f32(out, in, n); break;
    case ML_DTYPE_Q4_1: k->q4_1_to_f32(out, in, n); break;
    default: k->blocks_to_f32(q_dtypes[kind], out, in, n); break;
    }
}

/* The scalar reference by hand (one Q4_1 block: d = 0.5, m = -1, nibbles 0..15 low, 15..0 high),
 * and the reference against formats/gguf_dequant.c: conversions bit-identical, products equal
 * to matmul_f32_f32 on the dequantised weights bit for bit. */
static void test_quant_reference(ml_test_rng *rng) {
    uint8_t block[20];
    const uint16_t half = 0x3800, minus_one = 0xbc00; /* 0.5, -1 */
    memcpy(block, &half, 2);
    memcpy(block + 2, &minus_one, 2);
    for (int i = 0; i < 16; i++) block[4 + i] = (uint8_t)(i | (15 - i) << 4);
    float w[32], x[32], y = 0;
    ref->q4_1_to_f32(w, block, 32);
    int ok = 1;
    for (int i = 0; i < 16; i++) ok &= w[i] == 0.5f * i - 1.0f && w[16 + i] == 0.5f * (15 - i) - 1.0f;
    CHECK(ok, "scalar q4_1_to_f32 by hand");
    for (int i = 0; i < 32; i++) x[i] = i < 16 ? 1.0f : 0.0f; /* sum of 0.5 i - 1 over i < 16 = 44 */
    ref->matmul_f32_q4_1(&y, 1, x, 32, block, 32, 1, 0, 1);
    CHECK(y == 44.0f, "scalar matmul_f32_q4_1 by hand: %g, want 44", y);

    for (int kind = 0; kind < N_QKINDS; kind++) {
        static const int n_ins[] = {1, 3, 18, 129}; /* blocks of 32, or super-blocks of 256 / 8 */
        for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
            const int n_out = 13, n_tok = 5;
            int elements = (int)ml_dtype_block_elements(q_dtypes[kind]);
            int n_in = elements == 32 ? 32 * n_ins[a] : elements * ((n_ins[a] + 7) / 8);
            q_problem p;
            q_make(&p, rng, kind, n_in, n_out, n_tok);
            size_t nw = (size_t)n_out * p.n_in, ny = (size_t)n_tok * n_out;
            float *converted = alloc_f32(nw), *y_q = alloc_f32(ny), *y_f32 = alloc_f32(ny);
            q_convert(ref, kind, converted, p.w, nw);
            CHECK(memcmp(converted, p.w_f32, nw * sizeof(float)) == 0,
                  "scalar %s_to_f32 n=%zu differs from the dequantiser", ml_dtype_name(q_dtypes[kind]), nw);
            q_call(ref, &p, y_q, n_out, 0, n_tok, 0, n_out);
            ref->matmul_f32_f32(y_f32, n_out, p.x, p.ldx, p.w_f32, p.n_in, n_tok, 0, n_out);
            CHECK(memcmp(y_q, y_f32, ny * sizeof(float)) == 0,
                  "scalar matmul_f32_%s n_in=%d differs from matmul_f32_f32 of the dequantised weights",
                  ml_dtype_name(q_dtypes[kind]), p.n_in);
            free_f32(converted);
            free_f32(y_q);
            free_f32(y_f32);
            q_free(&p);
        }
    }
}

/* Special scales: zero, negative zero, subnormals, the largest f16, infinities and NaNs (quiet
 * and signalling) convert exactly as the dequantiser converts them; a NaN only as a NaN: when
 * both d * q and m are NaN, which payload the sum keeps depends on the order the compiler
 * gives the operands of the commutative add. */
static void test_quant_conversion_specials(const ml_cpu_kernels *k) {
    static const uint16_t scales[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01};
    enum { N_SCALES = sizeof scales / sizeof scales[0] };
    for (int kind = 0; kind < N_QKINDS; kind++) {
        if (q_dtypes[kind] == ML_DTYPE_Q8_K) continue; /* a float32 d: no f16 specials */
        size_t block_bytes = ml_dtype_block_bytes(q_dtypes[kind]);
        static uint8_t blocks[N_SCALES * N_SCALES * 292 + 1];
        uint8_t *w = blocks + 1;
        size_t n_blocks = 0;
        int d_at, m_at;
        q_scale_offsets(q_dtypes[kind], &d_at, &m_at);
        for (int a = 0; a < N_SCALES; a++) {
            for (int b = 0; b < N_SCALES; b++) {
                if (m_at < 0 && b > 0) continue;
                uint8_t *block = w + n_blocks++ * block_bytes;
                for (size_t i = 0; i < block_bytes; i++) block[i] = (uint8_t)(37 * i + 11 * (size_t)a);
                memcpy(block + d_at, &scales[a], 2);
                if (m_at >= 0) memcpy(block + m_at, &scales[b], 2);
            }
        }
        size_t n = n_blocks * ml_dtype_block_elements(q_dtypes[kind]);
        float *want = alloc_f32(n), *got = alloc_f32(n);
        CHECK(ml_gguf_dequantize(q_ggml_types[kind], w, n, want) == 0, "dequantize specials");
        q_convert(k, kind, got, w, n);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int differs = float_bits(got[i]) != float_bits(want[i]) && !(isnan(got[i]) && isnan(want[i]));
            if (differs && getenv("MESHLLAMA_TEST_VERBOSE"))
                printf("%s %s: value %zu: 0x%08x, want 0x%08x\n", k->name, ml_dtype_name(q_dtypes[kind]), i,
                       float_bits(got[i]), float_bits(want[i]));
            bad += differs;
        }
        CHECK(bad == 0, "%s %s_to_f32 with special scales: %d of %zu values differ from the dequantiser", k->name,
              ml_dtype_name(q_dtypes[kind]), bad, n);
        free_f32(want);
        free_f32(got);
    }
}

/* Every variant: outputs equal to the same variant's matmul_f32_f32 on the dequantised matrix, bit
 * for bit (so within TOL_MATMUL of the reference), for n_tok 1..37 on rows [6, 45) (39 rows:
 * not a multiple of the 8-, 2- or 1-row blocks), nothing written outside those rows, and the
 * same bits for any split of rows and tokens; the conversions equal the dequantiser's. */
static void test_quant(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    static const int n_ins[] = {32, 64, 96, 576, 4096 + 32};
    static const int n_ins_k[] = {256, 512, 768, 2304, 4096 + 256}; /* super-blocks of 256 */
    static const int row_cuts[] = {0, 1, 6, 19, 30, 45};
    static const int tok_cuts[] = {0, 1, 3, 8, 17, 23, 37};
    const int n_out = 45, max_tok = 37, row_begin = 6, row_end = 45;
    const size_t ldy = (size_t)n_out + 2, ny = (size_t)max_tok * ldy;
    test_quant_conversion_specials(k);
    for (int kind = 0; kind < N_QKINDS; kind++) {
        const char *name = ml_dtype_name(q_dtypes[kind]);
        int super = ml_dtype_block_elements(q_dtypes[kind]) == ML_QUANT_SUPER_BLOCK;
        for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0]; a++) {
            q_problem p;
            q_make(&p, rng, kind, super ? n_ins_k[a] : n_ins[a], n_out, max_tok);
            size_t nw = (size_t)n_out * p.n_in;
            float *whole = alloc_f32(ny), *f32 = alloc_f32(ny), *want = alloc_f32(ny), *y = alloc_f32(ny);
            float *converted = alloc_f32(nw);
            q_convert(k, kind, converted, p.w, nw);
            CHECK(memcmp(converted, p.w_f32, nw * sizeof(float)) == 0, "%s %s_to_f32 differs from the dequantiser",
                  k->name, name);
            for (size_t i = 0; i < ny; i++) whole[i] = f32[i] = want[i] = 0.0f;
            q_call(k, &p, whole, ldy, 0, max_tok, 0, n_out);
            k->matmul_f32_f32(f32, ldy, p.x, p.ldx, p.w_f32, p.n_in, max_tok, 0, n_out);
            CHECK(memcmp(whole, f32, ny * sizeof(float)) == 0,
                  "%s matmul_f32_%s n_in=%d differs from its matmul_f32_f32 on the dequantised weights", k->name, name, p.n_in);
            if (k != ref) { /* never the reference against itself */
                q_call(ref, &p, want, ldy, 0, max_tok, 0, n_out);
                double err = ml_test_norm_error(whole, want, ny);
                note(&worst->quant[kind], err);
                CHECK(err <= TOL_MATMUL, "%s matmul_f32_%s n_in=%d: error %.3g > %.1g", k->name, name, p.n_in, err,
                      TOL_MATMUL);
            }

            /* each token count alone on rows [6, 45) */
            int same = 1, untouched = 1;
            for (int n_tok = 1; n_tok <= max_tok; n_tok++) {
                if (p.n_in > 1000 && n_tok > 8 && n_tok % 6 != 1 && n_tok != max_tok) continue; /* time */
                for (size_t i = 0; i < ny; i++) y[i] = SENTINEL;
                q_call(k, &p, y, ldy, 0, n_tok, row_begin, row_end);
                for (int t = 0; t < max_tok; t++) {
                    for (size_t r = 0; r < ldy; r++) {
                        size_t at = (size_t)t * ldy + r;
                        if (t < n_tok && (int)r >= row_begin && (int)r < row_end)
                            same &= float_bits(y[at]) == float_bits(whole[at]);
                        else
                            untouched &= y[at] == SENTINEL;
                    }
                }
            }
            CHECK(same, "%s matmul_f32_%s n_in=%d: some n_tok on rows [%d, %d) differs from the whole product", k->name,
                  name, p.n_in, row_begin, row_end);
            CHECK(untouched, "%s matmul_f32_%s n_in=%d wrote outside its rows or tokens", k->name, name, p.n_in);

            /* splits: row ranges x token ranges, then token by token 8 rows at a time */
            for (size_t i = 0; i < ny; i++) y[i] = SENTINEL;
            for (size_t rc = 0; rc + 1 < sizeof row_cuts / sizeof row_cuts[0]; rc++)
                for (size_t tc = 0; tc + 1 < sizeof tok_cuts / sizeof tok_cuts[0]; tc++)
                    q_call(k, &p, y, ldy, tok_cuts[tc], tok_cuts[tc + 1] - tok_cuts[tc], row_cuts[rc],
                           row_cuts[rc + 1]);
            int split_same = 1;
            for (int t = 0; t < max_tok; t++)
                for (int r = 0; r < n_out; r++)
                    split_same &= float_bits(y[(size_t)t * ldy + r]) == float_bits(whole[(size_t)t * ldy + r]);
            for (size_t i = 0; i < ny; i++) y[i] = SENTINEL;
            for (int t = 0; t < max_tok; t++)
                for (int r = 0; r < n_out; r += 8) q_call(k, &p, y, ldy, t, 1, r, r + 8 < n_out ? r + 8 : n_out);
            for (int t = 0; t < max_tok; t++)
                for (int r = 0; r < n_out; r++)
                    split_same &= float_bits(y[(size_t)t * ldy + r]) == float_bits(whole[(size_t)t * ldy + r]);
            CHECK(split_same, "%s matmul_f32_%s n_in=%d: split result differs from whole", k->name, name, p.n_in);
            free_f32(whole);
            free_f32(f32);
            free_f32(want);
            free_f32(y);
            free_f32(converted);
            q_free(&p);
        }
    }
}

/* Threads at once on disjoint rows, many tokens (the decoded-tile path, each thread with its
 * own scratch), give the single-thread bits. */
typedef struct {
    const ml_cpu_kernels *k;
    const q_problem *p;
    float *y;
    int n_tok, row_begin, row_end;
} q_thread_job;

static void *q_thread(void *arg) {
    const q_thread_job *job = arg;
    for (int round = 0; round < 3; round++) /* the scratch is reused across calls */
        q_call(job->k, job->p, job->y, (size_t)job->p->n_out, 0, job->n_tok, job->row_begin, job->row_end);
    return NULL;
}

static void test_quant_threads(const ml_cpu_kernels *k, ml_test_rng *rng) {
    enum { THREADS = 4 };
    const int n_out = 150, n_tok = 19;
    for (int kind = 0; kind < N_QKINDS; kind++) {
        q_problem p;
        q_make(&p, rng, kind, 2048 + (int)ml_dtype_block_elements(q_dtypes[kind]) * (kind % 3), n_out, n_tok);
        size_t ny = (size_t)n_tok * n_out;
        float *single = alloc_f32(ny), *threaded = alloc_f32(ny);
        q_thread_job all = {k, &p, single, n_tok, 0, n_out};
        q_thread(&all);
        pthread_t threads[THREADS];
        q_thread_job jobs[THREADS];
        int started[THREADS];
        for (int i = 0; i < THREADS; i++) {
            jobs[i] = (q_thread_job){k, &p, threaded, n_tok, n_out * i / THREADS, n_out * (i + 1) / THREADS};
            started[i] = pthread_create(&threads[i], NULL, q_thread, &jobs[i]) == 0;
            if (!started[i]) q_thread(&jobs[i]);
        }
        for (int i = 0; i < THREADS; i++)
            if (started[i]) pthread_join(threads[i], NULL);
        CHECK(memcmp(single, threaded, ny * sizeof(float)) == 0, "%s: threaded matmul_f32_%s differs from one thread",
              k->name, ml_dtype_name(q_dtypes[kind]));
        free_f32(single);
        free_f32(threaded);
        q_free(&p);
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

static void attention_case(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst, int head_dim, int n_pos,
                           int n_q, float scale, int increasing) {
    size_t nq = (size_t)n_q * head_dim, nkv = (size_t)n_pos * head_dim;
    float *q = alloc_f32(nq), *kf = alloc_f32(nkv), *vf = alloc_f32(nkv);
    uint16_t *kb = alloc_u16(nkv), *vb = alloc_u16(nkv);
    float *out_ref = alloc_f32(nq), *out = alloc_f32(nq + 4), *scratch = alloc_f32((size_t)n_pos);
    ml_test_fill(rng, q, nq, -1.0f, 1.0f);
    ml_test_fill(rng, kf, nkv, -1.0f, 1.0f);
    ml_test_fill(rng, vf, nkv, -1.0f, 1.0f);
    if (increasing) { /* scores grow with the position: the running max moves every block */
        for (size_t i = 0; i < nq; i++) q[i] = fabsf(q[i]);
        for (int j = 0; j < n_pos; j++)
            for (int d = 0; d < head_dim; d++) kf[(size_t)j * head_dim + d] = 1.5f * (float)(j + 1) / (float)n_pos;
    }
    to_bf16(kb, kf, nkv);
    to_bf16(vb, vf, nkv);
    for (int dtype = 0; dtype < 2; dtype++) {
        for (size_t i = 0; i < nq + 4; i++) out[i] = SENTINEL;
        if (dtype == 0) {
            ref->attention_f32(out_ref, q, n_q, kf, vf, n_pos, head_dim, scale, scratch);
            k->attention_f32(out, q, n_q, kf, vf, n_pos, head_dim, scale, scratch);
        } else {
            ref->attention_bf16(out_ref, q, n_q, kb, vb, n_pos, head_dim, scale, scratch);
            k->attention_bf16(out, q, n_q, kb, vb, n_pos, head_dim, scale, scratch);
        }
        double err = ml_test_norm_error(out, out_ref, nq);
        note(&worst->attention[dtype], err);
        CHECK(err <= TOL_ATTENTION, "%s attention_%s head_dim=%d n_pos=%d n_q=%d scale=%g%s: error %.3g > %.1g",
              k->name, dtype ? "bf16" : "f32", head_dim, n_pos, n_q, scale, increasing ? " increasing" : "", err,
              TOL_ATTENTION);
        int untouched = 1;
        for (int i = 0; i < 4; i++) untouched &= out[nq + i] == SENTINEL;
        CHECK(untouched, "%s attention wrote past out[n_q * head_dim]", k->name);
    }
    free_f32(q);
    free_f32(kf);
    free_f32(vf);
    free_u16(kb);
    free_u16(vb);
    free_f32(out_ref);
    free_f32(out);
    free_f32(scratch);
}

static void test_attention(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    static const int head_dims[] = {8, 12, 16, 24, 64, 128};
    static const int n_poss[] = {1, 2, 7, 63, 64, 65, 300, 1500};
    static const int n_qs[] = {1, 3, 4, 8, 17};
    for (size_t a = 0; a < sizeof head_dims / sizeof head_dims[0]; a++)
        for (size_t b = 0; b < sizeof n_poss / sizeof n_poss[0]; b++)
            for (size_t c = 0; c < sizeof n_qs / sizeof n_qs[0]; c++) {
                int hd = head_dims[a], n_pos = n_poss[b], n_q = n_qs[c];
                if (n_pos == 1500 && n_q > 4) continue; /* the scalar reference is slow */
                attention_case(k, rng, worst, hd, n_pos, n_q, 1.0f / sqrtf((float)hd), 0);
            }
    /* Peaky softmax (large scale) and a running max that changes every block. */
    for (size_t b = 0; b < sizeof n_poss / sizeof n_poss[0]; b++) {
        attention_case(k, rng, worst, 64, n_poss[b], 4, 8.0f / sqrtf(64.0f), 0);
        attention_case(k, rng, worst, 128, n_poss[b], 3, 1.0f / sqrtf(128.0f), 1);
    }
}

/* ---- rmsnorm, rope, silu ------------------------------------------------------------------ */

static const int elementwise_sizes[] = {1, 3, 15, 17, 31, 64, 100, 257, 1000, 4096};

static void test_rmsnorm(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    for (size_t a = 0; a < sizeof elementwise_sizes / sizeof elementwise_sizes[0]; a++) {
        int n = elementwise_sizes[a];
        float *x = alloc_f32((size_t)n), *w = alloc_f32((size_t)n);
        float *want = alloc_f32((size_t)n), *got = alloc_f32((size_t)n + 1), *inplace = alloc_f32((size_t)n);
        ml_test_fill(rng, x, (size_t)n, -1.0f, 1.0f);
        ml_test_fill(rng, w, (size_t)n, -1.0f, 1.0f);
        ref->rmsnorm(want, x, w, n, 1e-5f);
        got[n] = SENTINEL;
        k->rmsnorm(got, x, w, n, 1e-5f);
        double err = ml_test_norm_error(got, want, (size_t)n);
        note(&worst->rmsnorm, err);
        CHECK(err <= TOL_RMSNORM, "%s rmsnorm n=%d: error %.3g > %.1g", k->name, n, err, TOL_RMSNORM);
        CHECK(got[n] == SENTINEL, "%s rmsnorm n=%d wrote past the end", k->name, n);
        memcpy(inplace, x, (size_t)n * sizeof(float));
        k->rmsnorm(inplace, inplace, w, n, 1e-5f);
        CHECK(memcmp(inplace, got, (size_t)n * sizeof(float)) == 0, "%s rmsnorm n=%d in place differs", k->name, n);
        free_f32(x);
        free_f32(w);
        free_f32(want);
        free_f32(got);
        free_f32(inplace);
    }
}

static void test_rope(const ml_cpu_kernels *k, ml_test_rng *rng) {
    static const int head_dims[] = {2, 6, 8, 16, 24, 34, 64, 128};
    static const int heads[] = {1, 3, 8};
    for (size_t a = 0; a < sizeof head_dims / sizeof head_dims[0]; a++) {
        for (size_t b = 0; b < sizeof heads / sizeof heads[0]; b++) {
            int hd = head_dims[a], half = hd / 2, n_heads = heads[b];
            size_t n = (size_t)n_heads * hd;
            float *want = alloc_f32(n), *got = alloc_f32(n + 1), *c = alloc_f32((size_t)half), *s = alloc_f32((size_t)half);
            ml_test_fill(rng, want, n, -1.0f, 1.0f);
            memcpy(got, want, n * sizeof(float));
            got[n] = SENTINEL;
            for (int i = 0; i < half; i++) { /* position 37, theta 10000 */
                double angle = 37.0 * pow(10000.0, -2.0 * i / hd);
                c[i] = (float)cos(angle);
                s[i] = (float)sin(angle);
            }
            ref->rope(want, n_heads, hd, c, s);
            k->rope(got, n_heads, hd, c, s);
            CHECK(memcmp(want, got, n * sizeof(float)) == 0, "%s rope head_dim=%d heads=%d not bit-identical", k->name,
                  hd, n_heads);
            CHECK(got[n] == SENTINEL, "%s rope wrote past the end", k->name);
            free_f32(want);
            free_f32(got);
            free_f32(c);
            free_f32(s);
        }
    }
}

static void test_silu(const ml_cpu_kernels *k, ml_test_rng *rng, worst_errors *worst) {
    for (size_t a = 0; a < sizeof elementwise_sizes / sizeof elementwise_sizes[0]; a++) {
        int n = elementwise_sizes[a];
        float *gate = alloc_f32((size_t)n), *up = alloc_f32((size_t)n);
        float *want = alloc_f32((size_t)n), *got = alloc_f32((size_t)n + 1), *aliased = alloc_f32((size_t)n);
        ml_test_fill(rng, gate, (size_t)n, -20.0f, 20.0f);
        ml_test_fill(rng, up, (size_t)n, -1.0f, 1.0f);
        ref->silu_mul(want, gate, up, n);
        got[n] = SENTINEL;
        k->silu_mul(got, gate, up, n);
        double err = ml_test_norm_error(got, want, (size_t)n);
        note(&worst->silu, err);
        CHECK(err <= TOL_SILU, "%s silu_mul n=%d: error %.3g > %.1g", k->name, n, err, TOL_SILU);
        CHECK(got[n] == SENTINEL, "%s silu_mul n=%d wrote past the end", k->name, n);
        memcpy(aliased, gate, (size_t)n * sizeof(float));
        k->silu_mul(aliased, aliased, up, n);
        CHECK(memcmp(aliased, got, (size_t)n * sizeof(float)) == 0, "%s silu_mul n=%d with out == gate differs", k->name,
              n);
        free_f32(gate);
        free_f32(up);
        free_f32(want);
        free_f32(got);
        free_f32(aliased);
    }
    /* Element by element over the whole range, extremes included (up = 1): relative 1e-6 where
     * the result is a normal float, identical inf/NaN/zero class elsewhere. */
    enum { N = 4096 + 23 };
    static const float extremes[] = {-INFINITY, -1000.0f, -104.5f, -103.0f, -88.8f, -87.5f, -50.0f, -1e-3f, -0.0f,
                                     0.0f, 1e-30f, 1e-3f, 50.0f, 87.5f, 88.8f, 89.5f, 104.0f, 1000.0f, INFINITY, NAN};
    float *gate = alloc_f32(N), *up = alloc_f32(N), *want = alloc_f32(N), *got = alloc_f32(N);
    size_t n_extremes = sizeof extremes / sizeof extremes[0];
    for (size_t i = 0; i < N; i++) {
        gate[i] = i < n_extremes ? extremes[i] : -110.0f + 220.0f * (float)i / N;
        up[i] = 1.0f;
    }
    ref->silu_mul(want, gate, up, N);
    k->silu_mul(got, gate, up, N);
    int bad = 0;
    for (size_t i = 0; i < N && bad < 5; i++) {
        int ok;
        if (isnan(want[i]) || isinf(want[i]) || fabsf(want[i]) < 1e-30f)
            ok = (isnan(want[i]) && isnan(got[i])) || got[i] == want[i] || (fabsf(want[i]) < 1e-30f && fabsf(got[i]) < 1e-30f);
        else
            ok = fabs((double)got[i] - want[i]) <= TOL_SILU * fabs((double)want[i]);
        if (!ok) bad++;
        CHECK(ok, "%s silu(%.9g) = %.9g, want %.9g", k->name, gate[i], got[i], want[i]);
    }
    free_f32(gate);
    free_f32(up);
    free_f32(want);
    free_f32(got);
}

/* ---- conversions -------------------------------------------------------------------------- */

static void test_conversions(const ml_cpu_kernels *k, ml_test_rng *rng) {
    enum { ALL = 65536 };
    uint16_t *halves = alloc_u16(ALL);
    float *got = alloc_f32(ALL);
    for (uint32_t i = 0; i < ALL; i++) halves[i] = (uint16_t)i;

    k->f16_to_f32(got, halves, ALL);
    int bad = 0;
    for (uint32_t i = 0; i < ALL; i++) {
        uint32_t want = float_bits(ml_f16_to_f32((uint16_t)i)), have = float_bits(got[i]);
        if (want != have && bad++ < 5) CHECK(0, "%s f16_to_f32(0x%04x) = 0x%08x, want 0x%08x", k->name, i, have, want);
    }
    CHECK(bad == 0, "%s f16_to_f32: %d of 65536 patterns wrong", k->name, bad);

    k->bf16_to_f32(got, halves, ALL);
    bad = 0;
    for (uint32_t i = 0; i < ALL; i++) bad += float_bits(got[i]) != i << 16;
    CHECK(bad == 0, "%s bf16_to_f32: %d of 65536 patterns wrong", k->name, bad);

    /* f32 -> bf16: specials, every rounding case around a few values, and random bit patterns
     * (every exponent, NaNs, infinities, denormals). */
    enum { RANDOM = 1 << 18 };
    static const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x00008000u, 0x00018000u,
                                        0x007fffffu, 0x00800000u, 0x3f808000u, 0x3f818000u, 0x3f807fffu,
                                        0x3f808001u, 0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu, 0x7f800000u,
                                        0xff800000u, 0x7f800001u, 0x7fc00000u, 0xffffffffu, 0x7fbfffffu};
    size_t n_special = sizeof specials / sizeof specials[0], n = n_special + 4 * 65536 + RANDOM;
    float *in = alloc_f32(n);
    uint16_t *out = alloc_u16(n);
    size_t at = 0;
    for (size_t i = 0; i < n_special; i++) in[at++] = bits_float(specials[i]);
    static const uint32_t bases[4] = {0x3f800000u, 0xc1200000u, 0x00000000u, 0x7f000000u};
    for (int b = 0; b < 4; b++)
        for (uint32_t low = 0; low < 65536; low++) in[at++] = bits_float(bases[b] | low);
    for (size_t i = 0; i < RANDOM; i++) in[at++] = bits_float(random_u32(rng));
    k->f32_to_bf16(out, in, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t want = ml_f32_to_bf16(in[i]);
        if (out[i] != want && bad++ < 5)
            CHECK(0, "%s f32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", k->name, float_bits(in[i]), out[i], want);
    }
    CHECK(bad == 0, "%s f32_to_bf16: %d of %zu values wrong", k->name, bad, n);

    /* Every length 0..40 at an odd offset: tails right, nothing written past n. */
    for (size_t len = 0; len <= 40; len++) {
        uint16_t b16[48];
        float f32[48];
        for (int i = 0; i < 48; i++) {
            b16[i] = 0xdead;
            f32[i] = SENTINEL;
        }
        k->f32_to_bf16(b16 + 1, in + 7, len);
        k->bf16_to_f32(f32 + 1, halves + 0x3f00, len);
        int ok = b16[0] == 0xdead && b16[len + 1] == 0xdead && f32[0] == SENTINEL && f32[len + 1] == SENTINEL;
        for (size_t i = 0; i < len; i++) ok &= b16[i + 1] == ml_f32_to_bf16(in[7 + i]) && f32[i + 1] == ml_bf16_to_f32((uint16_t)(0x3f00 + i));
        k->f16_to_f32(f32 + 1, halves + 0x7bf0, len); /* large finite, inf, NaNs */
        for (size_t i = 0; i < len; i++) ok &= float_bits(f32[i + 1]) == float_bits(ml_f16_to_f32((uint16_t)(0x7bf0 + i)));
        ok &= f32[len + 1] == SENTINEL;
        CHECK(ok, "%s conversions of length %zu", k->name, len);
    }
    free_f32(in);
    free_u16(out);
    free_u16(halves);
    free_f32(got);
}

/* ---- driver ------------------------------------------------------------------------------- */

static void test_dispatch(void) {
    /* Forcing through the environment: read once, on the first call. */
    setenv("MESHLLAMA_ISA", "scalar", 1);
    const ml_cpu_kernels *best = ml_cpu_kernels_best();
    CHECK(best == &ml_cpu_kernels_scalar, "MESHLLAMA_ISA=scalar gave %s", best ? best->name : "NULL");
    CHECK(ml_cpu_kernels_best() == best, "ml_cpu_kernels_best is not stable");
    CHECK(ml_cpu_kernels_variant("scalar") == &ml_cpu_kernels_scalar, "scalar variant missing");
    CHECK(ml_cpu_kernels_variant("avx3") == NULL, "unknown variant name accepted");
    CHECK(ml_cpu_kernels_variant(NULL) == NULL, "NULL variant name accepted");
}

int main(void) {
    test_reference_by_hand();
    test_dispatch();
    {
        ml_test_rng rng;
        ml_test_rng_seed(&rng, 77);
        test_quant_reference(&rng);
    }
    test_pool();
    for (size_t v = 0; v < ML_TEST_N_KERNEL_VARIANTS; v++) {
        const ml_cpu_kernels *k = ml_test_kernel_variant(v);
        if (!k) continue;
        CHECK(strcmp(k->name, ml_test_kernel_variants[v]) == 0, "variant %s is named %s", ml_test_kernel_variants[v],
              k->name);
        ml_test_rng rng;
        ml_test_rng_seed(&rng, 1234 + v);
        worst_errors worst;
        memset(&worst, 0, sizeof worst);
        /* properties of every variant, the reference included: splits, threads, pool, batches */
        test_matmul_split(k, &rng);
        test_matmul_threads(k, &rng);
        test_pool_matmul(k, &rng);
        test_matmul_batch_vs_alone(k, &rng, &worst);
        test_quant(k, &rng, &worst);
        test_quant_threads(k, &rng);
        if (k == ref) {
            printf("%-10s the reference: checked by hand above; split, thread, pool and batch invariance checked, "
                   "never against itself\n", k->name);
            continue;
        }
        /* every vector variant against the scalar reference */
        test_matmul(k, &rng, &worst);
        test_attention(k, &rng, &worst);
        test_rmsnorm(k, &rng, &worst);
        test_rope(k, &rng);
        test_silu(k, &rng, &worst);
        test_conversions(k, &rng);
        double worst_quant = 0;
        for (int kind = 0; kind < N_QKINDS; kind++)
            if (worst.quant[kind] > worst_quant) worst_quant = worst.quant[kind];
        printf("%-10s worst normalised error: matmul f32 %.2g f16 %.2g bf16 %.2g bf16_bf16 %.2g q8_0 %.2g q4_0 %.2g "
               "q4_1 %.2g, worst of q5_0 ... q8_k %.2g (tol %.0g; quantised = own f32 bit for bit); "
               "attention f32 %.2g bf16 %.2g (tol %.0g); rmsnorm %.2g (tol %.0g); silu_mul %.2g (tol %.0g); "
               "rope and conversions exact\n",
               k->name, worst.matmul[0], worst.matmul[1], worst.matmul[2], worst.matmul[3], worst.quant[0],
               worst.quant[1], worst.quant[2], worst_quant, TOL_MATMUL,
               worst.attention[0], worst.attention[1], TOL_ATTENTION, worst.rmsnorm, TOL_RMSNORM, worst.silu,
               TOL_SILU);
    }
    return ml_test_finish("kernels");
}
