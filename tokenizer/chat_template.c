/* Chat templates. The model's own template (tokenizer_config.json "chat_template", GGUF
 * tokenizer.chat_template) runs in the Jinja engine (jinja_*.c), which renders what
 * transformers' apply_chat_template renders. Built-in C renderings of the common formats stay as
 * a fallback: forced by name, or used when the model's template does not parse or needs a
 * Jinja feature the engine lacks (ML_ERR_UNSUPPORTED at render time):
 *
 *  llama3    Meta-Llama-3-*-Instruct:
 *            bos + for each message "<|start_header_id|>" role "<|end_header_id|>\n\n"
 *            trim(content) "<|eot_id|>"; then the assistant header if asked.
 *  llama3.1  Llama 3.1 / 3.2 / 3.3 Instruct (without tools): bos, then always a system block
 *            "Cutting Knowledge Date: December 2023\nToday Date: <date>\n\n" + trim(system
 *            message or ""), then the other messages as llama3 (tool/ipython messages get the
 *            ipython header and their content as JSON, as the template's tojson does).
 *  chatml    "<|im_start|>" role "\n" content "<|im_end|>\n" per message (content untrimmed), with
 *            the template's default system prompt first when the first message is not a system
 *            one (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging
 *            Face"), then "<|im_start|>assistant\n" if asked.
 * Jinja's trim is Python's str.strip(): it removes the characters for which isspace() holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer_internal.h"

enum { FORMAT_LLAMA3 = 1, FORMAT_LLAMA31, FORMAT_CHATML };

struct ml_chat_template {
    ml_jinja_template *jinja; /* the model's own template, or NULL (built-in format only) */
    int format;               /* built-in format: forced, recognised as fallback, or 0 */
    char *default_system;     /* chatml: inserted when the first message is not "system"; or NULL */
    char *bos_token;          /* the text of bos_token ("" if the model has none) */
    char *eos_token;          /* the text of eos_token, or NULL */
};

static const char *const format_names[] = {"", "llama3", "llama3.1", "chatml"};
static const char known_names[] = "llama3, llama3.1, chatml";

/* ---- recognition ------------------------------------------------------------------------ */

/* Finds a literal default system prompt: the text of a Jinja string literal that reads
 * '<|im_start|>system\n' TEXT '<|im_end|>' with no expression in between. Escapes \n \t \\ \'
 * \" in TEXT are decoded as Jinja does. Returns a malloc'd string or NULL. */
static char *chatml_default_system(const char *source) {
    static const char marker[] = "<|im_start|>system";
    static const char end_marker[] = "<|im_end|>";
    for (const char *at = strstr(source, marker); at; at = strstr(at + 1, marker)) {
        const char *p = at + strlen(marker);
        if (*p == '\n') p++;
        else if (p[0] == '\\' && p[1] == 'n') p += 2;
        else continue;
        const char *end = strstr(p, end_marker);
        if (!end) return NULL;
        if (end == p) continue;
        char *text = malloc((size_t)(end - p) + 1);
        if (!text) return NULL;
        size_t n = 0;
        int literal = 1;
        for (const char *c = p; c < end && literal; c++) {
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}') {
                literal = 0;
            } else if (*c == '\\' && c + 1 < end) {
                c++;
                switch (*c) {
                case 'n': text[n++] = '\n'; break;
                case 't': text[n++] = '\t'; break;
                case '\\':
                case '\'':
                case '"': text[n++] = *c; break;
                default: literal = 0; break;
                }
            } else {
                text[n++] = *c;
            }
        }
        if (literal) {
            text[n] = '\0';
            return text;
        }
        free(text);
    }
    return NULL;
}

static int format_from_name(const char *name) {
    for (int f = FORMAT_LLAMA3; f <= FORMAT_CHATML; f++) {
        if (strcmp(name, format_names[f]) == 0) return f;
    }
    return 0;
}

