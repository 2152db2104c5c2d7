/* The tokenizer handle: opening by path, facts, encoding (added tokens, pre-tokenization, BPE,
 * post-processor tokens) and decoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_nfc.h"

int ml_tokenizer_alloc(const char *source, const char *format, ml_tokenizer **out) {
    ml_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
    tok->source = strdup(source);
    if (!tok->source) {
        free(tok);
        return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
    }
    tok->format = format;
    tok->unk_id = tok->bos_id = tok->eos_id = -1;
    for (int b = 0; b < 256; b++) tok->vocab.byte_token[b] = tok->byte_fallback_id[b] = -1;
    *out = tok;
    return ML_OK;
}

void ml_tokenizer_close(ml_tokenizer *tok) {
    if (!tok) return;
    ml_vocab_free(&tok->vocab);
    ml_pretok_free(&tok->pre);
    ml_added_free(&tok->added);
    free(tok->chat_template);
    free(tok->source);
    free(tok);
}

int ml_tokenizer_finish(ml_tokenizer *tok) {
    ml_added_finalize(&tok->added, &tok->vocab);
    if (!tok->pre.name[0]) ml_pretok_identify(&tok->pre);
    if (!ml_vocab_has(&tok->vocab, tok->bos_id)) tok->bos_id = -1;
    if (!ml_vocab_has(&tok->vocab, tok->eos_id)) tok->eos_id = -1;
    if (!ml_vocab_has(&tok->vocab, tok->unk_id)) tok->unk_id = -1;
    if (tok->spm) ML_TRY(ml_spm_check(tok, tok->source));
    if (tok->vocab.n_ids == 0) return ml_set_error(ML_ERR_FORMAT, "%s: the vocabulary is empty", tok->source);
    return ML_OK;
}

/* ---- facts ------------------------------------------------------------------------------ */

void ml_tokenizer_get_info(const ml_tokenizer *tok, ml_tokenizer_info *info) {
    memset(info, 0, sizeof *info);
    if (!tok) return;
    info->vocab_size = tok->vocab.n_ids;
    info->n_merges = tok->vocab.n_merges;
    info->n_added = tok->added.n;
    info->bos_id = tok->bos_id;
    info->eos_id = tok->eos_id;
    info->adds_bos = tok->n_prefix > 0 && tok->prefix[0] == tok->bos_id && tok->bos_id >= 0;
    info->n_prefix = tok->n_prefix;
    info->n_suffix = tok->n_suffix;
    info->format = tok->format;
    info->pre_tokenizer = tok->pre.name;
    info->source = tok->source;
}

int32_t ml_tokenizer_token_id(const ml_tokenizer *tok, const char *text, size_t length) {
    if (!tok || (!text && length)) return -1;
    for (int32_t i = 0; i < tok->added.n; i++) {
        const ml_added_token *t = &tok->added.tokens[i];
        if (t->length == length && length > 0 && memcmp(tok->vocab.bytes + t->offset, text, length) == 0) return t->id;
    }
    return ml_vocab_find(&tok->vocab, text, length);
}

int ml_tokenizer_token_bytes(const ml_tokenizer *tok, int32_t id, const char **bytes, size_t *length) {
    if (!tok || !ml_vocab_has(&tok->vocab, id))
        return ml_set_error(ML_ERR_ARG, "token id %d is not in the vocabulary (size %d)", (int)id,
                            tok ? (int)tok->vocab.n_ids : 0);
    *bytes = tok->vocab.bytes + tok->vocab.offset[id];
    *length = tok->vocab.length[id];
    return ML_OK;
}

int ml_tokenizer_is_special(const ml_tokenizer *tok, int32_t id) {
    return tok && ml_vocab_has(&tok->vocab, id) && (tok->vocab.flags[id] & ML_TOKF_SPECIAL) != 0;
}

const char *ml_tokenizer_chat_template(const ml_tokenizer *tok) { return tok ? tok->chat_template : NULL; }

/* ---- encoding --------------------------------------------------------------------------- */

