/* `meshllama bench`: prefill and decode throughput, each beside the machine's measured limit.
 *
 * Before loading the model it probes the machine in a child process (so the probe's buffer does
 * not count in our peak RSS): streaming read bandwidth and dot-product peak with the model's
 * thread count (core/machine_limits.h). Then:
 *   load        ml_model_open, from the page cache when the file was read before;
 *   first token a short prompt right after loading (page faults of the mapping included);
 *   ppP         prefill of P tokens in slot 0, repeated -r times (TTFT = its time);
 *   tgN bB      N decode steps of B sequences at once (slots 0..B-1), each after -d cached
 *               positions (default 0, as llama-bench's tg).
 * Limits: prefill at peak = peak / flops per token; decode at the roofline = B / max(bytes per
 * step / bandwidth, flops per step / peak), bytes = weights read once per step plus the KV
 * cache read. Tokens are fixed pseudo-random ids (the same on every MPI rank, no sampling
 * round trip); rank 0 still takes the argmax of every sequence's logits, as a sampler would.
 * Only the public API (include/meshllama.h) is used. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/machine_limits.h"
#include "cli_args.h"
#include "commands.h"
#include "formats/json_util.h"
#include "json_out.h"
#include "model_options.h"

enum { OPT_JSON = ML_OPT_FIRST_COMMAND_OPTION, OPT_NO_PROBE, OPT_PROBE_MIB };

#define BENCH_MAX_LIST 16

static const char bench_usage[] =
    "usage: meshllama bench -m DIR [-p P[,P...]] [-n N] [-b B[,B...]] [-d D] [-r R] [options]\n"
    "Measures prefill and decode speed as fractions of the machine's read bandwidth and\n"
    "dot-product peak, probed first in the same run.\n"
    ML_MODEL_OPTIONS_HELP
    "  -p, --n-prompt LIST   prompt lengths for prefill tests (default 128; 0 = none)\n"
    "  -n, --n-gen N         decode steps per decode test (default 128; 0 = none)\n"
    "  -b, --batch LIST      sequences decoded at once, e.g. 1,8,32 (default 1)\n"
    "  -d, --depth D         cached positions before each decode test (default 0)\n"
    "  -r, --repetitions R   runs of each test; median and best are reported (default 3)\n"
    "      --no-probe        skip the machine probes (no fractions)\n"
    "      --probe-mib M     bandwidth probe buffer in MiB (default 1024)\n"
    "      --json            print one JSON object instead of the table\n";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double minimum(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

/* "128,512" -> values in [min, max]. */
static int parse_list(const char *flag, const char *text, int min, int max, int *values, int *n) {
    *n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < min || v > max || *n >= BENCH_MAX_LIST || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "meshllama: %s '%s': expected up to %d comma-separated integers in %d..%d\n", flag, text,
                    BENCH_MAX_LIST, min, max);
            return -1;
        }
        values[(*n)++] = (int)v;
        if (*end == ',' && end[1] == '\0') {
            fprintf(stderr, "meshllama: %s '%s': trailing comma\n", flag, text);
            return -1;
        }
        p = *end == ',' ? end + 1 : end;
    }
    if (*n == 0) {
        fprintf(stderr, "meshllama: %s: empty list\n", flag);
        return -1;
    }
    return 0;
}

/* ---- what the model costs per token --------------------------------------------------- */

typedef struct {
    double weight_bytes_per_step;  /* bytes of matrices read by one decode step (LM head included) */
    double matmul_flops_per_token; /* 2 x matrix elements touched by one token, LM head excluded */
    double lm_head_flops;          /* 2 x vocab x hidden, per token whose logits are computed */
    double attn_flops_per_pos;     /* per token and per cached position attended (q.k and p.v) */
    double kv_bytes_per_pos;       /* KV bytes read per token and cached position, all layers */
} model_cost;

static model_cost model_costs(const ml_model_info *info, int kv_bf16) {
    model_cost c;
    double h = info->hidden_size, hd = info->head_dim, layers = info->n_layers, vocab = info->vocab_size;
    double q = (double)info->n_heads * hd, kv = (double)info->n_kv_heads * hd;
    double layer_params = h * (2 * q + 2 * kv) + 3.0 * h * info->intermediate_size;
    c.matmul_flops_per_token = 2.0 * layers * layer_params;
    c.lm_head_flops = 2.0 * vocab * h;
    c.weight_bytes_per_step = info->matmul_bytes;
    c.attn_flops_per_pos = 4.0 * layers * q;
    c.kv_bytes_per_pos = 2.0 * layers * kv * (kv_bf16 ? 2 : 4);
    return c;
}

