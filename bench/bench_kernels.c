/* bench_kernels: the pieces of a forward step, timed alone against the machine's limits
 * (a developer tool for tuning; `meshllama bench` measures the whole model).
 *
 *   bench_kernels [-t THREADS] [--only pool|gemv|decode|gemm|attn|quant|report]
 *
 *   pool  cost of one parallel region (ml_pool_run) with nothing to do, and with tiny tasks;
 *   gemv  decode products of B = 1, 2, 8, 32 tokens over 1 GiB of bf16 weights (far beyond the
 *         caches; on transparent huge pages where the system grants them, as the read probe's), accurate (f32 x) and fast (bf16 x), split into tasks by the model's own
 *         ml_run_matmuls, as GB/s and GFLOP/s and as a fraction of the roofline: the read
 *         probe's time or the table's own dot-product peak's time, whichever is longer;
 *   report  gemv for every kernel table this CPU runs (avx2, avx512, avx512bf16), each against
 *         its own peaks: where each path stands on this machine (not part of a plain run);
 *   decode  one decode step of the Llama-3.2-1B shape's products as the model issues them (q/k/v
 *         together, o, gate/up together, down: 16 layers, then the LM head of 128256 rows), in
 *         row groups, B = 1, 8, 32 tokens, accurate: each product's share of the step and its
 *         fraction of the roofline, so a shape that lags the 1 GiB gemv shows; then B = 8, 32
 *         with one layer's weights for all 16 (no LM head; in L3 where it holds 125 MB) against
 *         the compute peak alone: how much of the gap the memory stream makes;
 *   gemm  prefill products (64..256 tokens x 2048 inputs x 8192 rows, bf16 weights, f32 and bf16
 *         activations) as GFLOP/s next to the dot-product peak probe;
 *   attn  one decode step's attention at 512..8192 cached positions (32 heads over 8 KV heads);
 *   quant one 2048 x 2048 product per ggml block type (Q8_0 ... Q8_K) and float32, on the
 *         calling thread (every kernel table the CPU runs), 1 token (decode: the matrix fits L2/L3,
 *         so this is the kernels' compute cost, not memory) and 64 tokens; best of 20 (5), which
 *         keeps a loaded machine's noise out.
 * Uses library internals (model/model_internal.h): a model struct with only a pool and a kernel
 * table is enough for ml_run_matmuls. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/cpu/kernels.h"
#include "core/alloc.h"
#include "core/machine_limits.h"
#include "core/timer.h"
#include "core/thread_pool.h"
#include "model/model_internal.h"

static double now_s(void) { return ml_now_ms() * 1e-3; }

/* Knuth's MMIX linear congruential generator: the next state. */
static uint64_t lcg_next(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return *state;
}

/* n bf16 values; with huge_pages, 2 MiB-aligned and advised onto transparent huge pages, as the
 * read probe's buffer is (so the GEMV report compares like with like; free() releases both). */
static uint16_t *random_bf16_pages(size_t n, uint64_t seed, int huge_pages) {
    uint16_t *p = NULL;
    if (huge_pages) {
        if (posix_memalign((void **)&p, (size_t)2 << 20, n * sizeof *p) != 0) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, n * sizeof *p, MADV_HUGEPAGE);
#endif
    } else {
        p = malloc(n * sizeof *p);
    }
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = lcg_next(&seed);
        /* values in about [-0.03, 0.03]: sign, exponent 2^-6..2^-9, random mantissa */
        uint16_t sign = (uint16_t)((s >> 63) << 15);
        uint16_t exponent = (uint16_t)(0x78 + ((s >> 40) & 3)) << 7;
        p[i] = (uint16_t)(sign | exponent | ((s >> 20) & 0x7f));
    }
    return p;
}

static uint16_t *random_bf16(size_t n, uint64_t seed) { return random_bf16_pages(n, seed, 0); }

