/* The generation loop: prefill the prompt (or feed it token by token through decode), then
 * sample one token per step until max_tokens or an EOS id of the config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/timer.h"
#include "meshllama.h"
#include "model/collectives.h"
#include "runtime/sampler.h"

static int is_stop(const ml_model_info *info, const ml_sampling_params *sp, int32_t token) {
    for (int i = 0; i < info->n_eos; i++)
        if (info->eos_token_ids[i] == token) return 1;
    for (int i = 0; i < sp->n_stop_tokens; i++)
        if (sp->stop_tokens[i] == token) return 1;
    return 0;
}

static int feed(ml_model *model, const int32_t *tokens, int n, int start_pos, float *logits) {
    int slot = 0;
    ml_batch batch = {.n_seq = 1, .slots = &slot, .start_pos = &start_pos, .n_tokens = &n, .tokens = tokens};
    return ml_forward(model, &batch, logits);
}

static int prefill(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep, int token_by_token,
                   float *logits) {
    if (!token_by_token) return feed(model, prompt + n_keep, n_prompt - n_keep, n_keep, logits);
    for (int i = n_keep; i < n_prompt; i++) ML_TRY(feed(model, prompt + i, 1, i, logits));
    return ML_OK;
}

/* Under MPI every rank must generate from the same prompt with the same options; a rank given
 * others would deadlock in a collective or produce different tokens. */
static int agree_on_inputs(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep,
                           const ml_sampling_params *sp) {
    ml_model_info info;
    ml_model_get_info(model, &info);
    if (info.n_ranks <= 1) return ML_OK;
    ml_mesh_fingerprint items[2];
    memset(items, 0, sizeof items);
    items[0].what = "the prompt";
    uint64_t hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, &n_prompt, sizeof n_prompt);
    hash = ml_fingerprint_hash(hash, &n_keep, sizeof n_keep);
    items[0].hash = ml_fingerprint_hash(hash, prompt, (size_t)n_prompt * sizeof *prompt);
    snprintf(items[0].detail, sizeof items[0].detail, "%d tokens (hash %016llx)", n_prompt,
             (unsigned long long)items[0].hash);
    items[1].what = "the sampling options";
    hash = ML_FINGERPRINT_SEED;
    hash = ml_fingerprint_hash(hash, &sp->temperature, sizeof sp->temperature);
    hash = ml_fingerprint_hash(hash, &sp->top_k, sizeof sp->top_k);
    hash = ml_fingerprint_hash(hash, &sp->top_p, sizeof sp->top_p);
    hash = ml_fingerprint_hash(hash, &sp->seed, sizeof sp->seed);
    hash = ml_fingerprint_hash(hash, &sp->max_tokens, sizeof sp->max_tokens);
    hash = ml_fingerprint_hash(hash, &sp->ignore_eos, sizeof sp->ignore_eos);
    hash = ml_fingerprint_hash(hash, &sp->prefill_decode, sizeof sp->prefill_decode);
    hash = ml_fingerprint_hash(hash, &sp->n_stop_tokens, sizeof sp->n_stop_tokens);
    if (sp->n_stop_tokens > 0)
        hash = ml_fingerprint_hash(hash, sp->stop_tokens, (size_t)sp->n_stop_tokens * sizeof *sp->stop_tokens);
    items[1].hash = hash;
    snprintf(items[1].detail, sizeof items[1].detail, "-n %d, temp %g, top-k %d, top-p %g, seed %llu%s%s",
             sp->max_tokens, sp->temperature, sp->top_k, sp->top_p, (unsigned long long)sp->seed,
             sp->ignore_eos ? ", ignore-eos" : "", sp->prefill_decode ? ", prefill-decode" : "");
    return ml_model_agree_fingerprint(model, items, 2);
}

int ml_generate(ml_model *model, const int32_t *prompt, int n_prompt, const ml_sampling_params *sp,
                int32_t *out_tokens, ml_token_callback callback, void *user, ml_generate_stats *stats) {
    return ml_generate_continue(model, prompt, n_prompt, 0, sp, out_tokens, callback, user, stats);
}

int ml_generate_continue(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep,
                         const ml_sampling_params *sp, int32_t *out_tokens, ml_token_callback callback,
                         void *user, ml_generate_stats *stats) {
    if (!model || !prompt || !sp || (!out_tokens && sp->max_tokens > 0))
        return ml_set_error(ML_ERR_ARG, "ml_generate: model, prompt, params and out_tokens must not be NULL");
    if (n_prompt < 1) return ml_set_error(ML_ERR_ARG, "ml_generate: the prompt is empty; expected at least 1 token");
    if (sp->max_tokens < 0) return ml_set_error(ML_ERR_ARG, "max_tokens %d: expected >= 0", sp->max_tokens);
    if (n_keep < 0 || n_keep >= n_prompt)
        return ml_set_error(ML_ERR_ARG, "n_keep %d: expected 0..%d (at least one new prompt token)", n_keep, n_prompt - 1);
    if (sp->n_stop_tokens < 0 || (sp->n_stop_tokens > 0 && !sp->stop_tokens))
        return ml_set_error(ML_ERR_ARG, "stop_tokens: %d ids but no array", sp->n_stop_tokens);
    ml_model_info info;
    ml_model_get_info(model, &info);
    ML_TRY(agree_on_inputs(model, prompt, n_prompt, n_keep, sp));
    if ((long long)n_prompt + sp->max_tokens > info.max_seq_len)
        return ml_set_error(ML_ERR_ARG, "prompt of %d tokens plus %d new tokens exceeds max_seq_len %d", n_prompt,
                            sp->max_tokens, info.max_seq_len);
    ml_sampler sampler;
    ML_TRY(ml_sampler_init(&sampler, sp, info.vocab_size));
    float *logits = malloc((size_t)info.vocab_size * sizeof *logits);
    if (!logits) {
        ml_sampler_free(&sampler);
        return ml_set_error(ML_ERR_NOMEM, "ml_generate: out of memory for logits");
    }
    ml_generate_stats local = {0, 0, 0.0, 0.0};
    double start = ml_now_ms();
    int status = n_keep == 0 ? ml_reset_slot(model, 0) : ML_OK;
    if (status == ML_OK) status = prefill(model, prompt, n_prompt, n_keep, sp->prefill_decode, logits);
    local.prefill_ms = ml_now_ms() - start;
    start = ml_now_ms();
    for (int i = 0; status == ML_OK && i < sp->max_tokens; i++) {
        /* rank 0 holds the logits: it samples, runs the callback and tells the others */
        struct {
            int32_t token;
            int32_t stop;
        } decision = {0, 0};
        if (info.rank == 0) {
            decision.token = ml_sampler_pick(&sampler, logits);
            decision.stop = callback && callback(decision.token, user) != 0;
        }
        status = ml_model_broadcast(model, &decision, sizeof decision);
        if (status != ML_OK) break;
        int32_t token = decision.token;
        out_tokens[local.n_generated++] = token;
        if (info.rank != 0 && callback) callback(token, user);
        if (decision.stop) break;
        if (!sp->ignore_eos && is_stop(&info, sp, token)) {
            local.stopped_at_eos = 1;
            break;
        }
        if (i + 1 < sp->max_tokens) status = feed(model, &token, 1, n_prompt + i, logits);
    }
    local.decode_ms = ml_now_ms() - start;
    free(logits);
    ml_sampler_free(&sampler);
    if (stats) *stats = local;
    return status;
}