/* The built-in format that source looks like, or 0. */
static int recognise(const char *source) {
    if (strstr(source, "<|start_header_id|>") && strstr(source, "<|end_header_id|>"))
        return strstr(source, "Cutting Knowledge Date") ? FORMAT_LLAMA31 : FORMAT_LLAMA3;
    if (strstr(source, "<|im_start|>") && strstr(source, "<|im_end|>")) return FORMAT_CHATML;
    return 0;
}

int ml_chat_template_create_with_tokens(const char *source, const char *force_name, const char *bos_token,
                                        const char *eos_token, ml_chat_template **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_chat_template_create: out is NULL");
    *out = NULL;
    int format = 0;
    ml_jinja_template *jinja = NULL;
    if (force_name) {
        format = format_from_name(force_name);
        if (!format)
            return ml_set_error(ML_ERR_ARG, "chat template \"%s\" is unknown (known: %s)", force_name, known_names);
    } else if (!source) {
        return ml_set_error(ML_ERR_UNSUPPORTED,
                            "the model has no chat_template; choose a built-in one with --template %s",
                            "llama3|llama3.1|chatml");
    } else {
        format = recognise(source);
        int status = ml_jinja_parse(source, strlen(source), &jinja);
        if (status == ML_ERR_NOMEM) return status;
        if (status != ML_OK && !format)
            return ml_wrap_error(ML_ERR_UNSUPPORTED,
                                 "the model's chat template is not usable and not one of the built-in formats "
                                 "(choose one with --template %s)", "llama3|llama3.1|chatml");
    }
    ml_chat_template *tmpl = calloc(1, sizeof *tmpl);
    if (!tmpl) {
        ml_jinja_free(jinja);
        return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    }
    tmpl->jinja = jinja;
    tmpl->format = format;
    tmpl->bos_token = strdup(bos_token ? bos_token : "<|begin_of_text|>");
    tmpl->eos_token = eos_token ? strdup(eos_token) : NULL;
    if (format == FORMAT_CHATML && source) tmpl->default_system = chatml_default_system(source);
    if (!tmpl->bos_token || (eos_token && !tmpl->eos_token)) {
        ml_chat_template_free(tmpl);
        return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    }
    *out = tmpl;
    return ML_OK;
}

int ml_chat_template_create(const char *source, const char *force_name, const char *bos_token,
                            ml_chat_template **out) {
    return ml_chat_template_create_with_tokens(source, force_name, bos_token, NULL, out);
}

/* The text of token id, or "" when there is none. */
static void token_text(const ml_tokenizer *tok, int32_t id, char *out, size_t size) {
    const char *bytes;
    size_t length;
    out[0] = '\0';
    if (id >= 0 && ml_tokenizer_token_bytes(tok, id, &bytes, &length) == ML_OK && length < size) {
        memcpy(out, bytes, length);
        out[length] = '\0';
    }
}

int ml_chat_template_from_tokenizer(const ml_tokenizer *tok, const char *force_name, ml_chat_template **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_chat_template_from_tokenizer: out is NULL");
    *out = NULL;
    if (!tok) return ml_set_error(ML_ERR_ARG, "ml_chat_template_from_tokenizer: tokenizer is NULL");
    char bos[256], eos[256];
    token_text(tok, tok->bos_id, bos, sizeof bos);
    token_text(tok, tok->eos_id, eos, sizeof eos);
    /* The built-in Llama formats need a BOS text even when the tokenizer names none. */
    int status = ml_chat_template_create_with_tokens(tok->chat_template, force_name,
                                                     bos[0] || tok->chat_template ? bos : NULL, eos[0] ? eos : NULL, out);
    if (status != ML_OK && !force_name) return ml_wrap_error(status, "%s", tok->source);
    return status;
}

void ml_chat_template_free(ml_chat_template *tmpl) {
    if (!tmpl) return;
    ml_jinja_free(tmpl->jinja);
    free(tmpl->default_system);
    free(tmpl->bos_token);
    free(tmpl->eos_token);
    free(tmpl);
}

const char *ml_chat_template_name(const ml_chat_template *tmpl) {
    if (!tmpl) return "";
    return tmpl->jinja ? "jinja" : format_names[tmpl->format];
}

