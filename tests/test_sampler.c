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
    for (int i = 0; i < 50; i++) CHECK(ml_sampler_pick(&s, logits, NULL) == best, "top_k 1 is greedy");
    ml_sampler_free(&s);
    p.top_k = 0;
    p.top_p = 1e-6f;
    CHECK(ml_sampler_init(&s, &p, 100) == ML_OK, "init");
    for (int i = 0; i < 50; i++) CHECK(ml_sampler_pick(&s, logits, NULL) == best, "tiny top_p is greedy");
    ml_sampler_free(&s);
    p.temperature = 0.0f;
    CHECK(ml_sampler_init(&s, &p, 100) == ML_OK, "init");
    CHECK(ml_sampler_pick(&s, logits, NULL) == best, "temperature 0 is greedy");
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
    for (int i = 0; i < DRAWS; i++) counts[ml_sampler_pick(&s, logits, NULL)]++;
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
        for (int i = 0; i < 64; i++) out[i] = ml_sampler_pick(&s, logits, NULL);
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

/* The distribution at temperature 1 over logits that were all zero is softmax(-penalty): check
 * each token's penalty, recovered as log(p_i / p_0) with token 0 never seen. */
static void check_penalties_case(const char *name, ml_sampling_params p, const float *logits, const int32_t *tokens,
                                 int n_tokens, int n_prompt, const double *expected_scores) {
    enum { V = 8 };
    double probs[V];
    ml_sampler s;
    p.temperature = 1.0f;
    CHECK(ml_sampler_init(&s, &p, V) == ML_OK, "%s: init: %s", name, ml_last_error());
    ml_sampler_context ctx = {tokens, n_tokens, n_prompt, NULL, 0};
    ml_sampler_distribution(&s, logits, &ctx, probs);
    ml_sampler_free(&s);
    double total = 0;
    for (int i = 0; i < V; i++) total += exp(expected_scores[i]);
    for (int i = 0; i < V; i++)
        CHECK(fabs(probs[i] - exp(expected_scores[i]) / total) < 1e-7, "%s: token %d: p %.9f, expected %.9f", name, i,
              probs[i], exp(expected_scores[i]) / total);
}

/* OpenAI's formula: logit -= count * frequency_penalty + (count > 0) * presence_penalty, counted
 * over the generated tokens of the window; HF's repetition penalty over the whole window. */
static void check_penalties(void) {
    const float zeros[8] = {0};
    const float mixed[8] = {1.0f, 2.0f, -1.0f, 0.5f, -2.0f, 0.0f, 3.0f, 1.5f};
    /* prompt 1 1 2 | generated 3 3 3 4 1 */
    const int32_t tokens[8] = {1, 1, 2, 3, 3, 3, 4, 1};
    ml_sampling_params p = ml_sampling_default_params();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.repeat_last_n = -1;
    {   /* counts in the generated part: 3 x3, 4 x1, 1 x1; token 2 is only in the prompt */
        const double want[8] = {0, -0.75, 0, -1.25, -0.75, 0, 0, 0};
        check_penalties_case("presence+frequency", p, zeros, tokens, 8, 3, want);
    }
    p.repeat_last_n = 3; /* window 3 4 1: each once */
    {
        const double want[8] = {0, -0.75, 0, -0.75, -0.75, 0, 0, 0};
        check_penalties_case("window of 3", p, zeros, tokens, 8, 3, want);
    }
    p.repeat_last_n = 0; /* off */
    {
        const double want[8] = {0};
        check_penalties_case("window 0", p, zeros, tokens, 8, 3, want);
    }
    p.presence_penalty = -1.0f; /* negative values encourage */
    p.frequency_penalty = 0.0f;
    p.repeat_last_n = 64;
    {
        const double want[8] = {0, 1, 0, 1, 1, 0, 0, 0};
        check_penalties_case("negative presence", p, zeros, tokens, 8, 3, want);
    }
    /* repetition 2 (HF: positive / 2, negative * 2) on every token of the window, prompt too,
     * then frequency 0.5 on generated counts */
    p = ml_sampling_default_params();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.repeat_last_n = -1;
    {
        const double want[8] = {1.0, 2.0 / 2 - 0.5, -1.0 * 2, 0.5 / 2 - 1.5, -2.0 * 2 - 0.5, 0.0, 3.0, 1.5};
        check_penalties_case("repetition+frequency", p, mixed, tokens, 8, 3, want);
    }
    /* logit bias first: +2.5 on token 5, -inf bans token 6 */
    p = ml_sampling_default_params();
    ml_logit_bias bias[2] = {{5, 2.5f}, {6, -INFINITY}};
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    {
        double probs[8];
        ml_sampler s;
        p.temperature = 1.0f;
        CHECK(ml_sampler_init(&s, &p, 8) == ML_OK, "bias init");
        ml_sampler_distribution(&s, mixed, NULL, probs);
        CHECK(probs[6] == 0.0, "a -inf bias left token 6 at %g", probs[6]);
        CHECK(fabs(probs[5] / probs[1] - exp(2.5 - 2.0)) < 1e-9, "bias +2.5 on token 5: ratio %g", probs[5] / probs[1]);
        ml_sampler_free(&s);
        p.temperature = 0.0f; /* greedy sees the bias too */
        ml_sampler_init(&s, &p, 8);
        CHECK(ml_sampler_pick(&s, mixed, NULL) == 5, "greedy with a ban on the argmax and +2.5 on token 5");
        ml_sampler_free(&s);
    }
    {   /* banned ids (min_tokens) */
        ml_sampler s;
        p = ml_sampling_default_params();
        ml_sampler_init(&s, &p, 8);
        const int32_t banned[1] = {6};
        ml_sampler_context ctx = {NULL, 0, 0, banned, 1};
        CHECK(ml_sampler_pick(&s, mixed, &ctx) == 1, "banned argmax still chosen");
        ml_sampler_free(&s);
    }
}

