/* Hugging Face logit references (MLHFREF1, versions 1 and 2), written by tools/make_fixtures.py
 * and tools/hf_logits.py (layout in docs/FIXTURES.md): a prompt, HF's greedy continuation and
 * HF's float32 logits for the last prompt positions. Read by the tests and tools/check_logits. */
#ifndef ML_FORMATS_HF_REFERENCE_H
#define ML_FORMATS_HF_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#define ML_HF_REFERENCE_MAGIC "MLHFREF1"

typedef struct {
    int version;           /* 1 or 2 */
    int vocab_size;
    int n_prompt;
    int n_generated;
    int logits_first;      /* first prompt index with a logits row (0 in version 1) */
    int start_pos;         /* position id of prompt_ids[0] (0 in version 1) */
    int32_t *prompt_ids;   /* [n_prompt] */
    int32_t *generated_ids; /* [n_generated] HF's greedy continuation */
    float *logits;         /* [n_prompt - logits_first, vocab_size] */
} ml_hf_reference;

/* Parses a reference image in memory; source names it in messages. */
int ml_hf_reference_parse(const uint8_t *data, size_t size, const char *source, ml_hf_reference *out);
int ml_hf_reference_load(const char *path, ml_hf_reference *out);
void ml_hf_reference_free(ml_hf_reference *ref);

#endif
