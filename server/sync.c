#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t kind, n_cancelled, n_admitted;
    int32_t payload_bytes;
} sync_header;

typedef struct {
    unsigned char *data;
    size_t length, capacity;
    int failed;
} byte_buffer;

static void put(byte_buffer *b, const void *bytes, size_t n) {
    if (b->failed || n == 0) return;
    if (b->length + n > b->capacity) {
        size_t capacity = (b->length + n) * 2 + 256;
        unsigned char *grown = realloc(b->data, capacity);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
}

/* One admitted request: its sampling parameters as the struct (the same binary on every rank;
 * the pointers are replaced on arrival), then the arrays they point to. */
static void put_request(byte_buffer *b, const ml_job *job) {
    int32_t n_prompt = job->n_prompt;
    uint32_t flags = job->detokenize_flags;
    put(b, &n_prompt, sizeof n_prompt);
    put(b, &flags, sizeof flags);
    put(b, &job->sampling, sizeof job->sampling);
    put(b, job->prompt, (size_t)n_prompt * sizeof *job->prompt);
    put(b, job->sampling.logit_bias, (size_t)job->sampling.n_logit_bias * sizeof *job->sampling.logit_bias);
    put(b, job->sampling.stop_tokens, (size_t)job->sampling.n_stop_tokens * sizeof *job->sampling.stop_tokens);
    for (int i = 0; i < job->sampling.n_stop_strings; i++) {
        int32_t length = (int32_t)strlen(job->sampling.stop_strings[i]);
        put(b, &length, sizeof length);
        put(b, job->sampling.stop_strings[i], (size_t)length);
    }
}

int ml_sync_ranks(ml_model *model, ml_sync_kind kind, const int *cancelled, int n_cancelled, ml_job *const *admitted,
                  int n_admitted) {
    byte_buffer b = {NULL, 0, 0, 0};
    for (int i = 0; i < n_cancelled; i++) {
        int32_t slot = cancelled[i];
        put(&b, &slot, sizeof slot);
    }
    for (int i = 0; i < n_admitted; i++) put_request(&b, admitted[i]);
    sync_header h = {kind, n_cancelled, n_admitted, (int32_t)b.length};
    if (b.failed) h = (sync_header){ML_SYNC_STOP, 0, 0, 0}; /* out of memory: stop the other ranks cleanly */
    int status = ml_broadcast(model, &h, sizeof h);
    if (status == ML_OK && h.payload_bytes > 0) status = ml_broadcast(model, b.data, b.length);
    free(b.data);
    return status;
}

typedef struct {
    const unsigned char *at, *end;
} reader;

static const void *take(reader *r, size_t n) {
    if ((size_t)(r->end - r->at) < n) return NULL;
    const void *p = r->at;
    r->at += n;
    return p;
}

/* Adds one request of the payload to the generator. */
static int add_request(ml_generator *gen, reader *r) {
    int32_t n_prompt;
    uint32_t flags;
    ml_sampling_params sp;
    const void *p;
    if (!(p = take(r, sizeof n_prompt))) return ML_ERR_FORMAT;
    memcpy(&n_prompt, p, sizeof n_prompt);
    if (!(p = take(r, sizeof flags))) return ML_ERR_FORMAT;
    memcpy(&flags, p, sizeof flags);
    if (!(p = take(r, sizeof sp))) return ML_ERR_FORMAT;
    memcpy(&sp, p, sizeof sp);
    const int32_t *prompt = take(r, (size_t)n_prompt * sizeof *prompt);
    sp.logit_bias = take(r, (size_t)sp.n_logit_bias * sizeof *sp.logit_bias);
    sp.stop_tokens = take(r, (size_t)sp.n_stop_tokens * sizeof *sp.stop_tokens);
    char **stops = sp.n_stop_strings > 0 ? calloc((size_t)sp.n_stop_strings, sizeof *stops) : NULL;
    int status = (n_prompt > 0 && !prompt) || (sp.n_stop_strings > 0 && !stops) ? ML_ERR_FORMAT : ML_OK;
    for (int i = 0; status == ML_OK && i < sp.n_stop_strings; i++) {
        int32_t length;
        const void *q = take(r, sizeof length);
        if (q) memcpy(&length, q, sizeof length);
        const char *text = q ? take(r, (size_t)length) : NULL;
        stops[i] = text ? strndup(text, (size_t)length) : NULL;
        if (!stops[i]) status = ML_ERR_FORMAT;
    }
    sp.stop_strings = (const char *const *)stops;
    ml_sequence_request req = {prompt, n_prompt, &sp, flags, NULL, NULL, NULL};
    if (status == ML_OK) status = ml_generator_add(gen, &req, NULL);
    for (int i = 0; stops && i < sp.n_stop_strings; i++) free(stops[i]);
    free(stops);
    return status;
}

static int apply(ml_generator *gen, const sync_header *h, const unsigned char *payload) {
    reader r = {payload, payload + h->payload_bytes};
    for (int i = 0; i < h->n_cancelled; i++) {
        const int32_t *slot = take(&r, sizeof *slot);
        int32_t value;
        if (!slot) return ML_ERR_FORMAT;
        memcpy(&value, slot, sizeof value);
        (void)ml_generator_cancel(gen, value); /* rank 0 cancelled a running slot: it runs here too */
    }
    for (int i = 0; i < h->n_admitted; i++) {
        int status = add_request(gen, &r);
        if (status != ML_OK) return status;
    }
    return ML_OK;
}

int ml_sync_follow(ml_model *model, const ml_tokenizer *tok, int prefill_chunk) {
    ml_generator_params gp = {prefill_chunk};
    ml_generator *gen = NULL;
    int status = ml_generator_create(model, tok, &gp, &gen);
    unsigned char *payload = NULL;
    while (status == ML_OK) {
        sync_header h;
        status = ml_broadcast(model, &h, sizeof h);
        if (status != ML_OK || h.kind == ML_SYNC_STOP) break;
        if (h.payload_bytes > 0) {
            unsigned char *grown = realloc(payload, (size_t)h.payload_bytes);
            if (!grown) {
                status = ML_ERR_NOMEM;
                break;
            }
            payload = grown;
            status = ml_broadcast(model, payload, (size_t)h.payload_bytes);
        }
        if (status == ML_OK) status = apply(gen, &h, payload);
        if (status == ML_OK) status = ml_generator_step(gen);
    }
    free(payload);
    ml_generator_free(gen);
    if (status != ML_OK) {
        /* this rank's own failure: rank 0 would wait for it in the next collective */
        fprintf(stderr, "meshllama serve (rank %d): %s\n", ml_process_rank(), ml_last_error());
        ml_abort_job(1);
    }
    return status;
}
