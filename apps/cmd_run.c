/* `meshllama run`: generate from a text prompt (-p, -f) or token ids (--prompt-ids), streaming
 * the continuation as text (or ids) as it is generated. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_args.h"
#include "commands.h"
#include "formats/json_util.h"
#include "model_options.h"
#include "sampling_options.h"

enum { OPT_PROMPT_IDS = ML_OPT_FIRST_COMMAND_OPTION, OPT_JSON, OPT_IGNORE_EOS, OPT_PREFILL_DECODE, OPT_SPECIAL,
       OPT_NO_BOS, OPT_LOGPROBS, OPT_TOP_LOGPROBS };

static const char run_usage[] =
    "usage: meshllama run [-m MODEL] (-p TEXT | -f FILE | --prompt-ids 1,2,3) [-n N] [options]\n"
    "Generates a continuation of the prompt and prints it as it comes: text for a text prompt,\n"
    "token ids for --prompt-ids. End-of-generation tokens stop it and are not printed.\n"
    ML_MODEL_OPTIONS_HELP
    "  -p, --prompt TEXT     the prompt, tokenized with the model's tokenizer\n"
    "  -f, --file FILE       read the prompt from FILE (- for standard input)\n"
    "      --prompt-ids IDS  comma-separated prompt token ids instead of text\n"
    "      --special         recognise special-token strings (<|eot_id|>, ...) in the text\n"
    "      --no-bos          do not add the tokenizer's BOS\n"
    "  -n, --n-predict N     tokens to generate (default 32)\n"
    ML_SAMPLING_OPTIONS_HELP
    "      --ignore-eos      do not stop at end-of-generation tokens\n"
    "      --prefill-decode  feed the prompt one token at a time through decode (debugging)\n"
    "      --json            print one JSON object (prompt ids, generated ids, text, finish reason,\n"
    "                        weight dtype, timings)\n"
    "      --logprobs        with --json: each token's log-probability (OpenAI's logprobs.content)\n"
    "      --top-logprobs N  with --json: and the N most likely alternatives (0..20)\n";

typedef struct {
    FILE *out;                  /* NULL on ranks other than 0 */
    int first;
    int print_ids;              /* --prompt-ids: print ids, not text */
    const ml_tokenizer *tok;
    /* --json: what the object will hold */
    int json;
    char *text;
    size_t text_length, text_capacity;
    json_t *logprobs;           /* array of OpenAI logprobs.content entries, or NULL */
} stream_state;

static void print_ids(stream_state *s, int32_t token) {
    fprintf(s->out, s->first ? "%d" : " %d", (int)token);
    s->first = 0;
}

static int print_token(int32_t token, void *user) {
    stream_state *s = user;
    if (s->out && !s->json) {
        print_ids(s, token);
        fflush(s->out);
    }
    return 0;
}

/* {"token": TEXT, "logprob": L, "bytes": [...]} as OpenAI writes a token. */
static json_t *logprob_entry(const ml_tokenizer *tok, int32_t id, float logprob) {
    const char *bytes = "";
    size_t length = 0;
    if (tok) ml_tokenizer_token_bytes(tok, id, &bytes, &length);
    json_t *list = json_array();
    for (size_t i = 0; i < length; i++) json_array_append_new(list, json_integer((unsigned char)bytes[i]));
    return json_pack("{s:o,s:i,s:f,s:o}", "token", ml_json_string_lossy(bytes, length), "id", (int)id, "logprob",
                     (double)logprob, "bytes", list);
}

static int on_event(const ml_token_event *ev, void *user) {
    stream_state *s = user;
    if (!s->out) return 0;
    if (s->json) {
        if (ev->text_length > 0) {
            if (s->text_length + ev->text_length + 1 > s->text_capacity) {
                size_t capacity = (s->text_length + ev->text_length + 1) * 2;
                char *grown = realloc(s->text, capacity);
                if (!grown) return 1;
                s->text = grown;
                s->text_capacity = capacity;
            }
            memcpy(s->text + s->text_length, ev->text, ev->text_length);
            s->text_length += ev->text_length;
        }
        if (s->logprobs) {
            json_t *entry = logprob_entry(s->tok, ev->token, ev->logprob);
            json_t *top = json_array();
            for (int i = 0; i < ev->n_top; i++)
                json_array_append_new(top, logprob_entry(s->tok, ev->top_ids[i], ev->top_logprobs[i]));
            json_object_set_new(entry, "top_logprobs", top);
            json_array_append_new(s->logprobs, entry);
        }
        return 0;
    }
    if (s->print_ids) {
        if (!ev->is_end) print_ids(s, ev->token);
    } else if (ev->text_length > 0) {
        fwrite(ev->text, 1, ev->text_length, s->out);
    }
    fflush(s->out);
    return 0;
}

