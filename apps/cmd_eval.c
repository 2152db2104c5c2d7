/* `meshllama eval`: the seed's teacher-forcing evaluation and its automation wrapper
 * (eval.py + scripts/run_eval.py) in one command. One YT_METRICS={...} line per point on
 * stdout; a human summary on stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_args.h"
#include "commands.h"
#include "formats/hidden_dump.h"
#include "formats/json_util.h"
#include "json_out.h"
#include "model_options.h"

enum { OPT_REF = ML_OPT_FIRST_COMMAND_OPTION, OPT_PREFILL_LEN, OPT_PREFILL_RANGE, OPT_DECODE_LEN, OPT_MAX_SEQ,
       OPT_MAX_SEQ_RANGE, OPT_BATCH, OPT_PREFILL_DECODE, OPT_MIN_TOP1, OPT_MIN_TOP5, OPT_DUMP_LAYERS };

static const char eval_usage[] =
    "usage: meshllama eval -m MODEL --ref REF [options]\n"
    "Teacher forcing against a Hugging Face reference (tools/hf_reference.py): prefill the prompt,\n"
    "score each position's top-1/top-5 against HF's greedy tokens while feeding HF's tokens.\n"
    ML_MODEL_OPTIONS_HELP
    "      --ref PATH              reference file, or a directory of prefill<P>.bin files\n"
    "      --prefill-len P         prompt length (a directory needs it; a file must match)\n"
    "      --prefill-len-range A:B[:S]  one point per prompt length (REF is a directory)\n"
    "      --decode-len D          positions to score (default: all in the reference)\n"
    "      --max-seq-len N         KV-cache length (default: prompt + decode)\n"
    "      --max-seq-len-range A:B[:S]  one point per KV-cache length\n"
    "      --batch N               run the reference in N sequences at once (1..32); all must agree\n"
    "      --prefill-decode        feed the prompt token by token through decode\n"
    "      --min-top1 X, --min-top5 X  exit 1 if a point scores below X\n"
    "      --dump-layers DIR       write the prompt's named intermediates of every layer (attn_norm,\n"
    "                              q, k, v, ..., layer_out) to DIR/hidden_prefill<P>.bin\n"
    "                              (compare with tools/compare_layers.py)\n";

typedef struct {
    ml_cli_model model;
    const char *ref_path;
    int *prefill_lens, n_prefill_lens;
    int *max_seqs, n_max_seqs;
    int decode_len, batch, prefill_decode;
    float min_top1, min_top5;
    const char *dump_dir;
} eval_options;

/* --dump-layers: every named intermediate of the prompt, by (name, layer) in the order the
 * forward pass hands them over (written by formats/hidden_dump.h; format in
 * docs/EVAL_REFERENCE.md). */
typedef struct {
    int n_tok, failed;
    int n_entries, capacity;
    ml_hidden_entry *entries;
} layer_dump;

static ml_hidden_entry *dump_entry_for(layer_dump *d, const ml_hidden_state *s) {
    for (int i = 0; i < d->n_entries; i++)
        if (d->entries[i].layer == s->layer && strcmp(d->entries[i].name, s->name) == 0) return &d->entries[i];
    if (d->n_entries == d->capacity) {
        int capacity = d->capacity ? 2 * d->capacity : 64;
        ml_hidden_entry *grown = realloc(d->entries, (size_t)capacity * sizeof *grown);
        if (!grown) return NULL;
        d->entries = grown;
        d->capacity = capacity;
    }
    ml_hidden_entry *e = &d->entries[d->n_entries];
    snprintf(e->name, sizeof e->name, "%s", s->name);
    e->layer = s->layer;
    e->width = s->width;
    e->data = calloc((size_t)d->n_tok * s->width, sizeof(float));
    if (!e->data) return NULL;
    d->n_entries++;
    return e;
}

static void collect_state(const ml_hidden_state *s, void *user) {
    layer_dump *d = user;
    if (d->failed || s->token_begin + s->n_tok > d->n_tok) return;
    ml_hidden_entry *e = dump_entry_for(d, s);
    if (!e || e->width != s->width) {
        d->failed = 1;
        return;
    }
    memcpy(e->data + (size_t)s->token_begin * e->width, s->data, (size_t)s->n_tok * s->width * sizeof(float));
}

