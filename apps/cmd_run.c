/* `meshllama run`: generate from a prompt of token ids (text prompts come with the tokenizer). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "model_options.h"

enum { OPT_PROMPT_IDS = ML_OPT_FIRST_COMMAND_OPTION, OPT_TEMP, OPT_TOP_K, OPT_TOP_P, OPT_JSON, OPT_IGNORE_EOS,
       OPT_PREFILL_DECODE };

static const char run_usage[] =
    "usage: meshllama run -m DIR --prompt-ids 1,2,3 [-n N] [options]\n"
    "Generates tokens after the prompt and prints their ids as they come.\n"
    ML_MODEL_OPTIONS_HELP
    "      --prompt-ids IDS  comma-separated prompt token ids\n"
    "  -n, --n-predict N     tokens to generate (default 32)\n"
    "      --temp T          temperature; 0 = greedy (default 0)\n"
    "      --top-k K         sample from the K most likely tokens (0 = all)\n"
    "      --top-p P         nucleus sampling threshold in (0, 1] (default 1)\n"
    "  -s, --seed S          random seed for sampling (default 42)\n"
    "      --ignore-eos      do not stop at the config's EOS ids\n"
    "      --prefill-decode  feed the prompt one token at a time through decode (debugging)\n"
    "      --json            print one JSON object (prompt ids, generated ids, timings)\n";

typedef struct {
    FILE *out;
    int first;
} stream_state;

static int print_token(int32_t token, void *user) {
    stream_state *s = user;
    if (!s->out) return 0;
    fprintf(s->out, s->first ? "%d" : " %d", (int)token);
    fflush(s->out);
    s->first = 0;
    return 0;
}

static void print_json(const int32_t *prompt, int n_prompt, const int32_t *generated, const ml_generate_stats *st,
                       const ml_model_info *info) {
    printf("{\"prompt_ids\":[");
    for (int i = 0; i < n_prompt; i++) printf(i ? ",%d" : "%d", (int)prompt[i]);
    printf("],\"generated_ids\":[");
    for (int i = 0; i < st->n_generated; i++) printf(i ? ",%d" : "%d", (int)generated[i]);
    double decode_tok_s = st->n_generated > 1 && st->decode_ms > 0 ? (st->n_generated - 1) * 1e3 / st->decode_ms : 0;
    printf("],\"text\":null,\"stopped_at_eos\":%s,\"tp\":%d,\"threads\":%d,\"isa\":\"%s\","
           "\"backend\":\"%s\",\"ranks\":%d,\"timings\":{\"prefill_ms\":%.3f,\"decode_ms\":%.3f,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}}\n",
           st->stopped_at_eos ? "true" : "false", info->tp, info->n_threads, info->isa, info->backend, info->n_ranks,
           st->prefill_ms, st->decode_ms,
           st->prefill_ms > 0 ? n_prompt * 1e3 / st->prefill_ms : 0.0, decode_tok_s);
}

int ml_cmd_run(int argc, char **argv) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
        {"n-predict", required_argument, NULL, 'n'},
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"seed", required_argument, NULL, 's'},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"prefill-decode", no_argument, NULL, OPT_PREFILL_DECODE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ml_cli_model model_opts;
    ml_cli_model_init(&model_opts);
    ml_sampling_params sp = ml_sampling_default_params();
    int32_t *prompt = NULL;
    int n_prompt = 0, json = 0, opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "n:s:h", options, NULL)) != -1) {
        int handled = ml_cli_model_option(&model_opts, opt, optarg);
        if (handled != 0) {
            bad = handled < 0;
            continue;
        }
        switch (opt) {
        case OPT_PROMPT_IDS:
            free(prompt);
            prompt = NULL;
            bad = ml_cli_parse_ids("--prompt-ids", optarg, &prompt, &n_prompt) != 0;
            break;
        case 'n': bad = ml_cli_parse_int("--n-predict", optarg, 0, 1 << 24, &sp.max_tokens) != 0; break;
        case OPT_TEMP: bad = ml_cli_parse_float("--temp", optarg, 0.0, 1e6, &sp.temperature) != 0; break;
        case OPT_TOP_K: bad = ml_cli_parse_int("--top-k", optarg, 0, 1 << 30, &sp.top_k) != 0; break;
        case OPT_TOP_P: bad = ml_cli_parse_float("--top-p", optarg, 1e-9, 1.0, &sp.top_p) != 0; break;
        case 's': bad = ml_cli_parse_u64("--seed", optarg, &sp.seed) != 0; break;
        case OPT_IGNORE_EOS: sp.ignore_eos = 1; break;
        case OPT_PREFILL_DECODE: sp.prefill_decode = 1; break;
        case OPT_JSON: json = 1; break;
        case 'h': fputs(run_usage, stdout); free(prompt); return 0;
        default: bad = 1; break;
        }
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "meshllama run: unexpected argument '%s'\n", argv[optind]);
        bad = 1;
    }
    if (!bad && !prompt) {
        fprintf(stderr, "meshllama run: no prompt: pass --prompt-ids 1,2,3 (text prompts need the tokenizer)\n");
        bad = 1;
    }
    if (bad) {
        fputs(run_usage, stderr);
        free(prompt);
        return ML_EXIT_USAGE;
    }
    ml_model *model;
    if (ml_cli_model_open(&model_opts, &model) != 0) {
        free(prompt);
        return 1;
    }
    ml_model_info info;
    ml_model_get_info(model, &info);
    /* under MPI, rank 0 prints; the other ranks compute silently */
    FILE *out = info.rank == 0 ? stdout : NULL;
    int32_t *generated = malloc(((size_t)sp.max_tokens + 1) * sizeof *generated);
    stream_state stream = {out, 1};
    ml_generate_stats stats;
    int status = generated ? ml_generate(model, prompt, n_prompt, &sp, generated, json ? NULL : print_token, &stream,
                                         &stats)
                           : ML_ERR_NOMEM;
    if (status == ML_OK && info.rank != 0) {
        /* silent */
    } else if (status == ML_OK) {
        if (json) {
            print_json(prompt, n_prompt, generated, &stats, &info);
        } else {
            printf("\n");
            fprintf(stderr,
                    "meshllama: %d prompt tokens in %.1f ms, %d generated in %.1f ms (tp %d, %s x%d, %d threads, %s)\n",
                    n_prompt, stats.prefill_ms, stats.n_generated, stats.decode_ms, info.tp, info.backend,
                    info.n_ranks, info.n_threads, info.isa);
        }
    } else {
        fprintf(stderr, "meshllama run: %s\n  (%s)\n", status == ML_ERR_NOMEM && !generated ? "out of memory" : ml_last_error(),
                ml_strerror(status));
    }
    free(generated);
    free(prompt);
    ml_model_close(model);
    return status == ML_OK ? 0 : 1;
}
