/* `meshllama run`: generate from a text prompt (-p, -f) or token ids (--prompt-ids), streaming
 * the continuation as text (or ids) as it is generated. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "model_options.h"

enum { OPT_PROMPT_IDS = ML_OPT_FIRST_COMMAND_OPTION, OPT_TEMP, OPT_TOP_K, OPT_TOP_P, OPT_JSON, OPT_IGNORE_EOS,
       OPT_PREFILL_DECODE, OPT_SPECIAL, OPT_NO_BOS };

static const char run_usage[] =
    "usage: meshllama run [-m MODEL] (-p TEXT | -f FILE | --prompt-ids 1,2,3) [-n N] [options]\n"
    "Generates a continuation of the prompt and prints it as it comes: text for a text prompt,\n"
    "token ids for --prompt-ids.\n"
    ML_MODEL_OPTIONS_HELP
    "  -p, --prompt TEXT     the prompt, tokenized with the model's tokenizer\n"
    "  -f, --file FILE       read the prompt from FILE (- for standard input)\n"
    "      --prompt-ids IDS  comma-separated prompt token ids instead of text\n"
    "      --special         recognise special-token strings (<|eot_id|>, ...) in the text\n"
    "      --no-bos          do not add the tokenizer's BOS\n"
    "  -n, --n-predict N     tokens to generate (default 32)\n"
    "      --temp T          temperature; 0 = greedy (default 0)\n"
    "      --top-k K         sample from the K most likely tokens (0 = all)\n"
    "      --top-p P         nucleus sampling threshold in (0, 1] (default 1)\n"
    "  -s, --seed S          random seed for sampling (default 42)\n"
    "      --ignore-eos      do not stop at the config's EOS ids\n"
    "      --prefill-decode  feed the prompt one token at a time through decode (debugging)\n"
    "      --json            print one JSON object (prompt ids, generated ids, text, weight dtype, timings)\n";

typedef struct {
    FILE *out;              /* NULL on ranks other than 0 */
    int first;
    ml_stream_decoder *decoder; /* text mode */
} stream_state;

static int print_token(int32_t token, void *user) {
    stream_state *s = user;
    if (!s->out) return 0;
    if (s->decoder) {
        const char *text;
        size_t length;
        if (ml_stream_decoder_push(s->decoder, token, &text, &length) == ML_OK && length > 0)
            fwrite(text, 1, length, s->out);
    } else {
        fprintf(s->out, s->first ? "%d" : " %d", (int)token);
    }
    fflush(s->out);
    s->first = 0;
    return 0;
}

static void print_json_string(const char *text, size_t length) {
    putchar('"');
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c == '\r') printf("\\r");
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_json(const int32_t *prompt, int n_prompt, const int32_t *generated, const ml_generate_stats *st,
                       const ml_model_info *info, const ml_tokenizer *tok) {
    printf("{\"prompt_ids\":[");
    for (int i = 0; i < n_prompt; i++) printf(i ? ",%d" : "%d", (int)prompt[i]);
    printf("],\"generated_ids\":[");
    for (int i = 0; i < st->n_generated; i++) printf(i ? ",%d" : "%d", (int)generated[i]);
    printf("],\"text\":");
    char *text = NULL;
    size_t length = 0;
    if (tok && ml_detokenize(tok, generated, (size_t)st->n_generated, 0, &text, &length) == ML_OK)
        print_json_string(text, length);
    else
        printf("null");
    free(text);
    double decode_tok_s = st->n_generated > 1 && st->decode_ms > 0 ? (st->n_generated - 1) * 1e3 / st->decode_ms : 0;
    printf(",\"stopped_at_eos\":%s,\"tp\":%d,\"threads\":%d,\"isa\":\"%s\","
           "\"backend\":\"%s\",\"ranks\":%d,\"weight_dtype\":\"%s\",\"timings\":{\"prefill_ms\":%.3f,"
           "\"decode_ms\":%.3f,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}}\n",
           st->stopped_at_eos ? "true" : "false", info->tp, info->n_threads, info->isa, info->backend, info->n_ranks,
           info->weight_dtype, st->prefill_ms, st->decode_ms,
           st->prefill_ms > 0 ? n_prompt * 1e3 / st->prefill_ms : 0.0, decode_tok_s);
}