/* Text between added tokens: normalised (NFC) where the tokenizer says so, then encoded. */
static int encode_segment(ml_encode_ctx *ctx, const ml_tokenizer *tok, const uint8_t *text, size_t length) {
    if (!tok->nfc) return ml_encode_plain(ctx, text, length);
    uint8_t *normal;
    size_t normal_length;
    ML_TRY(ml_nfc(text, length, &normal, &normal_length));
    if (!normal) return ml_encode_plain(ctx, text, length);
    int status = ml_encode_plain(ctx, normal, normal_length);
    free(normal);
    return status;
}

int ml_tokenize(const ml_tokenizer *tok, const char *text, size_t length, unsigned flags, int32_t **out_ids,
                size_t *out_n) {
    if (!out_ids || !out_n) return ml_set_error(ML_ERR_ARG, "ml_tokenize: out_ids and out_n must not be NULL");
    *out_ids = NULL;
    *out_n = 0;
    if (!tok || (!text && length)) return ml_set_error(ML_ERR_ARG, "ml_tokenize: tokenizer or text is NULL");
    ml_id_vec out = {0};
    ml_encode_ctx ctx;
    int status = ml_encode_ctx_init(&ctx, tok, &out, length);
    if (status != ML_OK) return status;
    const uint8_t *bytes = (const uint8_t *)text;
    if (flags & ML_TOKENIZE_ADD_SPECIAL) status = ml_id_vec_append(&out, tok->prefix, (size_t)tok->n_prefix);
    int parse_special = (flags & ML_TOKENIZE_PARSE_SPECIAL) != 0;
    size_t position = 0;
    if (tok->added.n > 0 && (parse_special || tok->added.has_plain)) {
        size_t start, end;
        int32_t id;
        while (status == ML_OK &&
               ml_added_find(&tok->added, bytes, length, position, parse_special, &start, &end, &id)) {
            ctx.at_text_start = position == 0;
            status = encode_segment(&ctx, tok, bytes + position, start - position);
            if (status == ML_OK) status = ml_id_vec_push(&out, id);
            position = end;
        }
    }
    ctx.at_text_start = position == 0;
    if (status == ML_OK) status = encode_segment(&ctx, tok, bytes + position, length - position);
    if (status == ML_OK && (flags & ML_TOKENIZE_ADD_SPECIAL))
        status = ml_id_vec_append(&out, tok->suffix, (size_t)tok->n_suffix);
    if (status == ML_OK && !out.data) {
        status = ml_id_vec_push(&out, 0); /* callers get a buffer even for no ids */
        out.n = 0;
    }
    ml_encode_ctx_free(&ctx);
    if (status != ML_OK) {
        free(out.data);
        if (status == ML_ERR_NOMEM) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory encoding %zu bytes", tok->source, length);
        return status;
    }
    *out_ids = out.data;
    *out_n = out.n;
    return ML_OK;
}

/* ---- decoding --------------------------------------------------------------------------- */

int ml_detokenize(const ml_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, char **out_text,
                  size_t *out_length) {
    if (!out_text) return ml_set_error(ML_ERR_ARG, "ml_detokenize: out_text must not be NULL");
    *out_text = NULL;
    if (out_length) *out_length = 0;
    if (!tok || (!ids && n)) return ml_set_error(ML_ERR_ARG, "ml_detokenize: tokenizer or ids is NULL");
    const ml_vocab *v = &tok->vocab;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ml_vocab_has(v, ids[i]))
            return ml_set_error(ML_ERR_ARG, "%s: token id %d (at index %zu) is not in the vocabulary (size %d)",
                                tok->source, (int)ids[i], i, (int)v->n_ids);
        total += v->length[ids[i]];
    }
    char *text = malloc(total + 1);
    if (!text) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory decoding %zu tokens", tok->source, n);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((flags & ML_DETOKENIZE_SKIP_SPECIAL) && (v->flags[id] & ML_TOKF_SPECIAL)) continue;
        memcpy(text + used, v->bytes + v->offset[id], v->length[id]);
        used += v->length[id];
    }
    /* HF's Strip / Metaspace decoder: the space the encoder put before the text goes again. */
    if (tok->spm_strip && used > 0 && text[0] == ' ') memmove(text, text + 1, --used);
    text[used] = '\0';
    *out_text = text;
    if (out_length) *out_length = used;
    return ML_OK;
}