static const char *finish_name(ml_finish_reason reason) {
    switch (reason) {
    case ML_FINISH_EOS:
    case ML_FINISH_STOP_STRING: return "stop";
    case ML_FINISH_CALLBACK: return "cancelled";
    default: return "length";
    }
}

static void print_json(const int32_t *prompt, int n_prompt, const int32_t *generated, const ml_generate_stats *st,
                       const ml_model_info *info, const stream_state *s, const ml_sampling_params *sp) {
    json_t *prompt_ids = json_array(), *generated_ids = json_array();
    for (int i = 0; i < n_prompt; i++) json_array_append_new(prompt_ids, json_integer(prompt[i]));
    for (int i = 0; i < st->n_generated; i++) json_array_append_new(generated_ids, json_integer(generated[i]));
    double decode_tok_s = st->n_generated > 1 && st->decode_ms > 0 ? (st->n_generated - 1) * 1e3 / st->decode_ms : 0;
    json_t *root = json_pack(
        "{s:o,s:o,s:o,s:s,s:b,s:o,s:i,s:i,s:s,s:s,s:i,s:s,s:{s:f,s:f,s:f,s:f}}", "prompt_ids", prompt_ids,
        "generated_ids", generated_ids, "text", s->tok ? ml_json_string_lossy(s->text, s->text_length) : json_null(),
        "finish_reason", finish_name(st->finish_reason), "stopped_at_eos", st->stopped_at_eos, "stop",
        st->stop_string >= 0 ? ml_json_string_lossy(sp->stop_strings[st->stop_string],
                                                    strlen(sp->stop_strings[st->stop_string]))
                             : json_null(),
        "tp", info->tp, "threads", info->n_threads, "isa", info->isa, "backend", info->backend, "ranks",
        info->n_ranks, "weight_dtype", info->weight_dtype, "timings", "prefill_ms", st->prefill_ms, "decode_ms",
        st->decode_ms, "prefill_tok_s", st->prefill_ms > 0 ? n_prompt * 1e3 / st->prefill_ms : 0.0, "decode_tok_s",
        decode_tok_s);
    if (root && s->logprobs) json_object_set_new(root, "logprobs", json_pack("{s:O}", "content", s->logprobs));
    if (root) {
        json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
        putchar('\n');
    } else {
        fprintf(stderr, "meshllama run: out of memory for the JSON output\n");
    }
    json_decref(root);
}

