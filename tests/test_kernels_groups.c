/* bf16 weights in row groups (kernels.h: ml_bf16_groups_pack, matmul_f32_bf16g,
 * matmul_bf16_bf16g). The packing against its definition; the scalar reference against a
 * chain of fmaf written here over the natural rows, and against a double-precision product
 * (it is a dot product at all); then every variant the CPU has against the reference bit for
 * bit, at awkward sizes (n_in not a multiple of 16 or 32, a last group of 1-15 rows, row
 * ranges starting inside the matrix, ldx/ldy wider than the data), for 1-40 tokens (the
 * register blocks change at 2, 3, 6 and 12 tokens), and every token's outputs equal to its
 * outputs alone (batch invariance). The vdpbf16ps variant (avx512bf16's matmul_bf16_bf16g) has
 * its own rounding: it is held to its own batch invariance and to the reference within 1e-5. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "core/numeric.h"
#include "test_kernel_variants.h"
#include "test_util.h"

static int float_bits_differ(float a, float b) { return memcmp(&a, &b, sizeof a) != 0; }

typedef struct {
    int n_in, n_rows, n_tok;
    size_t ldx, ldy;
    uint16_t *w;      /* [n_rows, n_in] natural rows */
    uint16_t *packed; /* ml_bf16_groups_bytes */
    float *x;         /* [n_tok, ldx] */
    uint16_t *x_bf16; /* [n_tok, ldx] */
} problem;

static void make(problem *p, ml_test_rng *rng, int n_in, int n_rows, int n_tok) {
    p->n_in = n_in;
    p->n_rows = n_rows;
    p->n_tok = n_tok;
    p->ldx = (size_t)n_in + 3;
    p->ldy = (size_t)n_rows + 5;
    p->w = malloc((size_t)n_rows * n_in * sizeof *p->w + 2);
    p->packed = aligned_alloc(64, (ml_bf16_groups_bytes(n_rows, n_in) + 63) / 64 * 64);
    p->x = malloc((size_t)n_tok * p->ldx * sizeof *p->x);
    p->x_bf16 = malloc((size_t)n_tok * p->ldx * sizeof *p->x_bf16);
    for (size_t i = 0; i < (size_t)n_rows * n_in; i++) p->w[i] = ml_f32_to_bf16(ml_test_uniform(rng, -1.0f, 1.0f));
    ml_test_fill(rng, p->x, (size_t)n_tok * p->ldx, -2.0f, 2.0f);
    for (size_t i = 0; i < (size_t)n_tok * p->ldx; i++) p->x_bf16[i] = ml_f32_to_bf16(p->x[i]);
    ml_bf16_groups_pack(p->packed, p->w, (size_t)n_in, n_rows, n_in);
}

static void release(problem *p) {
    free(p->w);
    free(p->packed);
    free(p->x);
    free(p->x_bf16);
}

/* kind 0: matmul_f32_bf16g on x; 1: matmul_bf16_bf16g on x_bf16; 2: matmul_f32_bf16g with x also
 * interleaved (ml_groups_interleave_x of the call's tokens); 3: matmul_bf16_bf16g with x_bf16
 * also interleaved (ml_groups_interleave_pairs). y [n_tok, ldy]. */
#define N_KINDS 4
static int is_bf16_kind(int kind) { return kind == 1 || kind == 3; }

static void call(const ml_cpu_kernels *k, int kind, const problem *p, float *y, int tok0, int n_tok, int row_begin,
                 int row_end) {
    if (is_bf16_kind(kind)) {
        uint16_t *pairs = NULL;
        if (kind == 3) {
            pairs = malloc((size_t)n_tok * p->n_in * sizeof *pairs);
            ml_groups_interleave_pairs(pairs, p->x_bf16 + (size_t)tok0 * p->ldx, p->ldx, p->n_in, n_tok);
        }
        k->matmul_bf16_bf16g(y + (size_t)tok0 * p->ldy, p->ldy, p->x_bf16 + (size_t)tok0 * p->ldx, p->ldx, pairs,
                             p->packed, p->n_in, n_tok, row_begin, row_end);
        free(pairs);
        return;
    }
    float *xt = NULL;
    if (kind == 2) {
        xt = malloc((size_t)n_tok * p->n_in * sizeof *xt);
        ml_groups_interleave_x(xt, p->x + (size_t)tok0 * p->ldx, p->ldx, p->n_in, n_tok);
    }
    k->matmul_f32_bf16g(y + (size_t)tok0 * p->ldy, p->ldy, p->x + (size_t)tok0 * p->ldx, p->ldx, xt, p->packed,
                        p->n_in, n_tok, row_begin, row_end);
    free(xt);
}

/* The interleaved orders against their definitions (kernels.h), n_in within one of the copies'
 * spans (256 elements) and over several, the last one partial. */
