/* check_logits: runs a checkpoint on the prompt of a reference.bin written by Hugging Face
 * (tools/make_fixtures.py or tools/hf_logits.py; format in docs/FIXTURES.md, versions 1 and 2)
 * and prints how far meshllama's logits are from HF's at each stored position, and whether
 * the greedy continuation matches.
 *   check_logits MODEL_DIR REFERENCE.bin [--tp N] [-t THREADS] [--act accurate|fast] [--kv f32|bf16]
 * Exit status 0 when every stored row is within --tolerance (default 1e-4, normalised by the
 * row's max |logit|) and the greedy tokens match; 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"

typedef struct {
    unsigned version, vocab, n_prompt, n_generated, logits_first, start_pos;
    int32_t *prompt, *generated;
    float *logits; /* [n_prompt - logits_first, vocab] */
} reference;

static int read_reference(const char *path, reference *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return fprintf(stderr, "%s: cannot open\n", path), -1;
    char magic[8];
    unsigned h[4];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "MLHFREF1", 8) == 0 && fread(h, 4, 4, f) == 4 &&
             (h[0] == 1 || h[0] == 2);
    if (ok) {
        r->version = h[0], r->vocab = h[1], r->n_prompt = h[2], r->n_generated = h[3];
        if (r->version == 2) {
            unsigned extra[2];
            ok = fread(extra, 4, 2, f) == 2;
            r->logits_first = extra[0], r->start_pos = extra[1];
        }
    }
    ok = ok && r->vocab > 0 && r->n_prompt > 0 && r->logits_first < r->n_prompt && r->start_pos == 0;
    if (ok) {
        size_t rows = r->n_prompt - r->logits_first;
        r->prompt = malloc(r->n_prompt * sizeof(int32_t));
        r->generated = malloc((r->n_generated + 1) * sizeof(int32_t));
        r->logits = malloc(rows * r->vocab * sizeof(float));
        ok = r->prompt && r->generated && r->logits && fread(r->prompt, 4, r->n_prompt, f) == r->n_prompt &&
             fread(r->generated, 4, r->n_generated, f) == r->n_generated &&
             fread(r->logits, 4, rows * r->vocab, f) == rows * r->vocab;
    }
    fclose(f);
    if (!ok) fprintf(stderr, "%s: not a MLHFREF1 version 1/2 file with start_pos 0\n", path);
    return ok ? 0 : -1;
}

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
    reference ref;
    if (read_reference(argv[2], &ref) != 0) return 1;
    p.max_seq_len = (int)(ref.n_prompt + ref.n_generated + 1);
    ml_model *m;
    if (ml_model_open(argv[1], &p, &m) != ML_OK) return fprintf(stderr, "check_logits: %s\n", ml_last_error()), 1;
    ml_model_info info;
    ml_model_get_info(m, &info);
    if ((unsigned)info.vocab_size != ref.vocab) return fprintf(stderr, "vocab %d vs reference %u\n", info.vocab_size, ref.vocab), 1;
    size_t rows = ref.n_prompt - ref.logits_first;
    float *logits = malloc((size_t)ref.n_prompt * ref.vocab * sizeof(float));
    int slot = 0, start = 0, n = (int)ref.n_prompt;
    ml_batch b = {1, &slot, &start, &n, ref.prompt, 1};
    if (ml_forward(m, &b, logits) != ML_OK) return fprintf(stderr, "check_logits: %s\n", ml_last_error()), 1;
    double worst = 0;
    int argmax_mismatch = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *ours = logits + (ref.logits_first + r) * ref.vocab, *hf = ref.logits + r * ref.vocab;
        double max_diff = 0, max_ref = 0;
        int our_best = 0, hf_best = 0;
        for (unsigned v = 0; v < ref.vocab; v++) {
            double d = fabs((double)ours[v] - hf[v]);
            if (!(d <= max_diff)) max_diff = d;
            if (fabs(hf[v]) > max_ref) max_ref = fabs(hf[v]);
            if (ours[v] > ours[our_best]) our_best = (int)v;
            if (hf[v] > hf[hf_best]) hf_best = (int)v;
        }
        double err = max_diff / (max_ref + 1e-30);
        if (err > worst) worst = err;
        argmax_mismatch += our_best != hf_best;
        printf("position %u: max |diff| %.3e, normalised %.3e, argmax %d (HF %d)\n", ref.logits_first + (unsigned)r,
               max_diff, err, our_best, hf_best);
    }
    int tokens_match = 1;
    if (ref.n_generated > 0) {
        ml_sampling_params sp = ml_sampling_default_params();
        sp.max_tokens = (int)ref.n_generated;
        sp.ignore_eos = 1;
        int32_t *out = malloc(ref.n_generated * sizeof(int32_t));
        ml_generate_stats st;
        if (ml_generate(m, ref.prompt, (int)ref.n_prompt, &sp, out, NULL, NULL, &st) != ML_OK) tokens_match = 0;
        for (unsigned i = 0; tokens_match && i < ref.n_generated; i++) tokens_match = out[i] == ref.generated[i];
        free(out);
    }
    printf("%s: %u prompt tokens, %zu logits rows, worst normalised error %.3e (tolerance %.1e), argmax "
           "mismatches %d, greedy %s (tp %d, %s, %s)\n",
           argv[1], ref.n_prompt, rows, worst, tolerance, argmax_mismatch,
           ref.n_generated ? (tokens_match ? "identical" : "DIFFERENT") : "not stored", info.tp, info.isa,
           p.act_mode == ML_ACT_FAST ? "fast" : "accurate");
    ml_model_close(m);
    free(logits);
    return worst <= tolerance && tokens_match ? 0 : 1;
}
