#include "openai.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/json_util.h"

enum { MAX_STOP_STRINGS = 16, MAX_LOGIT_BIAS = 1024, MAX_TOKENIZE_IDS = 1 << 20 };

static void set_error_v(ml_api_error *err, int status, const char *type, const char *param, const char *code,
                        const char *fmt, va_list ap) {
    err->status = status;
    err->type = type;
    err->param = param;
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

void ml_api_set_error(ml_api_error *err, int status, const char *type, const char *param, const char *code,
                      const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error_v(err, status, type, param, code, fmt, ap);
    va_end(ap);
}

/* Sets a 400 invalid_request_error naming param; returns -1. */
static int bad_request(ml_api_error *err, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad_request(ml_api_error *err, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error_v(err, 400, "invalid_request_error", param, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

static json_t *utf8_string(const char *text, size_t length) { return ml_json_string_lossy(text, length); }

char *ml_api_error_body(const ml_api_error *err) {
    json_t *inner = json_object();
    json_object_set_new(inner, "message", utf8_string(err->message, strlen(err->message)));
    json_object_set_new(inner, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(inner, "param", err->param ? json_string(err->param) : json_null());
    json_object_set_new(inner, "code", err->code ? json_string(err->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", inner);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* ---- reading fields --------------------------------------------------------------------- */

/* A number field in [lo, hi] into *out; absent or null keeps *out. */
static int get_number(json_t *req, const char *key, double lo, double hi, float *out, ml_api_error *err) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad_request(err, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return bad_request(err, key, "'%s' is %g: expected %g to %g", key, x, lo, hi);
    *out = (float)x;
    return 0;
}

static int get_int(json_t *req, const char *key, long long lo, long long hi, long long *out, ml_api_error *err) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad_request(err, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad_request(err, key, "'%s' is %lld: expected %lld to %lld", key, x, lo, hi);
    *out = x;
    return 0;
}

static int get_bool(json_t *req, const char *key, int *out, ml_api_error *err) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad_request(err, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int parse_stop(json_t *req, ml_job *job, ml_api_error *err) {
    json_t *v = json_object_get(req, "stop");
    if (!v || json_is_null(v)) return 0;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_string(v) && !json_is_array(v))
        return bad_request(err, "stop", "'stop' must be a string or an array of strings");
    if (n > MAX_STOP_STRINGS) return bad_request(err, "stop", "'stop' has %zu strings; at most %d", n, MAX_STOP_STRINGS);
    if (n == 0) return 0;
    job->stop_strings = calloc(n, sizeof *job->stop_strings);
    if (!job->stop_strings) return bad_request(err, "stop", "out of memory");
    job->sampling.n_stop_strings = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0)
            return bad_request(err, "stop", "'stop'[%zu] must be a non-empty string", i);
        job->stop_strings[i] = strdup(json_string_value(s));
        if (!job->stop_strings[i]) return bad_request(err, "stop", "out of memory");
    }
    job->sampling.stop_strings = (const char *const *)job->stop_strings;
    return 0;
}

static int parse_logit_bias(const ml_api_context *ctx, json_t *req, ml_job *job, ml_api_error *err) {
    json_t *v = json_object_get(req, "logit_bias");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v)) return bad_request(err, "logit_bias", "'logit_bias' must be an object {token id: bias}");
    size_t n = json_object_size(v);
    if (n > MAX_LOGIT_BIAS) return bad_request(err, "logit_bias", "'logit_bias' has %zu entries; at most %d", n, MAX_LOGIT_BIAS);
    if (n == 0) return 0;
    job->logit_bias = calloc(n, sizeof *job->logit_bias);
    if (!job->logit_bias) return bad_request(err, "logit_bias", "out of memory");
    const char *key;
    json_t *value;
    int i = 0;
    json_object_foreach(v, key, value) {
        char *end = NULL;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (errno || end == key || *end || id < 0 || id >= ctx->vocab_size)
            return bad_request(err, "logit_bias", "'logit_bias' key '%s': expected a token id 0..%d", key,
                               ctx->vocab_size - 1);
        if (!json_is_number(value) || !(json_number_value(value) >= -100 && json_number_value(value) <= 100))
            return bad_request(err, "logit_bias", "'logit_bias'['%s'] must be a number from -100 to 100", key);
        double bias = json_number_value(value);
        job->logit_bias[i].token = (int32_t)id;
        job->logit_bias[i].bias = bias <= -100 ? -INFINITY : (float)bias; /* -100 bans, as OpenAI */
        i++;
    }
    job->sampling.logit_bias = job->logit_bias;
    job->sampling.n_logit_bias = i;
    return 0;
}

/* logprobs: chat has a boolean and top_logprobs; completions an integer count. */
static int parse_logprobs(json_t *req, ml_api_options *opts, ml_job *job, ml_api_error *err) {
    long long top = 0;
    if (opts->kind == ML_API_CHAT) {
        if (get_bool(req, "logprobs", &opts->logprobs, err) || get_int(req, "top_logprobs", 0, 20, &top, err))
            return -1;
        if (top > 0 && !opts->logprobs)
            return bad_request(err, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
        json_t *v = json_object_get(req, "logprobs");
        if (v && json_is_boolean(v)) return bad_request(err, "logprobs", "'logprobs' must be an integer 0..20 here");
        top = -1;
        if (get_int(req, "logprobs", 0, 20, &top, err)) return -1;
        opts->logprobs = top >= 0;
        if (top < 0) top = 0;
    }
    opts->top_logprobs = (int)top;
    job->sampling.logprobs = opts->logprobs;
    job->sampling.top_logprobs = (int)top;
    return 0;
}

static int parse_sampling(const ml_api_context *ctx, json_t *req, ml_api_options *opts, ml_job *job,
                          ml_api_error *err) {
    ml_sampling_params *sp = &job->sampling;
    static unsigned long long requests;
    sp->temperature = 1.0f; /* OpenAI's default */
    sp->repeat_last_n = -1; /* OpenAI's penalties count every generated token */
    sp->seed = (unsigned long long)time(NULL) * 1000003ull + __atomic_add_fetch(&requests, 1, __ATOMIC_RELAXED);
    long long top_k = 0, seed = -1, n = 1;
    if (get_number(req, "temperature", 0, 2, &sp->temperature, err) || get_number(req, "top_p", 0, 1, &sp->top_p, err) ||
        get_number(req, "min_p", 0, 1, &sp->min_p, err) ||
        get_number(req, "presence_penalty", -2, 2, &sp->presence_penalty, err) ||
        get_number(req, "frequency_penalty", -2, 2, &sp->frequency_penalty, err) ||
        get_number(req, "repetition_penalty", 0.01, 100, &sp->repeat_penalty, err) ||
        get_int(req, "top_k", 0, ctx->vocab_size, &top_k, err) ||
        get_int(req, "seed", -(1ll << 62), 1ll << 62, &seed, err) || get_int(req, "n", 1, 1ll << 30, &n, err) ||
        get_bool(req, "stream", &opts->stream, err) || get_bool(req, "ignore_eos", &sp->ignore_eos, err) ||
        parse_stop(req, job, err) ||
        parse_logit_bias(ctx, req, job, err) || parse_logprobs(req, opts, job, err))
        return -1;
    if (sp->top_p == 0.0f) return bad_request(err, "top_p", "'top_p' is 0: expected more than 0, at most 1");
    if (n != 1) return bad_request(err, "n", "'n' is %lld: one choice per request is supported (n = 1)", n);
    sp->top_k = (int)top_k;
    if (json_is_integer(json_object_get(req, "seed"))) sp->seed = (uint64_t)seed;
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_request(err, "stream_options", "'stream_options' must be an object");
        if (!opts->stream) return bad_request(err, "stream_options", "'stream_options' needs 'stream': true");
        if (get_bool(so, "include_usage", &opts->include_usage, err)) return -1;
    }
    json_t *echo = json_object_get(req, "echo");
    if (echo && json_is_true(echo)) return bad_request(err, "echo", "'echo' is not supported");
    return 0;
}

/* max_tokens (or max_completion_tokens) against the context left after the prompt. */
static int parse_max_tokens(const ml_api_context *ctx, json_t *req, ml_api_options *opts, ml_job *job,
                            ml_api_error *err) {
    int room = ctx->max_seq_len - job->n_prompt;
    if (room < 1) {
        ml_api_set_error(err, 400, "invalid_request_error", "messages", "context_length_exceeded",
                         "the prompt has %d tokens; the context holds %d, with room for at least one new token",
                         job->n_prompt, ctx->max_seq_len);
        return -1;
    }
    long long max_tokens = opts->kind == ML_API_CHAT ? room : 16; /* OpenAI's defaults */
    const char *key = json_object_get(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(req, key, 1, 1ll << 30, &max_tokens, err)) return -1;
    if (max_tokens > room) {
        ml_api_set_error(err, 400, "invalid_request_error", key, "context_length_exceeded",
                         "'%s' is %lld but the context of %d tokens leaves %d after the prompt of %d tokens", key,
                         max_tokens, ctx->max_seq_len, room, job->n_prompt);
        return -1;
    }
    job->sampling.max_tokens = (int)max_tokens;
    return 0;
}

static int copy_ids(const ml_api_context *ctx, json_t *array, const char *param, int32_t **out, int *n_out,
                    ml_api_error *err) {
    size_t n = json_array_size(array);
    if (n == 0) return bad_request(err, param, "'%s' is empty", param);
    if (n > MAX_TOKENIZE_IDS) return bad_request(err, param, "'%s' has %zu ids; at most %d", param, n, MAX_TOKENIZE_IDS);
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return bad_request(err, param, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(array, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= ctx->vocab_size) {
            free(ids);
            return bad_request(err, param, "'%s'[%zu] must be a token id 0..%d", param, i, ctx->vocab_size - 1);
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

static int tokenize_text(const ml_api_context *ctx, const char *text, size_t length, unsigned flags, const char *param,
                         int32_t **out, int *n_out, ml_api_error *err) {
    size_t n = 0;
    if (ml_tokenize(ctx->tok, text, length, flags, out, &n) != ML_OK) return bad_request(err, param, "%s", ml_last_error());
    if (n == 0) {
        free(*out);
        *out = NULL;
        return bad_request(err, param, "'%s' gives no tokens", param);
    }
    *n_out = (int)n;
    return 0;
}

/* prompt: a string, an array of token ids, or an array holding one of those. */
static int parse_prompt(const ml_api_context *ctx, json_t *req, ml_job *job, ml_api_error *err) {
    json_t *p = json_object_get(req, "prompt");
    if (!p) return bad_request(err, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    else if (json_is_array(p) && json_array_size(p) > 1 && !json_is_integer(json_array_get(p, 0)))
        return bad_request(err, "prompt", "several prompts in one request are not supported; send one per request");
    if (json_is_string(p))
        return tokenize_text(ctx, json_string_value(p), json_string_length(p),
                             ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL, "prompt", &job->prompt,
                             &job->n_prompt, err);
    if (json_is_array(p)) return copy_ids(ctx, p, "prompt", &job->prompt, &job->n_prompt, err);
    return bad_request(err, "prompt", "'prompt' must be a string or an array of token ids");
}

/* A message's content as text: a string, or an array of {"type": "text", "text": ...} parts. */
static json_t *content_text(json_t *content, size_t index, ml_api_error *err) {
    if (!content || json_is_null(content)) return json_string("");
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) {
        bad_request(err, "messages", "'messages'[%zu].content must be a string or an array of text parts", index);
        return NULL;
    }
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            bad_request(err, "messages", "'messages'[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                                         "are supported", index, i);
            return NULL;
        }
        total += json_string_length(text);
    }
    char *joined = malloc(total + 1);
    if (!joined) return NULL;
    size_t at = 0;
    json_array_foreach(content, i, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(joined + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    json_t *s = json_stringn(joined, at);
    free(joined);
    return s;
}

/* The messages with their contents as plain text (every template reads a string). */
static json_t *normalise_messages(json_t *messages, ml_api_error *err) {
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        bad_request(err, "messages", "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            bad_request(err, "messages", "'messages'[%zu] must be an object with a string 'role'", i);
            json_decref(out);
            return NULL;
        }
        json_t *text = content_text(json_object_get(m, "content"), i, err);
        if (!text) {
            json_decref(out);
            return NULL;
        }
        json_t *copy = json_copy(m);
        json_object_set_new(copy, "content", text);
        json_array_append_new(out, copy);
    }
    return out;
}

static int parse_messages(const ml_api_context *ctx, json_t *req, ml_job *job, ml_api_error *err) {
    if (!ctx->tmpl) return bad_request(err, "messages", "this model has no chat template; use /v1/completions");
    json_t *messages = normalise_messages(json_object_get(req, "messages"), err);
    if (!messages) return -1;
    char *messages_json = json_dumps(messages, JSON_COMPACT);
    json_decref(messages);
    json_t *tools = json_object_get(req, "tools");
    char *tools_json = tools && json_is_array(tools) ? json_dumps(tools, JSON_COMPACT) : NULL;
    ml_chat_params params = {1, NULL};
    char *text = NULL;
    size_t length = 0;
    pthread_mutex_lock(ctx->tmpl_mutex);
    int status = messages_json ? ml_chat_template_apply_json(ctx->tmpl, messages_json, tools_json, &params, &text,
                                                             &length)
                               : ML_ERR_NOMEM;
    if (status != ML_OK) bad_request(err, "messages", "the chat template: %s", ml_last_error());
    pthread_mutex_unlock(ctx->tmpl_mutex);
    free(messages_json);
    free(tools_json);
    if (status != ML_OK) return -1;
    int bad = tokenize_text(ctx, text, length, ML_TOKENIZE_PARSE_SPECIAL, "messages", &job->prompt, &job->n_prompt, err);
    free(text);
    if (bad) return -1;
    if (ctx->end_of_turn >= 0) {
        job->sampling.stop_tokens = &ctx->end_of_turn;
        job->sampling.n_stop_tokens = 1;
    }
    return 0;
}

int ml_api_parse_request(const ml_api_context *ctx, ml_api_kind kind, const char *body, size_t length, ml_job *job,
                         ml_api_options *opts, ml_api_error *err) {
    static unsigned long long ids;
    memset(opts, 0, sizeof *opts);
    opts->kind = kind;
    opts->created = (long long)time(NULL);
    snprintf(opts->id, sizeof opts->id, "%s-%llx%06llx", kind == ML_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)opts->created, __atomic_add_fetch(&ids, 1, __ATOMIC_RELAXED));
    json_error_t jerr;
    json_t *req = json_loadb(body, length, 0, &jerr);
    if (!req) return bad_request(err, NULL, "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                                 jerr.column);
    int bad = 0;
    json_t *model = json_object_get(req, "model");
    if (!json_is_object(req)) bad = bad_request(err, NULL, "the body must be a JSON object");
    else if (model && !json_is_string(model)) bad = bad_request(err, "model", "'model' must be a string");
    if (!bad) bad = parse_sampling(ctx, req, opts, job, err);
    if (!bad) bad = kind == ML_API_CHAT ? parse_messages(ctx, req, job, err) : parse_prompt(ctx, req, job, err);
    if (!bad) bad = parse_max_tokens(ctx, req, opts, job, err);
    job->detokenize_flags = ML_DETOKENIZE_SKIP_SPECIAL;
    json_decref(req);
    return bad;
}

/* ---- answers ---------------------------------------------------------------------------- */

const char *ml_api_finish_reason(const ml_job *job) {
    switch (job->stats.finish_reason) {
    case ML_FINISH_EOS:
    case ML_FINISH_STOP_STRING: return "stop";
    case ML_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

/* A token's own text (special tokens included) and its bytes. */
static void token_piece(const ml_api_context *ctx, int32_t id, json_t **text, json_t **bytes) {
    char *piece = NULL;
    size_t length = 0;
    if (ml_detokenize(ctx->tok, &id, 1, 0, &piece, &length) != ML_OK) length = 0;
    *text = utf8_string(piece ? piece : "", length);
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < length; i++) json_array_append_new(*bytes, json_integer((unsigned char)piece[i]));
    }
    free(piece);
}

static json_t *chat_logprob_entry(const ml_api_context *ctx, int32_t id, float logprob) {
    json_t *text, *bytes;
    token_piece(ctx, id, &text, &bytes);
    json_t *entry = json_object();
    json_object_set_new(entry, "token", text);
    json_object_set_new(entry, "logprob", json_real(logprob));
    json_object_set_new(entry, "bytes", bytes);
    return entry;
}

/* OpenAI's logprobs object for tokens [from, to): chat's "content" list, or completions' lists. */
static json_t *logprobs_json(const ml_api_context *ctx, const ml_api_options *opts, const ml_job *job, int from,
                             int to) {
    if (!opts->logprobs) return json_null();
    json_t *root = json_object();
    if (opts->kind == ML_API_CHAT) {
        json_t *content = json_array();
        for (int i = from; i < to; i++) {
            const ml_job_token *t = &job->tokens[i];
            json_t *entry = chat_logprob_entry(ctx, t->token, t->logprob);
            json_t *top = json_array();
            for (int k = 0; k < t->n_top; k++)
                json_array_append_new(top, chat_logprob_entry(ctx, t->top_ids[k], t->top_logprobs[k]));
            json_object_set_new(entry, "top_logprobs", top);
            json_array_append_new(content, entry);
        }
        json_object_set_new(root, "content", content);
        json_object_set_new(root, "refusal", json_null());
        return root;
    }
    json_t *tokens = json_array(), *token_logprobs = json_array(), *tops = json_array(), *offsets = json_array();
    for (int i = from; i < to; i++) {
        const ml_job_token *t = &job->tokens[i];
        json_t *text;
        token_piece(ctx, t->token, &text, NULL);
        json_array_append_new(tokens, text);
        json_array_append_new(token_logprobs, json_real(t->logprob));
        json_array_append_new(offsets, json_integer((json_int_t)t->text_begin));
        json_t *top = json_object();
        for (int k = 0; k < t->n_top; k++) {
            json_t *alt;
            token_piece(ctx, t->top_ids[k], &alt, NULL);
            json_object_set_new(top, json_string_value(alt), json_real(t->top_logprobs[k]));
            json_decref(alt);
        }
        json_array_append_new(tops, top);
    }
    json_object_set_new(root, "tokens", tokens);
    json_object_set_new(root, "token_logprobs", token_logprobs);
    json_object_set_new(root, "top_logprobs", tops);
    json_object_set_new(root, "text_offset", offsets);
    return root;
}

static json_t *usage_json(const ml_job *job) {
    json_t *usage = json_object();
    json_object_set_new(usage, "prompt_tokens", json_integer(job->n_prompt));
    json_object_set_new(usage, "completion_tokens", json_integer(job->n_tokens));
    json_object_set_new(usage, "total_tokens", json_integer(job->n_prompt + job->n_tokens));
    return usage;
}

static json_t *envelope(const ml_api_context *ctx, const ml_api_options *opts, const char *object) {
    json_t *root = json_object();
    json_object_set_new(root, "id", json_string(opts->id));
    json_object_set_new(root, "object", json_string(object));
    json_object_set_new(root, "created", json_integer(opts->created));
    json_object_set_new(root, "model", json_string(ctx->model_name));
    json_object_set_new(root, "system_fingerprint", json_string("meshllama-" MESHLLAMA_VERSION));
    return root;
}

static char *dump(json_t *root) {
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static json_t *text_of(const ml_job *job, int from, int to) {
    size_t begin = from < job->n_tokens ? job->tokens[from].text_begin : job->text_length;
    size_t end = to < job->n_tokens ? job->tokens[to].text_begin : job->text_length;
    return utf8_string(job->text ? job->text + begin : "", end - begin);
}

char *ml_api_response(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job) {
    int chat = opts->kind == ML_API_CHAT;
    json_t *root = envelope(ctx, opts, chat ? "chat.completion" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (chat) {
        json_t *message = json_object();
        json_object_set_new(message, "role", json_string("assistant"));
        json_object_set_new(message, "content", text_of(job, 0, job->n_tokens));
        json_object_set_new(choice, "message", message);
    } else {
        json_object_set_new(choice, "text", text_of(job, 0, job->n_tokens));
    }
    json_object_set_new(choice, "logprobs", logprobs_json(ctx, opts, job, 0, job->n_tokens));
    const char *finish = ml_api_finish_reason(job);
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_json(job));
    return dump(root);
}

char *ml_api_chunk(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job, int from, int to,
                   const char *finish_reason, int role) {
    int chat = opts->kind == ML_API_CHAT;
    json_t *root = envelope(ctx, opts, chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (role || to > from) json_object_set_new(delta, "content", text_of(job, from, to));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text_of(job, from, to));
    }
    json_object_set_new(choice, "logprobs", to > from ? logprobs_json(ctx, opts, job, from, to) : json_null());
    json_object_set_new(choice, "finish_reason", finish_reason ? json_string(finish_reason) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    if (opts->include_usage) json_object_set_new(root, "usage", json_null());
    return dump(root);
}

char *ml_api_usage_chunk(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job) {
    json_t *root = envelope(ctx, opts, opts->kind == ML_API_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(root, "choices", json_array());
    json_object_set_new(root, "usage", usage_json(job));
    return dump(root);
}

/* ---- /tokenize and /detokenize (llama.cpp's server shapes) ------------------------------------ */

char *ml_api_tokenize(const ml_api_context *ctx, const char *body, size_t length, ml_api_error *err) {
    json_error_t jerr;
    json_t *req = json_loadb(body, length, 0, &jerr);
    json_t *content = req ? json_object_get(req, "content") : NULL;
    int add_special = 0;
    if (!req) bad_request(err, NULL, "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    else if (!json_is_string(content)) bad_request(err, "content", "'content' must be a string");
    else if (get_bool(req, "add_special", &add_special, err) == 0) {
        int32_t *ids = NULL;
        size_t n = 0;
        unsigned flags = ML_TOKENIZE_PARSE_SPECIAL | (add_special ? ML_TOKENIZE_ADD_SPECIAL : 0);
        if (ml_tokenize(ctx->tok, json_string_value(content), json_string_length(content), flags, &ids, &n) != ML_OK) {
            bad_request(err, "content", "%s", ml_last_error());
        } else {
            json_t *tokens = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(tokens, json_integer(ids[i]));
            free(ids);
            json_decref(req);
            json_t *root = json_object();
            json_object_set_new(root, "tokens", tokens);
            return dump(root);
        }
    }
    json_decref(req);
    return NULL;
}

char *ml_api_detokenize(const ml_api_context *ctx, const char *body, size_t length, ml_api_error *err) {
    json_error_t jerr;
    json_t *req = json_loadb(body, length, 0, &jerr);
    json_t *tokens = req ? json_object_get(req, "tokens") : NULL;
    int32_t *ids = NULL;
    int n = 0;
    char *result = NULL;
    if (!req) bad_request(err, NULL, "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    else if (!json_is_array(tokens)) bad_request(err, "tokens", "'tokens' must be an array of token ids");
    else if (json_array_size(tokens) == 0 || copy_ids(ctx, tokens, "tokens", &ids, &n, err) == 0) {
        char *text = NULL;
        size_t text_length = 0;
        if (ml_detokenize(ctx->tok, ids, (size_t)n, 0, &text, &text_length) != ML_OK) {
            bad_request(err, "tokens", "%s", ml_last_error());
        } else {
            json_t *root = json_object();
            json_object_set_new(root, "content", utf8_string(text, text_length));
            result = dump(root);
        }
        free(text);
    }
    free(ids);
    json_decref(req);
    return result;
}