typedef struct {
    ml_cli_model model;
    ml_sampling_params sampling;
    int32_t *prompt_ids;
    int n_prompt_ids;
    const char *text;       /* -p */
    const char *text_file;  /* -f */
    int json, special, no_bos;
} run_options;

static int parse_run_options(int argc, char **argv, run_options *o) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"prompt", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"no-bos", no_argument, NULL, OPT_NO_BOS},
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
    ml_sampling_params *sp = &o->sampling;
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "p:f:n:s:h", options, NULL)) != -1) {
        int handled = ml_cli_model_option(&o->model, opt, optarg);
        if (handled != 0) {
            bad = handled < 0;
            continue;
        }
        switch (opt) {
        case 'p': o->text = optarg; break;
        case 'f': o->text_file = optarg; break;
        case OPT_PROMPT_IDS:
            free(o->prompt_ids);
            o->prompt_ids = NULL;
            bad = ml_cli_parse_ids("--prompt-ids", optarg, &o->prompt_ids, &o->n_prompt_ids) != 0;
            break;
        case OPT_SPECIAL: o->special = 1; break;
        case OPT_NO_BOS: o->no_bos = 1; break;
        case 'n': bad = ml_cli_parse_int("--n-predict", optarg, 0, 1 << 24, &sp->max_tokens) != 0; break;
        case OPT_TEMP: bad = ml_cli_parse_float("--temp", optarg, 0.0, 1e6, &sp->temperature) != 0; break;
        case OPT_TOP_K: bad = ml_cli_parse_int("--top-k", optarg, 0, 1 << 30, &sp->top_k) != 0; break;
        case OPT_TOP_P: bad = ml_cli_parse_float("--top-p", optarg, 1e-9, 1.0, &sp->top_p) != 0; break;
        case 's': bad = ml_cli_parse_u64("--seed", optarg, &sp->seed) != 0; break;
        case OPT_IGNORE_EOS: sp->ignore_eos = 1; break;
        case OPT_PREFILL_DECODE: sp->prefill_decode = 1; break;
        case OPT_JSON: o->json = 1; break;
        case 'h': fputs(run_usage, stdout); return 1;
        default: bad = 1; break;
        }
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "meshllama run: unexpected argument '%s'\n", argv[optind]);
        bad = 1;
    }
    int sources = (o->prompt_ids != NULL) + (o->text != NULL) + (o->text_file != NULL);
    if (!bad && sources != 1) {
        fprintf(stderr, sources == 0 ? "meshllama run: no prompt: pass -p TEXT, -f FILE or --prompt-ids 1,2,3\n"
                                     : "meshllama run: give only one of -p, -f and --prompt-ids\n");
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* Reads all of -f FILE ("-": standard input). A directory or a failed read is an error with
 * the OS's reason, never an empty prompt. */
static int read_prompt_file(const char *path, char **out_text, size_t *out_length) {
    int from_stdin = strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f) return fprintf(stderr, "meshllama run: -f %s: cannot open: %s\n", path, strerror(errno)), -1;
    size_t capacity = 1 << 16, length = 0, got;
    char *text = malloc(capacity);
    int read_errno = 0;
    while (text && (got = fread(text + length, 1, capacity - length, f)) > 0) {
        length += got;
        if (length == capacity) {
            char *grown = realloc(text, capacity *= 2);
            if (!grown) free(text);
            text = grown;
        }
    }
    if (ferror(f)) read_errno = errno ? errno : EIO;
    if (!from_stdin) fclose(f);
    if (!text) return fprintf(stderr, "meshllama run: -f %s: out of memory\n", path), -1;
    if (read_errno) {
        free(text);
        return fprintf(stderr, "meshllama run: -f %s: cannot read: %s\n", path, strerror(read_errno)), -1;
    }
    *out_text = text;
    *out_length = length;
    return 0;
}