static void interleave_case(ml_test_rng *rng, int n_in) {
    problem p;
    make(&p, rng, n_in, 1, 27); /* blocks of 12, 12 and 3 */
    float *xt = malloc((size_t)p.n_tok * p.n_in * sizeof *xt);
    uint16_t *pairs = malloc((size_t)p.n_tok * p.n_in * sizeof *pairs);
    ml_groups_interleave_x(xt, p.x, p.ldx, p.n_in, p.n_tok);
    ml_groups_interleave_pairs(pairs, p.x_bf16, p.ldx, p.n_in, p.n_tok);
    int bad = 0, bad_pairs = 0;
    for (int t = 0; t < p.n_tok; t++)
        for (int i = 0; i < p.n_in; i++) {
            int b = t / ML_GROUP_TOKENS, tb = p.n_tok - b * ML_GROUP_TOKENS < ML_GROUP_TOKENS ? p.n_tok - b * ML_GROUP_TOKENS
                                                                                          : ML_GROUP_TOKENS;
            size_t block = (size_t)b * ML_GROUP_TOKENS * p.n_in;
            float got = xt[block + (size_t)i * tb + (t % ML_GROUP_TOKENS)];
            bad += got != p.x[(size_t)t * p.ldx + i];
            uint16_t got_pair = pairs[block + ((size_t)(i / 2) * tb + (t % ML_GROUP_TOKENS)) * 2 + i % 2];
            bad_pairs += got_pair != p.x_bf16[(size_t)t * p.ldx + i];
        }
    CHECK(bad == 0, "interleave %d wide: %d elements misplaced", n_in, bad);
    CHECK(bad_pairs == 0, "interleave pairs %d wide: %d elements misplaced", n_in, bad_pairs);
    free(xt);
    free(pairs);
    release(&p);
}

static void test_interleave(ml_test_rng *rng) {
    interleave_case(rng, 6);
    interleave_case(rng, 518);
}

