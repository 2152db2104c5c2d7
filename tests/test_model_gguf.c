/* The same weights through safetensors and through GGUF (Q/K rows permuted to Meta's
 * interleaved layout by the converter, restored at load) give the same logits: bit-identical
 * for BF16/F32 GGUFs, within Q8_0's rounding for the quantised ones. Also at tp 3. */
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "test_util.h"

static float *prompt_logits(const char *path, int tp, const ml_test_reference *ref) {
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    p.n_threads = 2;
    p.max_seq_len = 64;
    ml_model *m = NULL;
    int status = ml_model_open(path, &p, &m);
    CHECK(status == ML_OK, "%s: %s", path, ml_last_error());
    if (status != ML_OK) return NULL;
    float *logits = malloc((size_t)ref->n_prompt * ref->vocab_size * sizeof(float));
    int slot = 0, start = 0, n = ref->n_prompt;
    ml_batch b = {1, &slot, &start, &n, ref->prompt_ids, 1};
    CHECK(ml_forward(m, &b, logits) == ML_OK, "%s forward: %s", path, ml_last_error());
    ml_model_close(m);
    return logits;
}

static void compare(const char *fixture, const char *gguf, int exact) {
    char dir[512], gguf_path[512], ref_path[600];
    ml_test_fixture_path(dir, sizeof dir, fixture);
    snprintf(ref_path, sizeof ref_path, "%s/reference.bin", dir);
    ml_test_fixture_path(gguf_path, sizeof gguf_path, gguf);
    ml_test_reference ref;
    if (ml_test_reference_load(ref_path, &ref) != 0) {
        CHECK(0, "reference %s", ref_path);
        return;
    }
    size_t n = (size_t)ref.n_prompt * ref.vocab_size;
    for (int tp = 1; tp <= 3; tp += 2) {
        float *a = prompt_logits(dir, tp, &ref), *b = prompt_logits(gguf_path, tp, &ref);
        if (a && b) {
            double err = ml_test_norm_error(b, a, n);
            printf("%-36s tp %d: vs safetensors %.2e, vs HF %.2e\n", gguf, tp, err, ml_test_norm_error(b, ref.logits, n));
            if (exact)
                CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s tp %d: logits differ (%.3e)", gguf, tp, err);
            else
                CHECK(err < 5e-2, "%s tp %d: Q8_0 logits %.3e from safetensors", gguf, tp, err);
        }
        free(a);
        free(b);
    }
    ml_test_reference_free(&ref);
}

int main(void) {
    compare("gqa_tied_bf16", "gguf/gqa_tied_bf16.gguf", 1);
    compare("h8kv2_headdim_untied_f32", "gguf/h8kv2_headdim_untied_f32.gguf", 1);
    compare("gqa_tied_bf16", "gguf/gqa_tied_q8_0.gguf", 0);
    compare("h8kv2_headdim_untied_f32", "gguf/h8kv2_headdim_untied_q8_0.gguf", 0);
    return ml_test_finish("model_gguf");
}
