/* MLEVREF1 reader (formats/eval_reference.h) on the golden-file reader (formats/golden.h). */
#include "formats/eval_reference.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/golden.h"

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

static int parse(ml_golden_reader *c, ml_eval_reference *r) {
    uint32_t h[7] = {0}; /* version, vocab, prompt, decode, top_k, logit steps, meta bytes */
    ML_TRY(ml_golden_read_magic(c, ML_EVAL_REFERENCE_MAGIC, "meshllama eval reference"));
    ML_TRY(ml_golden_read(c, h, sizeof h, "the header"));
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
    ML_TRY(ml_golden_read_string(c, &r->meta_json, h[6], "the metadata"));
    ML_TRY(ml_golden_read_array(c, (void **)&r->prompt, (size_t)r->n_prompt, 4, "the prompt ids"));
    ML_TRY(ml_golden_read_array(c, (void **)&r->tokens, (size_t)r->n_decode, 4, "the reference tokens"));
    ML_TRY(ml_golden_read_array(c, (void **)&r->top_ids, (size_t)r->n_decode * r->top_k, 4, "the top-k ids"));
    ML_TRY(ml_golden_read_array(c, (void **)&r->top_logits, (size_t)r->n_decode * r->top_k, 4, "the top-k logits"));
    ML_TRY(ml_golden_read_array(c, (void **)&r->logits, (size_t)r->n_logit_steps * r->vocab_size, 4, "the logits"));
    ML_TRY(ml_golden_expect_end(c, "the logits"));
    ML_TRY(check_ids(c->source, "prompt", r->prompt, (size_t)r->n_prompt, r->vocab_size));
    ML_TRY(check_ids(c->source, "tokens", r->tokens, (size_t)r->n_decode, r->vocab_size));
    ML_TRY(check_ids(c->source, "top_ids", r->top_ids, (size_t)r->n_decode * r->top_k, r->vocab_size));
    for (int i = 0; i < r->n_decode; i++)
        if (r->top_ids[(size_t)i * r->top_k] != r->tokens[i])
            return ml_set_error(ML_ERR_FORMAT, "%s: step %d: greedy token %d is not HF's top-1 id %d", c->source, i,
                                (int)r->tokens[i], (int)r->top_ids[(size_t)i * r->top_k]);
    return ML_OK;
}

static int parse_any(ml_golden_reader *c, void *out) { return parse(c, out); }
static void free_any(void *out) { ml_eval_reference_free(out); }
static const ml_golden_format format = {sizeof(ml_eval_reference), parse_any, free_any};

int ml_eval_reference_parse(const uint8_t *data, size_t size, const char *source, ml_eval_reference *out) {
    return ml_golden_parse(&format, data, size, source, out);
}

int ml_eval_reference_load(const char *path, ml_eval_reference *out) { return ml_golden_load(&format, path, out); }
