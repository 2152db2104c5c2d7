/* Continuous batching: many sequences over the model's KV slots, one forward per step. A step
 * feeds every decoding sequence its last token and gives the sequences still reading their
 * prompts up to prefill_chunk prompt tokens between them (oldest first), all in one ml_forward;
 * then each sequence whose prompt is read samples its next token through the same
 * ml_generation_decide as ml_generate_text. Rank 0 samples; the decisions of a step are
 * broadcast together so every rank keeps the same sequences. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/timer.h"
#include "meshllama.h"
#include "model/collectives.h"
#include "runtime/generation.h"

enum { DEFAULT_PREFILL_CHUNK = 256 };

typedef struct {
    int running;
    uint64_t arrival;          /* add order: the oldest prompt is read first */
    ml_sampling_params sp;     /* its arrays point into the copies below */
    ml_logit_bias *logit_bias;
    int32_t *stop_tokens;
    char **stop_strings;
    ml_generation gen;         /* gen.sequence: prompt then generated tokens */
    int n_prompt;
    int n_fed;                 /* positions in the KV slot */
    int n_generated;
    ml_event_callback on_event;
    void (*on_done)(const ml_generate_stats *stats, int status, void *user);
    void *user;
    double added_ms, first_token_ms;
} sequence;

struct ml_generator {
    ml_model *model;
    const ml_tokenizer *tok;
    ml_model_info info;
    int prefill_chunk;
    uint64_t arrivals;
    sequence seqs[ML_MAX_BATCH];    /* by slot */
    float *logits;                  /* [max_batch, vocab] */
    int slots[ML_MAX_BATCH], start_pos[ML_MAX_BATCH], n_tokens[ML_MAX_BATCH];
    int32_t *tokens;                /* [prefill_chunk + max_batch] */
    int sampled[ML_MAX_BATCH];      /* entry of the batch sampled this step, by slot; -1 none */
    ml_decision decisions[ML_MAX_BATCH];
};

static void sequence_free(sequence *s) {
    if (s->stop_strings)
        for (int i = 0; i < s->sp.n_stop_strings; i++) free(s->stop_strings[i]);
    free(s->stop_strings);
    free(s->logit_bias);
    free(s->stop_tokens);
    ml_generation_free(&s->gen);
    memset(s, 0, sizeof *s);
}

int ml_generator_create(ml_model *model, const ml_tokenizer *tok, const ml_generator_params *params,
                        ml_generator **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_generator_create: out must not be NULL");
    *out = NULL;
    if (!model || !tok) return ml_set_error(ML_ERR_ARG, "ml_generator_create: model and tokenizer must not be NULL");
    int chunk = params && params->prefill_chunk > 0 ? params->prefill_chunk : DEFAULT_PREFILL_CHUNK;
    if (params && params->prefill_chunk < 0)
        return ml_set_error(ML_ERR_ARG, "prefill_chunk %d: expected >= 1 (0: the default %d)", params->prefill_chunk,
                            DEFAULT_PREFILL_CHUNK);
    ml_generator *gen = calloc(1, sizeof *gen);
    if (!gen) return ml_set_error(ML_ERR_NOMEM, "ml_generator_create: out of memory");
    gen->model = model;
    gen->tok = tok;
    ml_model_get_info(model, &gen->info);
    gen->prefill_chunk = chunk;
    gen->logits = malloc((size_t)gen->info.max_batch * (size_t)gen->info.vocab_size * sizeof *gen->logits);
    gen->tokens = malloc(((size_t)chunk + ML_MAX_BATCH) * sizeof *gen->tokens);
    if (!gen->logits || !gen->tokens) {
        ml_generator_free(gen);
        return ml_set_error(ML_ERR_NOMEM, "ml_generator_create: out of memory for %d slots of %d logits",
                            gen->info.max_batch, gen->info.vocab_size);
    }
    *out = gen;
    return ML_OK;
}

void ml_generator_free(ml_generator *gen) {
    if (!gen) return;
    for (int slot = 0; slot < ML_MAX_BATCH; slot++)
        if (gen->seqs[slot].running) sequence_free(&gen->seqs[slot]);
    free(gen->logits);
    free(gen->tokens);
    free(gen);
}

int ml_generator_free_slots(const ml_generator *gen) {
    if (!gen) return 0;
    int n = 0;
    for (int slot = 0; slot < gen->info.max_batch; slot++) n += !gen->seqs[slot].running;
    return n;
}