static float *random_f32(size_t n, uint64_t seed) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = lcg_next(&seed);
        p[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void empty_task(void *ctx, int task, int thread_index) {
    (void)ctx;
    (void)task;
    (void)thread_index;
}

static void bench_pool(ml_pool *pool) {
    int threads = ml_pool_threads(pool);
    for (int tasks = threads; tasks <= threads * 16; tasks *= 16) {
        enum { N = 20000 };
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            for (int i = 0; i < N; i++) ml_pool_run(pool, empty_task, NULL, tasks);
            double dt = (now_s() - t0) / N;
            if (dt < best) best = dt;
        }
        printf("pool: %d threads, %d empty tasks per region: %.2f us per region (best of 5 x %d)\n", threads, tasks,
               best * 1e6, N);
    }
}

/* Decode products: 32 matrices of [8192, 2048] bf16 = 1 GiB, so every byte comes from memory,
 * for B = 1, 2, 8, 32 tokens, with float32 activations (accurate mode) and bf16 activations
 * (fast mode: vdpbf16ps where the table has it). Efficiency is against the roofline: the time
 * the step needs at the probed read bandwidth or at the probed dot-product peak, whichever is
 * longer, over the time it took (median of 5). */
enum { GEMV_MATS = 32, GEMV_ROWS = 8192, GEMV_N_IN = 2048, GEMV_MAX_TOK = 32 };

/* One layout's pass: B = 1, 2, 8, 32 tokens, accurate and fast. */
static void gemv_layout(ml_model *m, const uint16_t *w, int grouped, float *x, const uint16_t *x16, float *y,
                        double read_bw, double peak_f32, double peak_fast) {
    size_t per = (size_t)GEMV_ROWS * GEMV_N_IN;
    size_t per_stored = grouped ? ml_bf16_groups_bytes(GEMV_ROWS, GEMV_N_IN) / 2 : per;
    static const int batch_sizes[] = {1, 2, 8, 32};
    for (int fast = 0; fast < 2; fast++) {
        for (size_t b = 0; b < sizeof batch_sizes / sizeof batch_sizes[0]; b++) {
            int n_tok = batch_sizes[b];
            double times[5];
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now_s();
                for (int k = 0; k < GEMV_MATS; k++) {
                    ml_matmul_job job = {.w = {w + (size_t)k * per_stored, ML_DTYPE_BF16, grouped},
                                         .n_rows = GEMV_ROWS, .n_in = GEMV_N_IN, .x = x, .x_bf16 = fast ? x16 : NULL,
                                         .ldx = GEMV_N_IN, .y = y, .ldy = GEMV_ROWS, .n_tok = n_tok};
                    ml_run_matmuls(m, &job, 1);
                }
                times[rep] = now_s() - t0;
            }
            qsort(times, 5, sizeof times[0], cmp_double);
            double bytes = (double)per * GEMV_MATS * 2;
            double flops = 2.0 * per * GEMV_MATS * n_tok;
            double peak = fast ? peak_fast : peak_f32;
            double floor_s = bytes / read_bw > flops / peak ? bytes / read_bw : flops / peak;
            printf("gemv %-10s %s %s B=%2d x 1 GiB bf16: median %6.2f GB/s %6.1f GFLOP/s (best %6.2f GB/s) = %3.0f%% "
                   "of the roofline (%s-bound)\n",
                   m->kernels->name, grouped ? "groups" : "rows  ", fast ? "fast    " : "accurate", n_tok,
                   bytes / times[2] / 1e9, flops / times[2] / 1e9, bytes / times[0] / 1e9, 100.0 * floor_s / times[2],
                   bytes / read_bw > flops / peak ? "read" : "compute");
        }
    }
}

/* Decode products: 32 matrices of [8192, 2048] bf16 = 1 GiB, so every byte comes from memory,
 * for B = 1, 2, 8, 32 tokens, with float32 activations (accurate mode) and bf16 activations
 * (fast mode: vdpbf16ps where the table has it), in natural rows (MESHLLAMA_BF16_GROUPS=0) and
 * in the row groups the model gives bf16 weights. Efficiency is against the roofline: the time
 * the step needs at the probed read bandwidth or at the probed dot-product peak, whichever is
 * longer, over the time it took (median of 5). */
