/* Teacher forcing against a Hugging Face reference (the seed's eval.py): prefill, score the
 * last position against HF's first token, then feed HF's token i and score against i+1.
 * With a batch, every slot runs the same reference in the same forward steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/timer.h"
#include "formats/eval_reference.h"
#include "meshllama.h"
#include "model/collectives.h"
#include "runtime/sampler.h"

int ml_eval_reference_open(const char *path, ml_eval_reference **out_ref) {
    if (!out_ref || !path) return ml_set_error(ML_ERR_ARG, "ml_eval_reference_open: NULL argument");
    *out_ref = NULL;
    ml_eval_reference *ref = calloc(1, sizeof *ref);
    if (!ref) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    int status = ml_eval_reference_load(path, ref);
    if (status != ML_OK) {
        free(ref);
        return status;
    }
    *out_ref = ref;
    return ML_OK;
}

void ml_eval_reference_close(ml_eval_reference *ref) {
    if (!ref) return;
    ml_eval_reference_free(ref);
    free(ref);
}

void ml_eval_reference_get_info(const ml_eval_reference *ref, ml_eval_reference_info *info) {
    info->n_prompt = ref->n_prompt;
    info->n_decode = ref->n_decode;
    info->vocab_size = ref->vocab_size;
    info->n_logit_steps = ref->n_logit_steps;
    info->meta_json = ref->meta_json;
}

const int32_t *ml_eval_reference_prompt(const ml_eval_reference *ref) { return ref->prompt; }

typedef struct {
    int top1, top5, top5_ref;
} slot_score;

static void score_step(const ml_eval_reference *ref, int step, const float *logits, slot_score *score) {
    int32_t ours[5];
    int vocab = ref->vocab_size;
    ml_top_k_indices(logits, vocab, 5 < vocab ? 5 : vocab, ours);
    int32_t expected = ref->tokens[step];
    score->top1 += ours[0] == expected;
    for (int k = 0; k < 5 && k < vocab; k++)
        if (ours[k] == expected) {
            score->top5++;
            break;
        }
    const int32_t *theirs = ref->top_ids + (size_t)step * ref->top_k;
    int hf_k = ref->top_k < 5 ? ref->top_k : 5;
    for (int k = 0; k < hf_k; k++)
        if (theirs[k] == ours[0]) {
            score->top5_ref++;
            break;
        }
}

static double logit_error(const float *ours, const float *hf, int n) {
    double max_diff = 0, max_ref = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - hf[i]);
        if (!(d <= max_diff)) max_diff = d;
        if (fabs(hf[i]) > max_ref) max_ref = fabs(hf[i]);
    }
    return max_diff / (max_ref + 1e-30);
}

static int prefill(ml_model *m, const ml_eval_reference *ref, int batch, int token_by_token, float *logits) {
    int slots[ML_MAX_BATCH], starts[ML_MAX_BATCH], counts[ML_MAX_BATCH];
    for (int s = 0; s < batch; s++) {
        slots[s] = s;
        ML_TRY(ml_reset_slot(m, s));
    }
    int32_t *tokens = malloc((size_t)batch * ref->n_prompt * sizeof *tokens);
    if (!tokens) return ml_set_error(ML_ERR_NOMEM, "eval: out of memory");
    int status = ML_OK;
    int chunk = token_by_token ? 1 : ref->n_prompt;
    for (int begin = 0; begin < ref->n_prompt && status == ML_OK; begin += chunk) {
        int n = ref->n_prompt - begin < chunk ? ref->n_prompt - begin : chunk;
        for (int s = 0; s < batch; s++) {
            starts[s] = begin;
            counts[s] = n;
            memcpy(tokens + (size_t)s * n, ref->prompt + begin, (size_t)n * sizeof *tokens);
        }
        ml_batch b = {batch, slots, starts, counts, tokens, 0};
        status = ml_forward(m, &b, logits);
    }
    free(tokens);
    return status;
}

/* Under MPI every rank must score the same reference the same way (issue 14): a rank given
 * another file or decode length would wait in a collective the others never reach. */
static int agree_on_reference(ml_model *m, const ml_eval_reference *ref, int steps, int batch, int prefill_decode) {
    if (ml_model_n_ranks(m) <= 1) return ML_OK;
    ml_mesh_fingerprint items[2] = {{0}};
    items[0].what = "the eval reference";
    uint64_t hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, ref->prompt, (size_t)ref->n_prompt * sizeof *ref->prompt);
    items[0].hash = ml_fingerprint_hash(hash, ref->tokens, (size_t)ref->n_decode * sizeof *ref->tokens);
    snprintf(items[0].detail, sizeof items[0].detail, "%d prompt + %d reference tokens (hash %016llx)", ref->n_prompt,
             ref->n_decode, (unsigned long long)items[0].hash);
    items[1].what = "the eval options";
    int options[3] = {steps, batch, prefill_decode};
    items[1].hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, options, sizeof options);
    snprintf(items[1].detail, sizeof items[1].detail, "decode %d, batch %d%s", steps, batch,
             prefill_decode ? ", prefill-decode" : "");
    return ml_model_agree_fingerprint(m, items, 2);
}