static int dump_layers(ml_model *model, const ml_eval_reference *ref, const char *dir) {
    ml_model_info info;
    ml_model_get_info(model, &info);
    ml_eval_reference_info ref_info;
    ml_eval_reference_get_info(ref, &ref_info);
    const int32_t *prompt = ml_eval_reference_prompt(ref);
    layer_dump d = {.n_tok = ref_info.n_prompt};
    ml_model_set_hidden_callback(model, collect_state, &d);
    int slot = 0, start = 0, n = d.n_tok;
    ml_batch b = {1, &slot, &start, &n, prompt, 0};
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    int status = logits ? ml_reset_slot(model, 0) : ML_ERR_NOMEM;
    if (status == ML_OK) status = ml_forward(model, &b, logits);
    ml_model_set_hidden_callback(model, NULL, NULL);
    free(logits);
    int fail = status != ML_OK || d.failed;
    if (status != ML_OK) fprintf(stderr, "meshllama eval: --dump-layers forward: %s\n", ml_last_error());
    else if (d.failed) fprintf(stderr, "meshllama eval: out of memory for --dump-layers\n");
    if (!fail && info.rank == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/hidden_prefill%d.bin", dir, d.n_tok);
        mkdir(dir, 0755);
        fail = ml_hidden_dump_write(path, prompt, d.n_tok, info.hidden_size, d.entries, d.n_entries) != ML_OK;
        if (fail) fprintf(stderr, "meshllama eval: %s\n", ml_last_error());
        else fprintf(stderr, "eval: wrote %d intermediates of %d tokens to %s\n", d.n_entries, d.n_tok, path);
    }
    for (int i = 0; i < d.n_entries; i++) free(d.entries[i].data);
    free(d.entries);
    return fail;
}

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *slash = NULL;
    for (size_t i = 0; i + 1 < n; i++)
        if (path[i] == '/') slash = path + i;
    static char name[256];
    const char *begin = slash ? slash + 1 : path;
    size_t len = (size_t)(path + n - begin) < sizeof name - 1 ? (size_t)(path + n - begin) : sizeof name - 1;
    memcpy(name, begin, len);
    name[len] = '\0';
    return name;
}

/* A value as %.3e writes it (4 significant digits). */
static const char *buf_3e(double x) {
    static char text[32];
    snprintf(text, sizeof text, "%.3e", x);
    return text;
}

static void print_metrics(const eval_options *o, const ml_model_info *info, int prefill_len, int max_seq,
                          const ml_eval_result *r) {
    const ml_model_params *p = &o->model.params;
    char mesh[32], backend[64];
    snprintf(mesh, sizeof mesh, "%dx%d", p->mesh_rows > 0 ? p->mesh_rows : 1, p->mesh_rows > 0 ? p->mesh_cols : info->tp);
    snprintf(backend, sizeof backend, "%s-%s", info->backend, info->isa);
    const char *model = base_name(info->path);
    /* the seed's keys first, in its order; then ours */
    json_t *m = json_pack("{s:s,s:b,s:f,s:f,s:i,s:i,s:i,s:i,s:i,s:f,s:o,s:i,s:s,s:s,s:i,s:s,s:s,s:s,s:b,s:b,s:f,s:f,"
                          "s:f,s:f}",
                          "mode", "meshllama", "trace", 0, "top1", ml_json_round(r->top1, 4), "top5",
                          ml_json_round(r->top5, 4), "prefill_len", prefill_len, "decode_len", r->total, "max_seq_len",
                          max_seq, "batch", o->batch, "total", r->total, "top5_ref", ml_json_round(r->top5_ref, 4),
                          "model", ml_json_string_lossy(model, strlen(model)), "tp", info->tp, "mesh", mesh, "backend",
                          backend, "ranks", info->n_ranks, "dtype", info->weight_dtype, "act",
                          p->act_mode == ML_ACT_FAST ? "fast" : "accurate", "kv",
                          p->kv_dtype == ML_KV_BF16 ? "bf16" : "f32", "prefill_decode", o->prefill_decode,
                          "slots_agree", r->slots_agree, "logit_error",
                          strtod(buf_3e(r->logit_error), NULL), "ttft_ms",
                          ml_json_round(r->ttft_ms, 2), "prefill_tok_s", ml_json_round(r->prefill_tok_s, 2),
                          "decode_tok_s_u", ml_json_round(r->decode_tok_s_u, 2));
    ml_json_print(stdout, "YT_METRICS=", m, 0);
    fflush(stdout);
    char logit_error[32] = "n/a"; /* no reference logits compared: no error to state */
    if (r->logit_steps > 0) snprintf(logit_error, sizeof logit_error, "%.1e", r->logit_error);
    fprintf(stderr, "eval %s: prefill %d, decode %d, max_seq_len %d, batch %d, tp %d: top1 %.2f%%, top5 %.2f%%, "
                    "top5_ref %.2f%%%s, logits vs HF %s over %d steps, ttft %.1f ms, decode %.1f tok/s/user\n",
            base_name(info->path), prefill_len, r->total, max_seq, o->batch, info->tp, 100 * r->top1, 100 * r->top5,
            100 * r->top5_ref, r->slots_agree ? "" : " (SLOTS DISAGREE)", logit_error, r->logit_steps, r->ttft_ms,
            r->decode_tok_s_u);
}

