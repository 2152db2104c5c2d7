/* `meshllama chat`: an interactive conversation with the model's chat template. Each turn
 * renders the whole conversation, keeps the KV cache of the longest prefix already computed
 * and feeds only the new tokens; Ctrl-D (end of input) exits. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_args.h"
#include "commands.h"
#include "model_options.h"

enum { OPT_SYSTEM = ML_OPT_FIRST_COMMAND_OPTION, OPT_TEMPLATE, OPT_TEMP, OPT_TOP_K, OPT_TOP_P };

static const char chat_usage[] =
    "usage: meshllama chat [-m MODEL] [--system TEXT] [options]\n"
    "Reads one user message per line from standard input and answers with the model's own chat\n"
    "template (its Jinja chat_template); end of input (Ctrl-D) exits.\n"
    ML_MODEL_OPTIONS_HELP
    "      --system TEXT     system prompt\n"
    "      --template NAME   use a built-in template instead: llama3, llama3.1 or chatml\n"
    "  -n, --n-predict N     most tokens per answer (default 256)\n"
    "      --temp T, --top-k K, --top-p P, -s SEED   sampling (default greedy)\n";

typedef struct {
    ml_stream_decoder *decoder;
} chat_stream;

static int print_piece(int32_t token, void *user) {
    chat_stream *s = user;
    const char *text;
    size_t length;
    if (ml_stream_decoder_push(s->decoder, token, &text, &length) == ML_OK && length > 0) {
        fwrite(text, 1, length, stdout);
        fflush(stdout);
    }
    return 0;
}

typedef struct {
    ml_chat_message *items;
    size_t count, capacity;
} message_list;

static int add_message(message_list *list, const char *role, const char *content) {
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        ml_chat_message *grown = realloc(list->items, capacity * sizeof *grown);
        if (!grown) return -1;
        list->items = grown;
        list->capacity = capacity;
    }
    char *copy = strdup(content);
    if (!copy) return -1;
    list->items[list->count].role = role;
    list->items[list->count].content = copy;
    list->count++;
    return 0;
}

static void free_messages(message_list *list) {
    for (size_t i = 0; i < list->count; i++) free((char *)list->items[i].content);
    free(list->items);
}

typedef struct {
    ml_model *model;
    ml_tokenizer *tok;
    ml_chat_template *tmpl;
    ml_sampling_params sampling;
    int32_t end_of_turn;
    int32_t *cached;      /* ids whose K/V are in slot 0 */
    int n_cached;
    int max_seq_len;
} chat_session;

/* One turn: render, reuse the cached prefix, generate, remember what the cache now holds. */
static int chat_turn(chat_session *s, message_list *messages) {
    ml_chat_params params = {1, NULL};
    char *text = NULL;
    size_t length = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ml_chat_template_apply(s->tmpl, messages->items, messages->count, &params, &text, &length) != ML_OK ||
        ml_tokenize(s->tok, text, length, ML_TOKENIZE_PARSE_SPECIAL, &ids, &n_ids) != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        free(text);
        return -1;
    }
    free(text);
    if ((long long)n_ids + s->sampling.max_tokens > s->max_seq_len) {
        fprintf(stderr, "meshllama chat: the conversation (%zu tokens) plus an answer of %d exceeds the context of %d "
                        "(-c)\n", n_ids, s->sampling.max_tokens, s->max_seq_len);
        free(ids);
        return -1;
    }
    int keep = 0;
    while (keep < s->n_cached && keep < (int)n_ids - 1 && s->cached[keep] == ids[keep]) keep++;
    int32_t *generated = malloc(((size_t)s->sampling.max_tokens + 1) * sizeof *generated);
    chat_stream stream = {NULL};
    ml_generate_stats stats;
    int status = generated ? ml_stream_decoder_create(s->tok, ML_DETOKENIZE_SKIP_SPECIAL, &stream.decoder) : ML_ERR_NOMEM;
    if (status == ML_OK)
        status = ml_generate_continue(s->model, ids, (int)n_ids, keep, &s->sampling, generated, print_piece, &stream,
                                      &stats);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        ml_stream_decoder_free(stream.decoder);
        free(generated);
        free(ids);
        return -1;
    }
    const char *rest;
    size_t rest_length;
    if (ml_stream_decoder_finish(stream.decoder, &rest, &rest_length) == ML_OK) fwrite(rest, 1, rest_length, stdout);
    printf("\n");
    fflush(stdout);
    ml_stream_decoder_free(stream.decoder);
    fprintf(stderr, "[kept %d cached tokens, fed %zu, generated %d in %.0f ms]\n", keep, n_ids - (size_t)keep,
            stats.n_generated, stats.prefill_ms + stats.decode_ms);
    /* the cache now holds the prompt and every generated token but the last */
    int n_reply = stats.n_generated;
    int32_t *cached = realloc(s->cached, (n_ids + (size_t)n_reply) * sizeof *cached);
    if (cached) {
        memcpy(cached, ids, n_ids * sizeof *cached);
        if (n_reply > 1) memcpy(cached + n_ids, generated, (size_t)(n_reply - 1) * sizeof *cached);
        s->cached = cached;
        s->n_cached = (int)n_ids + (n_reply > 0 ? n_reply - 1 : 0);
    } else {
        s->n_cached = 0;
    }
    int content_tokens = n_reply > 0 && generated[n_reply - 1] == s->end_of_turn ? n_reply - 1 : n_reply;
    char *reply = NULL;
    size_t reply_length = 0;
    int rc = ml_detokenize(s->tok, generated, (size_t)content_tokens, ML_DETOKENIZE_SKIP_SPECIAL, &reply,
                           &reply_length) == ML_OK && add_message(messages, "assistant", reply) == 0 ? 0 : -1;
    free(reply);
    free(generated);
    free(ids);
    return rc;
}