/* ---- probes in a child process -------------------------------------------------------- */

typedef struct {
    double read_bytes_s;
    double peak_flop_s;
    int isa;
    double f32_flop_s; /* the f32 FMA peak at the CPU's widest width, and its instruction */
    int f32_isa;
    double int8_op_s; /* the int8 product peak (0: none), and its instruction */
    int int8_isa;
    int huge_pages; /* the bandwidth came from a buffer with transparent huge pages */
    int ok;
} limits;

static limits probe_machine(int threads, size_t mib) {
    limits l = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    int fds[2];
    if (pipe(fds) != 0) return l;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return l;
    }
    if (pid == 0) {
        close(fds[0]);
        ml_probe_isa isa;
        limits r;
        r.read_bytes_s = ml_probe_read_ceiling(threads, mib << 20, 5, &r.huge_pages);
        r.peak_flop_s = ml_probe_dot_peak(threads, 0.2, 5, &isa);
        r.isa = (int)isa;
        ml_probe_isa int8_isa;
        r.int8_op_s = ml_probe_int8_peak(threads, 0.2, 3, &int8_isa);
        r.int8_isa = (int)int8_isa;
        r.f32_isa = isa == ML_PROBE_AVX512BF16 ? ML_PROBE_AVX512 : (int)isa;
        r.f32_flop_s = r.f32_isa == (int)isa ? r.peak_flop_s : ml_probe_dot_peak_isa(threads, 0.2, 3, (ml_probe_isa)r.f32_isa);
        r.ok = r.read_bytes_s > 0 && r.peak_flop_s > 0;
        ssize_t wrote = write(fds[1], &r, sizeof r);
        _exit(wrote == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    limits r;
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got == (ssize_t)sizeof r && WIFEXITED(status) && WEXITSTATUS(status) == 0) l = r;
    return l;
}

/* ---- the runs ------------------------------------------------------------------------- */

typedef struct {
    ml_model *model;
    ml_model_info info;
    float *logits;      /* [max_batch, vocab] */
    int32_t *tokens;    /* [max(P, D, B)] */
    uint64_t rng;
    int32_t last_argmax;  /* of the last sequence: what a greedy sampler would feed back */
} bench_state;

static int32_t next_token(bench_state *s) {
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    int range = s->info.vocab_size > 128000 ? 128000 : s->info.vocab_size; /* ordinary tokens */
    return (int32_t)((s->rng >> 33) % (uint64_t)range);
}

static void argmax_rows(bench_state *s, int n_rows) {
    if (s->info.rank != 0) return;
    for (int r = 0; r < n_rows; r++) {
        const float *row = s->logits + (size_t)r * s->info.vocab_size;
        int best = 0;
        for (int i = 1; i < s->info.vocab_size; i++)
            if (row[i] > row[best]) best = i;
        s->last_argmax = best;
    }
}

/* Prefill n tokens into slot from position 0; returns the time in ms, or -1. */
static double prefill(bench_state *s, int slot, int n) {
    for (int i = 0; i < n; i++) s->tokens[i] = next_token(s);
    int start = 0;
    ml_batch batch = {.n_seq = 1, .slots = &slot, .start_pos = &start, .n_tokens = &n, .tokens = s->tokens};
    double t0 = now_ms();
    if (ml_reset_slot(s->model, slot) != ML_OK || ml_forward(s->model, &batch, s->logits) != ML_OK) return -1;
    argmax_rows(s, 1);
    return now_ms() - t0;
}

/* n_steps decode steps of b sequences after `depth` cached positions; step times into step_ms. */
static int decode(bench_state *s, int b, int depth, int n_steps, double *step_ms) {
    int slots[ML_MAX_BATCH], start[ML_MAX_BATCH], counts[ML_MAX_BATCH];
    for (int i = 0; i < b; i++) {
        slots[i] = i;
        counts[i] = 1;
        if (depth > 0) {
            if (prefill(s, i, depth) < 0) return -1;
        } else if (ml_reset_slot(s->model, i) != ML_OK) {
            return -1;
        }
    }
    for (int step = 0; step < n_steps; step++) {
        for (int i = 0; i < b; i++) {
            start[i] = depth + step;
            s->tokens[i] = next_token(s);
        }
        ml_batch batch = {.n_seq = b, .slots = slots, .start_pos = start, .n_tokens = counts, .tokens = s->tokens};
        double t0 = now_ms();
        if (ml_forward(s->model, &batch, s->logits) != ML_OK) return -1;
        argmax_rows(s, b);
        step_ms[step] = now_ms() - t0;
    }
    return 0;
}