static void bench_gemv(ml_model *m, double read_bw, double peak_f32, double peak_fast) {
    size_t per = (size_t)GEMV_ROWS * GEMV_N_IN;
    uint16_t *w = random_bf16_pages(per * GEMV_MATS, 1, 1);
    float *x = random_f32(GEMV_N_IN * GEMV_MAX_TOK, 2);
    uint16_t *x16 = malloc((size_t)GEMV_N_IN * GEMV_MAX_TOK * sizeof(uint16_t));
    float *y = calloc((size_t)GEMV_ROWS * GEMV_MAX_TOK, sizeof(float));
    if (!w || !x || !x16 || !y) {
        printf("gemv: out of memory\n");
        return;
    }
    m->kernels->f32_to_bf16(x16, x, (size_t)GEMV_N_IN * GEMV_MAX_TOK);
    m->kernels->bf16_to_f32(x, x16, (size_t)GEMV_N_IN * GEMV_MAX_TOK); /* as forward.c keeps both in fast mode */
    const char *env = getenv("MESHLLAMA_BF16_GROUPS");
    int only_rows = env && strcmp(env, "0") == 0, only_groups = env && strcmp(env, "1") == 0;
    if (!only_groups) gemv_layout(m, w, 0, x, x16, y, read_bw, peak_f32, peak_fast);
    if (!only_rows) {
        uint16_t *packed = random_bf16_pages(per * GEMV_MATS, 1, 1);
        if (packed) {
            for (int k = 0; k < GEMV_MATS; k++)
                ml_bf16_groups_pack(packed + (size_t)k * per, w + (size_t)k * per, GEMV_N_IN, GEMV_ROWS, GEMV_N_IN);
            free(w);
            w = packed;
            gemv_layout(m, w, 1, x, x16, y, read_bw, peak_f32, peak_fast);
        }
    }
    free(w);
    free(x);
    free(x16);
    free(y);
}

/* One decode step of the Llama-3.2-1B shape (bench_kernels' header): 16 layers' q/k/v, o,
 * gate/up and down, then the LM head, each matrix in row groups (2.9 GB in all, so every weight
 * comes from memory), timed product by product in the model's order. */
enum { DEC_LAYERS = 16, DEC_HIDDEN = 2048, DEC_KV = 512, DEC_FFN = 8192, DEC_VOCAB = 128256, DEC_MAX_TOK = 32 };

typedef struct {
    const char *name;
    int n_jobs;
    int rows[3], n_in;
} decode_stage;

static const decode_stage decode_stages[] = {
    {"qkv", 3, {DEC_HIDDEN, DEC_KV, DEC_KV}, DEC_HIDDEN},
    {"o", 1, {DEC_HIDDEN}, DEC_HIDDEN},
    {"gate/up", 2, {DEC_FFN, DEC_FFN}, DEC_HIDDEN},
    {"down", 1, {DEC_HIDDEN}, DEC_FFN},
    {"lm_head", 1, {DEC_VOCAB}, DEC_HIDDEN},
};
enum { DEC_STAGES = sizeof decode_stages / sizeof decode_stages[0] };

