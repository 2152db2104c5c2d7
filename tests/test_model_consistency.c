/* Properties that do not need a reference: the same run twice is bit-identical; the thread
 * count does not change a bit; prefill equals prefill_decode; a batch of four prompts of
 * different lengths (one mixed prefill, then batched decode steps) equals each prompt alone,
 * bit for bit; a prompt longer than one chunk equals the same prompt fed in pieces. */
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "test_util.h"

static char dir[512];

static ml_model *open_model(int tp, int threads, int max_batch, int max_seq_len) {
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    p.n_threads = threads;
    p.max_batch = max_batch;
    p.max_seq_len = max_seq_len;
    ml_model *m = NULL;
    CHECK(ml_model_open(dir, &p, &m) == ML_OK, "open tp %d threads %d: %s", tp, threads, ml_last_error());
    return m;
}

static int forward_one(ml_model *m, int slot, int start, const int32_t *tokens, int n, int all, float *logits) {
    ml_batch b = {1, &slot, &start, &n, tokens, all};
    int status = ml_forward(m, &b, logits);
    CHECK(status == ML_OK, "forward: %s", ml_last_error());
    return status;
}

static void make_prompt(int32_t *tokens, int n, int vocab, uint64_t seed) {
    ml_test_rng rng;
    ml_test_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) tokens[i] = 3 + (int32_t)(ml_test_uniform(&rng, 0.0f, 1.0f) * (float)(vocab - 4));
}

static void check_repeatable(int vocab) {
    int32_t prompt[40];
    make_prompt(prompt, 40, vocab, 1);
    size_t n = (size_t)40 * vocab;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    ml_model *m1 = open_model(3, 2, 1, 64), *m2 = open_model(3, 2, 1, 64), *m3 = open_model(3, 1, 1, 64);
    if (m1 && m2 && m3) {
        forward_one(m1, 0, 0, prompt, 40, 1, a);
        forward_one(m2, 0, 0, prompt, 40, 1, b);
        forward_one(m3, 0, 0, prompt, 40, 1, c);
        CHECK(memcmp(a, b, n * sizeof(float)) == 0, "two runs differ");
        CHECK(memcmp(a, c, n * sizeof(float)) == 0, "1 thread and 2 threads differ");
    }
    ml_model_close(m1);
    ml_model_close(m2);
    ml_model_close(m3);
    free(a);
    free(b);
    free(c);
}

static void check_prefill_decode(int vocab) {
    int32_t prompt[30];
    make_prompt(prompt, 30, vocab, 2);
    float *prefill = malloc((size_t)30 * vocab * sizeof(float)), *step = malloc((size_t)vocab * sizeof(float));
    ml_model *m = open_model(2, 2, 1, 64);
    if (m && forward_one(m, 0, 0, prompt, 30, 1, prefill) == 0) {
        ml_reset_slot(m, 0);
        double worst = 0;
        for (int i = 0; i < 30; i++) {
            forward_one(m, 0, i, prompt + i, 1, 0, step);
            double err = ml_test_norm_error(step, prefill + (size_t)i * vocab, (size_t)vocab);
            if (err > worst) worst = err;
        }
        /* the same arithmetic per token: identical, except summation order in nothing */
        CHECK(worst == 0.0, "prefill vs prefill_decode: error %.3e", worst);
    }
    ml_model_close(m);
    free(prefill);
    free(step);
}

static void check_batch_equals_alone(int vocab) {
    enum { N_SEQ = 4, DECODE_STEPS = 5 };
    const int lengths[N_SEQ] = {7, 19, 2, 12};
    int32_t prompts[N_SEQ][32];
    for (int s = 0; s < N_SEQ; s++) make_prompt(prompts[s], 32, vocab, 10 + s);
    float *alone = malloc((size_t)N_SEQ * (DECODE_STEPS + 1) * vocab * sizeof(float));
    float *batched = malloc((size_t)N_SEQ * vocab * sizeof(float));
    /* each sequence alone: prefill, then DECODE_STEPS teacher-forced decode steps */
    ml_model *m = open_model(2, 2, N_SEQ, 64);
    if (!m) return;
    for (int s = 0; s < N_SEQ; s++) {
        ml_reset_slot(m, 0);
        forward_one(m, 0, 0, prompts[s], lengths[s], 0, alone + (size_t)s * (DECODE_STEPS + 1) * vocab);
        for (int k = 0; k < DECODE_STEPS; k++)
            forward_one(m, 0, lengths[s] + k, &prompts[s][lengths[s] + k], 1, 0,
                        alone + ((size_t)s * (DECODE_STEPS + 1) + k + 1) * vocab);
    }
    /* all four at once: one mixed prefill, then batched decode steps (slots in reverse order) */
    int slots[N_SEQ] = {3, 2, 1, 0}, starts[N_SEQ] = {0, 0, 0, 0}, counts[N_SEQ];
    int32_t flat[64];
    int at = 0;
    for (int s = 0; s < N_SEQ; s++) {
        counts[s] = lengths[s];
        memcpy(flat + at, prompts[s], (size_t)lengths[s] * sizeof(int32_t));
        at += lengths[s];
    }
    for (int s = 0; s < N_SEQ; s++) ml_reset_slot(m, s);
    ml_batch b = {N_SEQ, slots, starts, counts, flat, 0};
    for (int k = 0; k <= DECODE_STEPS; k++) {
        CHECK(ml_forward(m, &b, batched) == ML_OK, "batched step %d: %s", k, ml_last_error());
        for (int s = 0; s < N_SEQ; s++) {
            const float *expected = alone + ((size_t)s * (DECODE_STEPS + 1) + k) * vocab;
            CHECK(memcmp(batched + (size_t)s * vocab, expected, (size_t)vocab * sizeof(float)) == 0,
                  "sequence %d step %d: batched logits differ from alone (error %.3e)", s, k,
                  ml_test_norm_error(batched + (size_t)s * vocab, expected, (size_t)vocab));
        }
        for (int s = 0; s < N_SEQ; s++) {
            starts[s] = lengths[s] + k;
            counts[s] = 1;
            flat[s] = prompts[s][lengths[s] + k];
        }
    }
    ml_model_close(m);
    free(alone);
    free(batched);
}

/* 300 tokens cross the 256-token chunk boundary; compare with feeding 100 + 200 tokens. */
static void check_chunking(int vocab) {
    enum { N = 300 };
    int32_t *prompt = malloc(N * sizeof(int32_t));
    make_prompt(prompt, N, vocab, 99);
    float *whole = malloc((size_t)vocab * sizeof(float)), *pieces = malloc((size_t)vocab * sizeof(float));
    ml_model *m = open_model(1, 2, 1, 512);
    if (m) {
        forward_one(m, 0, 0, prompt, N, 0, whole);
        ml_reset_slot(m, 0);
        forward_one(m, 0, 0, prompt, 100, 0, pieces);
        forward_one(m, 0, 100, prompt + 100, N - 100, 0, pieces);
        CHECK(memcmp(whole, pieces, (size_t)vocab * sizeof(float)) == 0, "chunked prompt differs: %.3e",
              ml_test_norm_error(pieces, whole, (size_t)vocab));
    }
    ml_model_close(m);
    free(prompt);
    free(whole);
    free(pieces);
}

int main(void) {
    ml_test_fixture_path(dir, sizeof dir, "h9kv3_llama3rope_bf16");
    int vocab = 320;
    check_repeatable(vocab);
    check_prefill_decode(vocab);
    check_batch_equals_alone(vocab);
    check_chunking(vocab);
    return ml_test_finish("model_consistency");
}