typedef struct {
    char name[32];
    int tokens_per_run;  /* prompt tokens, or decode steps x batch */
    int batch;
    double median_ms, best_ms;  /* per run */
    double median_step_ms;      /* decode: median single step */
    double tok_s, best_tok_s;   /* from median and best run: all sequences */
    double limit_tok_s;         /* roofline for this test, all sequences */
    double bytes_per_run;       /* weight and KV bytes one run must read */
    double flops_per_run;
    double gflop_s;             /* prefill: achieved */
    double gbs;                 /* decode: achieved bytes per second / 1e9 */
} result;

static double rss_peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static json_t *json_result(const result *r, int have_limits) {
    json_t *o = json_pack("{s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f}", "test", r->name, "batch", r->batch, "tokens",
                          r->tokens_per_run, "median_ms", r->median_ms, "best_ms",
                          r->best_ms, "tok_s", r->tok_s, "best_tok_s",
                          r->best_tok_s, "tok_s_per_seq", r->tok_s / r->batch);
    if (!o) return NULL;
    if (r->median_step_ms > 0) json_object_set_new(o, "median_step_ms", json_real(r->median_step_ms));
    if (r->gflop_s > 0) json_object_set_new(o, "gflop_s", json_real(r->gflop_s));
    if (r->gbs > 0) json_object_set_new(o, "gb_s", json_real(r->gbs));
    if (have_limits) {
        json_object_set_new(o, "limit_tok_s", json_real(r->limit_tok_s));
        json_object_set_new(o, "fraction", json_real(r->tok_s / r->limit_tok_s));
    }
    return o;
}

typedef struct {
    ml_cli_model model;
    int prompts[BENCH_MAX_LIST], n_prompts;
    int batches[BENCH_MAX_LIST], n_batches;
    int n_gen, depth, reps, json, probe, probe_mib;
    int ctx_given;       /* -c given: keep its max_seq_len */
    int max_batch;       /* sequences at once (1 without decode tests) */
    int need;            /* positions a slot must hold */
} bench_options;

enum { FIRST_PROMPT = 8 }; /* the cold first-token test */

/* Returns 0 to run, 1 after --help, -1 on a usage error (the usage is printed). */
static int parse_bench_options(int argc, char **argv, bench_options *o) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"n-prompt", required_argument, NULL, 'p'},
        {"n-gen", required_argument, NULL, 'n'},
        {"batch", required_argument, NULL, 'b'},
        {"depth", required_argument, NULL, 'd'},
        {"repetitions", required_argument, NULL, 'r'},
        {"no-probe", no_argument, NULL, OPT_NO_PROBE},
        {"probe-mib", required_argument, NULL, OPT_PROBE_MIB},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "p:n:b:d:r:h", options, NULL)) != -1) {
        int handled = ml_cli_model_option(&o->model, opt, optarg);
        if (handled != 0) {
            bad = handled < 0;
            o->ctx_given |= opt == 'c';
            continue;
        }
        switch (opt) {
        case 'p': bad = parse_list("--n-prompt", optarg, 0, 1 << 20, o->prompts, &o->n_prompts) != 0; break;
        case 'n': bad = ml_cli_parse_int("--n-gen", optarg, 0, 1 << 20, &o->n_gen) != 0; break;
        case 'b': bad = parse_list("--batch", optarg, 1, ML_MAX_BATCH, o->batches, &o->n_batches) != 0; break;
        case 'd': bad = ml_cli_parse_int("--depth", optarg, 0, 1 << 24, &o->depth) != 0; break;
        case 'r': bad = ml_cli_parse_int("--repetitions", optarg, 1, 1000, &o->reps) != 0; break;
        case OPT_NO_PROBE: o->probe = 0; break;
        case OPT_PROBE_MIB: bad = ml_cli_parse_int("--probe-mib", optarg, 64, 1 << 20, &o->probe_mib) != 0; break;
        case OPT_JSON: o->json = 1; break;
        case 'h': fputs(bench_usage, stdout); return 1;
        default: bad = 1; break;
        }
    }
    if (!bad) bad = ml_cli_no_operands("bench", argc, argv, optind) != 0;
    if (bad) fputs(bench_usage, stderr);
    return bad ? -1 : 0;
}