/* A stage's matrices for one layer (the LM head: one in all) in row groups, random values. */
static uint16_t *decode_weights(const decode_stage *s, int copies, size_t *per_copy) {
    size_t bytes = 0;
    int max_rows = 0; /* every job is packed from the same natural rows */
    for (int j = 0; j < s->n_jobs; j++) {
        bytes += ml_bf16_groups_bytes(s->rows[j], s->n_in);
        max_rows = s->rows[j] > max_rows ? s->rows[j] : max_rows;
    }
    *per_copy = bytes / sizeof(uint16_t);
    uint16_t *w = random_bf16_pages(*per_copy * (size_t)copies, 5, 1);
    uint16_t *natural = random_bf16((size_t)max_rows * s->n_in, 6);
    if (!w || !natural) {
        free(w);
        free(natural);
        return NULL;
    }
    for (int c = 0; c < copies; c++) {
        uint16_t *dst = w + (size_t)c * *per_copy;
        for (int j = 0; j < s->n_jobs; j++) {
            ml_bf16_groups_pack(dst, natural, (size_t)s->n_in, s->rows[j], s->n_in);
            dst += ml_bf16_groups_bytes(s->rows[j], s->n_in) / sizeof(uint16_t);
        }
    }
    free(natural);
    return w;
}

static void bench_decode(ml_model *m, double read_bw, double peak) {
    uint16_t *w[DEC_STAGES];
    size_t per_copy[DEC_STAGES];
    float *x = random_f32((size_t)DEC_FFN * DEC_MAX_TOK, 7);
    float *y = calloc((size_t)DEC_VOCAB * DEC_MAX_TOK, sizeof(float));
    int ok = x && y;
    for (int s = 0; s < DEC_STAGES; s++) {
        w[s] = ok ? decode_weights(&decode_stages[s], s == DEC_STAGES - 1 ? 1 : DEC_LAYERS, &per_copy[s]) : NULL;
        ok = ok && w[s];
    }
    if (!ok) {
        printf("decode: out of memory\n");
        for (int s = 0; s < DEC_STAGES; s++) free(w[s]);
        free(x);
        free(y);
        return;
    }
    static const int batch_sizes[] = {1, 8, 32};
    /* cold: every layer its own weights (from memory); hot: layer 0's weights for all 16 and no
     * LM head (125 MB: in a large L3, else mostly from memory too), so the step's distance from
     * the compute roofline with and without the memory stream shows */
    for (int run = 0; run < 5; run++) { /* cold 1, 8, 32; hot 8, 32 */
        int hot = run >= 3, n_tok = batch_sizes[hot ? run - 2 : run];
        double best[DEC_STAGES], total_best = 1e30;
        for (int s = 0; s < DEC_STAGES; s++) best[s] = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double spent[DEC_STAGES] = {0}, total = 0;
            for (int layer = 0; layer <= DEC_LAYERS; layer++) {
                for (int s = 0; s < DEC_STAGES; s++) {
                    const decode_stage *st = &decode_stages[s];
                    if ((s == DEC_STAGES - 1) != (layer == DEC_LAYERS) || (hot && s == DEC_STAGES - 1)) continue;
                    ml_matmul_job jobs[3];
                    const uint16_t *wp = w[s] + (size_t)(layer < DEC_LAYERS && !hot ? layer : 0) * per_copy[s];
                    for (int j = 0; j < st->n_jobs; j++) {
                        jobs[j] = (ml_matmul_job){.w = {wp, ML_DTYPE_BF16, 1}, .n_rows = st->rows[j],
                                                  .n_in = st->n_in, .x = x, .ldx = st->n_in, .y = y,
                                                  .ldy = st->rows[j], .n_tok = n_tok};
                        wp += ml_bf16_groups_bytes(st->rows[j], st->n_in) / sizeof(uint16_t);
                    }
                    double t0 = now_s();
                    ml_run_matmuls(m, jobs, st->n_jobs);
                    double dt = now_s() - t0;
                    spent[s] += dt;
                    total += dt;
                }
            }
            for (int s = 0; s < DEC_STAGES; s++) best[s] = spent[s] < best[s] ? spent[s] : best[s];
            total_best = total < total_best ? total : total_best;
        }
        double total_bytes = 0, total_flops = 0;
        printf("decode B=%2d accurate%s, best of 5:", n_tok, hot ? ", one layer's weights 16 times" : "");
        for (int s = 0; s < DEC_STAGES - hot; s++) {
            const decode_stage *st = &decode_stages[s];
            double params = 0;
            for (int j = 0; j < st->n_jobs; j++) params += (double)st->rows[j] * st->n_in;
            params *= s == DEC_STAGES - 1 ? 1 : DEC_LAYERS;
            double bytes = hot ? 0 : 2 * params, flops = 2 * params * n_tok;
            double floor_s = bytes / read_bw > flops / peak ? bytes / read_bw : flops / peak;
            total_bytes += bytes;
            total_flops += flops;
            printf(" %s %.1f ms %.0f%%", st->name, best[s] * 1e3, 100.0 * floor_s / best[s]);
        }
        double floor_s = total_bytes / read_bw > total_flops / peak ? total_bytes / read_bw : total_flops / peak;
        printf(" | step %.1f ms = %.1f tok/s, %.0f%% of the roofline (%s-bound)\n", total_best * 1e3,
               n_tok / total_best, 100.0 * floor_s / total_best,
               total_bytes / read_bw > total_flops / peak ? "read" : "compute");
    }
    for (int s = 0; s < DEC_STAGES; s++) free(w[s]);
    free(x);
    free(y);
}

