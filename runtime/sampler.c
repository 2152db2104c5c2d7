#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

ml_sampling_params ml_sampling_default_params(void) {
    ml_sampling_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 42;
    p.max_tokens = 32;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.repeat_last_n = 64;
    return p;
}

int32_t ml_argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static int better(const float *logits, int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

void ml_top_k_indices(const float *logits, int n, int k, int32_t *out) {
    /* insertion into a sorted list of k: k is small (5 for eval, top_k for sampling) */
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && !better(logits, i, out[k - 1])) continue;
        int at = have < k ? have++ : k - 1;
        while (at > 0 && better(logits, i, out[at - 1])) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = i;
    }
}

static int check_params(const ml_sampling_params *p, int vocab_size) {
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ml_set_error(ML_ERR_ARG, "temperature %g: expected a finite value >= 0", (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ml_set_error(ML_ERR_ARG, "top_p %g: expected a value in (0, 1]", (double)p->top_p);
    if (p->top_k < 0) return ml_set_error(ML_ERR_ARG, "top_k %d: expected >= 0 (0 disables it)", p->top_k);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ml_set_error(ML_ERR_ARG, "min_p %g: expected a value in [0, 1] (0 disables it)", (double)p->min_p);
    if (!(p->typical_p >= 0.0f && p->typical_p <= 1.0f))
        return ml_set_error(ML_ERR_ARG, "typical_p %g: expected a value in (0, 1] (1 disables it)",
                            (double)p->typical_p);
    if (!(p->repeat_penalty >= 0.0f) || !isfinite(p->repeat_penalty))
        return ml_set_error(ML_ERR_ARG, "repeat_penalty %g: expected a finite value > 0 (1 disables it)",
                            (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 100.0f)
        return ml_set_error(ML_ERR_ARG, "presence_penalty %g: expected a value in -100..100 (0 disables it)",
                            (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 100.0f)
        return ml_set_error(ML_ERR_ARG, "frequency_penalty %g: expected a value in -100..100 (0 disables it)",
                            (double)p->frequency_penalty);
    if (p->repeat_last_n < -1)
        return ml_set_error(ML_ERR_ARG, "repeat_last_n %d: expected -1 (whole sequence), 0 (off) or a count",
                            p->repeat_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return ml_set_error(ML_ERR_ARG, "logit_bias: %d entries but no array", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        const ml_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= vocab_size)
            return ml_set_error(ML_ERR_ARG, "logit_bias[%d]: token %d is outside the vocabulary 0..%d", i,
                                (int)b->token, vocab_size - 1);
        if (isnan(b->bias) || b->bias == INFINITY)
            return ml_set_error(ML_ERR_ARG, "logit_bias[%d]: bias %g for token %d: expected a number or -inf (ban)",
                                i, (double)b->bias, (int)b->token);
    }
    if (p->min_tokens < 0) return ml_set_error(ML_ERR_ARG, "min_tokens %d: expected >= 0", p->min_tokens);
    if (p->top_logprobs < 0 || p->top_logprobs > ML_MAX_TOP_LOGPROBS)
        return ml_set_error(ML_ERR_ARG, "top_logprobs %d: expected 0..%d", p->top_logprobs, ML_MAX_TOP_LOGPROBS);
    return ML_OK;
}

int ml_sampler_init(ml_sampler *s, const ml_sampling_params *p, int vocab_size) {
    memset(s, 0, sizeof *s);
    if (vocab_size < 1) return ml_set_error(ML_ERR_ARG, "sampler: vocab_size %d: expected >= 1", vocab_size);
    ML_TRY(check_params(p, vocab_size));
    s->params = *p;
    /* zero-filled structs (callers from before these fields existed) mean "off" */
    if (s->params.typical_p == 0.0f) s->params.typical_p = 1.0f;
    if (s->params.repeat_penalty == 0.0f) s->params.repeat_penalty = 1.0f;
    s->rng_state = p->seed ? p->seed : 0x853c49e6748fea9bull;
    s->vocab_size = vocab_size;
    s->scores = malloc((size_t)vocab_size * sizeof *s->scores);
    s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
    s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
    s->counts = calloc((size_t)vocab_size, sizeof *s->counts);
    if (!s->scores || !s->candidates || !s->probs || !s->counts) {
        ml_sampler_free(s);
        return ml_set_error(ML_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d", vocab_size);
    }
    return ML_OK;
}

void ml_sampler_free(ml_sampler *s) {
    free(s->scores);
    free(s->candidates);
    free(s->probs);
    free(s->counts);
    s->scores = NULL;
    s->candidates = NULL;
    s->probs = NULL;
    s->counts = NULL;
}

/* splitmix64: a uniform double in [0, 1) */
static double next_uniform(ml_sampler *s) {
    uint64_t z = (s->rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 53);
}

/* ---- processors on the full score vector ------------------------------------------------ */

/* HF RepetitionPenaltyLogitsProcessor on every distinct token of the window (prompt included),
 * then OpenAI's presence/frequency penalties on the generated tokens of the window:
 *   score -= count * frequency_penalty + (count > 0) * presence_penalty. */
static void apply_penalties(ml_sampler *s, const ml_sampler_context *ctx) {
    const ml_sampling_params *p = &s->params;
    if (!ctx || ctx->n_tokens <= 0 || p->repeat_last_n == 0) return;
    int begin = p->repeat_last_n < 0 || p->repeat_last_n >= ctx->n_tokens ? 0 : ctx->n_tokens - p->repeat_last_n;
    const int32_t *t = ctx->tokens;
    int32_t *counts = s->counts;
    if (p->repeat_penalty != 1.0f) {
        for (int i = begin; i < ctx->n_tokens; i++) {
            if (t[i] < 0 || t[i] >= s->vocab_size || counts[t[i]]) continue;
            counts[t[i]] = 1;
            float v = s->scores[t[i]];
            s->scores[t[i]] = v < 0.0f ? v * p->repeat_penalty : v / p->repeat_penalty;
        }
        for (int i = begin; i < ctx->n_tokens; i++)
            if (t[i] >= 0 && t[i] < s->vocab_size) counts[t[i]] = 0;
    }
    if (p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f) {
        int first = begin > ctx->n_prompt ? begin : ctx->n_prompt;
        for (int i = first; i < ctx->n_tokens; i++)
            if (t[i] >= 0 && t[i] < s->vocab_size) counts[t[i]]++;
        for (int i = first; i < ctx->n_tokens; i++) {
            if (t[i] < 0 || t[i] >= s->vocab_size || counts[t[i]] == 0) continue;
            s->scores[t[i]] -= (float)counts[t[i]] * p->frequency_penalty + p->presence_penalty;
            counts[t[i]] = 0;
        }
    }
}

/* Logit bias, penalties and banned ids: what greedy decoding sees too. */
static void process_scores(ml_sampler *s, const float *logits, const ml_sampler_context *ctx) {
    const ml_sampling_params *p = &s->params;
    memcpy(s->scores, logits, (size_t)s->vocab_size * sizeof *s->scores);
    for (int i = 0; i < p->n_logit_bias; i++) s->scores[p->logit_bias[i].token] += p->logit_bias[i].bias;
    apply_penalties(s, ctx);
    if (ctx)
        for (int i = 0; i < ctx->n_banned; i++)
            if (ctx->banned[i] >= 0 && ctx->banned[i] < s->vocab_size) s->scores[ctx->banned[i]] = -INFINITY;
}

/* ---- warpers on the candidate list -------------------------------------------------------- */

static int by_score_desc(const void *a, const void *b) {
    const ml_candidate *ca = a, *cb = b;
    if (ca->score > cb->score) return -1;
    if (ca->score < cb->score) return 1;
    return (ca->index > cb->index) - (ca->index < cb->index);
}

/* probs[i] = softmax over the candidates' scores, in double; returns the largest probability. */
static void softmax_candidates(ml_sampler *s) {
    double max_score = -INFINITY, total = 0.0;
    for (int i = 0; i < s->n_candidates; i++)
        if (s->candidates[i].score > max_score) max_score = s->candidates[i].score;
    for (int i = 0; i < s->n_candidates; i++) total += s->probs[i] = exp((double)s->candidates[i].score - max_score);
    for (int i = 0; i < s->n_candidates; i++) s->probs[i] /= total;
}

/* HF TopKLogitsWarper: removes scores below the k-th largest (ties with it stay). Leaves the
 * candidates sorted by score, best first. */
static void warp_top_k(ml_sampler *s, int k) {
    int n = s->n_candidates;
    if (k >= 256 || k >= n) {
        qsort(s->candidates, (size_t)n, sizeof *s->candidates, by_score_desc);
        if (k < n) {
            int keep = k;
            while (keep < n && s->candidates[keep].score == s->candidates[k - 1].score) keep++;
            s->n_candidates = keep;
        }
        return;
    }
    /* small k: insertion into the k best, then the ties of the k-th that came later */
    ml_candidate *c = s->candidates;
    ml_candidate best[256];
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && by_score_desc(&c[i], &best[k - 1]) >= 0) continue;
        int at = have < k ? have++ : k - 1;
        while (at > 0 && by_score_desc(&c[i], &best[at - 1]) < 0) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = c[i];
    }
    /* ties of the k-th that came later (c[] is in index order): gather them at the front, then
     * move them behind the k best */
    ml_candidate last = best[k - 1];
    int ties = 0;
    for (int i = 0; i < n; i++)
        if (c[i].score == last.score && c[i].index > last.index) c[ties++] = c[i];
    memmove(c + k, c, (size_t)ties * sizeof *c);
    memcpy(c, best, (size_t)k * sizeof *c);
    int kept = k + ties;
    s->n_candidates = kept;
}

/* HF TopPLogitsWarper: keeps the most likely tokens until their probability reaches top_p
 * (a token is removed when the tokens above it already hold >= top_p); at least one stays.
 * Needs the candidates sorted, best first. */
static void warp_top_p(ml_sampler *s, double top_p) {
    softmax_candidates(s);
    double before = 0.0;
    int keep = s->n_candidates;
    for (int i = 0; i < s->n_candidates; i++) {
        if (i > 0 && before >= top_p) {
            keep = i;
            break;
        }
        before += s->probs[i];
    }
    s->n_candidates = keep;
}

/* HF MinPLogitsWarper: removes tokens less likely than min_p times the most likely one. */
static void warp_min_p(ml_sampler *s, double min_p) {
    softmax_candidates(s);
    double top = 0.0;
    int top_at = 0;
    for (int i = 0; i < s->n_candidates; i++)
        if (s->probs[i] > top) {
            top = s->probs[i];
            top_at = i;
        }
    double threshold = min_p * top;
    int kept = 0;
    for (int i = 0; i < s->n_candidates; i++)
        if (s->probs[i] >= threshold || i == top_at) s->candidates[kept++] = s->candidates[i];
    s->n_candidates = kept;
}

typedef struct {
    double shift; /* |-log p - entropy| */
    ml_candidate c;
    double p;
} typical_entry;

static int by_shift(const void *a, const void *b) {
    const typical_entry *x = a, *y = b;
    if (x->shift < y->shift) return -1;
    if (x->shift > y->shift) return 1;
    return (x->c.index > y->c.index) - (x->c.index < y->c.index);
}

/* HF TypicalLogitsWarper: orders tokens by how far their information content is from the
 * entropy, keeps the closest ones until their probability reaches mass (at least one). */
static int warp_typical(ml_sampler *s, double mass) {
    int n = s->n_candidates;
    typical_entry *e = malloc((size_t)n * sizeof *e);
    if (!e) return ml_set_error(ML_ERR_NOMEM, "sampler: out of memory for typical-p over %d tokens", n);
    softmax_candidates(s);
    double entropy = 0.0;
    for (int i = 0; i < n; i++)
        if (s->probs[i] > 0.0) entropy -= s->probs[i] * log(s->probs[i]);
    for (int i = 0; i < n; i++) {
        e[i].c = s->candidates[i];
        e[i].p = s->probs[i];
        e[i].shift = s->probs[i] > 0.0 ? fabs(-log(s->probs[i]) - entropy) : INFINITY;
    }
    qsort(e, (size_t)n, sizeof *e, by_shift);
    double cumulative = 0.0;
    int last = 0;
    while (last < n && (cumulative += e[last].p) < mass) last++;
    if (last >= n) last = n - 1;
    double limit = e[last].shift;
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || e[i].shift <= limit) s->candidates[kept++] = e[i].c;
    s->n_candidates = kept;
    free(e);
    qsort(s->candidates, (size_t)kept, sizeof *s->candidates, by_score_desc);
    return ML_OK;
}

/* The candidates and their probabilities after every warper; 0 candidates means greedy. */
static int build_distribution(ml_sampler *s, const float *logits, const ml_sampler_context *ctx) {
    const ml_sampling_params *p = &s->params;
    process_scores(s, logits, ctx);
    s->n_candidates = 0;
    if (p->temperature <= 0.0f) return ML_OK;
    for (int i = 0; i < s->vocab_size; i++) {
        float v = p->temperature != 1.0f ? s->scores[i] / p->temperature : s->scores[i];
        if (v > -INFINITY) s->candidates[s->n_candidates++] = (ml_candidate){v, i};
    }
    if (s->n_candidates == 0) return ML_OK; /* everything banned: fall back to greedy on the logits */
    int sorted = 0;
    if (p->top_k > 0) {
        warp_top_k(s, p->top_k);
        sorted = 1;
    }
    if (p->top_p < 1.0f) {
        if (!sorted) qsort(s->candidates, (size_t)s->n_candidates, sizeof *s->candidates, by_score_desc);
        sorted = 1;
        warp_top_p(s, p->top_p);
    }
    if (p->min_p > 0.0f) warp_min_p(s, p->min_p);
    if (p->typical_p < 1.0f) ML_TRY(warp_typical(s, p->typical_p));
    softmax_candidates(s);
    return ML_OK;
}

static int32_t greedy(const ml_sampler *s, const float *logits) {
    int32_t best = ml_argmax(s->scores, s->vocab_size);
    return s->scores[best] > -INFINITY ? best : ml_argmax(logits, s->vocab_size);
}

int32_t ml_sampler_pick(ml_sampler *s, const float *logits, const ml_sampler_context *ctx) {
    if (build_distribution(s, logits, ctx) != ML_OK || s->n_candidates == 0) return greedy(s, logits);
    double r = next_uniform(s), cumulative = 0.0;
    for (int i = 0; i < s->n_candidates; i++) {
        cumulative += s->probs[i];
        if (r < cumulative) return s->candidates[i].index;
    }
    return s->candidates[s->n_candidates - 1].index;
}

int ml_sampler_distribution(ml_sampler *s, const float *logits, const ml_sampler_context *ctx, double *probs) {
    ML_TRY(build_distribution(s, logits, ctx));
    memset(probs, 0, (size_t)s->vocab_size * sizeof *probs);
    if (s->n_candidates == 0) {
        probs[greedy(s, logits)] = 1.0;
        return 1;
    }
    for (int i = 0; i < s->n_candidates; i++) probs[s->candidates[i].index] = s->probs[i];
    return s->n_candidates;
}

void ml_logprobs(const float *logits, int vocab, int32_t token, int k, float *token_logprob, int32_t *top_ids,
                 float *top_logprobs) {
    double max_logit = logits[ml_argmax(logits, vocab)], total = 0.0;
    for (int i = 0; i < vocab; i++) total += exp((double)logits[i] - max_logit);
    double log_total = max_logit + log(total);
    if (token_logprob) *token_logprob = (float)((double)logits[token] - log_total);
    if (k > 0) {
        ml_top_k_indices(logits, vocab, k, top_ids);
        for (int i = 0; i < k; i++) top_logprobs[i] = (float)((double)logits[top_ids[i]] - log_total);
    }
}