/* The KV cache and batch the tests need, unless -c set the length. */
static void size_the_model(bench_options *o) {
    int max_prompt = 0;
    o->max_batch = 1;
    for (int i = 0; i < o->n_prompts; i++) max_prompt = o->prompts[i] > max_prompt ? o->prompts[i] : max_prompt;
    for (int i = 0; i < o->n_batches; i++) o->max_batch = o->batches[i] > o->max_batch ? o->batches[i] : o->max_batch;
    if (o->n_gen == 0) o->max_batch = 1;
    o->need = max_prompt > o->depth + o->n_gen ? max_prompt : o->depth + o->n_gen;
    o->need = o->need > FIRST_PROMPT ? o->need : FIRST_PROMPT;
    if (!o->ctx_given) o->model.params.max_seq_len = o->need;
    if (o->model.params.max_batch < o->max_batch) o->model.params.max_batch = o->max_batch;
}

/* Median and best of the runs (sorts run_ms), as times and rates of `tokens` tokens per run. */
static void time_result(result *res, double *run_ms, int reps, int tokens) {
    res->tokens_per_run = tokens;
    res->best_ms = minimum(run_ms, reps);
    res->median_ms = median(run_ms, reps);
    res->tok_s = (double)tokens * 1e3 / res->median_ms;
    res->best_tok_s = (double)tokens * 1e3 / res->best_ms;
}

/* ppP: prefill of P tokens in slot 0, reps times. Returns 0, or -1 when a forward failed. */
static int prefill_test(bench_state *s, const bench_options *o, const model_cost *cost, int p, double *run_ms,
                        result *res) {
    for (int r = 0; r < o->reps; r++)
        if ((run_ms[r] = prefill(s, 0, p)) < 0) return -1;
    memset(res, 0, sizeof *res);
    snprintf(res->name, sizeof res->name, "pp%d", p);
    res->batch = 1;
    time_result(res, run_ms, o->reps, p);
    /* flops: every token through the layers, causal attention over 1..p positions, one LM head row set */
    double flops = cost->matmul_flops_per_token * p + cost->attn_flops_per_pos * 0.5 * p * (p + 1.0) + cost->lm_head_flops;
    res->gflop_s = flops / (res->median_ms * 1e-3) / 1e9;
    res->flops_per_run = flops;
    res->bytes_per_run = cost->weight_bytes_per_step; /* every weight read at least once */
    return 0;
}

/* tgN with b sequences, reps times; step_ms holds [reps, n_gen]. */
static int decode_test(bench_state *s, const bench_options *o, const model_cost *cost, int b, double *run_ms,
                       double *step_ms, result *res) {
    int n_gen = o->n_gen, depth = o->depth;
    for (int r = 0; r < o->reps; r++) {
        if (decode(s, b, depth, n_gen, step_ms + (size_t)r * n_gen) != 0) return -1;
        run_ms[r] = 0;
        for (int k = 0; k < n_gen; k++) run_ms[r] += step_ms[(size_t)r * n_gen + k];
    }
    memset(res, 0, sizeof *res);
    if (depth > 0)
        snprintf(res->name, sizeof res->name, "tg%d@d%d", n_gen, depth);
    else
        snprintf(res->name, sizeof res->name, "tg%d", n_gen);
    res->batch = b;
    time_result(res, run_ms, o->reps, n_gen * b);
    res->median_step_ms = median(step_ms, n_gen * o->reps);
    double mean_pos = depth + 0.5 * (n_gen + 1.0); /* positions attended, averaged over the steps */
    double bytes = cost->weight_bytes_per_step + b * mean_pos * cost->kv_bytes_per_pos;
    double flops = b * (cost->matmul_flops_per_token + cost->lm_head_flops + mean_pos * cost->attn_flops_per_pos);
    res->gbs = bytes * n_gen / (res->median_ms * 1e-3) / 1e9;
    res->bytes_per_run = bytes * n_gen;
    res->flops_per_run = flops * n_gen;
    return 0;
}