/* The request's sampling parameters with their arrays copied, so the caller's may go. */
static int copy_sampling(sequence *s, const ml_sampling_params *sp) {
    s->sp = *sp;
    s->sp.logit_bias = NULL;
    s->sp.stop_tokens = NULL;
    s->sp.stop_strings = NULL;
    if (sp->n_logit_bias > 0 && sp->logit_bias) {
        s->logit_bias = malloc((size_t)sp->n_logit_bias * sizeof *s->logit_bias);
        if (!s->logit_bias) return ml_set_error(ML_ERR_NOMEM, "ml_generator_add: out of memory");
        memcpy(s->logit_bias, sp->logit_bias, (size_t)sp->n_logit_bias * sizeof *s->logit_bias);
        s->sp.logit_bias = s->logit_bias;
    }
    if (sp->n_stop_tokens > 0 && sp->stop_tokens) {
        s->stop_tokens = malloc((size_t)sp->n_stop_tokens * sizeof *s->stop_tokens);
        if (!s->stop_tokens) return ml_set_error(ML_ERR_NOMEM, "ml_generator_add: out of memory");
        memcpy(s->stop_tokens, sp->stop_tokens, (size_t)sp->n_stop_tokens * sizeof *s->stop_tokens);
        s->sp.stop_tokens = s->stop_tokens;
    }
    if (sp->n_stop_strings > 0 && sp->stop_strings) {
        s->stop_strings = calloc((size_t)sp->n_stop_strings, sizeof *s->stop_strings);
        if (!s->stop_strings) return ml_set_error(ML_ERR_NOMEM, "ml_generator_add: out of memory");
        for (int i = 0; i < sp->n_stop_strings; i++) {
            if (!sp->stop_strings[i]) continue; /* ml_text_stream_init names it */
            s->stop_strings[i] = strdup(sp->stop_strings[i]);
            if (!s->stop_strings[i]) return ml_set_error(ML_ERR_NOMEM, "ml_generator_add: out of memory");
        }
        s->sp.stop_strings = (const char *const *)s->stop_strings;
    }
    return ML_OK;
}

int ml_generator_add(ml_generator *gen, const ml_sequence_request *request, int *out_slot) {
    if (!gen || !request || !request->sampling || (!request->prompt && request->n_prompt > 0))
        return ml_set_error(ML_ERR_ARG, "ml_generator_add: generator, request, prompt and sampling must not be NULL");
    const ml_sampling_params *sp = request->sampling;
    if (request->n_prompt < 1)
        return ml_set_error(ML_ERR_ARG, "ml_generator_add: the prompt is empty; expected at least 1 token");
    if (sp->max_tokens < 1) return ml_set_error(ML_ERR_ARG, "max_tokens %d: expected >= 1", sp->max_tokens);
    if ((long long)request->n_prompt + sp->max_tokens > gen->info.max_seq_len)
        return ml_set_error(ML_ERR_ARG, "prompt of %d tokens plus %d new tokens exceeds the context of %d positions",
                            request->n_prompt, sp->max_tokens, gen->info.max_seq_len);
    if (sp->prefill_decode)
        return ml_set_error(ML_ERR_UNSUPPORTED, "ml_generator_add: prefill_decode is a debugging mode of ml_generate");
    for (int i = 0; i < request->n_prompt; i++)
        if (request->prompt[i] < 0 || request->prompt[i] >= gen->info.vocab_size)
            return ml_set_error(ML_ERR_ARG, "prompt token %d at index %d: expected an id in 0..%d", request->prompt[i],
                                i, gen->info.vocab_size - 1);
    int slot = -1;
    for (int i = 0; i < gen->info.max_batch && slot < 0; i++)
        if (!gen->seqs[i].running) slot = i;
    if (slot < 0) return ml_set_error(ML_ERR_UNSUPPORTED, "ml_generator_add: all %d slots are busy", gen->info.max_batch);
    sequence *s = &gen->seqs[slot];
    memset(s, 0, sizeof *s);
    int status = copy_sampling(s, sp);
    if (status == ML_OK)
        status = ml_generation_init(&s->gen, gen->model, gen->tok, request->prompt, request->n_prompt, &s->sp,
                                    request->detokenize_flags, 1);
    if (status == ML_OK) status = ml_reset_slot(gen->model, slot);
    if (status != ML_OK) {
        sequence_free(s);
        return status;
    }
    s->running = 1;
    s->arrival = gen->arrivals++;
    s->n_prompt = request->n_prompt;
    s->on_event = request->on_event;
    s->on_done = request->on_done;
    s->user = request->user;
    s->added_ms = ml_now_ms();
    if (out_slot) *out_slot = slot;
    return ML_OK;
}

int ml_generator_cancel(ml_generator *gen, int slot) {
    if (!gen || slot < 0 || slot >= gen->info.max_batch || !gen->seqs[slot].running)
        return ml_set_error(ML_ERR_ARG, "ml_generator_cancel: slot %d holds no sequence", slot);
    sequence_free(&gen->seqs[slot]);
    return ML_OK;
}

static void finish(sequence *s, ml_finish_reason reason, int stop_string, int status) {
    if (s->on_done) {
        double now = ml_now_ms();
        ml_generate_stats stats = {0, 0, 0.0, 0.0, reason, stop_string};
        stats.n_generated = s->n_generated;
        stats.stopped_at_eos = reason == ML_FINISH_EOS;
        stats.prefill_ms = (s->first_token_ms > 0 ? s->first_token_ms : now) - s->added_ms;
        stats.decode_ms = s->first_token_ms > 0 ? now - s->first_token_ms : 0.0;
        s->on_done(&stats, status, s->user);
    }
    sequence_free(s);
}