/* ---- opening by path -------------------------------------------------------------------- */

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* A directory's tokenizer.json (else tokenizer.model), or path itself, and the directory it
 * is in; both malloc'd. */
static int find_tokenizer_file(const char *path, char **out_file, char **out_dir) {
    *out_file = *out_dir = NULL;
    if (ml_is_directory(path)) {
        *out_dir = strdup(path);
        *out_file = ml_path_join(path, "tokenizer.json");
        if (*out_file && !ml_file_exists(*out_file)) {
            free(*out_file);
            *out_file = ml_path_join(path, "tokenizer.model");
            if (*out_file && !ml_file_exists(*out_file))
                return ml_set_error(ML_ERR_IO, "%s: no tokenizer.json or tokenizer.model in this directory", path);
        }
    } else {
        if (!ml_file_exists(path)) return ml_set_error(ML_ERR_IO, "%s: no such tokenizer file or model directory", path);
        *out_file = strdup(path);
        const char *slash = strrchr(path, '/');
        *out_dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    }
    if (!*out_file || !*out_dir) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    return ML_OK;
}

/* tokenizer.json or tokenizer.model with the tokenizer_config.json and chat_template.jinja
 * beside it (a GGUF goes to ml_tokenizer_open_gguf). */
static int open_tokenizer_file(const char *file, const char *config_path, const char *jinja_path,
                               ml_tokenizer **out) {
    int json = ends_with(file, ".json");
    if (ends_with(file, ".gguf")) return ml_tokenizer_open_gguf(file, out);
    ml_mapped_file mapped;
    ML_TRY(ml_mapped_file_open(file, &mapped));
    if (!json && mapped.size >= 4 && memcmp(mapped.data, "GGUF", 4) == 0) {
        ml_mapped_file_close(&mapped);
        return ml_tokenizer_open_gguf(file, out);
    }
    char *config = NULL;
    size_t config_length = 0;
    int status = ML_OK;
    if (ml_file_exists(config_path) && strcmp(config_path, file) != 0)
        status = ml_read_text_file(config_path, &config, &config_length);
    ml_tokenizer *tok = NULL;
    if (status == ML_OK) {
        const char *data = mapped.data ? (const char *)mapped.data : "";
        status = json ? ml_tokenizer_load_hf_files(data, mapped.size, file, config, config_length, config_path, &tok)
                      : ml_tokenizer_load_tiktoken_files(data, mapped.size, file, config, config_length, config_path,
                                                         &tok);
    }
    free(config);
    ml_mapped_file_close(&mapped);
    /* transformers gives chat_template.jinja priority over tokenizer_config.json's template. */
    if (status == ML_OK && ml_file_exists(jinja_path)) {
        char *jinja = NULL;
        status = ml_read_text_file(jinja_path, &jinja, NULL);
        if (status == ML_OK) {
            free(tok->chat_template);
            tok->chat_template = jinja;
        }
    }
    if (status != ML_OK) {
        ml_tokenizer_close(tok);
        return status;
    }
    *out = tok;
    return ML_OK;
}

int ml_tokenizer_open(const char *path, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_open: no path given");
    char *file = NULL, *dir = NULL, *config_path = NULL, *jinja_path = NULL;
    int status = find_tokenizer_file(path, &file, &dir);
    if (status == ML_OK) {
        config_path = ml_path_join(dir, "tokenizer_config.json");
        jinja_path = ml_path_join(dir, "chat_template.jinja");
        status = config_path && jinja_path ? open_tokenizer_file(file, config_path, jinja_path, out)
                                           : ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    }
    free(file);
    free(dir);
    free(config_path);
    free(jinja_path);
    return status;
}
