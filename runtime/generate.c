/* The generation loop: prefill the prompt (or feed it token by token through decode), then
 * sample one token per step until max_tokens, an end-of-generation id or a stop string.
 * Rank 0 holds the logits: it samples, decodes the text, runs the callback and broadcasts the
 * decision to the other ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/timer.h"
#include "meshllama.h"
#include "model/collectives.h"
#include "runtime/generation.h"

/* Special tokens that end a turn or a text in the chat formats in use (llama.cpp calls them
 * end-of-generation tokens); they count only when the tokenizer marks them special. */
static const char *const end_of_generation_names[] = {
    "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "<|end|>",
    "<end_of_turn>", "<|end_of_turn|>", "<|END_OF_TURN_TOKEN|>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
};

int ml_end_of_generation_ids(const ml_model *model, const ml_tokenizer *tok, int32_t *ids, int capacity) {
    int n = 0;
    if (capacity < 0 || (capacity > 0 && !ids)) capacity = 0;
    if (model) {
        ml_model_info info;
        ml_model_get_info(model, &info);
        for (int i = 0; i < info.n_eos; i++) n = ml_generation_add_id(ids, n, capacity, info.eos_token_ids[i]);
    }
    if (tok) {
        ml_tokenizer_info tinfo;
        ml_tokenizer_get_info(tok, &tinfo);
        n = ml_generation_add_id(ids, n, capacity, tinfo.eos_id);
        for (size_t i = 0; i < sizeof end_of_generation_names / sizeof *end_of_generation_names; i++) {
            const char *name = end_of_generation_names[i];
            int32_t id = ml_tokenizer_token_id(tok, name, strlen(name));
            if (id >= 0 && ml_tokenizer_is_special(tok, id)) n = ml_generation_add_id(ids, n, capacity, id);
        }
    }
    return n;
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
    if (ml_model_n_ranks(model) <= 1) return ML_OK;
    ml_mesh_fingerprint items[2] = {{0}};
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
    /* the penalties, warpers and stops: rank 0 samples, but every rank must stop at the same step */
    const float reals[5] = {sp->min_p, sp->typical_p, sp->repeat_penalty, sp->presence_penalty, sp->frequency_penalty};
    const int ints[5] = {sp->repeat_last_n, sp->min_tokens, sp->n_logit_bias, sp->n_stop_strings, sp->top_logprobs};
    hash = ml_fingerprint_hash(hash, reals, sizeof reals);
    hash = ml_fingerprint_hash(hash, ints, sizeof ints);
    if (sp->n_logit_bias > 0 && sp->logit_bias)
        hash = ml_fingerprint_hash(hash, sp->logit_bias, (size_t)sp->n_logit_bias * sizeof *sp->logit_bias);
    for (int i = 0; i < sp->n_stop_strings && sp->stop_strings; i++)
        if (sp->stop_strings[i]) hash = ml_fingerprint_hash(hash, sp->stop_strings[i], strlen(sp->stop_strings[i]) + 1);
    items[1].hash = hash;
    snprintf(items[1].detail, sizeof items[1].detail, "-n %d, temp %g, top-k %d, top-p %g, seed %llu%s%s",
             sp->max_tokens, sp->temperature, sp->top_k, sp->top_p, (unsigned long long)sp->seed,
             sp->ignore_eos ? ", ignore-eos" : "", sp->prefill_decode ? ", prefill-decode" : "");
    return ml_model_agree_fingerprint(model, items, 2);
}

static int check_request(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep,
                         const ml_sampling_params *sp, const int32_t *out_tokens) {
    if (!model || !prompt || !sp || (!out_tokens && sp->max_tokens > 0))
        return ml_set_error(ML_ERR_ARG, "ml_generate: model, prompt, params and out_tokens must not be NULL");
    if (n_prompt < 1) return ml_set_error(ML_ERR_ARG, "ml_generate: the prompt is empty; expected at least 1 token");
    if (sp->max_tokens < 0) return ml_set_error(ML_ERR_ARG, "max_tokens %d: expected >= 0", sp->max_tokens);
    if (n_keep < 0 || n_keep >= n_prompt)
        return ml_set_error(ML_ERR_ARG, "n_keep %d: expected 0..%d (at least one new prompt token)", n_keep, n_prompt - 1);
    if (sp->n_stop_tokens < 0 || (sp->n_stop_tokens > 0 && !sp->stop_tokens))
        return ml_set_error(ML_ERR_ARG, "stop_tokens: %d ids but no array", sp->n_stop_tokens);
    if (sp->n_stop_tokens > ML_GENERATION_MAX_STOP_TOKENS)
        return ml_set_error(ML_ERR_ARG, "stop_tokens: %d ids; at most %d", sp->n_stop_tokens,
                            ML_GENERATION_MAX_STOP_TOKENS);
    ml_model_info info;
    ml_model_get_info(model, &info);
    ML_TRY(agree_on_inputs(model, prompt, n_prompt, n_keep, sp));
    if ((long long)n_prompt + sp->max_tokens > info.max_seq_len)
        return ml_set_error(ML_ERR_ARG, "prompt of %d tokens plus %d new tokens exceeds max_seq_len %d", n_prompt,
                            sp->max_tokens, info.max_seq_len);
    return ML_OK;
}

