/* Batch invariance, the server's promise: a sequence's logits are bit-identical (memcmp)
 * whether it is decoded alone or in a batch of up to ML_MAX_BATCH sequences, whatever the
 * batch size, the KV slot it sits in and the positions of the others.
 *
 * For every checkpoint below (bf16, f16, f32, Q8_0 and every K-quant and other block type (kquant_mix,
 * whose fast mode runs int8 products on its Q4_K/Q5_K/Q6_K/Q8_K matrices); tied and untied heads; GQA; an
 * uneven tp 2 split), both activation modes (accurate, fast) and both KV-cache types (bf16, f32):
 *   alone:   each of 32 sequences (prompts of 1..13 tokens, so a batch mixes positions) is
 *            prefilled in slot 0, then decodes DECODE_STEPS teacher-forced tokens one at a time;
 *   batched: for every batch size in batch_sizes (variant_sizes in the per-variant runs), the
 *            first B sequences are prefilled (each alone) into slots in reverse order, then
 *            decode DECODE_STEPS steps together, B tokens per ml_forward; every sequence's
 *            logits must equal its alone logits bit for bit.
 * The default model (a real trained 135M model in Q4_1, 49152-token vocabulary, matrices that
 * span several kernel tiles) is checked too (bf16 cache, batches of 5 and 32) by the run with
 * the best kernels, except under MESHLLAMA_QUICK (the sanitizer build). The kernel variant is
 * the process's (MESHLLAMA_ISA, read once): tests/CMakeLists.txt runs this test once per
 * variant, and a variant the CPU lacks is a SKIP.
 * Tolerance: none (memcmp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "test_util.h"

enum { N_SEQ = ML_MAX_BATCH, DECODE_STEPS = 3, MAX_PROMPT = 13, MAX_LEN = MAX_PROMPT + DECODE_STEPS };

static const int batch_sizes[] = {2, 3, 8, 17, 32};

typedef struct {
    int32_t tokens[N_SEQ][MAX_LEN];
    int prompt_len[N_SEQ];
} workload;

static void make_workload(workload *w, int vocab) {
    ml_test_rng rng;
    ml_test_rng_seed(&rng, 2024);
    for (int s = 0; s < N_SEQ; s++) {
        w->prompt_len[s] = 1 + (s * 7) % MAX_PROMPT;
        for (int i = 0; i < MAX_LEN; i++)
            w->tokens[s][i] = (int32_t)(ml_test_uniform(&rng, 0.0f, 1.0f) * (float)(vocab - 1));
    }
}

static int forward(ml_model *m, int n_seq, const int *slots, const int *starts, const int *counts,
                   const int32_t *tokens, float *logits, const char *what) {
    ml_batch b = {n_seq, slots, starts, counts, tokens, 0};
    int status = ml_forward(m, &b, logits);
    CHECK(status == ML_OK, "%s: %s", what, ml_last_error());
    return status;
}

/* Prefills sequence s into slot. */
static int prefill(ml_model *m, const workload *w, int s, int slot, float *logits) {
    int start = 0;
    ml_reset_slot(m, slot);
    return forward(m, 1, &slot, &start, &w->prompt_len[s], w->tokens[s], logits, "prefill");
}

/* alone: [N_SEQ][DECODE_STEPS][vocab] decode logits of each sequence by itself. */
static int decode_alone(ml_model *m, const workload *w, int vocab, float *alone, float *scratch) {
    for (int s = 0; s < N_SEQ; s++) {
        if (prefill(m, w, s, 0, scratch) != ML_OK) return -1;
        for (int k = 0; k < DECODE_STEPS; k++) {
            int slot = 0, start = w->prompt_len[s] + k, one = 1;
            float *out = alone + ((size_t)s * DECODE_STEPS + k) * vocab;
            if (forward(m, 1, &slot, &start, &one, &w->tokens[s][start], out, "decode alone") != ML_OK) return -1;
        }
    }
    return 0;
}

/* The first n_batch sequences decoded together; returns the number of mismatching logit rows. */
static int decode_batched(ml_model *m, const workload *w, int vocab, int n_batch, const float *alone,
                          float *batched, const char *label) {
    int slots[N_SEQ], starts[N_SEQ], counts[N_SEQ];
    int32_t step_tokens[N_SEQ];
    for (int s = 0; s < n_batch; s++) {
        slots[s] = n_batch - 1 - s;
        if (prefill(m, w, s, slots[s], batched) != ML_OK) return 1;
    }
    int mismatches = 0;
    for (int k = 0; k < DECODE_STEPS; k++) {
        for (int s = 0; s < n_batch; s++) {
            starts[s] = w->prompt_len[s] + k;
            counts[s] = 1;
            step_tokens[s] = w->tokens[s][starts[s]];
        }
        if (forward(m, n_batch, slots, starts, counts, step_tokens, batched, "batched decode") != ML_OK) return 1;
        for (int s = 0; s < n_batch; s++) {
            const float *want = alone + ((size_t)s * DECODE_STEPS + k) * vocab;
            const float *got = batched + (size_t)s * vocab;
            int same = memcmp(got, want, (size_t)vocab * sizeof(float)) == 0;
            CHECK(same, "%s batch %d sequence %d step %d: logits differ from alone (normalised error %.3e)", label,
                  n_batch, s, k, ml_test_norm_error(got, want, (size_t)vocab));
            mismatches += !same;
        }
    }
    return mismatches;
}

