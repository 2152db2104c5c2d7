/* The continuous-batching generator (runtime/generator.c) on the default model: greedy
 * sequences give exactly the tokens of ml_generate_text alone, whether they start together,
 * arrive while others decode, read their prompts in small chunks, or share the batch with
 * sampled and cancelled peers (batch invariance: ids compared exactly). Bad requests are
 * ML_ERR_ARG / ML_ERR_UNSUPPORTED naming the field, and a cancelled slot is free at once. */
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "test_util.h"

enum { N_PROMPTS = 6, MAX_NEW = 24 };

static const char *const prompts[N_PROMPTS] = {
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):",
    "List three colors:",
    "Water boils at",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. "
    "The quick brown fox jumps over the lazy dog. Tell me a story about it.",
};

typedef struct {
    int32_t ids[MAX_NEW];
    int n;
    char text[4096];
    size_t text_length;
    int done;
    ml_generate_stats stats;
    int status;
    int stop_after; /* >0: the event callback returns non-zero at this many tokens */
} outcome;

static int on_event(const ml_token_event *ev, void *user) {
    outcome *o = user;
    if (o->n < MAX_NEW) o->ids[o->n++] = ev->token;
    if (o->text_length + ev->text_length < sizeof o->text) {
        memcpy(o->text + o->text_length, ev->text, ev->text_length);
        o->text_length += ev->text_length;
    }
    return o->stop_after > 0 && o->n >= o->stop_after;
}

static void on_done(const ml_generate_stats *stats, int status, void *user) {
    outcome *o = user;
    o->done++;
    o->stats = *stats;
    o->status = status;
}

typedef struct {
    int32_t *ids;
    size_t n;
} prompt_ids;

static void solo(ml_model *model, ml_tokenizer *tok, const prompt_ids *p, const ml_sampling_params *sp,
                 outcome *o) {
    memset(o, 0, sizeof *o);
    int32_t out[MAX_NEW];
    ml_generate_stats stats;
    int status = ml_generate_text(model, tok, p->ids, (int)p->n, 0, sp, 0, out, on_event, o, &stats);
    CHECK(status == ML_OK, "ml_generate_text: %s", ml_last_error());
    o->stats = stats;
}

static int add(ml_generator *gen, const prompt_ids *p, const ml_sampling_params *sp, outcome *o) {
    ml_sequence_request req = {p->ids, (int)p->n, sp, 0, on_event, on_done, o};
    int slot = -1;
    int status = ml_generator_add(gen, &req, &slot);
    CHECK(status == ML_OK, "ml_generator_add: %s", ml_last_error());
    return slot;
}

static void run_until_idle(ml_generator *gen, int max_batch) {
    for (int steps = 0; ml_generator_free_slots(gen) < max_batch && steps < 10000; steps++)
        CHECK(ml_generator_step(gen) == ML_OK, "step: %s", ml_last_error());
}

static void compare(const outcome *got, const outcome *want, const char *what, int i) {
    CHECK(got->done == 1, "%s %d: on_done called %d times", what, i, got->done);
    CHECK(got->n == want->n, "%s %d: %d tokens, solo %d", what, i, got->n, want->n);
    CHECK(memcmp(got->ids, want->ids, (size_t)want->n * sizeof *want->ids) == 0, "%s %d: ids differ from solo",
          what, i);
    CHECK(got->text_length == want->text_length && memcmp(got->text, want->text, want->text_length) == 0,
          "%s %d: text differs from solo", what, i);
    CHECK(got->stats.finish_reason == want->stats.finish_reason, "%s %d: finish %d, solo %d", what, i,
          (int)got->stats.finish_reason, (int)want->stats.finish_reason);
}