static int run(ml_model *model, const ml_tokenizer *tok, const int32_t *prompt, int n_prompt, int n_keep,
               const ml_sampling_params *sp, unsigned flags, int text_mode, int32_t *out_tokens,
               ml_token_callback token_callback, ml_event_callback event_callback, void *user,
               ml_generate_stats *stats) {
    ML_TRY(check_request(model, prompt, n_prompt, n_keep, sp, out_tokens));
    if (!text_mode && sp->n_stop_strings > 0)
        return ml_set_error(ML_ERR_ARG, "stop_strings: %d given, but stop strings are matched on the text: use "
                                        "ml_generate_text with the model's tokenizer", sp->n_stop_strings);
    ml_model_info info;
    ml_model_get_info(model, &info);
    ml_generation g;
    ML_TRY(ml_generation_init(&g, model, tok, prompt, n_prompt, sp, flags, text_mode));
    ml_generate_stats local = {0, 0, 0.0, 0.0, ML_FINISH_LENGTH, -1};
    double start = ml_now_ms();
    int status = n_keep == 0 ? ml_reset_slot(model, 0) : ML_OK;
    if (status == ML_OK) status = prefill(model, prompt, n_prompt, n_keep, sp->prefill_decode, g.logits);
    local.prefill_ms = ml_now_ms() - start;
    start = ml_now_ms();
    for (int i = 0; status == ML_OK && i < sp->max_tokens; i++) {
        ml_decision d = {0, 0, -1};
        if (info.rank == 0)
            status = ml_generation_decide(&g, sp, g.logits, n_prompt, i, token_callback, event_callback, user, &d);
        /* a failure on rank 0 still broadcasts, so the other ranks do not wait forever */
        if (status != ML_OK) d.finish = ML_FINISH_CALLBACK + 1;
        int sent = ml_model_broadcast(model, &d, sizeof d);
        if (status == ML_OK) status = sent;
        if (status != ML_OK) break;
        out_tokens[local.n_generated++] = d.token;
        g.sequence[n_prompt + i] = d.token;
        if (info.rank != 0 && token_callback) token_callback(d.token, user);
        if (d.finish) {
            local.finish_reason = (ml_finish_reason)(d.finish - 1);
            local.stop_string = d.stop_string;
            local.stopped_at_eos = local.finish_reason == ML_FINISH_EOS;
            break;
        }
        if (i + 1 < sp->max_tokens) status = feed(model, &d.token, 1, n_prompt + i, g.logits);
    }
    local.decode_ms = ml_now_ms() - start;
    ml_generation_free(&g);
    if (stats) *stats = local;
    return status;
}

int ml_generate(ml_model *model, const int32_t *prompt, int n_prompt, const ml_sampling_params *sp,
                int32_t *out_tokens, ml_token_callback callback, void *user, ml_generate_stats *stats) {
    return run(model, NULL, prompt, n_prompt, 0, sp, 0, 0, out_tokens, callback, NULL, user, stats);
}

int ml_generate_continue(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep,
                         const ml_sampling_params *sp, int32_t *out_tokens, ml_token_callback callback,
                         void *user, ml_generate_stats *stats) {
    return run(model, NULL, prompt, n_prompt, n_keep, sp, 0, 0, out_tokens, callback, NULL, user, stats);
}

int ml_generate_text(ml_model *model, const ml_tokenizer *tok, const int32_t *prompt, int n_prompt, int n_keep,
                     const ml_sampling_params *sp, unsigned detokenize_flags, int32_t *out_tokens,
                     ml_event_callback callback, void *user, ml_generate_stats *stats) {
    return run(model, tok, prompt, n_prompt, n_keep, sp, detokenize_flags, 1, out_tokens, NULL, callback, user,
               stats);
}