/* The products of one layer of a Llama-3.2-1B prefill chunk, as the model issues them: q/k/v
 * together, o, gate/up together, down (bf16 weights, f32 or bf16 activations). */
static void bench_gemm(ml_model *m, double peak) {
    enum { HIDDEN = 2048, KV = 512, FFN = 8192, MAXTOK = 256 };
    uint16_t *w = random_bf16((size_t)(HIDDEN + 2 * KV + HIDDEN + 2 * FFN) * HIDDEN + (size_t)HIDDEN * FFN, 3);
    float *x = random_f32((size_t)MAXTOK * FFN, 4);
    uint16_t *x16 = malloc((size_t)MAXTOK * FFN * sizeof(uint16_t));
    float *y = calloc((size_t)MAXTOK * 2 * FFN, sizeof(float));
    if (!w || !x || !x16 || !y) {
        printf("gemm: out of memory\n");
        return;
    }
    m->kernels->f32_to_bf16(x16, x, (size_t)MAXTOK * FFN);
    m->kernels->bf16_to_f32(x, x16, (size_t)MAXTOK * FFN);
    const uint16_t *wq = w, *wk = wq + (size_t)HIDDEN * HIDDEN, *wv = wk + (size_t)KV * HIDDEN;
    const uint16_t *wo = wv + (size_t)KV * HIDDEN, *wg = wo + (size_t)HIDDEN * HIDDEN, *wu = wg + (size_t)FFN * HIDDEN;
    const uint16_t *wd = wu + (size_t)FFN * HIDDEN;
    static const int token_counts[] = {8, 32, 128, 256};
    for (size_t tc = 0; tc < sizeof token_counts / sizeof token_counts[0]; tc++) {
        int n_tok = token_counts[tc];
        for (int fast = 0; fast < 2; fast++) {
            const uint16_t *xb = fast ? x16 : NULL;
#define JOB(W, ROWS, NIN, Y, LDY) {.w = {W, ML_DTYPE_BF16}, .n_rows = ROWS, .n_in = NIN, .x = x, .x_bf16 = xb, .ldx = NIN, .y = Y, .ldy = LDY, .n_tok = n_tok}
            ml_matmul_job qkv[3] = {JOB(wq, HIDDEN, HIDDEN, y, HIDDEN), JOB(wk, KV, HIDDEN, y, KV), JOB(wv, KV, HIDDEN, y, KV)};
            ml_matmul_job o[1] = {JOB(wo, HIDDEN, HIDDEN, y, HIDDEN)};
            ml_matmul_job gu[2] = {JOB(wg, FFN, HIDDEN, y, FFN), JOB(wu, FFN, HIDDEN, y, FFN)};
            ml_matmul_job down[1] = {JOB(wd, HIDDEN, FFN, y, HIDDEN)};
#undef JOB
            const ml_matmul_job *sets[4] = {qkv, o, gu, down};
            const int counts[4] = {3, 1, 2, 1};
            const char *names[4] = {"qkv", "o", "gate/up", "down"};
            double total_flops = 0, total_time = 0;
            printf("gemm: %3d tokens, %s activations:", n_tok, fast ? "bf16" : "f32 ");
            for (int s = 0; s < 4; s++) {
                double flops = 0;
                for (int j = 0; j < counts[s]; j++) flops += 2.0 * sets[s][j].n_rows * sets[s][j].n_in * n_tok;
                double best = 1e9;
                for (int rep = 0; rep < 3; rep++) {
                    double t0 = now_s();
                    ml_run_matmuls(m, sets[s], counts[s]);
                    double dt = now_s() - t0;
                    if (dt < best) best = dt;
                }
                total_flops += flops;
                total_time += best;
                printf(" %s %.1f", names[s], flops / best / 1e9);
            }
            printf(" | layer %.1f GFLOP/s (%.0f%% of probe %.1f)\n", total_flops / total_time / 1e9,
                   100.0 * total_flops / total_time / peak, peak / 1e9);
        }
    }
    free(w);
    free(x);
    free(x16);
    free(y);
}