/* Everything a report prints. */
typedef struct {
    const bench_options *o;
    ml_model_info info;
    int threads, have_limits;
    limits lim, before, after;   /* lim: the better of the two probes */
    model_cost cost;
    double load_ms, first_ms, rss_mb;
    result results[2 * BENCH_MAX_LIST];
    int n_results;
} bench_report;

/* The prefill tests, then the decode tests; returns 0 or -1. */
static int run_tests(bench_state *s, bench_report *rep) {
    const bench_options *o = rep->o;
    double *run_ms = calloc((size_t)o->reps, sizeof(double));
    double *step_ms = calloc((size_t)(o->n_gen > 0 ? o->n_gen : 1) * (size_t)o->reps, sizeof(double));
    int status = run_ms && step_ms ? 0 : -1;
    for (int i = 0; status == 0 && i < o->n_prompts; i++)
        if (o->prompts[i] != 0)
            status = prefill_test(s, o, &rep->cost, o->prompts[i], run_ms, &rep->results[rep->n_results++]);
    for (int i = 0; status == 0 && o->n_gen > 0 && i < o->n_batches; i++)
        status = decode_test(s, o, &rep->cost, o->batches[i], run_ms, step_ms, &rep->results[rep->n_results++]);
    free(run_ms);
    free(step_ms);
    return status;
}

/* The compute ceiling a roofline is drawn against. int8 products (`fast` mode on block-quantised
 * weights; "mixed" is a GGUF's mix of quantised types) against the int8 product peak
 * (vpdpbusd / vpmaddubsw): a different arithmetic with its own ceiling. Everything else does
 * float dot products, against the faster of f32 FMA and vdpbf16ps: the machine's float
 * ceiling, whichever instruction the kernels use (vdpbf16ps is twice the f32 FMA rate on AMD
 * Zen 5 but half of it on the Intel Xeons we measured, so a roofline of the kernels' own
 * instruction would flatter fast mode there). Quantised types whose fast products keep float
 * activations (Q2_K, Q3_K, Q5_0, Q5_1, IQ4_NL) are measured against the int8 peak too: their
 * fraction errs low. */
static void use_mode_peak(limits *l, const bench_report *rep) {
    const char *w = rep->info.weight_dtype;
    int fast = rep->o->model.params.act_mode == ML_ACT_FAST;
    int float_weights = !w || strcmp(w, "bf16") == 0 || strcmp(w, "f16") == 0 || strcmp(w, "f32") == 0;
    if (fast && !float_weights && l->int8_op_s > 0) {
        l->peak_flop_s = l->int8_op_s;
        l->isa = l->int8_isa;
    } else if (l->f32_flop_s > l->peak_flop_s) {
        l->peak_flop_s = l->f32_flop_s;
        l->isa = l->f32_isa;
    }
}

/* The machine again: the limits are the better of the two probes (another process may have
 * used the machine during one of them; the higher limit gives the lower fraction). Then each
 * test's roofline. */
static void apply_limits(bench_report *rep) {
    use_mode_peak(&rep->lim, rep);
    use_mode_peak(&rep->before, rep);
    if (rep->o->probe && rep->lim.ok) {
        limits after = probe_machine(rep->threads, (size_t)rep->o->probe_mib);
        use_mode_peak(&after, rep);
        if (after.ok) {
            rep->after = after;
            if (after.read_bytes_s > rep->lim.read_bytes_s) {
                rep->lim.read_bytes_s = after.read_bytes_s;
                rep->lim.huge_pages = after.huge_pages;
            }
            if (after.peak_flop_s > rep->lim.peak_flop_s) rep->lim.peak_flop_s = after.peak_flop_s;
        }
    }
    for (int i = 0; rep->have_limits && i < rep->n_results; i++) {
        result *r = &rep->results[i];
        double t_bytes = r->bytes_per_run / rep->lim.read_bytes_s, t_flops = r->flops_per_run / rep->lim.peak_flop_s;
        r->limit_tok_s = r->tokens_per_run / (t_bytes > t_flops ? t_bytes : t_flops);
    }
}

static const char *act_name(const bench_report *rep) {
    return rep->o->model.params.act_mode == ML_ACT_FAST ? "fast" : "accurate";
}

static const char *kv_name(const bench_report *rep) { return rep->o->model.params.kv_dtype == ML_KV_BF16 ? "bf16" : "f32"; }

