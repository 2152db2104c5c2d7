#include "formats/eval_reference.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapped_file.h"

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t at;
    const char *source;
} cursor;

static int take(cursor *c, void *dst, size_t bytes, const char *what) {
    if (bytes > c->size - c->at)
        return ml_set_error(ML_ERR_FORMAT, "%s: truncated while reading %s (need %zu bytes at offset %zu, file has %zu)",
                            c->source, what, bytes, c->at, c->size);
    memcpy(dst, c->data + c->at, bytes);
    c->at += bytes;
    return ML_OK;
}

static int take_array(cursor *c, void **dst, size_t count, size_t element, const char *what) {
    size_t bytes = count * element;
    if (count != 0 && bytes / count != element) return ml_set_error(ML_ERR_FORMAT, "%s: %s size overflows", c->source, what);
    *dst = malloc(bytes ? bytes : 1);
    if (!*dst) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %s", c->source, what);
    return take(c, *dst, bytes, what);
}

void ml_eval_reference_free(ml_eval_reference *ref) {
    if (!ref) return;
    free(ref->meta_json);
    free(ref->prompt);
    free(ref->tokens);
    free(ref->top_ids);
    free(ref->top_logits);
    free(ref->logits);
    memset(ref, 0, sizeof *ref);
}

static int check_ids(const char *source, const char *what, const int32_t *ids, size_t n, int vocab) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return ml_set_error(ML_ERR_FORMAT, "%s: %s[%zu] = %d is outside the vocabulary 0..%d", source, what, i,
                                (int)ids[i], vocab - 1);
    return ML_OK;
}

static int parse(cursor *c, ml_eval_reference *r) {
    char magic[8] = {0};
    uint32_t h[7] = {0};
    ML_TRY(take(c, magic, 8, "the magic"));
    if (memcmp(magic, ML_EVAL_REFERENCE_MAGIC, 8) != 0)
        return ml_set_error(ML_ERR_FORMAT, "%s: not a meshllama eval reference (magic is not %s)", c->source,
                            ML_EVAL_REFERENCE_MAGIC);
    ML_TRY(take(c, h, sizeof h, "the header"));
    if (h[0] != 1) return ml_set_error(ML_ERR_FORMAT, "%s: version %u; expected 1", c->source, h[0]);
    if (h[1] == 0 || h[1] > (1u << 24) || h[2] == 0 || h[2] > (1u << 24) || h[3] > (1u << 24) || h[4] == 0 ||
        h[4] > 64 || h[5] > h[3] || h[6] > (1u << 20))
        return ml_set_error(ML_ERR_FORMAT,
                            "%s: header out of range (vocab %u, prompt %u, decode %u, top_k %u, logit steps %u, "
                            "meta %u bytes)",
                            c->source, h[1], h[2], h[3], h[4], h[5], h[6]);
    r->vocab_size = (int)h[1];
    r->n_prompt = (int)h[2];
    r->n_decode = (int)h[3];
    r->top_k = (int)h[4];
    r->n_logit_steps = (int)h[5];
    if ((size_t)r->top_k > (size_t)r->vocab_size)
        return ml_set_error(ML_ERR_FORMAT, "%s: top_k %d exceeds the vocabulary %d", c->source, r->top_k, r->vocab_size);
    r->meta_json = malloc(h[6] + 1);
    if (!r->meta_json) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", c->source);
    ML_TRY(take(c, r->meta_json, h[6], "the metadata"));
    r->meta_json[h[6]] = '\0';
    ML_TRY(take_array(c, (void **)&r->prompt, (size_t)r->n_prompt, 4, "the prompt ids"));
    ML_TRY(take_array(c, (void **)&r->tokens, (size_t)r->n_decode, 4, "the reference tokens"));
    ML_TRY(take_array(c, (void **)&r->top_ids, (size_t)r->n_decode * r->top_k, 4, "the top-k ids"));
    ML_TRY(take_array(c, (void **)&r->top_logits, (size_t)r->n_decode * r->top_k, 4, "the top-k logits"));
    ML_TRY(take_array(c, (void **)&r->logits, (size_t)r->n_logit_steps * r->vocab_size, 4, "the logits"));
    if (c->at != c->size)
        return ml_set_error(ML_ERR_FORMAT, "%s: %zu unexpected bytes after the logits", c->source, c->size - c->at);
    ML_TRY(check_ids(c->source, "prompt", r->prompt, (size_t)r->n_prompt, r->vocab_size));
    ML_TRY(check_ids(c->source, "tokens", r->tokens, (size_t)r->n_decode, r->vocab_size));
    ML_TRY(check_ids(c->source, "top_ids", r->top_ids, (size_t)r->n_decode * r->top_k, r->vocab_size));
    for (int i = 0; i < r->n_decode; i++)
        if (r->top_ids[(size_t)i * r->top_k] != r->tokens[i])
            return ml_set_error(ML_ERR_FORMAT, "%s: step %d: greedy token %d is not HF's top-1 id %d", c->source, i,
                                (int)r->tokens[i], (int)r->top_ids[(size_t)i * r->top_k]);
    return ML_OK;
}

int ml_eval_reference_parse(const uint8_t *data, size_t size, const char *source, ml_eval_reference *out) {
    memset(out, 0, sizeof *out);
    cursor c = {data, size, 0, source};
    int status = parse(&c, out);
    if (status != ML_OK) ml_eval_reference_free(out);
    return status;
}

int ml_eval_reference_load(const char *path, ml_eval_reference *out) {
    memset(out, 0, sizeof *out);
    ml_mapped_file file;
    ML_TRY(ml_mapped_file_open(path, &file));
    int status = ml_eval_reference_parse(file.data, file.size, path, out);
    ml_mapped_file_close(&file);
    return status;
}