static void bad_requests(ml_generator *gen, const prompt_ids *p, int max_seq_len) {
    ml_sampling_params sp = ml_sampling_default_params();
    outcome o;
    ml_sequence_request req = {p->ids, 0, &sp, 0, on_event, on_done, &o};
    CHECK(ml_generator_add(gen, &req, NULL) == ML_ERR_ARG, "an empty prompt is ML_ERR_ARG");
    req.n_prompt = (int)p->n;
    sp.max_tokens = 0;
    CHECK(ml_generator_add(gen, &req, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "max_tokens"),
          "max_tokens 0 names max_tokens: %s", ml_last_error());
    sp.max_tokens = max_seq_len;
    CHECK(ml_generator_add(gen, &req, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "context"),
          "a request longer than the context names it: %s", ml_last_error());
    sp.max_tokens = 4;
    sp.top_p = 2.0f;
    CHECK(ml_generator_add(gen, &req, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "top_p"),
          "top_p 2 names top_p: %s", ml_last_error());
    sp.top_p = 1.0f;
    int32_t bad_token = -3;
    req.prompt = &bad_token;
    req.n_prompt = 1;
    CHECK(ml_generator_add(gen, &req, NULL) == ML_ERR_ARG, "a negative prompt id is ML_ERR_ARG");
    CHECK(ml_generator_cancel(gen, 0) == ML_ERR_ARG, "cancelling a free slot is ML_ERR_ARG");
    CHECK(ml_generator_step(gen) == ML_OK, "a step with nothing running does nothing");
    CHECK(ml_generator_step(NULL) == ML_ERR_ARG, "a NULL generator is ML_ERR_ARG");
    CHECK(ml_generator_free_slots(NULL) == 0, "a NULL generator has no free slot");
    ml_generator_free(NULL);
}

static void bad_creation(ml_model *model, ml_tokenizer *tok) {
    ml_generator *gen = (ml_generator *)&gen;
    ml_generator_params gp = {-1};
    CHECK(ml_generator_create(model, tok, &gp, &gen) == ML_ERR_ARG && !gen && strstr(ml_last_error(), "prefill_chunk"),
          "a negative prefill_chunk names it: %s", ml_last_error());
    CHECK(ml_generator_create(NULL, tok, NULL, &gen) == ML_ERR_ARG, "a NULL model is ML_ERR_ARG");
    CHECK(ml_generator_create(model, NULL, NULL, &gen) == ML_ERR_ARG, "a NULL tokenizer is ML_ERR_ARG");
    CHECK(ml_generator_create(model, tok, NULL, NULL) == ML_ERR_ARG, "a NULL out is ML_ERR_ARG");
    int32_t value = 7;
    CHECK(ml_broadcast(model, &value, sizeof value) == ML_OK && value == 7, "ml_broadcast in one process keeps the bytes");
    CHECK(ml_broadcast(NULL, &value, sizeof value) == ML_ERR_ARG, "ml_broadcast without a model is ML_ERR_ARG");
    CHECK(ml_broadcast(model, NULL, 4) == ML_ERR_ARG, "ml_broadcast without a buffer is ML_ERR_ARG");
}

/* The other precisions: fast activations (bf16 matmul inputs) with a bf16 KV cache, tp 3 (an
 * uneven split): all six prompts together, in chunks of 5, give the solo ids. */
static void together_in_fast_mode(const char *path) {
    ml_model_params mp = ml_model_default_params();
    mp.max_batch = N_PROMPTS;
    mp.max_seq_len = 256;
    mp.tp = 3;
    mp.act_mode = ML_ACT_FAST;
    mp.kv_dtype = ML_KV_BF16;
    ml_model *model = NULL;
    ml_tokenizer *tok = NULL;
    ml_generator *gen = NULL;
    CHECK(ml_model_open(path, &mp, &model) == ML_OK, "open fast: %s", ml_last_error());
    CHECK(model && ml_model_open_tokenizer(model, &tok) == ML_OK, "tokenizer: %s", ml_last_error());
    ml_generator_params gp = {5};
    CHECK(tok && ml_generator_create(model, tok, &gp, &gen) == ML_OK, "create: %s", ml_last_error());
    ml_sampling_params greedy = ml_sampling_default_params();
    greedy.max_tokens = MAX_NEW;
    static outcome want[N_PROMPTS], got[N_PROMPTS];
    prompt_ids p[N_PROMPTS];
    memset(p, 0, sizeof p);
    for (int i = 0; gen && i < N_PROMPTS; i++) {
        CHECK(ml_tokenize(tok, prompts[i], strlen(prompts[i]), ML_TOKENIZE_ADD_SPECIAL, &p[i].ids, &p[i].n) == ML_OK,
              "tokenize: %s", ml_last_error());
        solo(model, tok, &p[i], &greedy, &want[i]);
        add(gen, &p[i], &greedy, &got[i]);
    }
    if (gen) run_until_idle(gen, mp.max_batch);
    for (int i = 0; gen && i < N_PROMPTS; i++) compare(&got[i], &want[i], "fast, bf16 KV, tp 3", i);
    for (int i = 0; i < N_PROMPTS; i++) free(p[i].ids);
    ml_generator_free(gen);
    ml_tokenizer_close(tok);
    ml_model_close(model);
}