static double kv_touched_mb(const bench_report *rep) {
    return (double)rep->o->max_batch * rep->o->need * rep->cost.kv_bytes_per_pos / (1 << 20);
}

/* Returns 0, or 1 when the report could not be printed. */
static int print_json_report(const bench_report *rep) {
    const bench_options *o = rep->o;
    const ml_model_info *info = &rep->info;
    const limits *lim = &rep->lim;
    const model_cost *cost = &rep->cost;
    const char *path = info->path;
    json_t *report = json_pack(
        "{s:o,s:i,s:i,s:s,s:s,s:i,s:s,s:s,s:s,s:i,s:i}", "model", ml_json_string_lossy(path, strlen(path)), "tp",
        info->tp, "threads", info->n_threads, "isa", info->isa, "backend", info->backend, "ranks", info->n_ranks, "act",
        act_name(rep), "kv", kv_name(rep), "weight_dtype", info->weight_dtype, "depth", o->depth, "repetitions", o->reps);
    if (report && rep->have_limits)
        json_object_set_new(
            report, "machine",
            json_pack("{s:f,s:b,s:f,s:s,s:i,s:f,s:f,s:f,s:f}", "read_gb_s", ml_json_round(lim->read_bytes_s / 1e9, 3),
                      "read_huge_pages", lim->huge_pages, "peak_gflop_s", ml_json_round(lim->peak_flop_s / 1e9, 2),
                      "peak_isa", ml_probe_isa_name((ml_probe_isa)lim->isa), "probe_threads", rep->threads,
                      "read_gb_s_before", ml_json_round(rep->before.read_bytes_s / 1e9, 3), "read_gb_s_after",
                      ml_json_round(rep->after.read_bytes_s / 1e9, 3), "peak_gflop_s_before",
                      ml_json_round(rep->before.peak_flop_s / 1e9, 2), "peak_gflop_s_after",
                      ml_json_round(rep->after.peak_flop_s / 1e9, 2)));
    json_t *list = json_array();
    for (int i = 0; i < rep->n_results; i++) json_array_append_new(list, json_result(&rep->results[i], rep->have_limits));
    if (report)
        json_object_update_new(
            report,
            json_pack("{s:{s:f,s:f,s:f,s:i},s:f,s:f,s:i,s:f,s:f,s:f,s:o}", "cost", "weight_bytes_per_step",
                      cost->weight_bytes_per_step, "weight_gb_per_step", ml_json_round(cost->weight_bytes_per_step / 1e9, 4),
                      "gflop_per_token", ml_json_round((cost->matmul_flops_per_token + cost->lm_head_flops) / 1e9, 4),
                      "intermediate_size", info->intermediate_size, "load_ms", ml_json_round(rep->load_ms, 2),
                      "first_token_ms", ml_json_round(rep->first_ms, 2), "first_token_prompt", FIRST_PROMPT,
                      "peak_rss_mb", ml_json_round(rep->rss_mb, 1), "weights_mb",
                      ml_json_round(cost->weight_bytes_per_step / (1 << 20), 1), "kv_mb",
                      ml_json_round(kv_touched_mb(rep), 1), "results", list));
    else
        json_decref(list);
    return ml_json_print(stdout, NULL, report, 1) != 0;
}

