/* One sequence's generation state besides the model: its sampler, its tokens so far (for the
 * penalties), the ids that end it, its text stream, and the step that chooses its next token.
 * Shared by the one-sequence loop (runtime/generate.c) and the continuous-batching generator
 * (runtime/generator.c), so both sample, stop and stream text the same way. */
#ifndef ML_RUNTIME_GENERATION_H
#define ML_RUNTIME_GENERATION_H

#include <stdint.h>

#include "meshllama.h"
#include "runtime/sampler.h"
#include "runtime/text_stream.h"

enum { ML_GENERATION_MAX_END_IDS = 64, ML_GENERATION_MAX_STOP_TOKENS = 64 };

typedef struct {
    ml_sampler sampler;
    float *logits;           /* [vocab] */
    int32_t *sequence;       /* [n_prompt + max_tokens]: prompt then generated, for the penalties */
    int32_t end_ids[ML_GENERATION_MAX_END_IDS + ML_GENERATION_MAX_STOP_TOKENS];
    int n_end;
    ml_text_stream text;     /* text mode only */
    int text_mode;
    int32_t top_ids[ML_MAX_TOP_LOGPROBS];
    float top_logprobs[ML_MAX_TOP_LOGPROBS];
} ml_generation;

/* What rank 0 decided for one step; broadcast as it is to the other ranks. */
typedef struct {
    int32_t token;
    int32_t finish; /* 0: go on, else ml_finish_reason + 1 */
    int32_t stop_string;
} ml_decision;

/* Adds id to ids[0..n) unless present or negative; returns the new count (may exceed capacity). */
int ml_generation_add_id(int32_t *ids, int n, int capacity, int32_t id);

/* text_mode: tok decodes the text (flags: ML_DETOKENIZE_*) and stop strings apply. */
int ml_generation_init(ml_generation *g, const ml_model *model, const ml_tokenizer *tok, const int32_t *prompt,
                       int n_prompt, const ml_sampling_params *sp, unsigned flags, int text_mode);
void ml_generation_free(ml_generation *g);

/* Rank 0: chooses generated token i from logits [vocab], decodes its text and calls the
 * callbacks (either may be NULL); d says whether the generation ends there and why. */
int ml_generation_decide(ml_generation *g, const ml_sampling_params *sp, const float *logits, int n_prompt, int i,
                         ml_token_callback token_callback, ml_event_callback event_callback, void *user,
                         ml_decision *d);

#endif