const char *ml_chat_template_end_of_turn(const ml_chat_template *tmpl) {
    if (!tmpl) return "";
    if (tmpl->format == FORMAT_CHATML) return "<|im_end|>";
    if (tmpl->format) return "<|eot_id|>";
    return tmpl->eos_token ? tmpl->eos_token : "";
}

/* ---- rendering -------------------------------------------------------------------------- */

typedef struct {
    ml_byte_buf buf;
    int failed;
} writer;

static void put(writer *w, const char *text, size_t n) {
    if (!w->failed && ml_byte_buf_append(&w->buf, text, n) != ML_OK) w->failed = 1;
}

static void puts_(writer *w, const char *text) { put(w, text, strlen(text)); }

/* Python str.strip() on UTF-8; invalid bytes count as non-space. */
static void put_trimmed(writer *w, const char *text) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n = strlen(text), start = 0, end = n;
    uint32_t cp;
    while (start < end) {
        size_t used = ml_utf8_decode(s + start, end - start, &cp);
        if (!used || !ml_unicode_is_python_space(cp)) break;
        start += used;
    }
    while (end > start) {
        size_t lead = end - 1;
        while (lead > start && end - lead < 4 && (s[lead] & 0xC0) == 0x80) lead--;
        size_t used = ml_utf8_decode(s + lead, end - lead, &cp);
        if (used != end - lead || !ml_unicode_is_python_space(cp)) break;
        end = lead;
    }
    put(w, text + start, end - start);
}

/* transformers' tojson filter on a string: json.dumps(s, ensure_ascii=False). */
static void put_json_string(writer *w, const char *text) {
    puts_(w, "\"");
    for (const char *c = text; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        char escape[8];
        switch (ch) {
        case '"': puts_(w, "\\\""); break;
        case '\\': puts_(w, "\\\\"); break;
        case '\n': puts_(w, "\\n"); break;
        case '\r': puts_(w, "\\r"); break;
        case '\t': puts_(w, "\\t"); break;
        case '\b': puts_(w, "\\b"); break;
        case '\f': puts_(w, "\\f"); break;
        default:
            if (ch < 0x20) {
                snprintf(escape, sizeof escape, "\\u%04x", ch);
                puts_(w, escape);
            } else {
                put(w, c, 1);
            }
        }
    }
    puts_(w, "\"");
}

static void today(char *out, size_t size) {
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm local;
    if (!localtime_r(&now, &local)) {
        snprintf(out, size, "26 Jul 2024"); /* the templates' own fallback */
        return;
    }
    snprintf(out, size, "%02d %s %d", local.tm_mday, months[local.tm_mon % 12], local.tm_year + 1900);
}

static void render_llama_message(writer *w, const ml_chat_message *m) {
    puts_(w, "<|start_header_id|>");
    puts_(w, m->role);
    puts_(w, "<|end_header_id|>\n\n");
    put_trimmed(w, m->content);
    puts_(w, "<|eot_id|>");
}

