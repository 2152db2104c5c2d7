/* `meshllama chat`: an interactive conversation with the model's chat template. Each turn
 * renders the whole conversation, keeps the KV cache of the longest prefix already computed
 * and feeds only the new tokens; when the context is full the oldest turns are dropped (the
 * system message stays). /commands, Ctrl-C stops an answer; Ctrl-D (end of input) exits. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_input.h"
#include "chat_messages.h"
#include "cli_args.h"
#include "commands.h"
#include "model_options.h"
#include "sampling_options.h"

enum { OPT_SYSTEM = ML_OPT_FIRST_COMMAND_OPTION, OPT_TEMPLATE };

static const char chat_usage[] =
    "usage: meshllama chat [-m MODEL] [--system TEXT] [options]\n"
    "Reads user messages from standard input (one per line; a line ending in \\ continues, \"\"\"\n"
    "opens and closes a block) and answers with the model's own chat template (its Jinja\n"
    "chat_template). On a terminal: line editing and history, /help lists /clear, /system,\n"
    "/save, /load, /exit; Ctrl-C stops an answer; Ctrl-D (end of input) exits. A full context\n"
    "drops the oldest turns, keeping the system message.\n"
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

/* Set by SIGINT while an answer is generated (the handler is installed only then). */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static int print_piece(const ml_token_event *ev, void *user) {
    chat_reply *r = user;
    if (interrupted) return 1; /* stop the answer: finish_reason ML_FINISH_CALLBACK */
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
    ml_model *model;
    ml_tokenizer *tok;
    ml_chat_template *tmpl;
    ml_sampling_params sampling;
    int32_t end_of_turn;
    int32_t *cached;      /* ids whose K/V are in slot 0 */
    int n_cached;
    int max_seq_len;
} chat_session;

/* The conversation rendered with the generation prompt and tokenized. */
static int render(const chat_session *s, const chat_messages *messages, int32_t **ids, size_t *n_ids) {
    ml_chat_params params = {1, NULL};
    char *text = NULL;
    size_t length = 0;
    *ids = NULL;
    if (ml_chat_template_apply(s->tmpl, messages->items, messages->count, &params, &text, &length) != ML_OK ||
        ml_tokenize(s->tok, text, length, ML_TOKENIZE_PARSE_SPECIAL, ids, n_ids) != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        free(text);
        return -1;
    }
    free(text);
    return 0;
}

/* Context full: drops the oldest turns (a user message and its answer), never the system
 * message nor the new user message, until the conversation leaves room for an answer of
 * min(-n, half the context). Says so on stderr. */
static int fit_context(const chat_session *s, chat_messages *messages, int32_t **ids, size_t *n_ids) {
    int reserve = s->sampling.max_tokens < s->max_seq_len / 2 ? s->sampling.max_tokens : s->max_seq_len / 2;
    size_t first = messages->count > 0 && strcmp(messages->items[0].role, "system") == 0 ? 1 : 0;
    size_t dropped = 0, before = *n_ids;
    while ((long long)*n_ids + reserve > s->max_seq_len && messages->count - first > 1) {
        size_t n = first + 1 < messages->count - 1 && strcmp(messages->items[first + 1].role, "assistant") == 0 ? 2 : 1;
        chat_messages_remove(messages, first, n);
        dropped += n;
        free(*ids);
        if (render(s, messages, ids, n_ids) != 0) return -1;
    }
    if (dropped)
        fprintf(stderr, "[context full (%d positions): dropped the %zu oldest messages%s; %zu tokens instead of %zu]\n",
                s->max_seq_len, dropped, first ? ", kept the system message" : "", *n_ids, before);
    return 0;
}

/* One turn: render, make room, reuse the cached prefix, generate, remember what the cache now
 * holds. Returns 0 when answered, 1 when the message cannot be answered (it is dropped and
 * the chat goes on), -1 on a failure. */
static int chat_turn(chat_session *s, chat_messages *messages) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (render(s, messages, &ids, &n_ids) != 0 || fit_context(s, messages, &ids, &n_ids) != 0) {
        free(ids);
        return -1;
    }
    if ((long long)n_ids >= s->max_seq_len) {
        fprintf(stderr, "meshllama chat: the message does not fit: %zu tokens with the system message, context %d "
                        "(-c); not answered\n", n_ids, s->max_seq_len);
        chat_messages_remove(messages, messages->count - 1, 1);
        free(ids);
        return 1;
    }
    ml_sampling_params sp = s->sampling;
    if ((long long)n_ids + sp.max_tokens > s->max_seq_len) sp.max_tokens = s->max_seq_len - (int)n_ids;
    int keep = 0;
    while (keep < s->n_cached && keep < (int)n_ids - 1 && s->cached[keep] == ids[keep]) keep++;
    int32_t *generated = malloc(((size_t)sp.max_tokens + 1) * sizeof *generated);
    chat_reply reply = {NULL, 0, 0};
    ml_generate_stats stats;
    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &action, &previous);
    int status = generated ? ml_generate_text(s->model, s->tok, ids, (int)n_ids, keep, &sp, ML_DETOKENIZE_SKIP_SPECIAL,
                                              generated, print_piece, &reply, &stats)
                           : ML_ERR_NOMEM;
    sigaction(SIGINT, &previous, NULL);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama chat: %s\n", ml_last_error());
        free(reply.text);
        free(generated);
        free(ids);
        return -1;
    }
    printf("\n");
    fflush(stdout);
    if (interrupted) fprintf(stderr, "[interrupted: the answer so far stays in the conversation]\n");
    else if (stats.finish_reason == ML_FINISH_LENGTH && sp.max_tokens < s->sampling.max_tokens)
        fprintf(stderr, "[context full: the answer stopped at the end of the context (%d positions)]\n",
                s->max_seq_len);
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
    int rc = chat_messages_add(messages, "assistant", reply.text ? reply.text : "");
    free(reply.text);
    free(generated);
    free(ids);
    return rc;
}