typedef struct {
    ml_cli_model model;
    ml_cli_sampling sampling;
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
        ML_SAMPLING_LONG_OPTIONS,
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"logprobs", no_argument, NULL, OPT_LOGPROBS},
        {"top-logprobs", required_argument, NULL, OPT_TOP_LOGPROBS},
        {"prefill-decode", no_argument, NULL, OPT_PREFILL_DECODE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ml_sampling_params *sp = &o->sampling.params;
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS ML_SAMPLING_SHORT_OPTIONS "p:f:n:h", options,
                                      NULL)) != -1) {
        int handled = ml_cli_model_option(&o->model, opt, optarg);
        if (handled == 0) handled = ml_cli_sampling_option(&o->sampling, opt, optarg);
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
        case OPT_IGNORE_EOS: sp->ignore_eos = 1; break;
        case OPT_LOGPROBS: sp->logprobs = 1; break;
        case OPT_TOP_LOGPROBS:
            bad = ml_cli_parse_int("--top-logprobs", optarg, 0, ML_MAX_TOP_LOGPROBS, &sp->top_logprobs) != 0;
            sp->logprobs = 1;
            break;
        case OPT_PREFILL_DECODE: sp->prefill_decode = 1; break;
        case OPT_JSON: o->json = 1; break;
        case 'h': fputs(run_usage, stdout); return 1;
        default: bad = 1; break;
        }
    }
    if (!bad) bad = ml_cli_no_operands("run", argc, argv, optind) != 0;
    int sources = (o->prompt_ids != NULL) + (o->text != NULL) + (o->text_file != NULL);
    if (!bad && sources != 1) {
        fprintf(stderr, sources == 0 ? "meshllama run: no prompt: pass -p TEXT, -f FILE or --prompt-ids 1,2,3\n"
                                     : "meshllama run: give only one of -p, -f and --prompt-ids\n");
        bad = 1;
    }
    if (!bad && sp->logprobs && !o->json) {
        fprintf(stderr, "meshllama run: --logprobs and --top-logprobs need --json (they are reported in it)\n");
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

static void free_options(run_options *o) {
    free(o->prompt_ids);
    ml_cli_sampling_free(&o->sampling);
}

int ml_cmd_run(int argc, char **argv) {
    run_options o;
    memset(&o, 0, sizeof o);
    ml_cli_model_init(&o.model);
    ml_cli_sampling_init(&o.sampling, 32);
    int parsed = parse_run_options(argc, argv, &o);
    if (parsed != 0) {
        if (parsed < 0) fputs(run_usage, stderr);
        free_options(&o);
        return parsed < 0 ? ML_EXIT_USAGE : 0;
    }
    /* the prompt file first: a bad -f fails before the model loads */
    char *file_text = NULL;
    size_t file_length = 0;
    if (o.text_file && read_prompt_file(o.text_file, &file_text, &file_length) != 0) {
        free_options(&o);
        return 1;
    }
    ml_model *model;
    if (ml_cli_model_open(&o.model, &model) != 0) {
        free(file_text);
        free_options(&o);
        return 1;
    }
    ml_model_info info;
    ml_model_get_info(model, &info);
    const ml_sampling_params *sp = &o.sampling.params;
    int text_mode = o.prompt_ids == NULL;
    ml_tokenizer *tok = NULL;
    int tok_status = ml_model_open_tokenizer(model, &tok);
    if (tok_status != ML_OK) tok = NULL;
    int fail = 0;
    int32_t *prompt = o.prompt_ids;
    int n_prompt = o.n_prompt_ids;
    if (text_mode && !tok) {
        fprintf(stderr, "meshllama run: text prompts need the model's tokenizer: %s\n", ml_last_error());
        fail = 1;
    } else if (text_mode && tokenize_prompt(&o, file_text, file_length, tok, &prompt, &n_prompt) != 0) {
        fail = 1;
    }
    /* The answer ends at the end of the context, with a message, rather than being refused. */
    int context_limit = 0;
    if (!fail && n_prompt >= info.max_seq_len) {
        fprintf(stderr, "meshllama run: the prompt of %d tokens fills the context (max_seq_len %d): give a larger -c\n",
                n_prompt, info.max_seq_len);
        fail = 1;
    } else if (!fail && (long long)n_prompt + sp->max_tokens > info.max_seq_len) {
        o.sampling.params.max_tokens = info.max_seq_len - n_prompt;
        context_limit = 1;
    }
    if (!fail && !tok && sp->n_stop_strings > 0) {
        fprintf(stderr, "meshllama run: --stop needs the model's tokenizer: %s\n", ml_last_error());
        fail = 1;
    }
    /* under MPI, rank 0 prints; the other ranks compute silently */
    stream_state stream;
    memset(&stream, 0, sizeof stream);
    stream.out = info.rank == 0 ? stdout : NULL;
    stream.first = 1;
    stream.print_ids = !text_mode;
    stream.tok = tok;
    stream.json = o.json;
    stream.logprobs = o.json && sp->logprobs ? json_array() : NULL;
    int32_t *generated = fail ? NULL : malloc(((size_t)sp->max_tokens + 1) * sizeof *generated);
    ml_generate_stats stats;
    int status = ML_OK;
    if (!fail && !generated) {
        fprintf(stderr, "meshllama run: out of memory for %d tokens\n", sp->max_tokens);
        fail = 1;
    } else if (!fail) {
        /* with a tokenizer, its end-of-generation tokens stop too and the text is streamed */
        if (tok)
            status = ml_generate_text(model, tok, prompt, n_prompt, 0, sp, 0, generated, on_event, &stream, &stats);
        else
            status = ml_generate(model, prompt, n_prompt, sp, generated, print_token, &stream, &stats);
        fail = status != ML_OK;
    }
    if (fail && status != ML_OK) {
        ml_cli_report_failure("run", status);
    } else if (!fail && stream.out) {
        if (context_limit && stats.finish_reason == ML_FINISH_LENGTH)
            fprintf(stderr, "meshllama run: stopped at the end of the context (%d positions, -c) after %d tokens\n",
                    info.max_seq_len, stats.n_generated);
        if (o.json) {
            print_json(prompt, n_prompt, generated, &stats, &info, &stream, sp);
        } else {
            printf("\n");
            fflush(stdout);
            fprintf(stderr,
                    "meshllama: %d prompt tokens in %.1f ms, %d generated in %.1f ms (tp %d, %s x%d, %d threads, %s; "
                    "%s)\n",
                    n_prompt, stats.prefill_ms, stats.n_generated, stats.decode_ms, info.tp, info.backend,
                    info.n_ranks, info.n_threads, info.isa,
                    stats.finish_reason == ML_FINISH_EOS           ? "stopped at an end-of-generation token"
                    : stats.finish_reason == ML_FINISH_STOP_STRING ? "stopped at a stop string"
                                                                   : "length limit");
        }
    }
    json_decref(stream.logprobs);
    free(stream.text);
    free(file_text);
    free(generated);
    if (prompt != o.prompt_ids) free(prompt);
    free_options(&o);
    ml_tokenizer_close(tok);
    ml_model_close(model);
    return fail ? 1 : 0;
}