static void render_llama3(writer *w, const ml_chat_template *t, const ml_chat_message *m, size_t n, int gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) puts_(w, t->bos_token);
        render_llama_message(w, &m[i]);
    }
    if (gen) puts_(w, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_llama31(writer *w, const ml_chat_template *t, const ml_chat_message *m, size_t n, int gen,
                           const char *date) {
    puts_(w, t->bos_token);
    size_t first = 0;
    puts_(w, "<|start_header_id|>system<|end_header_id|>\n\n");
    puts_(w, "Cutting Knowledge Date: December 2023\n");
    puts_(w, "Today Date: ");
    puts_(w, date);
    puts_(w, "\n\n");
    if (n > 0 && strcmp(m[0].role, "system") == 0) {
        put_trimmed(w, m[0].content);
        first = 1;
    }
    puts_(w, "<|eot_id|>");
    for (size_t i = first; i < n; i++) {
        if (strcmp(m[i].role, "tool") == 0 || strcmp(m[i].role, "ipython") == 0) {
            /* A string "is iterable" in Jinja, so the template applies tojson to it. */
            puts_(w, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            put_json_string(w, m[i].content);
            puts_(w, "<|eot_id|>");
        } else {
            render_llama_message(w, &m[i]);
        }
    }
    if (gen) puts_(w, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(writer *w, const ml_chat_template *t, const ml_chat_message *m, size_t n, int gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && t->default_system && strcmp(m[0].role, "system") != 0) {
            puts_(w, "<|im_start|>system\n");
            puts_(w, t->default_system);
            puts_(w, "<|im_end|>\n");
        }
        puts_(w, "<|im_start|>");
        puts_(w, m[i].role);
        puts_(w, "\n");
        puts_(w, m[i].content);
        puts_(w, "<|im_end|>\n");
    }
    if (gen) puts_(w, "<|im_start|>assistant\n");
}

/* The variables transformers passes to the template: messages, tools (NULL: None), documents
 * (None), add_generation_prompt, the special tokens, and date_string when the caller fixes the
 * date (the Llama 3.1+ templates read it; without it they call strftime_now or use their own
 * default). Takes the references to messages and tools. */
static json_t *jinja_context(const ml_chat_template *tmpl, json_t *messages, json_t *tools, const ml_chat_params *params,
                             int gen) {
    json_t *context = json_object();
    if (!context) {
        json_decref(messages);
        json_decref(tools);
        return NULL;
    }
    /* each json_object_set_new takes its value's reference, also when it fails */
    int failed = json_object_set_new(context, "messages", messages) != 0;
    failed |= json_object_set_new(context, "tools", tools ? tools : json_null()) != 0;
    failed |= json_object_set_new(context, "documents", json_null()) != 0;
    failed |= json_object_set_new(context, "add_generation_prompt", json_boolean(gen)) != 0;
    if (tmpl->bos_token[0]) failed |= json_object_set_new(context, "bos_token", json_string_nocheck(tmpl->bos_token)) != 0;
    if (tmpl->eos_token) failed |= json_object_set_new(context, "eos_token", json_string_nocheck(tmpl->eos_token)) != 0;
    if (params && params->date_string)
        failed |= json_object_set_new(context, "date_string", json_string_nocheck(params->date_string)) != 0;
    if (failed) {
        json_decref(context);
        return NULL;
    }
    return context;
}

static json_t *messages_to_json(const ml_chat_message *messages, size_t n_messages) {
    json_t *list = json_array();
    for (size_t i = 0; list && i < n_messages; i++) {
        json_t *message = json_object();
        /* _nocheck: the engine takes the bytes as they are, as Python would take the str */
        if (!message || json_array_append_new(list, message) != 0 ||
            json_object_set_new(message, "role", json_string_nocheck(messages[i].role)) != 0 ||
            json_object_set_new(message, "content", json_string_nocheck(messages[i].content)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static int render_jinja(const ml_chat_template *tmpl, json_t *messages, json_t *tools, const ml_chat_params *params,
                        int gen, char **out_text, size_t *out_length) {
    json_t *context = jinja_context(tmpl, messages, tools, params, gen);
    if (!context) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    int status = ml_jinja_render(tmpl->jinja, context, NULL, out_text, out_length);
    json_decref(context);
    return status;
}

static int render_builtin(const ml_chat_template *tmpl, const ml_chat_message *messages, size_t n_messages,
                          const ml_chat_params *params, int gen, char **out_text, size_t *out_length) {
    char today_text[32];
    const char *date = params && params->date_string ? params->date_string : today_text;
    if (date == today_text) today(today_text, sizeof today_text);
    writer w = {{0}, 0};
    switch (tmpl->format) {
    case FORMAT_LLAMA3: render_llama3(&w, tmpl, messages, n_messages, gen); break;
    case FORMAT_LLAMA31: render_llama31(&w, tmpl, messages, n_messages, gen, date); break;
    default: render_chatml(&w, tmpl, messages, n_messages, gen); break;
    }
    if (!w.failed && !w.buf.data) w.failed = ml_byte_buf_append(&w.buf, "", 0) != ML_OK;
    if (w.failed) {
        free(w.buf.data);
        return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    }
    *out_text = w.buf.data;
    if (out_length) *out_length = w.buf.n;
    return ML_OK;
}

int ml_chat_template_apply(const ml_chat_template *tmpl, const ml_chat_message *messages, size_t n_messages,
                           const ml_chat_params *params, char **out_text, size_t *out_length) {
    if (!out_text) return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply: out_text is NULL");
    *out_text = NULL;
    if (out_length) *out_length = 0;
    if (!tmpl || (!messages && n_messages))
        return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply: template or messages is NULL");
    if (n_messages == 0) return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply: no messages");
    for (size_t i = 0; i < n_messages; i++) {
        if (!messages[i].role || !messages[i].content)
            return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply: message %zu has no role or content", i);
    }
    int gen = params ? params->add_generation_prompt : 1;
    if (tmpl->jinja) {
        json_t *list = messages_to_json(messages, n_messages);
        if (!list) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
        int status = render_jinja(tmpl, list, NULL, params, gen, out_text, out_length);
        if (status != ML_ERR_UNSUPPORTED || !tmpl->format) return status;
        /* the template needs something the engine lacks: the recognised built-in format */
    }
    return render_builtin(tmpl, messages, n_messages, params, gen, out_text, out_length);
}

int ml_chat_template_apply_json(const ml_chat_template *tmpl, const char *messages_json, const char *tools_json,
                                const ml_chat_params *params, char **out_text, size_t *out_length) {
    if (!out_text) return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply_json: out_text is NULL");
    *out_text = NULL;
    if (out_length) *out_length = 0;
    if (!tmpl || !messages_json) return ml_set_error(ML_ERR_ARG, "ml_chat_template_apply_json: template or messages is NULL");
    json_error_t error;
    json_t *messages = json_loads(messages_json, 0, &error);
    if (!messages) return ml_set_error(ML_ERR_ARG, "chat messages JSON, line %d column %d: %s", error.line, error.column, error.text);
    size_t n = json_array_size(messages);
    int status = ML_OK;
    if (!json_is_array(messages) || n == 0) status = ml_set_error(ML_ERR_ARG, "chat messages JSON: expected a non-empty array");
    for (size_t i = 0; status == ML_OK && i < n; i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            status = ml_set_error(ML_ERR_ARG, "chat messages JSON: message %zu is not an object with a \"role\" string", i);
    }
    json_t *tools = NULL;
    if (status == ML_OK && tools_json) {
        tools = json_loads(tools_json, 0, &error);
        if (!tools) status = ml_set_error(ML_ERR_ARG, "chat tools JSON, line %d column %d: %s", error.line, error.column, error.text);
        else if (!json_is_array(tools)) status = ml_set_error(ML_ERR_ARG, "chat tools JSON: expected an array of tool schemas");
    }
    if (status != ML_OK) {
        json_decref(messages);
        json_decref(tools);
        return status;
    }
    int gen = params ? params->add_generation_prompt : 1;
    if (tmpl->jinja) {
        json_incref(messages);
        status = render_jinja(tmpl, messages, tools, params, gen, out_text, out_length);
        if (status != ML_ERR_UNSUPPORTED || !tmpl->format) {
            json_decref(messages);
            return status;
        }
    } else {
        json_decref(tools);
    }
    /* built-in format: role and content only, and content must be text */
    ml_chat_message *list = calloc(n, sizeof *list);
    status = list ? ML_OK : ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    for (size_t i = 0; status == ML_OK && i < n; i++) {
        json_t *m = json_array_get(messages, i);
        list[i].role = json_string_value(json_object_get(m, "role"));
        list[i].content = json_string_value(json_object_get(m, "content"));
        if (!list[i].content)
            status = ml_set_error(ML_ERR_UNSUPPORTED, "the built-in %s template renders text content only (message %zu)",
                                  format_names[tmpl->format], i);
    }
    if (status == ML_OK) status = render_builtin(tmpl, list, n, params, gen, out_text, out_length);
    free(list);
    json_decref(messages);
    return status;
}