static const char chat_help[] =
    "  /help          this list\n"
    "  /clear         forget the conversation (the system message stays)\n"
    "  /system TEXT   set the system message (without TEXT: show it)\n"
    "  /save FILE     write the conversation as JSON\n"
    "  /load FILE     read a conversation written by /save\n"
    "  /exit          leave (also Ctrl-D, or Ctrl-C at the prompt)\n"
    "  a line ending in \\ continues on the next line; \"\"\" on a line opens and closes a block\n"
    "  Ctrl-C while the model answers stops the answer\n";

/* A /command: 1 to leave the chat, 0 to go on. */
static int chat_command(chat_messages *messages, const char *line) {
    const char *arg = line + strcspn(line, " \t");
    size_t name_length = (size_t)(arg - line);
    while (*arg == ' ' || *arg == '\t') arg++;
    char err[4400];
#define IS(name) (name_length == strlen(name) && strncmp(line, name, name_length) == 0)
    if (IS("/exit") || IS("/quit")) return 1;
    if (IS("/help")) {
        fputs(chat_help, stderr);
    } else if (IS("/clear")) {
        size_t first = messages->count > 0 && strcmp(messages->items[0].role, "system") == 0 ? 1 : 0;
        chat_messages_remove(messages, first, messages->count - first);
        fprintf(stderr, "[conversation cleared]\n");
    } else if (IS("/system")) {
        if (!*arg) {
            int has = messages->count > 0 && strcmp(messages->items[0].role, "system") == 0;
            fprintf(stderr, "[system: %s]\n", has ? messages->items[0].content : "(none: the template's default)");
        } else if (chat_messages_set_system(messages, arg) == 0) {
            fprintf(stderr, "[system message set]\n");
        }
    } else if (IS("/save") || IS("/load")) {
        int save = IS("/save");
        if (!*arg) fprintf(stderr, "meshllama chat: %s needs a FILE\n", save ? "/save" : "/load");
        else if ((save ? chat_messages_save(messages, arg, err, sizeof err)
                       : chat_messages_load(messages, arg, err, sizeof err)) != 0)
            fprintf(stderr, "meshllama chat: %s\n", err);
        else fprintf(stderr, "[%s %zu messages %s %s]\n", save ? "saved" : "loaded", messages->count,
                     save ? "to" : "from", arg);
    } else {
        fprintf(stderr, "meshllama chat: unknown command '%.*s': /help lists them\n", (int)name_length, line);
    }
#undef IS
    return 0;
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
    if (!bad) bad = ml_cli_no_operands("chat", argc, argv, optind) != 0;
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
    chat_messages messages = {NULL, 0, 0};
    if (!fail && system && chat_messages_add(&messages, "system", system) != 0) fail = 1;
    int interactive = isatty(STDIN_FILENO);
    chat_input *in = fail ? NULL : chat_input_open(interactive);
    if (!fail && !in) fail = 1;
    if (!fail && interactive)
        fprintf(stderr, "meshllama chat (%s template, tp %d): /help for commands, Ctrl-D to exit\n",
                ml_chat_template_name(s.tmpl), info.tp);
    int unanswered = 0;
    while (!fail) {
        char *message = NULL;
        int rc = chat_input_read(in, &message);
        if (rc < 0) {
            /* end of input ends the chat; a read error is a failure, not the end */
            fprintf(stderr, "meshllama chat: cannot read standard input: %s\n", strerror(errno));
            fail = 1;
        }
        if (rc <= 0) break;
        int leave = 0;
        if (message[0] == '/') leave = chat_command(&messages, message);
        else if (message[0] && chat_messages_add(&messages, "user", message) != 0) fail = 1;
        else if (message[0]) {
            int turn = chat_turn(&s, &messages);
            if (turn < 0) fail = 1;
            unanswered |= turn > 0;
        }
        free(message);
        if (leave) break;
    }
    if (interactive && !fail) fputc('\n', stdout);
    chat_input_close(in);
    chat_messages_free(&messages);
    if (unanswered) fail = 1;
    free(s.cached);
    ml_cli_sampling_free(&sampling);
    ml_chat_template_free(s.tmpl);
    ml_tokenizer_close(s.tok);
    ml_model_close(s.model);
    return fail ? 1 : 0;
}