/* The dot-product ceilings of a table: accurate mode runs f32 FMAs at its vector width; fast
 * mode runs vdpbf16ps where the table uses it, else the same FMAs. */
static void table_peaks(const ml_cpu_kernels *k, int threads, double *peak_f32, double *peak_fast) {
    ml_probe_isa f32 = strcmp(k->name, "avx2") == 0 ? ML_PROBE_AVX2
                       : strncmp(k->name, "avx512", 6) == 0 ? ML_PROBE_AVX512 : ML_PROBE_GENERIC;
    *peak_f32 = ml_probe_dot_peak_isa(threads, 0.2, 5, f32);
    *peak_fast = k->bf16_dot_product ? ml_probe_dot_peak_isa(threads, 0.2, 5, ML_PROBE_AVX512BF16) : *peak_f32;
    printf("probe: %s peak %.1f GFLOP/s (%s), fast mode %.1f GFLOP/s (%s)\n", k->name, *peak_f32 / 1e9,
           ml_probe_isa_name(f32), *peak_fast / 1e9, ml_probe_isa_name(k->bf16_dot_product ? ML_PROBE_AVX512BF16 : f32));
}

/* Every vector table this CPU runs, one after another, through the same GEMV/GEMM products
 * (B = 1, 2, 8, 32) against the read probe and that table's own dot-product ceilings. */
static void bench_report(ml_model *m, double read_bw) {
    static const char *const names[] = {"avx2", "avx512", "avx512bf16"};
    int threads = ml_pool_threads(m->pool);
    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        const ml_cpu_kernels *k = ml_cpu_kernels_variant(names[v]);
        if (!k) {
            printf("report: %s: this CPU cannot run it\n", names[v]);
            continue;
        }
        m->kernels = k;
        double peak_f32, peak_fast;
        table_peaks(k, threads, &peak_f32, &peak_fast);
        bench_gemv(m, read_bw, peak_f32, peak_fast);
    }
}

typedef struct {
    const ml_cpu_kernels *k;
    const float *q;
    const void *kc, *vc;  /* [layers][8 kv heads][max_pos][64] */
    float *out;
    int n_pos, max_pos, layer, bf16;
} attn_ctx;