static void test_pack(ml_test_rng *rng) {
    static const int shapes[][2] = {{1, 2}, {15, 6}, {16, 32}, {17, 34}, {40, 2}, {33, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        problem p;
        make(&p, rng, shapes[s][1], shapes[s][0], 1);
        int groups = (p.n_rows + 15) / 16, bad = 0;
        for (int r = 0; r < groups * 16; r++)
            for (int i = 0; i < p.n_in; i++) {
                uint16_t want = r < p.n_rows ? p.w[(size_t)r * p.n_in + i] : 0;
                const uint16_t *g = p.packed + (size_t)(r / 16) * 16 * p.n_in;
                bad += g[(size_t)(i / 2) * 32 + 2 * (r % 16) + (i & 1)] != want;
                bad += ml_bf16_groups_at(p.packed, p.n_in, r, i) != want;
            }
        CHECK(bad == 0, "pack %d x %d: %d elements misplaced", p.n_rows, p.n_in, bad);
        release(&p);
    }
}

/* The reference against chunked fmaf chains over the natural rows (the contract written out
 * once more) and
 * against a double-precision dot product. */
static void test_reference(ml_test_rng *rng) {
    problem p;
    make(&p, rng, 600, 37, 3); /* chunks of 256, 256 and 88 */
    float *y = calloc((size_t)p.n_tok * p.ldy, sizeof *y);
    for (int kind = 0; kind < 2; kind++) {
        call(&ml_cpu_kernels_scalar, kind, &p, y, 0, p.n_tok, 0, p.n_rows);
        int bad = 0;
        double worst = 0.0;
        for (int t = 0; t < p.n_tok; t++)
            for (int r = 0; r < p.n_rows; r++) {
                float acc = 0.0f, sum = 0.0f;
                double exact = 0.0, magnitude = 0.0;
                for (int i = 0; i < p.n_in; i++) {
                    float xi = kind ? ml_bf16_to_f32(p.x_bf16[(size_t)t * p.ldx + i]) : p.x[(size_t)t * p.ldx + i];
                    float wi = ml_bf16_to_f32(p.w[(size_t)r * p.n_in + i]);
                    acc = fmaf(xi, wi, acc);
                    if ((i + 1) % ML_GROUP_CHUNK == 0 || i + 1 == p.n_in) { /* a chunk ends */
                        sum = i < ML_GROUP_CHUNK ? acc : sum + acc;
                        acc = 0.0f;
                    }
                    exact += (double)xi * wi;
                    magnitude += fabs((double)xi * wi);
                }
                acc = sum;
                float got = y[(size_t)t * p.ldy + r];
                bad += float_bits_differ(got, acc);
                double err = fabs(got - exact) / (magnitude + 1e-30);
                worst = err > worst ? err : worst;
            }
        CHECK(bad == 0, "scalar kind %d: %d outputs differ from the fmaf chain", kind, bad);
        CHECK(worst < 1e-5, "scalar kind %d: relative error %.3g against double", kind, worst);
    }
    free(y);
    release(&p);
}

#define SENTINEL -12345.0f

/* y [n_tok, ldy] all SENTINEL. */
static float *sentinel_y(const problem *p) {
    float *y = malloc((size_t)p->n_tok * p->ldy * sizeof *y);
    for (size_t i = 0; i < (size_t)p->n_tok * p->ldy; i++) y[i] = SENTINEL;
    return y;
}

/* Outputs past n_rows (the padding of ldy) were never written. */
static int padding_written(const problem *p, const float *y) {
    int bad = 0;
    for (int t = 0; t < p->n_tok; t++)
        for (size_t r = (size_t)p->n_rows; r < p->ldy; r++) bad += y[(size_t)t * p->ldy + r] != SENTINEL;
    return bad;
}

/* One variant, one kind, one shape: all at once against the reference (bits, or within 1e-5 of
 * the magnitude for vdpbf16ps), then split into a row range starting at a group inside the
 * matrix and token by token: the same bits as all at once. x interleaved (kinds 2, 3): the same
 * bits as the variant's own product on x in place (kinds 0, 1), vdpbf16ps included. */
static void variant_case(const ml_cpu_kernels *k, int kind, ml_test_rng *rng, int n_in, int n_rows, int n_tok,
                         double *worst) {
    problem p;
    make(&p, rng, n_in, n_rows, n_tok);
    float *want = sentinel_y(&p), *all = sentinel_y(&p), *split = sentinel_y(&p);
    call(&ml_cpu_kernels_scalar, kind, &p, want, 0, n_tok, 0, n_rows);
    call(k, kind, &p, all, 0, n_tok, 0, n_rows);
    int unequal_in_place = 0;
    if (kind >= 2) {
        float *in_place = sentinel_y(&p);
        call(k, kind - 2, &p, in_place, 0, n_tok, 0, n_rows);
        for (size_t i = 0; i < (size_t)n_tok * p.ldy; i++) unequal_in_place += float_bits_differ(all[i], in_place[i]);
        free(in_place);
    }
    int cut = n_rows > 16 ? (n_rows / 2) / 16 * 16 : 0;
    for (int t = 0; t < n_tok; t++) {
        if (cut > 0) call(k, kind, &p, split, t, 1, 0, cut);
        call(k, kind, &p, split, t, 1, cut, n_rows);
    }
    int exact = !(is_bf16_kind(kind) && k->bf16_dot_product), differ = 0, unequal_split = 0;
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < n_rows; r++) {
            size_t at = (size_t)t * p.ldy + r;
            unequal_split += float_bits_differ(all[at], split[at]);
            if (exact) {
                differ += float_bits_differ(all[at], want[at]);
                continue;
            }
            double magnitude = 0.0;
            for (int i = 0; i < n_in; i++)
                magnitude += fabs((double)ml_bf16_to_f32(p.x_bf16[(size_t)t * p.ldx + i]) *
                                  ml_bf16_to_f32(p.w[(size_t)r * n_in + i]));
            double err = fabs((double)all[at] - want[at]) / (magnitude + 1e-30);
            *worst = err > *worst ? err : *worst;
            differ += err > 1e-5;
        }
    CHECK(differ == 0, "%s kind %d, %d x %d, %d tokens: %d outputs differ from the reference", k->name, kind, n_rows,
          n_in, n_tok, differ);
    CHECK(unequal_in_place == 0, "%s kind %d, %d x %d, %d tokens: %d outputs differ from x read in place", k->name,
          kind, n_rows, n_in, n_tok, unequal_in_place);
    CHECK(unequal_split == 0, "%s kind %d, %d x %d, %d tokens: %d outputs change when split by rows and tokens",
          k->name, kind, n_rows, n_in, n_tok, unequal_split);
    CHECK(padding_written(&p, all) + padding_written(&p, split) == 0,
          "%s kind %d, %d x %d: wrote past the rows", k->name, kind, n_rows, n_in);
    free(want);
    free(all);
    free(split);
    release(&p);
}

static void test_variants(ml_test_rng *rng) {
    static const int shapes[][2] = {{2, 1}, {18, 15}, {64, 16}, {130, 37}, {514, 70}, {2050, 33}};
    static const int tokens[] = {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 25, 40};
    for (size_t v = 1; v < ML_TEST_N_KERNEL_VARIANTS; v++) {
        const ml_cpu_kernels *k = ml_test_kernel_variant(v);
        if (!k) continue;
        double worst = 0.0;
        for (int kind = 0; kind < N_KINDS; kind++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
                    variant_case(k, kind, rng, shapes[s][0], shapes[s][1], tokens[t], &worst);
        if (k->bf16_dot_product) printf("%s vdpbf16ps: worst error %.3g of the magnitude\n", k->name, worst);
    }
}

int main(void) {
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 20261203);
    test_pack(&rng);
    test_interleave(&rng);
    test_reference(&rng);
    test_variants(&rng);
    return ml_test_finish("test_kernels_groups");
}