static void print_table(const bench_report *rep) {
    const ml_model_info *info = &rep->info;
    const limits *lim = &rep->lim;
    printf("meshllama bench: %s\n", info->path);
    printf("  tp %d, %d threads, %s, %s backend x%d, act %s, kv %s, %s weights\n", info->tp, info->n_threads,
           info->isa, info->backend, info->n_ranks, act_name(rep), kv_name(rep), info->weight_dtype);
    if (rep->have_limits)
        printf("  machine: read %.2f GB/s (%s pages), peak %.1f GFLOP/s (%s), %d threads (best of the probes "
               "before and after: %.2f/%.2f GB/s, %.1f/%.1f GFLOP/s)\n",
               lim->read_bytes_s / 1e9, lim->huge_pages ? "huge" : "4 KiB", lim->peak_flop_s / 1e9,
               ml_probe_isa_name((ml_probe_isa)lim->isa), rep->threads, rep->before.read_bytes_s / 1e9,
               rep->after.read_bytes_s / 1e9, rep->before.peak_flop_s / 1e9, rep->after.peak_flop_s / 1e9);
    printf("  model: %.3f GB of weights read per decode step, %.3f GFLOP per token (+ attention)\n",
           rep->cost.weight_bytes_per_step / 1e9, (rep->cost.matmul_flops_per_token + rep->cost.lm_head_flops) / 1e9);
    printf("  load %.1f ms; first token (%d-token prompt, right after load) %.1f ms\n", rep->load_ms, FIRST_PROMPT,
           rep->first_ms);
    printf("  %-12s %5s %12s %12s %12s %10s %10s %9s\n", "test", "batch", "tok/s", "tok/s/seq", "best tok/s",
           "ms/run", "limit", "fraction");
    for (int i = 0; i < rep->n_results; i++) {
        const result *r = &rep->results[i];
        printf("  %-12s %5d %12.2f %12.2f %12.2f %10.1f", r->name, r->batch, r->tok_s, r->tok_s / r->batch,
               r->best_tok_s, r->median_ms);
        if (rep->have_limits) printf(" %10.2f %8.1f%%", r->limit_tok_s, 100.0 * r->tok_s / r->limit_tok_s);
        if (r->gflop_s > 0) printf("  %.1f GFLOP/s (TTFT %.1f ms)", r->gflop_s, r->median_ms);
        if (r->gbs > 0) printf("  %.2f GB/s", r->gbs);
        printf("\n");
    }
    printf("  peak RSS %.0f MB (weights %.0f MB + KV cache %.0f MB at most)\n", rep->rss_mb,
           rep->cost.weight_bytes_per_step / (1 << 20), kv_touched_mb(rep));
}

/* Loads the model, runs the first token and the tests; returns 0 or -1 (1 when it did not load). */
static int load_and_run(const bench_options *o, bench_report *rep) {
    bench_state s;
    memset(&s, 0, sizeof s);
    s.rng = 0x9e3779b97f4a7c15ULL;
    double t0 = now_ms();
    if (ml_cli_model_open(&o->model, &s.model) != 0) return 1;
    rep->load_ms = now_ms() - t0;
    ml_model_get_info(s.model, &s.info);
    rep->info = s.info;
    int n_tokens_buf = o->need > o->max_batch ? o->need : o->max_batch;
    s.logits = malloc((size_t)o->max_batch * (size_t)s.info.vocab_size * sizeof(float));
    s.tokens = malloc((size_t)n_tokens_buf * sizeof(int32_t));
    int status = s.logits && s.tokens ? 0 : -1;
    rep->first_ms = status == 0 ? prefill(&s, 0, FIRST_PROMPT) : -1;
    if (rep->first_ms < 0) status = -1;
    rep->cost = model_costs(&s.info, o->model.params.kv_dtype == ML_KV_BF16);
    if (status == 0) status = run_tests(&s, rep);
    rep->rss_mb = rss_peak_mb();
    if (status != 0) fprintf(stderr, "meshllama bench: %s\n  (%s)\n", ml_last_error(), "forward failed");
    if (status == 0) apply_limits(rep);
    if (status == 0 && s.info.rank == 0) {
        if (o->json) status = print_json_report(rep);
        else print_table(rep);
    }
    free(s.logits);
    free(s.tokens);
    ml_model_close(s.model);
    return status;
}

int ml_cmd_bench(int argc, char **argv) {
    bench_options o = {.prompts = {128}, .n_prompts = 1, .batches = {1}, .n_batches = 1, .n_gen = 128, .reps = 3,
                       .probe = 1, .probe_mib = 1024};
    ml_cli_model_init(&o.model);
    int parsed = parse_bench_options(argc, argv, &o);
    if (parsed != 0) return parsed > 0 ? 0 : ML_EXIT_USAGE;
    size_the_model(&o);
    bench_report rep;
    memset(&rep, 0, sizeof rep);
    rep.o = &o;
    /* the machine, before the model is in memory */
    rep.threads = o.model.params.n_threads > 0 ? o.model.params.n_threads : online_cores();
    if (o.probe) {
        if (!o.json && isatty(STDERR_FILENO)) fprintf(stderr, "probing the machine (%d threads)...\n", rep.threads);
        rep.lim = probe_machine(rep.threads, (size_t)o.probe_mib);
        rep.before = rep.lim;
        if (!rep.lim.ok) fprintf(stderr, "meshllama bench: the machine probes failed; no fractions reported\n");
    }
    rep.have_limits = rep.lim.ok;
    int status = load_and_run(&o, &rep);
    return status == 0 ? 0 : 1;
}