static void attn_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const attn_ctx *c = ctx;
    enum { HD = 64, GROUP = 4, KV = 8 };
    size_t kv_off = ((size_t)c->layer * KV + (size_t)task) * c->max_pos * HD;
    if (c->bf16)
        c->k->attention_bf16(c->out + (size_t)task * GROUP * HD, c->q + (size_t)task * GROUP * HD, GROUP,
                             (const uint16_t *)c->kc + kv_off, (const uint16_t *)c->vc + kv_off, c->n_pos, HD, 0.125f,
                             NULL);
    else
        c->k->attention_f32(c->out + (size_t)task * GROUP * HD, c->q + (size_t)task * GROUP * HD, GROUP,
                            (const float *)c->kc + kv_off, (const float *)c->vc + kv_off, c->n_pos, HD, 0.125f, NULL);
}

/* One decode step's attention over 16 layers' caches (each from memory, as in the model). */
static void bench_attention(ml_model *m, double read_bw) {
    enum { HD = 64, KV = 8, LAYERS = 16, MAXPOS = 8192 };
    size_t cells = (size_t)LAYERS * KV * MAXPOS * HD;
    float *kc = random_f32(cells, 5), *vc = random_f32(cells, 6);
    uint16_t *kb = malloc(cells * sizeof(uint16_t)), *vb = malloc(cells * sizeof(uint16_t));
    float *q = random_f32(32 * HD, 7), *out = calloc(32 * HD, sizeof(float));
    if (!kc || !vc || !kb || !vb || !q || !out) {
        printf("attn: out of memory\n");
        return;
    }
    m->kernels->f32_to_bf16(kb, kc, cells);
    m->kernels->f32_to_bf16(vb, vc, cells);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        for (int n_pos = 512; n_pos <= MAXPOS; n_pos *= 4) {
            attn_ctx c = {m->kernels, q, bf16 ? (const void *)kb : kc, bf16 ? (const void *)vb : vc, out, n_pos,
                          MAXPOS, 0, bf16};
            double times[5];
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now_s();
                for (c.layer = 0; c.layer < LAYERS; c.layer++) ml_pool_run(m->pool, attn_task, &c, KV);
                times[rep] = now_s() - t0;
            }
            qsort(times, 5, sizeof times[0], cmp_double);
            double bytes = 2.0 * LAYERS * KV * n_pos * HD * (bf16 ? 2 : 4);
            printf("attn: 1 token x 16 layers, 32 q / 8 kv heads, %5d positions, %s KV: %.2f ms per token, %.1f GB/s "
                   "(%.0f%% of probe)\n",
                   n_pos, bf16 ? "bf16" : "f32 ", times[2] * 1e3, bytes / times[2] / 1e9,
                   100.0 * bytes / times[2] / read_bw);
        }
    }
    free(kc);
    free(vc);
    free(kb);
    free(vb);
    free(q);
    free(out);
}

/* The block types' matmuls (and float32 for scale) on one 2048 x 2048 matrix of random bytes
 * (random scales: the speed does not depend on the values), one thread. */