/* A progress bar on stderr when it is a terminal. */
static void show_progress(int step, int total, void *user) {
    (void)user;
    int width = 40, filled = (int)((long long)step * width / total);
    fprintf(stderr, "\r  [%.*s%*s] %d/%d", filled, "########################################", width - filled, "", step,
            total);
    if (step == total) fprintf(stderr, "\r%*s\r", width + 24, "");
    fflush(stderr);
}

/* One (prefill length, max_seq_len) point; returns 0 when it ran and met the thresholds. */
static int run_point(const eval_options *o, int prefill_len, int max_seq) {
    char path[4096];
    if (is_directory(o->ref_path)) {
        if (prefill_len <= 0) {
            fprintf(stderr, "meshllama eval: --ref %s is a directory: give --prefill-len or --prefill-len-range\n",
                    o->ref_path);
            return 1;
        }
        snprintf(path, sizeof path, "%s/prefill%d.bin", o->ref_path, prefill_len);
    } else {
        snprintf(path, sizeof path, "%s", o->ref_path);
    }
    ml_eval_reference *ref;
    int status = ml_eval_reference_open(path, &ref);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama eval: %s\n", ml_last_error());
        return 1;
    }
    ml_eval_reference_info ref_info;
    ml_eval_reference_get_info(ref, &ref_info);
    int fail = 0;
    if (prefill_len > 0 && ref_info.n_prompt != prefill_len) {
        fprintf(stderr, "meshllama eval: %s holds a %d-token prompt, not --prefill-len %d\n", path, ref_info.n_prompt,
                prefill_len);
        fail = 1;
    }
    int decode = o->decode_len > 0 ? o->decode_len : ref_info.n_decode;
    if (!fail && max_seq > 0 && ref_info.n_prompt + decode > max_seq) {
        fprintf(stderr, "meshllama eval: prefill %d + decode %d exceeds --max-seq-len %d\n", ref_info.n_prompt, decode,
                max_seq);
        fail = 1;
    }
    if (!fail && decode > ref_info.n_decode) {
        fprintf(stderr, "meshllama eval: --decode-len %d: %s holds only %d reference tokens\n", decode, path,
                ref_info.n_decode);
        fail = 1;
    }
    ml_cli_model model_opts = o->model;
    model_opts.params.max_batch = o->batch;
    model_opts.params.max_seq_len = max_seq > 0 ? max_seq : ref_info.n_prompt + decode;
    ml_model *model = NULL;
    if (!fail && ml_cli_model_open(&model_opts, &model) != 0) fail = 1;
    if (!fail) {
        ml_model_info info;
        ml_model_get_info(model, &info);
        if (o->dump_dir && dump_layers(model, ref, o->dump_dir) != 0) fail = 1;
        ml_eval_params params = {o->decode_len, o->batch, o->prefill_decode, NULL, NULL};
        if (isatty(STDERR_FILENO) && info.rank == 0) params.progress = show_progress;
        ml_eval_result result;
        status = ml_eval_run(model, ref, &params, &result);
        if (status != ML_OK) {
            ml_cli_report_failure("eval", status);
            fail = 1;
        } else {
            if (info.rank == 0) print_metrics(o, &info, ref_info.n_prompt, info.max_seq_len, &result);
            if (!result.slots_agree || result.top1 < o->min_top1 || result.top5 < o->min_top5) {
                fprintf(stderr, "meshllama eval: below threshold (top1 >= %.4f, top5 >= %.4f, slots agree)\n",
                        (double)o->min_top1, (double)o->min_top5);
                fail = 1;
            }
        }
    }
    ml_model_close(model);
    ml_eval_reference_close(ref);
    return fail;
}

/* --prefill-len P or --max-seq-len N: a list of that one value (replacing an earlier one or
 * range); non-zero when the value is bad. */
static int parse_one(const char *flag, const char *text, int **list, int *n) {
    int value;
    if (ml_cli_parse_int(flag, text, 1, 1 << 24, &value) != 0) return 1;
    free(*list);
    *list = malloc(sizeof(int));
    if (!*list) return fprintf(stderr, "meshllama eval: out of memory\n"), 1;
    (*list)[0] = value;
    *n = 1;
    return 0;
}

