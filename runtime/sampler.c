#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    float logit;
    int index;
} candidate;

ml_sampling_params ml_sampling_default_params(void) {
    ml_sampling_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 42;
    p.max_tokens = 32;
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

int ml_sampler_init(ml_sampler *s, const ml_sampling_params *p, int vocab_size) {
    memset(s, 0, sizeof *s);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ml_set_error(ML_ERR_ARG, "temperature %g: expected a finite value >= 0", (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ml_set_error(ML_ERR_ARG, "top_p %g: expected a value in (0, 1]", (double)p->top_p);
    if (p->top_k < 0) return ml_set_error(ML_ERR_ARG, "top_k %d: expected >= 0 (0 disables it)", p->top_k);
    s->temperature = p->temperature;
    s->top_k = p->top_k > vocab_size ? vocab_size : p->top_k;
    s->top_p = p->top_p;
    s->rng_state = p->seed ? p->seed : 0x853c49e6748fea9bull;
    s->vocab_size = vocab_size;
    if (s->temperature > 0.0f) {
        s->order = malloc((size_t)vocab_size * sizeof *s->order);
        s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
        s->candidates = malloc((size_t)vocab_size * sizeof(candidate));
        if (!s->order || !s->probs || !s->candidates) {
            ml_sampler_free(s);
            return ml_set_error(ML_ERR_NOMEM, "sampler: out of memory");
        }
    }
    return ML_OK;
}

void ml_sampler_free(ml_sampler *s) {
    free(s->order);
    free(s->probs);
    free(s->candidates);
    s->order = NULL;
    s->probs = NULL;
    s->candidates = NULL;
}

/* splitmix64: a uniform double in [0, 1) */
static double next_uniform(ml_sampler *s) {
    uint64_t z = (s->rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 53);
}


static int by_logit_desc(const void *a, const void *b) {
    const candidate *ca = a, *cb = b;
    if (ca->logit > cb->logit) return -1;
    if (ca->logit < cb->logit) return 1;
    return ca->index - cb->index;
}

int32_t ml_sampler_pick(ml_sampler *s, const float *logits) {
    if (s->temperature <= 0.0f) return ml_argmax(logits, s->vocab_size);
    int n = s->vocab_size;
    if (s->top_k > 0) {
        ml_top_k_indices(logits, n, s->top_k, s->order);
        n = s->top_k;
    } else {
        candidate *all = s->candidates;
        for (int i = 0; i < n; i++) all[i] = (candidate){logits[i], i};
        qsort(all, (size_t)n, sizeof *all, by_logit_desc);
        for (int i = 0; i < n; i++) s->order[i] = all[i].index;
    }
    /* softmax over the candidates at the temperature, in double */
    double max_logit = logits[s->order[0]], total = 0.0;
    for (int i = 0; i < n; i++) {
        double p = exp(((double)logits[s->order[i]] - max_logit) / s->temperature);
        s->probs[i] = (float)p;
        total += p;
    }
    /* top-p: the smallest prefix whose probability reaches top_p */
    if (s->top_p < 1.0f) {
        double cumulative = 0.0;
        for (int i = 0; i < n; i++) {
            cumulative += s->probs[i] / total;
            if (cumulative >= s->top_p) {
                n = i + 1;
                break;
            }
        }
        total = 0.0;
        for (int i = 0; i < n; i++) total += s->probs[i];
    }
    double r = next_uniform(s) * total, cumulative = 0.0;
    for (int i = 0; i < n; i++) {
        cumulative += s->probs[i];
        if (r < cumulative) return s->order[i];
    }
    return s->order[n - 1];
}
