/* The OpenAI API's JSON: requests of /v1/completions and /v1/chat/completions checked and turned
 * into a job (prompt ids and sampling parameters), and the responses, stream chunks and error
 * objects built from a job's tokens (https://platform.openai.com/docs/api-reference). */
#ifndef ML_SERVER_OPENAI_H
#define ML_SERVER_OPENAI_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>

#include "meshllama.h"
#include "scheduler.h"

typedef enum { ML_API_COMPLETIONS, ML_API_CHAT } ml_api_kind;

/* What the server knows when it reads a request (shared by every HTTP thread, read-only but
 * for the template's lock). */
typedef struct {
    const ml_tokenizer *tok;
    ml_chat_template *tmpl;       /* NULL when the model has no usable chat template */
    pthread_mutex_t *tmpl_mutex;  /* rendering is serialised */
    int32_t end_of_turn;          /* the template's end-of-turn id, or -1 */
    int vocab_size, max_seq_len;
    const char *model_name;
} ml_api_context;

/* How the answer is to be written. */
typedef struct {
    ml_api_kind kind;
    int stream, include_usage;
    int logprobs;      /* report log-probabilities */
    int top_logprobs;  /* alternatives per token */
    char id[48];
    long long created;
} ml_api_options;

/* An error answer: HTTP status and OpenAI's error object. */
typedef struct {
    int status;
    const char *type;  /* "invalid_request_error", ... */
    const char *param; /* the offending field, or NULL */
    const char *code;  /* or NULL */
    char message[600];
} ml_api_error;

void ml_api_set_error(ml_api_error *err, int status, const char *type, const char *param, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} as text, malloc'd. */
char *ml_api_error_body(const ml_api_error *err);

/* Fills job (prompt, sampling) and opts from a request body; 0, or -1 with err set (400). */
int ml_api_parse_request(const ml_api_context *ctx, ml_api_kind kind, const char *body, size_t length, ml_job *job,
                         ml_api_options *opts, ml_api_error *err);

/* The whole answer of a finished job (non-streaming), as text, malloc'd. */
char *ml_api_response(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job);
/* One stream chunk for tokens [from, to) of the job (text from their text_begin), with
 * finish_reason when non-NULL; role marks the first chat chunk. Text, malloc'd. */
char *ml_api_chunk(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job, int from, int to,
                   const char *finish_reason, int role);
/* The final usage chunk (stream_options.include_usage). */
char *ml_api_usage_chunk(const ml_api_context *ctx, const ml_api_options *opts, ml_job *job);
/* "stop", "length", or NULL (cancelled). job->mutex held or job done. */
const char *ml_api_finish_reason(const ml_job *job);

/* /tokenize and /detokenize: the answer text (malloc'd), or NULL with err set. */
char *ml_api_tokenize(const ml_api_context *ctx, const char *body, size_t length, ml_api_error *err);
char *ml_api_detokenize(const ml_api_context *ctx, const char *body, size_t length, ml_api_error *err);

#endif