static void check_logprobs(void) {
    const float logits[6] = {1.0f, 0.2f, 2.0f, -0.5f, 1.5f, 0.0f};
    double total = 0;
    for (int i = 0; i < 6; i++) total += exp(logits[i]);
    float lp, top[3];
    int32_t ids[3];
    ml_logprobs(logits, 6, 4, 3, &lp, ids, top);
    CHECK(fabs(lp - (1.5 - log(total))) < 1e-6, "logprob of token 4: %g", (double)lp);
    CHECK(ids[0] == 2 && ids[1] == 4 && ids[2] == 0, "top ids %d %d %d", ids[0], ids[1], ids[2]);
    CHECK(fabs(top[0] - (2.0 - log(total))) < 1e-6, "top logprob %g", (double)top[0]);
}

static void expect_bad(ml_sampling_params p, const char *field) {
    ml_sampler s;
    int status = ml_sampler_init(&s, &p, 10);
    CHECK(status == ML_ERR_ARG && strstr(ml_last_error(), field), "bad %s accepted (%d: %s)", field, status,
          ml_last_error());
    if (status == ML_OK) ml_sampler_free(&s);
}

static void check_bad_new_params(void) {
    ml_sampling_params d = ml_sampling_default_params(), p;
    p = d, p.min_p = -0.1f, expect_bad(p, "min_p");
    p = d, p.min_p = 1.5f, expect_bad(p, "min_p");
    p = d, p.typical_p = 1.5f, expect_bad(p, "typical_p");
    p = d, p.repeat_penalty = -1.0f, expect_bad(p, "repeat_penalty");
    p = d, p.repeat_penalty = INFINITY, expect_bad(p, "repeat_penalty");
    p = d, p.presence_penalty = NAN, expect_bad(p, "presence_penalty");
    p = d, p.frequency_penalty = 1000.0f, expect_bad(p, "frequency_penalty");
    p = d, p.repeat_last_n = -2, expect_bad(p, "repeat_last_n");
    p = d, p.min_tokens = -1, expect_bad(p, "min_tokens");
    p = d, p.top_logprobs = ML_MAX_TOP_LOGPROBS + 1, expect_bad(p, "top_logprobs");
    p = d, p.n_logit_bias = 1, expect_bad(p, "logit_bias");
    ml_logit_bias outside = {10, 1.0f}, nan_bias = {1, NAN};
    p = d, p.logit_bias = &outside, p.n_logit_bias = 1, expect_bad(p, "outside the vocabulary");
    p = d, p.logit_bias = &nan_bias, p.n_logit_bias = 1, expect_bad(p, "logit_bias[0]");
    /* a zero-filled struct (a caller from before these fields) samples as before */
    ml_sampling_params zero;
    memset(&zero, 0, sizeof zero);
    zero.top_p = 1.0f;
    ml_sampler s;
    CHECK(ml_sampler_init(&s, &zero, 10) == ML_OK, "zero-filled params refused: %s", ml_last_error());
    CHECK(s.params.typical_p == 1.0f && s.params.repeat_penalty == 1.0f, "zero typical_p/repeat_penalty not off");
    ml_sampler_free(&s);
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
    check_penalties();
    check_logprobs();
    check_bad_new_params();
    return ml_test_finish("sampler");
}
