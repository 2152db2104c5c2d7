/* The scheduler: one thread owns the model and its ml_generator (continuous batching). HTTP
 * threads build a job (prompt ids and sampling parameters), submit it, and read its tokens as
 * the scheduler appends them; a job waits in a bounded queue until a slot is free. A job is
 * shared by its HTTP thread and the scheduler and freed when both have released it. */
#ifndef ML_SERVER_SCHEDULER_H
#define ML_SERVER_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "meshllama.h"
#include "metrics.h"

/* One generated token as the HTTP side sees it. */
typedef struct {
    int32_t token;
    size_t text_begin, text_length; /* its released text in job.text */
    float logprob;
    int n_top;
    int32_t top_ids[ML_MAX_TOP_LOGPROBS];
    float top_logprobs[ML_MAX_TOP_LOGPROBS];
} ml_job_token;

typedef enum { ML_JOB_QUEUED, ML_JOB_RUNNING, ML_JOB_DONE } ml_job_state;

typedef struct ml_job {
    /* the request, fixed before submit */
    int32_t *prompt;
    int n_prompt;
    ml_sampling_params sampling; /* its arrays point into the two below */
    char **stop_strings;
    ml_logit_bias *logit_bias;
    unsigned detokenize_flags;
    /* shared state, under mutex */
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    int refs;
    ml_job_state state;
    ml_job_token *tokens;
    int n_tokens, tokens_capacity;
    char *text;
    size_t text_length, text_capacity;
    ml_generate_stats stats;
    int status;              /* ML_OK, or the failure that ended it */
    char error[512];
    int shutdown;            /* ended by the server's shutdown */
    atomic_int cancelled;    /* set by the HTTP side: the client went away */
    /* scheduler side */
    struct ml_scheduler *scheduler; /* set by submit */
    int slot;
    double submitted_ms, last_token_ms;
    struct ml_job *next;
} ml_job;

/* A job with refs 1 (the HTTP side's); fill the request fields, then submit. */
ml_job *ml_job_create(void);
void ml_job_release(ml_job *job);
/* Marks the job cancelled and wakes the scheduler. */
void ml_job_cancel(ml_job *job);

typedef struct ml_scheduler ml_scheduler;

int ml_scheduler_start(ml_model *model, const ml_tokenizer *tok, int prefill_chunk, int max_queue,
                       ml_metrics *metrics, ml_scheduler **out);
/* ML_OK (queued; the scheduler holds a reference), or ML_ERR_UNSUPPORTED when the queue is full
 * or the server is stopping (answer 503). */
int ml_scheduler_submit(ml_scheduler *s, ml_job *job);
/* Jobs queued and running. */
void ml_scheduler_load(ml_scheduler *s, int *queued, int *running);
/* Refuse new jobs from now on. */
void ml_scheduler_close(ml_scheduler *s);
/* Ends every queued and running job now (their HTTP sides see shutdown) and stops the thread. */
void ml_scheduler_stop(ml_scheduler *s);
/* After ml_scheduler_stop and once no HTTP thread holds a job any more. */
void ml_scheduler_free(ml_scheduler *s);

#endif
