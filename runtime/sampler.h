/* Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling with a
 * seeded generator (the same seed gives the same tokens). */
#ifndef ML_RUNTIME_SAMPLER_H
#define ML_RUNTIME_SAMPLER_H

#include <stdint.h>

#include "meshllama.h"

typedef struct {
    float temperature;
    int top_k;
    float top_p;
    uint64_t rng_state;
    int vocab_size;
    int32_t *order;  /* [vocab] candidate indices (owned) */
    float *probs;    /* [vocab] (owned) */
    void *candidates; /* [vocab] (logit, index) pairs for sorting (owned) */
} ml_sampler;

int ml_sampler_init(ml_sampler *s, const ml_sampling_params *params, int vocab_size);
void ml_sampler_free(ml_sampler *s);
/* Returns the chosen token id for logits [vocab]. */
int32_t ml_sampler_pick(ml_sampler *s, const float *logits);
/* Index of the largest logit; the lowest index on ties (as torch.argmax). */
int32_t ml_argmax(const float *logits, int n);
/* The k largest logits' indices, best first; ties by lower index. k <= n. */
void ml_top_k_indices(const float *logits, int n, int k, int32_t *out);

#endif