static void bench_quant(void) {
    enum { N = 2048 };
    static const ml_dtype types[] = {ML_DTYPE_F32,  ML_DTYPE_Q8_0, ML_DTYPE_Q4_0, ML_DTYPE_Q4_1, ML_DTYPE_Q5_0,
                                     ML_DTYPE_Q5_1, ML_DTYPE_IQ4_NL, ML_DTYPE_Q2_K, ML_DTYPE_Q3_K, ML_DTYPE_Q4_K,
                                     ML_DTYPE_Q5_K, ML_DTYPE_Q6_K, ML_DTYPE_Q8_K};
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    float *x = random_f32((size_t)64 * N, 3), *y = malloc((size_t)64 * N * sizeof(float));
    uint8_t *w = malloc((size_t)N * N * sizeof(float));
    if (!x || !y || !w) {
        printf("quant: out of memory\n");
        return;
    }
    uint64_t s = 11;
    for (size_t i = 0; i < (size_t)N * N * sizeof(float); i++) w[i] = (uint8_t)(lcg_next(&s) >> 56);
    for (size_t i = 0; i < (size_t)N * N; i++) ((float *)(void *)w)[i] = 0.01f * (float)((i * 37) % 19) - 0.09f;
    for (size_t v = 0; v < sizeof isas / sizeof isas[0]; v++) {
        const ml_cpu_kernels *k = ml_cpu_kernels_variant(isas[v]);
        if (!k) continue;
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            ml_dtype dtype = types[i];
            printf("quant: %-7s %-6s", k->name, ml_dtype_name(dtype));
            for (int n_tok = 1; n_tok <= 64; n_tok *= 64) {
                int reps = n_tok == 1 ? 20 : 5;
                if (v == 0) reps = n_tok == 1 ? 3 : 1;
                double best = 1e30;
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = now_s();
                    switch (dtype) {
                    case ML_DTYPE_F32: k->matmul_f32_f32(y, N, x, N, (const float *)(const void *)w, N, n_tok, 0, N); break;
                    case ML_DTYPE_Q8_0: k->matmul_f32_q8_0(y, N, x, N, w, N, n_tok, 0, N); break;
                    case ML_DTYPE_Q4_0: k->matmul_f32_q4_0(y, N, x, N, w, N, n_tok, 0, N); break;
                    case ML_DTYPE_Q4_1: k->matmul_f32_q4_1(y, N, x, N, w, N, n_tok, 0, N); break;
                    default: k->matmul_f32_blocks(dtype, y, N, x, N, w, N, n_tok, 0, N); break;
                    }
                    double t = now_s() - t0;
                    if (t < best) best = t;
                }
                printf("   %2d token%s %7.3f ms %6.2f Gweights/s", n_tok, n_tok == 1 ? " " : "s", best * 1e3,
                       (double)N * N * n_tok / best / 1e9);
            }
            printf("\n");
        }
    }
    free(x);
    free(y);
    free(w);
}

int main(int argc, char **argv) {
    int threads = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_kernels [-t THREADS] [--only pool|gemv|decode|gemm|attn|quant|report]\n");
            return 2;
        }
    }
    ml_model m;
    memset(&m, 0, sizeof m);
    if (ml_pool_create(threads, &m.pool) != 0) return 1;
    m.kernels = ml_cpu_kernels_best();
    threads = ml_pool_threads(m.pool);
    printf("kernels %s, %d threads\n", m.kernels->name, threads);
    double bw = 0, peak = 0;
    if (!only || strcmp(only, "gemv") == 0 || strcmp(only, "decode") == 0 || strcmp(only, "attn") == 0 || strcmp(only, "report") == 0) {
        bw = ml_probe_read_ceiling(threads, (size_t)1 << 30, 5, NULL);
        printf("probe: read bandwidth %.2f GB/s\n", bw / 1e9);
    }
    if (!only || strcmp(only, "gemm") == 0) {
        ml_probe_isa isa;
        peak = ml_probe_dot_peak(threads, 0.2, 5, &isa);
        printf("probe: peak %.1f GFLOP/s (%s)\n", peak / 1e9, ml_probe_isa_name(isa));
    }
    if (!only || strcmp(only, "pool") == 0) bench_pool(m.pool);
    if (!only || strcmp(only, "gemv") == 0) {
        double peak_f32, peak_fast;
        table_peaks(m.kernels, threads, &peak_f32, &peak_fast);
        bench_gemv(&m, bw, peak_f32, peak_fast);
    }
    if (only && strcmp(only, "report") == 0) bench_report(&m, bw);
    if (only && strcmp(only, "decode") == 0) {
        double peak_f32, peak_fast;
        table_peaks(m.kernels, threads, &peak_f32, &peak_fast);
        bench_decode(&m, bw, peak_f32);
    }
    if (!only || strcmp(only, "gemm") == 0) bench_gemm(&m, peak);
    if (!only || strcmp(only, "attn") == 0) bench_attention(&m, bw);
    if (!only || strcmp(only, "quant") == 0) bench_quant();
    ml_free(m.x_interleaved); /* ml_run_matmuls' interleaved inputs */
    ml_pool_destroy(m.pool);
    return 0;
}