/* kv_types: 2 checks both KV-cache types, 1 only bf16 (the default model, to save time). */
static void check_model(const char *path, const char *name, int kv_types, const int *sizes, size_t n_sizes) {
    static const ml_act_mode modes[] = {ML_ACT_ACCURATE, ML_ACT_FAST};
    static const ml_kv_dtype kvs[] = {ML_KV_BF16, ML_KV_F32};
    for (size_t a = 0; a < 2; a++) {
        for (size_t c = 0; c < (size_t)kv_types; c++) {
            ml_model_params p = ml_model_default_params();
            p.tp = 2;
            p.n_threads = 2;
            p.max_batch = N_SEQ;
            p.max_seq_len = 64;
            p.act_mode = modes[a];
            p.kv_dtype = kvs[c];
            ml_model *m = NULL;
            if (ml_model_open(path, &p, &m) != ML_OK) {
                CHECK(0, "open %s: %s", path, ml_last_error());
                return;
            }
            ml_model_info info;
            ml_model_get_info(m, &info);
            char label[160];
            snprintf(label, sizeof label, "%s (%s, %s, kv %s, %s)", name, info.weight_dtype,
                     modes[a] == ML_ACT_FAST ? "fast" : "accurate", kvs[c] == ML_KV_BF16 ? "bf16" : "f32", info.isa);
            int vocab = info.vocab_size;
            workload w;
            make_workload(&w, vocab);
            float *alone = malloc((size_t)N_SEQ * DECODE_STEPS * vocab * sizeof(float));
            float *batched = malloc((size_t)N_SEQ * vocab * sizeof(float));
            int mismatches = 1;
            if (alone && batched && decode_alone(m, &w, vocab, alone, batched) == 0) {
                mismatches = 0;
                for (size_t b = 0; b < n_sizes; b++)
                    mismatches += decode_batched(m, &w, vocab, sizes[b], alone, batched, label);
            }
            printf("%-64s batches up to 32: %s\n", label, mismatches ? "FAILED" : "bit-identical to alone");
            fflush(stdout);
            free(alone);
            free(batched);
            ml_model_close(m);
        }
    }
}

int main(void) {
    const char *isa = getenv("MESHLLAMA_ISA");
    if (isa && isa[0]) {
        /* the variant this run was asked for must be the one the models use */
        ml_model *probe = NULL;
        char dir[512];
        ml_test_fixture_path(dir, sizeof dir, "h9kv3_llama3rope_bf16");
        if (ml_model_open(dir, NULL, &probe) != ML_OK) {
            fprintf(stderr, "open %s: %s\n", dir, ml_last_error());
            return 1;
        }
        ml_model_info info;
        ml_model_get_info(probe, &info);
        int match = strcmp(info.isa, isa) == 0;
        ml_model_close(probe);
        if (!match) {
            printf("SKIP: MESHLLAMA_ISA=%s: this CPU cannot run it\n", isa);
            return 77;
        }
    }
    /* a forced variant (the per-variant ctest runs) checks fewer batch sizes: minutes each */
    static const int variant_sizes[] = {3, 8, 32};
    const int *sizes = isa && isa[0] ? variant_sizes : batch_sizes;
    size_t n_sizes = isa && isa[0] ? sizeof variant_sizes / sizeof variant_sizes[0]
                                   : sizeof batch_sizes / sizeof batch_sizes[0];
    static const char *const fixtures[] = {"h9kv3_llama3rope_bf16", "gqa_tied_bf16", "f16_small",
                                           "h8kv2_headdim_untied_f32", "gguf/gqa_tied_q8_0.gguf",
                                           "gguf/h8kv2_headdim_untied_q8_0.gguf", "gguf/kquant_mix.gguf"};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char path[512];
        ml_test_fixture_path(path, sizeof path, fixtures[f]);
        check_model(path, fixtures[f], 2, sizes, n_sizes);
    }
    const char *quick = getenv("MESHLLAMA_QUICK");
    if (quick && quick[0] && strcmp(quick, "0") != 0) {
        printf("default model: not checked under MESHLLAMA_QUICK\n");
    } else if (isa && isa[0]) {
        printf("default model: checked by the run with the best kernels only (minutes per variant)\n");
    } else {
        /* batches of 5 and 32 only: the alone decodes of 32 sequences dominate the time */
        static const int default_sizes[] = {5, 32};
        char path[512];
        if (ml_test_default_model(path, sizeof path) == 0)
            check_model(path, "default model", 1, default_sizes, 2);
    }
    return ml_test_finish("batch_invariance");
}