/* The batch of this step: decoding sequences first (one token each), then prompt chunks of the
 * oldest sequences still reading their prompts, up to prefill_chunk tokens in all. */
static int plan_step(ml_generator *gen) {
    int n_seq = 0, n_tok = 0;
    for (int slot = 0; slot < gen->info.max_batch; slot++) {
        sequence *s = &gen->seqs[slot];
        if (!s->running || s->n_fed < s->n_prompt) continue;
        gen->slots[n_seq] = slot;
        gen->start_pos[n_seq] = s->n_fed;
        gen->n_tokens[n_seq] = 1;
        gen->tokens[n_tok++] = s->gen.sequence[s->n_fed];
        n_seq++;
    }
    int budget = gen->prefill_chunk;
    while (budget > 0) {
        sequence *oldest = NULL;
        int oldest_slot = -1;
        for (int slot = 0; slot < gen->info.max_batch; slot++) {
            sequence *s = &gen->seqs[slot];
            if (!s->running || s->n_fed >= s->n_prompt) continue;
            int planned = 0;
            for (int e = 0; e < n_seq; e++) planned |= gen->slots[e] == slot;
            if (planned) continue;
            if (!oldest || s->arrival < oldest->arrival) {
                oldest = s;
                oldest_slot = slot;
            }
        }
        if (!oldest) break;
        int take = oldest->n_prompt - oldest->n_fed;
        if (take > budget) take = budget;
        gen->slots[n_seq] = oldest_slot;
        gen->start_pos[n_seq] = oldest->n_fed;
        gen->n_tokens[n_seq] = take;
        memcpy(gen->tokens + n_tok, oldest->gen.sequence + oldest->n_fed, (size_t)take * sizeof *gen->tokens);
        n_tok += take;
        budget -= take;
        n_seq++;
    }
    return n_seq;
}

int ml_broadcast(ml_model *model, void *buf, size_t bytes) {
    if (!model || (!buf && bytes > 0)) return ml_set_error(ML_ERR_ARG, "ml_broadcast: model and buf must not be NULL");
    return ml_model_broadcast(model, buf, bytes);
}

int ml_generator_step(ml_generator *gen) {
    if (!gen) return ml_set_error(ML_ERR_ARG, "ml_generator_step: generator must not be NULL");
    int n_seq = plan_step(gen);
    if (n_seq == 0) return ML_OK;
    ml_batch batch = {n_seq, gen->slots, gen->start_pos, gen->n_tokens, gen->tokens, 0};
    int status = ml_forward(gen->model, &batch, gen->logits);
    /* each sequence that has read its prompt samples one token; rank 0 decides for all */
    int n_sampled = 0;
    for (int e = 0; e < n_seq && status == ML_OK; e++) {
        sequence *s = &gen->seqs[gen->slots[e]];
        s->n_fed += gen->n_tokens[e];
        gen->sampled[e] = -1;
        if (s->n_fed < s->n_prompt) continue;
        gen->sampled[e] = n_sampled;
        ml_decision *d = &gen->decisions[n_sampled++];
        memset(d, 0, sizeof *d);
        d->stop_string = -1;
        if (gen->info.rank != 0) continue;
        const float *logits = gen->logits + (size_t)e * (size_t)gen->info.vocab_size;
        status = ml_generation_decide(&s->gen, &s->sp, logits, s->n_prompt, s->n_generated, NULL, s->on_event,
                                      s->user, d);
    }
    /* a failure on rank 0 still broadcasts, so the other ranks do not wait forever */
    int32_t header[2] = {status, n_sampled};
    if (gen->info.n_ranks > 1) {
        int sent = ml_model_broadcast(gen->model, header, sizeof header);
        if (sent == ML_OK && header[0] == ML_OK && header[1] > 0)
            sent = ml_model_broadcast(gen->model, gen->decisions, (size_t)header[1] * sizeof *gen->decisions);
        if (status == ML_OK) status = sent != ML_OK ? sent : header[0];
    }
    if (status != ML_OK) {
        for (int slot = 0; slot < gen->info.max_batch; slot++)
            if (gen->seqs[slot].running) finish(&gen->seqs[slot], ML_FINISH_CALLBACK, -1, status);
        return status;
    }
    double now = ml_now_ms();
    for (int e = 0; e < n_seq; e++) {
        if (gen->sampled[e] < 0) continue;
        sequence *s = &gen->seqs[gen->slots[e]];
        const ml_decision *d = &gen->decisions[gen->sampled[e]];
        s->gen.sequence[s->n_prompt + s->n_generated] = d->token;
        s->n_generated++;
        if (s->n_generated == 1) s->first_token_ms = now;
        if (d->finish) finish(s, (ml_finish_reason)(d->finish - 1), d->stop_string, ML_OK);
        else if (s->n_generated == s->sp.max_tokens) finish(s, ML_FINISH_LENGTH, -1, ML_OK);
    }
    return ML_OK;
}
