/* Choosing the next token from logits. The logits pass through the processors in a fixed
 * order (docs/SAMPLING.md), each one matching its Hugging Face / OpenAI definition:
 *   logit bias, repetition penalty (HF), presence and frequency penalties (OpenAI),
 *   banned ids (min_tokens), then greedy argmax, or
 *   temperature, top-k, top-p, min-p, typical-p (HF's warper order) and a seeded draw.
 * The same seed gives the same tokens. */
#ifndef ML_RUNTIME_SAMPLER_H
#define ML_RUNTIME_SAMPLER_H

#include <stdint.h>

#include "meshllama.h"

typedef struct {
    float score;   /* the processed logit */
    int32_t index; /* token id */
} ml_candidate;

typedef struct {
    ml_sampling_params params; /* validated copy (pointers borrowed from the caller) */
    uint64_t rng_state;
    int vocab_size;
    float *scores;            /* [vocab] processed logits (owned) */
    ml_candidate *candidates; /* [vocab] tokens still allowed, then sorted (owned) */
    double *probs;            /* [vocab] probabilities of the candidates (owned) */
    int32_t *counts;          /* [vocab] occurrences in the penalty window, zero between calls (owned) */
    int n_candidates;
} ml_sampler;

/* The sequence a token is chosen for. */
typedef struct {
    const int32_t *tokens; /* prompt then generated tokens */
    int n_tokens;
    int n_prompt;          /* the first n_prompt of tokens are the prompt */
    const int32_t *banned; /* ids that may not be chosen now (end-of-generation ids under min_tokens) */
    int n_banned;
} ml_sampler_context;

/* Checks the parameters (ML_ERR_ARG naming the field) and allocates for vocab_size. */
int ml_sampler_init(ml_sampler *s, const ml_sampling_params *params, int vocab_size);
void ml_sampler_free(ml_sampler *s);
/* Returns the chosen token id for logits [vocab]; ctx may be NULL (no history, nothing banned). */
int32_t ml_sampler_pick(ml_sampler *s, const float *logits, const ml_sampler_context *ctx);
/* The distribution ml_sampler_pick draws from, for tests: probs [vocab] gets each token's
 * probability, 0 for removed tokens (greedy: 1 for the argmax). Returns the number kept. */
int ml_sampler_distribution(ml_sampler *s, const float *logits, const ml_sampler_context *ctx, double *probs);
/* Log-softmax of logits[vocab] at token, and the k best tokens with theirs (k <= vocab), in double. */
void ml_logprobs(const float *logits, int vocab, int32_t token, int k, float *token_logprob, int32_t *top_ids,
                 float *top_logprobs);
/* Index of the largest logit; the lowest index on ties (as torch.argmax). */
int32_t ml_argmax(const float *logits, int n);
/* The k largest logits' indices, best first; ties by lower index. k <= n. */
void ml_top_k_indices(const float *logits, int n, int k, int32_t *out);

#endif
