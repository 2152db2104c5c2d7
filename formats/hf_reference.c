/* MLHFREF1 reader (formats/hf_reference.h) on the golden-file reader (formats/golden.h), which
 * checks every size against the bytes present before allocating: a bad file is an
 * ML_ERR_FORMAT naming it, never a crash. */
#include "formats/hf_reference.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/golden.h"

#define MAX_VOCAB (1u << 22)
#define MAX_TOKENS (1u << 24)

static int parse(ml_golden_reader *in, ml_hf_reference *r) {
    ML_TRY(ml_golden_read_magic(in, ML_HF_REFERENCE_MAGIC, "Hugging Face logit reference"));
    uint32_t header[4]; /* version, vocab_size, n_prompt, n_generated */
    ML_TRY(ml_golden_read(in, header, sizeof header, "header"));
    uint32_t version = header[0], vocab = header[1], n_prompt = header[2], n_generated = header[3];
    if (version != 1 && version != 2)
        return ml_set_error(ML_ERR_FORMAT, "%s: version %u; expected 1 or 2", in->source, version);
    uint32_t v2[2] = {0, 0}; /* logits_first, start_pos */
    if (version == 2) ML_TRY(ml_golden_read(in, v2, sizeof v2, "version 2 header"));
    uint32_t logits_first = v2[0], start_pos = v2[1];
    if (vocab == 0 || vocab > MAX_VOCAB)
        return ml_set_error(ML_ERR_FORMAT, "%s: vocab_size %u; expected 1..%u", in->source, vocab, MAX_VOCAB);
    if (n_prompt == 0 || n_prompt > MAX_TOKENS || n_generated > MAX_TOKENS)
        return ml_set_error(ML_ERR_FORMAT, "%s: %u prompt and %u generated tokens; expected 1..%u and 0..%u",
                            in->source, n_prompt, n_generated, MAX_TOKENS, MAX_TOKENS);
    if (logits_first >= n_prompt || start_pos > MAX_TOKENS)
        return ml_set_error(ML_ERR_FORMAT, "%s: logits_first %u (expected below n_prompt %u) or start_pos %u out of range",
                            in->source, logits_first, n_prompt, start_pos);
    size_t rows = n_prompt - logits_first;
    r->version = (int)version;
    r->vocab_size = (int)vocab;
    r->n_prompt = (int)n_prompt;
    r->n_generated = (int)n_generated;
    r->logits_first = (int)logits_first;
    r->start_pos = (int)start_pos;
    ML_TRY(ml_golden_read_array(in, (void **)&r->prompt_ids, n_prompt, 4, "prompt"));
    ML_TRY(ml_golden_read_array(in, (void **)&r->generated_ids, n_generated, 4, "generated ids"));
    ML_TRY(ml_golden_read_array(in, (void **)&r->logits, rows * vocab, 4, "logits"));
    for (uint32_t i = 0; i < n_prompt + n_generated; i++) {
        int32_t id = i < n_prompt ? r->prompt_ids[i] : r->generated_ids[i - n_prompt];
        if (id < 0 || (uint32_t)id >= vocab)
            return ml_set_error(ML_ERR_FORMAT, "%s: token %u is %d, outside the vocabulary 0..%u", in->source, i, id,
                                vocab - 1);
    }
    return ML_OK;
}

static int parse_any(ml_golden_reader *in, void *out) { return parse(in, out); }
static void free_any(void *out) { ml_hf_reference_free(out); }
static const ml_golden_format format = {sizeof(ml_hf_reference), parse_any, free_any};

int ml_hf_reference_parse(const uint8_t *data, size_t size, const char *source, ml_hf_reference *out) {
    return ml_golden_parse(&format, data, size, source, out);
}

int ml_hf_reference_load(const char *path, ml_hf_reference *out) { return ml_golden_load(&format, path, out); }

void ml_hf_reference_free(ml_hf_reference *ref) {
    if (!ref) return;
    free(ref->prompt_ids);
    free(ref->generated_ids);
    free(ref->logits);
    memset(ref, 0, sizeof *ref);
}
