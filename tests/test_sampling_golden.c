/* The sampler against Hugging Face's logits processors (tests/fixtures/sampling/
 * hf_logits_processors.json, written by tools/make_sampling_golden.py): on the same logits and
 * history, the same kept/removed token sets, and probabilities within 1e-6 absolute; for
 * greedy cases the same argmax of the processed scores. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/sampler.h"
#include "test_util.h"

static double number(const json_t *v) {
    if (json_is_string(v) && strcmp(json_string_value(v), "-inf") == 0) return -INFINITY;
    return json_number_value(v);
}

static double setting(const json_t *settings, const char *key, double fallback) {
    const json_t *v = json_object_get(settings, key);
    return v ? number(v) : fallback;
}

static void run_case(const json_t *c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    int vocab = (int)json_integer_value(json_object_get(c, "vocab"));
    const json_t *settings = json_object_get(c, "settings"), *expected = json_object_get(c, "expected");
    const json_t *logits_json = json_object_get(c, "logits"), *tokens_json = json_object_get(c, "tokens");
    float *logits = malloc((size_t)vocab * sizeof *logits);
    double *probs = malloc((size_t)vocab * sizeof *probs);
    int n_tokens = (int)json_array_size(tokens_json);
    int32_t *tokens = malloc(((size_t)n_tokens + 1) * sizeof *tokens);
    for (int i = 0; i < vocab; i++) logits[i] = (float)number(json_array_get(logits_json, (size_t)i));
    for (int i = 0; i < n_tokens; i++) tokens[i] = (int32_t)json_integer_value(json_array_get(tokens_json, (size_t)i));

    ml_sampling_params p = ml_sampling_default_params();
    p.temperature = (float)setting(settings, "temperature", 0.0);
    p.top_k = (int)setting(settings, "top_k", 0);
    p.top_p = (float)setting(settings, "top_p", 1.0);
    p.min_p = (float)setting(settings, "min_p", 0.0);
    p.typical_p = (float)setting(settings, "typical_p", 1.0);
    p.repeat_penalty = (float)setting(settings, "repeat_penalty", 1.0);
    p.repeat_last_n = (int)setting(settings, "repeat_last_n", 64);
    p.min_tokens = (int)setting(settings, "min_tokens", 0);
    const json_t *bias_json = json_object_get(settings, "logit_bias");
    ml_logit_bias bias[16];
    p.n_logit_bias = (int)json_array_size(bias_json);
    for (int i = 0; i < p.n_logit_bias && i < 16; i++) {
        bias[i].token = (int32_t)json_integer_value(json_array_get(json_array_get(bias_json, (size_t)i), 0));
        bias[i].bias = (float)number(json_array_get(json_array_get(bias_json, (size_t)i), 1));
    }
    p.logit_bias = p.n_logit_bias ? bias : NULL;
    int32_t banned[8];
    int n_banned = 0, n_prompt = (int)json_integer_value(json_object_get(c, "n_prompt"));
    const json_t *eos = json_object_get(settings, "eos");
    if (n_tokens - n_prompt < p.min_tokens) /* what ml_generate bans while fewer than min_tokens are out */
        for (size_t i = 0; i < json_array_size(eos) && n_banned < 8; i++)
            banned[n_banned++] = (int32_t)json_integer_value(json_array_get(eos, i));
    ml_sampler_context ctx = {tokens, n_tokens, n_prompt, banned, n_banned};

    ml_sampler s;
    int status = ml_sampler_init(&s, &p, vocab);
    CHECK(status == ML_OK, "%s: init: %s", name, ml_last_error());
    if (status == ML_OK) {
        const json_t *argmax = json_object_get(expected, "argmax");
        if (argmax) {
            int32_t got = ml_sampler_pick(&s, logits, &ctx);
            CHECK(got == json_integer_value(argmax), "%s: greedy picked %d, HF %d", name, (int)got,
                  (int)json_integer_value(argmax));
        } else {
            const json_t *want = json_object_get(expected, "probs");
            int kept = ml_sampler_distribution(&s, logits, &ctx, probs);
            CHECK(kept == json_integer_value(json_object_get(expected, "kept")), "%s: kept %d tokens, HF %d", name,
                  kept, (int)json_integer_value(json_object_get(expected, "kept")));
            double worst = 0.0;
            int same_set = 1;
            for (int i = 0; i < vocab; i++) {
                double hf = json_number_value(json_array_get(want, (size_t)i));
                same_set &= (hf > 0.0) == (probs[i] > 0.0);
                if (fabs(hf - probs[i]) > worst) worst = fabs(hf - probs[i]);
            }
            CHECK(same_set, "%s: kept/removed sets differ from HF", name);
            CHECK(worst <= 1e-6, "%s: probabilities differ from HF by %.3g (tolerance 1e-6)", name, worst);
            /* a draw comes from the kept set */
            for (int draw = 0; draw < 20; draw++) {
                int32_t t = ml_sampler_pick(&s, logits, &ctx);
                CHECK(probs[t] > 0.0, "%s: drew removed token %d", name, (int)t);
            }
        }
        ml_sampler_free(&s);
    }
    free(logits);
    free(probs);
    free(tokens);
}

int main(void) {
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "sampling/hf_logits_processors.json");
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) {
        fprintf(stderr, "%s: %s (line %d)\n", path, error.text, error.line);
        return 1;
    }
    const json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) >= 20, "only %zu cases in %s", json_array_size(cases), path);
    for (size_t i = 0; i < json_array_size(cases); i++) run_case(json_array_get(cases, i));
    json_decref(root);
    return ml_test_finish("sampling_golden");
}
