/* MLHFREF1 reader (formats/hf_reference.h). Every size is checked against the bytes present
 * before anything is allocated, so a bad file is an ML_ERR_FORMAT naming it, never a crash. */
#include "formats/hf_reference.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapped_file.h"

#define MAX_VOCAB (1u << 22)
#define MAX_TOKENS (1u << 24)

static uint32_t read_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Copies count elements of 4 bytes at data + *offset into a new array. */
static int take_array(const uint8_t *data, size_t *offset, size_t count, void **dst, const char *source,
                      const char *what) {
    *dst = malloc(count ? count * 4 : 4);
    if (!*dst) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %s", source, what);
    memcpy(*dst, data + *offset, count * 4);
    *offset += count * 4;
    return ML_OK;
}

static int parse(const uint8_t *data, size_t size, const char *source, ml_hf_reference *r) {
    const size_t v1_header = 8 + 4 * 4;
    if (size < 8 || memcmp(data, ML_HF_REFERENCE_MAGIC, 8) != 0)
        return ml_set_error(ML_ERR_FORMAT, "%s: not a Hugging Face logit reference (magic is not %s)", source,
                            ML_HF_REFERENCE_MAGIC);
    if (size < v1_header)
        return ml_set_error(ML_ERR_FORMAT, "%s: truncated header (%zu bytes)", source, size);
    uint32_t version = read_u32(data + 8), vocab = read_u32(data + 12), n_prompt = read_u32(data + 16),
             n_generated = read_u32(data + 20);
    if (version != 1 && version != 2)
        return ml_set_error(ML_ERR_FORMAT, "%s: version %u; expected 1 or 2", source, version);
    size_t offset = v1_header;
    uint32_t logits_first = 0, start_pos = 0;
    if (version == 2) {
        if (size < offset + 8) return ml_set_error(ML_ERR_FORMAT, "%s: truncated version 2 header", source);
        logits_first = read_u32(data + offset);
        start_pos = read_u32(data + offset + 4);
        offset += 8;
    }
    if (vocab == 0 || vocab > MAX_VOCAB)
        return ml_set_error(ML_ERR_FORMAT, "%s: vocab_size %u; expected 1..%u", source, vocab, MAX_VOCAB);
    if (n_prompt == 0 || n_prompt > MAX_TOKENS || n_generated > MAX_TOKENS)
        return ml_set_error(ML_ERR_FORMAT, "%s: %u prompt and %u generated tokens; expected 1..%u and 0..%u", source,
                            n_prompt, n_generated, MAX_TOKENS, MAX_TOKENS);
    if (logits_first >= n_prompt || start_pos > MAX_TOKENS)
        return ml_set_error(ML_ERR_FORMAT, "%s: logits_first %u (expected below n_prompt %u) or start_pos %u out of range",
                            source, logits_first, n_prompt, start_pos);
    size_t rows = n_prompt - logits_first;
    size_t need = offset + 4 * ((size_t)n_prompt + n_generated + rows * vocab);
    if (size < need)
        return ml_set_error(ML_ERR_FORMAT, "%s: truncated: %zu bytes, the header implies %zu", source, size, need);
    r->version = (int)version;
    r->vocab_size = (int)vocab;
    r->n_prompt = (int)n_prompt;
    r->n_generated = (int)n_generated;
    r->logits_first = (int)logits_first;
    r->start_pos = (int)start_pos;
    ML_TRY(take_array(data, &offset, n_prompt, (void **)&r->prompt_ids, source, "the prompt"));
    ML_TRY(take_array(data, &offset, n_generated, (void **)&r->generated_ids, source, "the generated ids"));
    ML_TRY(take_array(data, &offset, rows * vocab, (void **)&r->logits, source, "the logits"));
    for (uint32_t i = 0; i < n_prompt + n_generated; i++) {
        int32_t id = i < n_prompt ? r->prompt_ids[i] : r->generated_ids[i - n_prompt];
        if (id < 0 || (uint32_t)id >= vocab)
            return ml_set_error(ML_ERR_FORMAT, "%s: token %u is %d, outside the vocabulary 0..%u", source, i, id,
                                vocab - 1);
    }
    return ML_OK;
}

int ml_hf_reference_parse(const uint8_t *data, size_t size, const char *source, ml_hf_reference *out) {
    memset(out, 0, sizeof *out);
    int status = parse(data, size, source, out);
    if (status != ML_OK) ml_hf_reference_free(out);
    return status;
}

int ml_hf_reference_load(const char *path, ml_hf_reference *out) {
    memset(out, 0, sizeof *out);
    ml_mapped_file file;
    ML_TRY(ml_mapped_file_open(path, &file));
    int status = ml_hf_reference_parse(file.data, file.size, path, out);
    ml_mapped_file_close(&file);
    return status;
}

void ml_hf_reference_free(ml_hf_reference *ref) {
    if (!ref) return;
    free(ref->prompt_ids);
    free(ref->generated_ids);
    free(ref->logits);
    memset(ref, 0, sizeof *ref);
}
