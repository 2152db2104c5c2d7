/* Teacher-forcing reference files written by tools/hf_reference.py (docs/EVAL_REFERENCE.md):
 * the prompt, Hugging Face's greedy tokens, HF's top-k ids at every step and HF's logits for
 * the first steps. */
#ifndef ML_FORMATS_EVAL_REFERENCE_H
#define ML_FORMATS_EVAL_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#define ML_EVAL_REFERENCE_MAGIC "MLEVREF1"

struct ml_eval_reference {
    int vocab_size;
    int n_prompt;
    int n_decode;          /* reference tokens (teacher-forcing steps) */
    int top_k;             /* HF ids stored per step (5) */
    int n_logit_steps;     /* steps with full HF logits */
    char *meta_json;       /* NUL-terminated metadata (model, prompt, versions) */
    int32_t *prompt;       /* [n_prompt] */
    int32_t *tokens;       /* [n_decode] HF greedy tokens */
    int32_t *top_ids;      /* [n_decode, top_k] HF's best ids at each step, best first */
    float *top_logits;     /* [n_decode, top_k] */
    float *logits;         /* [n_logit_steps, vocab_size] */
};
typedef struct ml_eval_reference ml_eval_reference;

/* Parses a reference image in memory; source names it in messages. */
int ml_eval_reference_parse(const uint8_t *data, size_t size, const char *source, ml_eval_reference *out);
int ml_eval_reference_load(const char *path, ml_eval_reference *out);
void ml_eval_reference_free(ml_eval_reference *ref);

#endif