/* Tokenizes -p / -f (already read into file_text) with the model's tokenizer. */
static int tokenize_prompt(const run_options *o, const char *file_text, size_t file_length, const ml_tokenizer *tok,
                           int32_t **ids, int *n) {
    const char *text = o->text_file ? file_text : o->text;
    size_t length = o->text_file ? file_length : strlen(text);
    unsigned flags = (o->no_bos ? 0u : ML_TOKENIZE_ADD_SPECIAL) | (o->special ? ML_TOKENIZE_PARSE_SPECIAL : 0u);
    size_t count = 0;
    int status = ml_tokenize(tok, text, length, flags, ids, &count);
    if (status != ML_OK) return fprintf(stderr, "meshllama run: %s\n", ml_last_error()), -1;
    if (count == 0) return fprintf(stderr, "meshllama run: the prompt tokenizes to nothing\n"), -1;
    *n = (int)count;
    return 0;
}

int ml_cmd_run(int argc, char **argv) {
    run_options o;
    memset(&o, 0, sizeof o);
    ml_cli_model_init(&o.model);
    o.sampling = ml_sampling_default_params();
    int parsed = parse_run_options(argc, argv, &o);
    if (parsed != 0) {
        if (parsed < 0) fputs(run_usage, stderr);
        free(o.prompt_ids);
        return parsed < 0 ? ML_EXIT_USAGE : 0;
    }
    /* the prompt file first: a bad -f fails before the model loads */
    char *file_text = NULL;
    size_t file_length = 0;
    if (o.text_file && read_prompt_file(o.text_file, &file_text, &file_length) != 0) {
        free(o.prompt_ids);
        return 1;
    }
    ml_model *model;
    if (ml_cli_model_open(&o.model, &model) != 0) {
        free(file_text);
        free(o.prompt_ids);
        return 1;
    }
    ml_model_info info;
    ml_model_get_info(model, &info);
    int text_mode = o.prompt_ids == NULL;
    ml_tokenizer *tok = NULL;
    int tok_status = ml_model_open_tokenizer(model, &tok);
    int fail = 0;
    int32_t *prompt = o.prompt_ids;
    int n_prompt = o.n_prompt_ids;
    if (text_mode) {
        if (tok_status != ML_OK) {
            fprintf(stderr, "meshllama run: text prompts need the model's tokenizer: %s\n", ml_last_error());
            fail = 1;
        } else if (tokenize_prompt(&o, file_text, file_length, tok, &prompt, &n_prompt) != 0) {
            fail = 1;
        }
    }
    /* under MPI, rank 0 prints; the other ranks compute silently */
    FILE *out = info.rank == 0 ? stdout : NULL;
    stream_state stream = {out, 1, NULL};
    if (!fail && text_mode && !o.json && ml_stream_decoder_create(tok, 0, &stream.decoder) != ML_OK) {
        fprintf(stderr, "meshllama run: %s\n", ml_last_error());
        fail = 1;
    }
    int32_t *generated = fail ? NULL : malloc(((size_t)o.sampling.max_tokens + 1) * sizeof *generated);
    ml_generate_stats stats;
    int status = ML_OK;
    if (!fail) {
        if (!generated) {
            fprintf(stderr, "meshllama run: out of memory for %d tokens\n", o.sampling.max_tokens);
            fail = 1;
        } else {
            status = ml_generate(model, prompt, n_prompt, &o.sampling, generated, o.json ? NULL : print_token, &stream,
                                 &stats);
            fail = status != ML_OK;
        }
    }
    if (fail && status != ML_OK) {
        ml_cli_report_failure("run", status);
    } else if (!fail && out) {
        if (o.json) {
            print_json(prompt, n_prompt, generated, &stats, &info, tok_status == ML_OK ? tok : NULL);
        } else {
            const char *rest;
            size_t rest_length;
            if (stream.decoder && ml_stream_decoder_finish(stream.decoder, &rest, &rest_length) == ML_OK)
                fwrite(rest, 1, rest_length, out);
            printf("\n");
            fflush(stdout);
            fprintf(stderr,
                    "meshllama: %d prompt tokens in %.1f ms, %d generated in %.1f ms (tp %d, %s x%d, %d threads, %s)\n",
                    n_prompt, stats.prefill_ms, stats.n_generated, stats.decode_ms, info.tp, info.backend,
                    info.n_ranks, info.n_threads, info.isa);
        }
    }
    ml_stream_decoder_free(stream.decoder);
    free(file_text);
    free(generated);
    if (prompt != o.prompt_ids) free(prompt);
    free(o.prompt_ids);
    ml_tokenizer_close(tok);
    ml_model_close(model);
    return fail ? 1 : 0;
}
