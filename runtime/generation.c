#include "runtime/generation.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int ml_generation_add_id(int32_t *ids, int n, int capacity, int32_t id) {
    if (id < 0) return n;
    for (int i = 0; i < n && i < capacity; i++)
        if (ids[i] == id) return n;
    if (n < capacity) ids[n] = id;
    return n + 1;
}

void ml_generation_free(ml_generation *g) {
    ml_sampler_free(&g->sampler);
    free(g->logits);
    free(g->sequence);
    if (g->text_mode) ml_text_stream_free(&g->text);
    g->logits = NULL;
    g->sequence = NULL;
    g->text_mode = 0;
}

int ml_generation_init(ml_generation *g, const ml_model *model, const ml_tokenizer *tok, const int32_t *prompt,
                       int n_prompt, const ml_sampling_params *sp, unsigned flags, int text_mode) {
    memset(g, 0, sizeof *g);
    ml_model_info info;
    ml_model_get_info(model, &info);
    if (sp->n_stop_tokens < 0 || (sp->n_stop_tokens > 0 && !sp->stop_tokens))
        return ml_set_error(ML_ERR_ARG, "stop_tokens: %d ids but no array", sp->n_stop_tokens);
    if (sp->n_stop_tokens > ML_GENERATION_MAX_STOP_TOKENS)
        return ml_set_error(ML_ERR_ARG, "stop_tokens: %d ids; at most %d", sp->n_stop_tokens,
                            ML_GENERATION_MAX_STOP_TOKENS);
    ML_TRY(ml_sampler_init(&g->sampler, sp, info.vocab_size));
    if (text_mode) {
        int status = ml_text_stream_init(&g->text, tok, flags, sp->stop_strings, sp->n_stop_strings);
        g->text_mode = 1;
        if (status != ML_OK) {
            ml_generation_free(g);
            return status;
        }
    }
    g->logits = malloc((size_t)info.vocab_size * sizeof *g->logits);
    g->sequence = malloc(((size_t)n_prompt + (size_t)sp->max_tokens) * sizeof *g->sequence);
    if (!g->logits || !g->sequence) {
        ml_generation_free(g);
        return ml_set_error(ML_ERR_NOMEM, "ml_generate: out of memory for logits and a sequence of %d tokens",
                            n_prompt + sp->max_tokens);
    }
    memcpy(g->sequence, prompt, (size_t)n_prompt * sizeof *prompt);
    const int capacity = ML_GENERATION_MAX_END_IDS;
    if (!sp->ignore_eos) g->n_end = ml_end_of_generation_ids(model, text_mode ? tok : NULL, g->end_ids, capacity);
    if (g->n_end > capacity) g->n_end = capacity;
    for (int i = 0; i < sp->n_stop_tokens; i++)
        g->n_end = ml_generation_add_id(g->end_ids, g->n_end, capacity + ML_GENERATION_MAX_STOP_TOKENS,
                                        sp->stop_tokens[i]);
    return ML_OK;
}

static int is_end(const ml_generation *g, int32_t token) {
    for (int i = 0; i < g->n_end; i++)
        if (g->end_ids[i] == token) return 1;
    return 0;
}

int ml_generation_decide(ml_generation *g, const ml_sampling_params *sp, const float *logits, int n_prompt, int i,
                         ml_token_callback token_callback, ml_event_callback event_callback, void *user,
                         ml_decision *d) {
    ml_sampler_context ctx = {g->sequence, n_prompt + i, n_prompt, g->end_ids, i < sp->min_tokens ? g->n_end : 0};
    d->token = ml_sampler_pick(&g->sampler, logits, &ctx);
    d->stop_string = -1;
    int ended = is_end(g, d->token);
    if (ended) d->finish = ML_FINISH_EOS + 1;
    if (token_callback && token_callback(d->token, user) != 0 && !d->finish) d->finish = ML_FINISH_CALLBACK + 1;
    if (!event_callback) return ML_OK;
    ml_token_event ev;
    memset(&ev, 0, sizeof ev);
    ev.token = d->token;
    ev.index = i;
    if (sp->logprobs || sp->top_logprobs > 0) {
        ml_logprobs(logits, g->sampler.vocab_size, d->token, sp->top_logprobs, &ev.logprob, g->top_ids,
                    g->top_logprobs);
        ev.n_top = sp->top_logprobs;
        ev.top_ids = g->top_ids;
        ev.top_logprobs = g->top_logprobs;
    }
    if (g->text_mode) {
        int matched;
        ML_TRY(ml_text_stream_push(&g->text, d->token, ended, i + 1 >= sp->min_tokens, &matched));
        if (matched >= 0) {
            d->finish = ML_FINISH_STOP_STRING + 1;
            d->stop_string = matched;
        } else if (d->finish || i + 1 == sp->max_tokens) {
            ML_TRY(ml_text_stream_flush(&g->text));
        }
        ev.text = g->text.out ? g->text.out : "";
        ev.text_length = g->text.n_out;
    }
    ev.is_end = d->finish == ML_FINISH_EOS + 1 || d->finish == ML_FINISH_STOP_STRING + 1;
    if (event_callback(&ev, user) != 0 && !d->finish) d->finish = ML_FINISH_CALLBACK + 1;
    return ML_OK;
}
