/* check_logits: runs a checkpoint on the prompt of a reference.bin written by Hugging Face
 * (tools/make_fixtures.py or tools/hf_logits.py; format in docs/FIXTURES.md, versions 1 and 2,
 * read by formats/hf_reference.c)
 * and prints how far meshllama's logits are from HF's at each stored position, and whether
 * the greedy continuation matches.
 *   check_logits MODEL_DIR REFERENCE.bin [--tp N] [-t THREADS] [--act accurate|fast] [--kv f32|bf16]
 * Exit status 0 when every stored row is within --tolerance (default 1e-4, normalised by the
 * row's max |logit|) and the greedy tokens match; 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_reference.h"
#include "meshllama.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: check_logits MODEL_DIR REFERENCE.bin [--tp N] [-t THREADS] [--act accurate|fast] "
                        "[--kv f32|bf16] [--tolerance X]\n");
        return 2;
    }
    ml_model_params p = ml_model_default_params();
    double tolerance = 1e-4;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tp") == 0) p.tp = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-t") == 0) p.n_threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--act") == 0) p.act_mode = strcmp(argv[i + 1], "fast") == 0 ? ML_ACT_FAST : ML_ACT_ACCURATE;
        else if (strcmp(argv[i], "--kv") == 0) p.kv_dtype = strcmp(argv[i + 1], "bf16") == 0 ? ML_KV_BF16 : ML_KV_F32;
        else if (strcmp(argv[i], "--tolerance") == 0) tolerance = atof(argv[i + 1]);
        else return fprintf(stderr, "check_logits: unknown flag %s\n", argv[i]), 2;
    }
    ml_hf_reference ref;
    if (ml_hf_reference_load(argv[2], &ref) != ML_OK) return fprintf(stderr, "check_logits: %s\n", ml_last_error()), 1;
    if (ref.start_pos != 0) return fprintf(stderr, "check_logits: %s: start_pos %d; only 0 is supported\n", argv[2], ref.start_pos), 1;
    p.max_seq_len = (int)(ref.n_prompt + ref.n_generated + 1);
    ml_model *m;
    if (ml_model_open(argv[1], &p, &m) != ML_OK) return fprintf(stderr, "check_logits: %s\n", ml_last_error()), 1;
    ml_model_info info;
    ml_model_get_info(m, &info);
    if (info.vocab_size != ref.vocab_size) return fprintf(stderr, "vocab %d vs reference %d\n", info.vocab_size, ref.vocab_size), 1;
    size_t rows = ref.n_prompt - ref.logits_first;
    float *logits = malloc((size_t)ref.n_prompt * ref.vocab_size * sizeof(float));
    int slot = 0, start = 0, n = (int)ref.n_prompt;
    ml_batch b = {1, &slot, &start, &n, ref.prompt_ids, 1};
    if (ml_forward(m, &b, logits) != ML_OK) return fprintf(stderr, "check_logits: %s\n", ml_last_error()), 1;
    double worst = 0;
    int argmax_mismatch = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *ours = logits + (ref.logits_first + r) * ref.vocab_size, *hf = ref.logits + r * ref.vocab_size;
        double max_diff = 0, max_ref = 0;
        int our_best = 0, hf_best = 0;
        for (int v = 0; v < ref.vocab_size; v++) {
            double d = fabs((double)ours[v] - hf[v]);
            if (!(d <= max_diff)) max_diff = d;
            if (fabs(hf[v]) > max_ref) max_ref = fabs(hf[v]);
            if (ours[v] > ours[our_best]) our_best = (int)v;
            if (hf[v] > hf[hf_best]) hf_best = (int)v;
        }
        double err = max_diff / (max_ref + 1e-30);
        if (err > worst) worst = err;
        argmax_mismatch += our_best != hf_best;
        printf("position %d: max |diff| %.3e, normalised %.3e, argmax %d (HF %d)\n", ref.logits_first + (int)r,
               max_diff, err, our_best, hf_best);
    }
    int tokens_match = 1;
    if (ref.n_generated > 0) {
        ml_sampling_params sp = ml_sampling_default_params();
        sp.max_tokens = (int)ref.n_generated;
        sp.ignore_eos = 1;
        int32_t *out = malloc(ref.n_generated * sizeof(int32_t));
        ml_generate_stats st;
        if (ml_generate(m, ref.prompt_ids, (int)ref.n_prompt, &sp, out, NULL, NULL, &st) != ML_OK) tokens_match = 0;
        for (int i = 0; tokens_match && i < ref.n_generated; i++) tokens_match = out[i] == ref.generated_ids[i];
        free(out);
    }
    printf("%s: %d prompt tokens, %zu logits rows, worst normalised error %.3e (tolerance %.1e), argmax "
           "mismatches %d, greedy %s (tp %d, %s, %s)\n",
           argv[1], ref.n_prompt, rows, worst, tolerance, argmax_mismatch,
           ref.n_generated ? (tokens_match ? "identical" : "DIFFERENT") : "not stored", info.tp, info.isa,
           p.act_mode == ML_ACT_FAST ? "fast" : "accurate");
    ml_model_close(m);
    free(logits);
    ml_hf_reference_free(&ref);
    return worst <= tolerance && tokens_match ? 0 : 1;
}
