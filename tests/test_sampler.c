/* Sampling: argmax and top-k order (ties to the lower index, as torch), greedy limits of
 * top-k/top-p, seeded reproducibility, and sampled frequencies that follow softmax(l / T)
 * restricted to the top-k / top-p candidates. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "runtime/sampler.h"
#include "test_util.h"

static void check_argmax_and_topk(void) {
    float logits[8] = {0.5f, 2.0f, -1.0f, 2.0f, 1.5f, 2.0f, 0.0f, 1.9f};
    CHECK(ml_argmax(logits, 8) == 1, "argmax tie must pick the lowest index");
    int32_t top[5];
    ml_top_k_indices(logits, 8, 5, top);
    const int32_t expected[5] = {1, 3, 5, 7, 4};
    CHECK(memcmp(top, expected, sizeof top) == 0, "top-5 order %d %d %d %d %d", top[0], top[1], top[2], top[3], top[4]);
}

static void check_greedy_limits(void) {
    float logits[100];
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 3);
    ml_test_fill(&rng, logits, 100, -3.0f, 3.0f);
    int best = ml_argmax(logits, 100);
    ml_sampling_params p = ml_sampling_default_params();
    p.temperature = 1.0f;
    p.top_k = 1;
    ml_sampler s;
    CHECK(ml_sampler_init(&s, &p, 100) == ML_OK, "init");
    for (int i = 0; i < 50; i++) CHECK(ml_sampler_pick(&s, logits) == best, "top_k 1 is greedy");
    ml_sampler_free(&s);
    p.top_k = 0;
    p.top_p = 1e-6f;
    CHECK(ml_sampler_init(&s, &p, 100) == ML_OK, "init");
    for (int i = 0; i < 50; i++) CHECK(ml_sampler_pick(&s, logits) == best, "tiny top_p is greedy");
    ml_sampler_free(&s);
    p.temperature = 0.0f;
    CHECK(ml_sampler_init(&s, &p, 100) == ML_OK, "init");
    CHECK(ml_sampler_pick(&s, logits) == best, "temperature 0 is greedy");
    ml_sampler_free(&s);
}

/* Draws many samples and compares frequencies with the expected distribution. */
static void check_distribution(float temperature, int top_k, float top_p) {
    enum { V = 6, DRAWS = 60000 };
    const float logits[V] = {1.0f, 0.2f, 2.0f, -0.5f, 1.5f, 0.0f};
    double expected[V] = {0}, total = 0;
    int order[V] = {2, 4, 0, 1, 5, 3}; /* by logit, descending */
    int keep = top_k > 0 ? top_k : V;
    double weights[V], cumulative = 0, all = 0;
    for (int i = 0; i < keep; i++) all += weights[i] = exp(logits[order[i]] / temperature);
    int kept = keep;
    for (int i = 0; i < keep; i++) {
        cumulative += weights[i] / all;
        if (cumulative >= top_p) {
            kept = i + 1;
            break;
        }
    }
    for (int i = 0; i < kept; i++) total += weights[i];
    for (int i = 0; i < kept; i++) expected[order[i]] = weights[i] / total;
    ml_sampling_params p = ml_sampling_default_params();
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = 1234;
    ml_sampler s;
    CHECK(ml_sampler_init(&s, &p, V) == ML_OK, "init");
    int counts[V] = {0};
    for (int i = 0; i < DRAWS; i++) counts[ml_sampler_pick(&s, logits)]++;
    ml_sampler_free(&s);
    for (int v = 0; v < V; v++) {
        double freq = (double)counts[v] / DRAWS;
        double sigma = sqrt(expected[v] * (1 - expected[v]) / DRAWS) + 1e-9;
        /* 6 sigma: a fixed seed makes this deterministic; a wrong distribution is far outside */
        CHECK(fabs(freq - expected[v]) <= 6 * sigma + 1e-12, "T %.2f k %d p %.2f token %d: %.4f vs %.4f",
              (double)temperature, top_k, (double)top_p, v, freq, expected[v]);
    }
}

static void check_seed(void) {
    float logits[50];
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 5);
    ml_test_fill(&rng, logits, 50, -1.0f, 1.0f);
    ml_sampling_params p = ml_sampling_default_params();
    p.temperature = 1.0f;
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 99 : 7;
        ml_sampler s;
        ml_sampler_init(&s, &p, 50);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) out[i] = ml_sampler_pick(&s, logits);
        ml_sampler_free(&s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different tokens");
    CHECK(memcmp(a, c, sizeof a) != 0, "different seeds, same 64 tokens");
}

static void check_bad_params(void) {
    ml_sampling_params p = ml_sampling_default_params();
    ml_sampler s;
    p.temperature = -1;
    CHECK(ml_sampler_init(&s, &p, 10) == ML_ERR_ARG, "negative temperature accepted");
    p.temperature = NAN;
    CHECK(ml_sampler_init(&s, &p, 10) == ML_ERR_ARG, "NaN temperature accepted");
    p.temperature = 1;
    p.top_p = 0;
    CHECK(ml_sampler_init(&s, &p, 10) == ML_ERR_ARG, "top_p 0 accepted");
    p.top_p = 1.5f;
    CHECK(ml_sampler_init(&s, &p, 10) == ML_ERR_ARG, "top_p 1.5 accepted");
    p.top_p = 1;
    p.top_k = -2;
    CHECK(ml_sampler_init(&s, &p, 10) == ML_ERR_ARG && strstr(ml_last_error(), "top_k"), "top_k -2 accepted");
}

int main(void) {
    check_argmax_and_topk();
    check_greedy_limits();
    check_distribution(1.0f, 0, 1.0f);
    check_distribution(0.7f, 3, 1.0f);
    check_distribution(1.3f, 0, 0.8f);
    check_distribution(1.0f, 4, 0.9f);
    check_seed();
    check_bad_params();
    return ml_test_finish("sampler");
}