static int parse_eval_options(int argc, char **argv, eval_options *o) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"ref", required_argument, NULL, OPT_REF},
        {"prefill-len", required_argument, NULL, OPT_PREFILL_LEN},
        {"prefill-len-range", required_argument, NULL, OPT_PREFILL_RANGE},
        {"decode-len", required_argument, NULL, OPT_DECODE_LEN},
        {"max-seq-len", required_argument, NULL, OPT_MAX_SEQ},
        {"max-seq-len-range", required_argument, NULL, OPT_MAX_SEQ_RANGE},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"prefill-decode", no_argument, NULL, OPT_PREFILL_DECODE},
        {"min-top1", required_argument, NULL, OPT_MIN_TOP1},
        {"min-top5", required_argument, NULL, OPT_MIN_TOP5},
        {"dump-layers", required_argument, NULL, OPT_DUMP_LAYERS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "h", options, NULL)) != -1) {
        int handled = ml_cli_model_option(&o->model, opt, optarg);
        if (handled != 0) {
            bad = handled < 0;
            continue;
        }
        switch (opt) {
        case OPT_REF: o->ref_path = optarg; break;
        case OPT_PREFILL_LEN: bad = parse_one("--prefill-len", optarg, &o->prefill_lens, &o->n_prefill_lens); break;
        case OPT_PREFILL_RANGE:
            free(o->prefill_lens);
            o->prefill_lens = NULL;
            bad = ml_cli_parse_range("--prefill-len-range", optarg, 1, 1 << 24, &o->prefill_lens, &o->n_prefill_lens);
            break;
        case OPT_DECODE_LEN: bad = ml_cli_parse_int("--decode-len", optarg, 1, 1 << 24, &o->decode_len) != 0; break;
        case OPT_MAX_SEQ: bad = parse_one("--max-seq-len", optarg, &o->max_seqs, &o->n_max_seqs); break;
        case OPT_MAX_SEQ_RANGE:
            free(o->max_seqs);
            o->max_seqs = NULL;
            bad = ml_cli_parse_range("--max-seq-len-range", optarg, 1, 1 << 24, &o->max_seqs, &o->n_max_seqs);
            break;
        case OPT_BATCH: bad = ml_cli_parse_int("--batch", optarg, 1, ML_MAX_BATCH, &o->batch) != 0; break;
        case OPT_PREFILL_DECODE: o->prefill_decode = 1; break;
        case OPT_MIN_TOP1: bad = ml_cli_parse_float("--min-top1", optarg, 0, 1, &o->min_top1) != 0; break;
        case OPT_MIN_TOP5: bad = ml_cli_parse_float("--min-top5", optarg, 0, 1, &o->min_top5) != 0; break;
        case OPT_DUMP_LAYERS: o->dump_dir = optarg; break;
        case 'h': fputs(eval_usage, stdout); return 1;
        default: bad = 1; break;
        }
    }
    if (!bad) bad = ml_cli_no_operands("eval", argc, argv, optind) != 0;
    if (!bad && !o->ref_path) {
        fprintf(stderr, "meshllama eval: no reference: pass --ref FILE (made by tools/hf_reference.py)\n");
        bad = 1;
    }
    return bad ? -1 : 0;
}

int ml_cmd_eval(int argc, char **argv) {
    eval_options o;
    memset(&o, 0, sizeof o);
    ml_cli_model_init(&o.model);
    o.batch = 1;
    int parsed = parse_eval_options(argc, argv, &o);
    if (parsed != 0) {
        if (parsed < 0) fputs(eval_usage, stderr);
        free(o.prefill_lens);
        free(o.max_seqs);
        return parsed < 0 ? ML_EXIT_USAGE : 0;
    }
    int no_prefill = 0, no_max_seq = 0;
    int *prefills = o.n_prefill_lens ? o.prefill_lens : &no_prefill;
    int *max_seqs = o.n_max_seqs ? o.max_seqs : &no_max_seq;
    int n_prefills = o.n_prefill_lens ? o.n_prefill_lens : 1, n_max_seqs = o.n_max_seqs ? o.n_max_seqs : 1;
    int failures = 0, points = n_prefills * n_max_seqs, done = 0;
    int terminal = isatty(STDERR_FILENO);
    for (int i = 0; i < n_prefills; i++)
        for (int j = 0; j < n_max_seqs; j++) {
            if (terminal && points > 1) fprintf(stderr, "[%d/%d] ", ++done, points);
            failures += run_point(&o, prefills[i], max_seqs[j]);
        }
    free(o.prefill_lens);
    free(o.max_seqs);
    return failures ? 1 : 0;
}