static int parse_chat_options(int argc, char **argv, ml_cli_model *model_opts, ml_sampling_params *sp,
                              const char **system, const char **template_name) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"template", required_argument, NULL, OPT_TEMPLATE},
        {"n-predict", required_argument, NULL, 'n'},
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS "n:s:h", options, NULL)) != -1) {
        int handled = ml_cli_model_option(model_opts, opt, optarg);
        if (handled != 0) {
            bad = handled < 0;
            continue;
        }
        switch (opt) {
        case OPT_SYSTEM: *system = optarg; break;
        case OPT_TEMPLATE:
            *template_name = optarg;
            if (strcmp(optarg, "llama3") != 0 && strcmp(optarg, "llama3.1") != 0 && strcmp(optarg, "chatml") != 0) {
                fprintf(stderr, "meshllama chat: --template must be llama3, llama3.1 or chatml, not '%s'\n", optarg);
                bad = 1;
            }
            break;
        case 'n': bad = ml_cli_parse_int("--n-predict", optarg, 1, 1 << 20, &sp->max_tokens) != 0; break;
        case OPT_TEMP: bad = ml_cli_parse_float("--temp", optarg, 0.0, 1e6, &sp->temperature) != 0; break;
        case OPT_TOP_K: bad = ml_cli_parse_int("--top-k", optarg, 0, 1 << 30, &sp->top_k) != 0; break;
        case OPT_TOP_P: bad = ml_cli_parse_float("--top-p", optarg, 1e-9, 1.0, &sp->top_p) != 0; break;
        case 's': bad = ml_cli_parse_u64("--seed", optarg, &sp->seed) != 0; break;
        case 'h': fputs(chat_usage, stdout); return 1;
        default: bad = 1; break;
        }
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "meshllama chat: unexpected argument '%s'\n", argv[optind]);
        bad = 1;
    }
    return bad ? -1 : 0;
}

int ml_cmd_chat(int argc, char **argv) {
    ml_cli_model model_opts;
    ml_cli_model_init(&model_opts);
    model_opts.params.mesh_backend = ML_MESH_THREADS; /* stdin reaches one process only */
    chat_session s;
    memset(&s, 0, sizeof s);
    s.sampling = ml_sampling_default_params();
    s.sampling.max_tokens = 256;
    const char *system = NULL, *template_name = NULL;
    int parsed = parse_chat_options(argc, argv, &model_opts, &s.sampling, &system, &template_name);
    if (parsed != 0) {
        if (parsed < 0) fputs(chat_usage, stderr);
        return parsed < 0 ? ML_EXIT_USAGE : 0;
    }
    if (ml_cli_model_open(&model_opts, &s.model) != 0) return 1;
    ml_model_info info;
    ml_model_get_info(s.model, &info);
    s.max_seq_len = info.max_seq_len;
    int fail = 0;
    if (ml_model_open_tokenizer(s.model, &s.tok) != ML_OK ||
        ml_chat_template_from_tokenizer(s.tok, template_name, &s.tmpl) != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        fail = 1;
    }
    if (!fail) {
        const char *eot = ml_chat_template_end_of_turn(s.tmpl);
        s.end_of_turn = eot ? ml_tokenizer_token_id(s.tok, eot, strlen(eot)) : -1;
        if (s.end_of_turn >= 0) {
            s.sampling.stop_tokens = &s.end_of_turn;
            s.sampling.n_stop_tokens = 1;
        }
    }
    message_list messages = {NULL, 0, 0};
    if (!fail && system && add_message(&messages, "system", system) != 0) fail = 1;
    int interactive = isatty(STDIN_FILENO);
    if (!fail && interactive)
        fprintf(stderr, "meshllama chat (%s template, tp %d): one message per line, Ctrl-D to exit\n",
                ml_chat_template_name(s.tmpl), info.tp);
    char *line = NULL;
    size_t capacity = 0;
    while (!fail) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t n = getline(&line, &capacity, stdin);
        if (n < 0) {
            /* end of input ends the chat; a read error is a failure, not the end */
            if (ferror(stdin)) {
                fprintf(stderr, "meshllama chat: cannot read standard input: %s\n", strerror(errno ? errno : EIO));
                fail = 1;
            }
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        if (add_message(&messages, "user", line) != 0 || chat_turn(&s, &messages) != 0) fail = 1;
    }
    if (interactive && !fail) fputc('\n', stdout);
    free(line);
    free_messages(&messages);
    free(s.cached);
    ml_chat_template_free(s.tmpl);
    ml_tokenizer_close(s.tok);
    ml_model_close(s.model);
    return fail ? 1 : 0;
}