int ml_eval_run(ml_model *m, const ml_eval_reference *ref, const ml_eval_params *params, ml_eval_result *out) {
    if (!m || !ref || !params || !out) return ml_set_error(ML_ERR_ARG, "ml_eval_run: NULL argument");
    memset(out, 0, sizeof *out);
    ml_model_info info;
    ml_model_get_info(m, &info);
    int steps = params->decode_len > 0 ? params->decode_len : ref->n_decode;
    int batch = params->batch > 0 ? params->batch : 1;
    ML_TRY(agree_on_reference(m, ref, steps, batch, params->prefill_decode));
    if (steps > ref->n_decode)
        return ml_set_error(ML_ERR_ARG, "decode length %d: the reference holds only %d tokens", steps, ref->n_decode);
    if (steps < 1) return ml_set_error(ML_ERR_ARG, "the reference holds no tokens to score");
    if (batch > info.max_batch)
        return ml_set_error(ML_ERR_ARG, "batch %d exceeds the model's max_batch %d", batch, info.max_batch);
    if (ref->vocab_size != info.vocab_size)
        return ml_set_error(ML_ERR_ARG, "the reference has vocab %d but the model %d: a reference of another model?",
                            ref->vocab_size, info.vocab_size);
    if ((long long)ref->n_prompt + steps > info.max_seq_len)
        return ml_set_error(ML_ERR_ARG, "prompt %d + decode %d exceeds max_seq_len %d", ref->n_prompt, steps,
                            info.max_seq_len);
    float *logits = malloc((size_t)batch * ref->vocab_size * sizeof *logits);
    slot_score *scores = calloc((size_t)batch, sizeof *scores);
    int32_t *tokens = malloc((size_t)batch * sizeof *tokens);
    if (!logits || !scores || !tokens) {
        free(logits);
        free(scores);
        free(tokens);
        return ml_set_error(ML_ERR_NOMEM, "eval: out of memory");
    }
    double start = ml_now_ms();
    int status = prefill(m, ref, batch, params->prefill_decode, logits);
    out->ttft_ms = ml_now_ms() - start;
    double decode_start = ml_now_ms();
    int slots[ML_MAX_BATCH], starts[ML_MAX_BATCH], counts[ML_MAX_BATCH];
    for (int step = 0; status == ML_OK && step < steps; step++) {
        for (int s = 0; s < batch; s++) score_step(ref, step, logits + (size_t)s * ref->vocab_size, &scores[s]);
        if (params->progress) params->progress(step + 1, steps, params->progress_user);
        if (step < ref->n_logit_steps) {
            for (int s = 0; s < batch; s++) {
                double err = logit_error(logits + (size_t)s * ref->vocab_size,
                                         ref->logits + (size_t)step * ref->vocab_size, ref->vocab_size);
                if (err > out->logit_error) out->logit_error = err;
            }
            out->logit_steps = step + 1;
        }
        if (step + 1 == steps) break;
        for (int s = 0; s < batch; s++) {
            slots[s] = s;
            starts[s] = ref->n_prompt + step;
            counts[s] = 1;
            tokens[s] = ref->tokens[step];
        }
        ml_batch b = {batch, slots, starts, counts, tokens, 0};
        status = ml_forward(m, &b, logits);
    }
    double decode_ms = ml_now_ms() - decode_start;
    if (status == ML_OK) {
        out->total = steps;
        out->top1 = (double)scores[0].top1 / steps;
        out->top5 = (double)scores[0].top5 / steps;
        out->top5_ref = (double)scores[0].top5_ref / steps;
        out->slots_agree = 1;
        for (int s = 1; s < batch; s++)
            out->slots_agree &= scores[s].top1 == scores[0].top1 && scores[s].top5 == scores[0].top5 &&
                                scores[s].top5_ref == scores[0].top5_ref;
        out->prefill_tok_s = out->ttft_ms > 0 ? (double)ref->n_prompt * batch * 1e3 / out->ttft_ms : 0;
        out->decode_tok_s_u = steps > 1 && decode_ms > 0 ? (steps - 1) * 1e3 / decode_ms : 0;
    }
    free(logits);
    free(scores);
    free(tokens);
    /* only rank 0 holds complete logits: its scores are the result everywhere */
    if (status == ML_OK) status = ml_model_broadcast(m, out, sizeof *out);
    return status;
}