int main(void) {
    char path[4096];
    if (ml_test_default_model(path, sizeof path) != 0) return ml_test_finish("generator");
    ml_model_params mp = ml_model_default_params();
    mp.max_batch = 8;
    mp.max_seq_len = 512;
    mp.tp = 2;
    ml_model *model = NULL;
    ml_tokenizer *tok = NULL;
    CHECK(ml_model_open(path, &mp, &model) == ML_OK, "open: %s", ml_last_error());
    CHECK(model && ml_model_open_tokenizer(model, &tok) == ML_OK, "tokenizer: %s", ml_last_error());
    if (!model || !tok) return ml_test_finish("generator");
    prompt_ids p[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++)
        CHECK(ml_tokenize(tok, prompts[i], strlen(prompts[i]), ML_TOKENIZE_ADD_SPECIAL, &p[i].ids, &p[i].n) == ML_OK,
              "tokenize: %s", ml_last_error());
    ml_sampling_params greedy = ml_sampling_default_params();
    greedy.max_tokens = MAX_NEW;
    ml_sampling_params sampled = greedy;
    sampled.temperature = 0.9f;
    sampled.seed = 7;
    static outcome want[N_PROMPTS], got[N_PROMPTS], peer[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) solo(model, tok, &p[i], &greedy, &want[i]);

    /* all at once, prompts read in chunks of 7 tokens beside the others' decode steps */
    ml_generator_params gp = {7};
    ml_generator *gen = NULL;
    CHECK(ml_generator_create(model, tok, &gp, &gen) == ML_OK, "create: %s", ml_last_error());
    if (!gen) return ml_test_finish("generator");
    for (int i = 0; i < N_PROMPTS; i++) add(gen, &p[i], &greedy, &got[i]);
    run_until_idle(gen, mp.max_batch);
    for (int i = 0; i < N_PROMPTS; i++) compare(&got[i], &want[i], "together", i);

    /* staggered: one new greedy sequence every 3 steps, beside sampled peers and one cancelled */
    memset(got, 0, sizeof got);
    memset(peer, 0, sizeof peer);
    ml_sampling_params endless = sampled;
    endless.ignore_eos = 1;
    int cancel_slot = add(gen, &p[5], &endless, &peer[0]);
    add(gen, &p[1], &sampled, &peer[1]);
    for (int i = 0; i < N_PROMPTS; i++) {
        add(gen, &p[i], &greedy, &got[i]);
        for (int k = 0; k < 3; k++) CHECK(ml_generator_step(gen) == ML_OK, "step: %s", ml_last_error());
        if (i == 1) {
            CHECK(ml_generator_cancel(gen, cancel_slot) == ML_OK, "cancel: %s", ml_last_error());
            CHECK(peer[0].done == 0, "a cancelled sequence gets no on_done");
        }
    }
    run_until_idle(gen, mp.max_batch);
    for (int i = 0; i < N_PROMPTS; i++) compare(&got[i], &want[i], "staggered", i);
    CHECK(ml_generator_free_slots(gen) == mp.max_batch, "every slot free at the end");

    /* the event callback ends a sequence: finish reason CALLBACK, its slot free */
    memset(got, 0, sizeof got);
    got[0].stop_after = 3;
    add(gen, &p[0], &greedy, &got[0]);
    run_until_idle(gen, mp.max_batch);
    CHECK(got[0].n == 3 && got[0].stats.finish_reason == ML_FINISH_CALLBACK && got[0].stats.n_generated == 3,
          "callback stop: %d tokens, finish %d", got[0].n, (int)got[0].stats.finish_reason);

    bad_requests(gen, &p[0], mp.max_seq_len);
    bad_creation(model, tok);
    ml_generator_free(gen);
    for (int i = 0; i < N_PROMPTS; i++) free(p[i].ids);
    ml_tokenizer_close(tok);
    ml_model_close(model);
    together_in_fast_mode(path);
    return ml_test_finish("generator");
}
