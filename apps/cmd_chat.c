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
#include "sampling_options.h"

enum { OPT_SYSTEM = ML_OPT_FIRST_COMMAND_OPTION, OPT_TEMPLATE };

static const char chat_usage[] =
    "usage: meshllama chat [-m MODEL] [--system TEXT] [options]\n"
    "Reads one user message per line from standard input and answers with the model's own chat\n"
    "template (its Jinja chat_template); end of input (Ctrl-D) exits.\n"
    ML_MODEL_OPTIONS_HELP
    "      --system TEXT     system prompt\n"
    "      --template NAME   use a built-in template instead: llama3, llama3.1 or chatml\n"
    "  -n, --n-predict N     most tokens per answer (default 256)\n"
    ML_SAMPLING_OPTIONS_HELP;

/* The answer as printed, kept for the conversation. */
typedef struct {
    char *text;
    size_t length, capacity;
} chat_reply;

static int print_piece(const ml_token_event *ev, void *user) {
    chat_reply *r = user;
    if (ev->text_length == 0) return 0;
    fwrite(ev->text, 1, ev->text_length, stdout);
    fflush(stdout);
    if (r->length + ev->text_length + 1 > r->capacity) {
        size_t capacity = (r->length + ev->text_length + 1) * 2;
        char *grown = realloc(r->text, capacity);
        if (!grown) return 1;
        r->text = grown;
        r->capacity = capacity;
    }
    memcpy(r->text + r->length, ev->text, ev->text_length);
    r->length += ev->text_length;
    r->text[r->length] = '\0';
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
    chat_reply reply = {NULL, 0, 0};
    ml_generate_stats stats;
    int status = generated ? ml_generate_text(s->model, s->tok, ids, (int)n_ids, keep, &s->sampling,
                                              ML_DETOKENIZE_SKIP_SPECIAL, generated, print_piece, &reply, &stats)
                           : ML_ERR_NOMEM;
    if (status != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        free(reply.text);
        free(generated);
        free(ids);
        return -1;
    }
    printf("\n");
    fflush(stdout);
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
    /* the conversation keeps the answer as shown: no end-of-turn token, no stop string */
    int rc = add_message(messages, "assistant", reply.text ? reply.text : "");
    free(reply.text);
    free(generated);
    free(ids);
    return rc;
}

static int parse_chat_options(int argc, char **argv, ml_cli_model *model_opts, ml_cli_sampling *sampling,
                              const char **system, const char **template_name) {
    static const struct option options[] = {
        ML_MODEL_LONG_OPTIONS,
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"template", required_argument, NULL, OPT_TEMPLATE},
        {"n-predict", required_argument, NULL, 'n'},
        ML_SAMPLING_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ml_sampling_params *sp = &sampling->params;
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, ML_MODEL_SHORT_OPTIONS ML_SAMPLING_SHORT_OPTIONS "n:h", options,
                                      NULL)) != -1) {
        int handled = ml_cli_model_option(model_opts, opt, optarg);
        if (handled == 0) handled = ml_cli_sampling_option(sampling, opt, optarg);
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
    ml_cli_sampling sampling;
    ml_cli_sampling_init(&sampling, 256);
    const char *system = NULL, *template_name = NULL;
    int parsed = parse_chat_options(argc, argv, &model_opts, &sampling, &system, &template_name);
    if (parsed != 0) {
        if (parsed < 0) fputs(chat_usage, stderr);
        ml_cli_sampling_free(&sampling);
        return parsed < 0 ? ML_EXIT_USAGE : 0;
    }
    s.sampling = sampling.params;
    if (ml_cli_model_open(&model_opts, &s.model) != 0) {
        ml_cli_sampling_free(&sampling);
        return 1;
    }
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
    ml_cli_sampling_free(&sampling);
    ml_chat_template_free(s.tmpl);
    ml_tokenizer_close(s.tok);
    ml_model_close(s.model);
    return fail ? 1 : 0;
}
