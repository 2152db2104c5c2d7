#include "scheduler.h"

#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

struct ml_scheduler {
    ml_model *model;
    ml_generator *gen;
    ml_metrics *metrics;
    int max_queue, slots;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    ml_job *queue_head, *queue_tail; /* under mutex */
    int n_queued;
    int closed, stopping;            /* under mutex */
    ml_job *running[ML_MAX_BATCH];   /* by slot; scheduler thread only */
    atomic_int n_running;
    /* MPI: what this iteration changed, sent to the other ranks before the step */
    int n_ranks;
    int cancelled[ML_MAX_BATCH], n_cancelled;
    ml_job *admitted[ML_MAX_BATCH];
    int n_admitted;
};

ml_job *ml_job_create(void) {
    ml_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    pthread_mutex_init(&job->mutex, NULL);
    pthread_cond_init(&job->changed, NULL);
    job->refs = 1;
    job->slot = -1;
    job->sampling = ml_sampling_default_params();
    return job;
}

void ml_job_release(ml_job *job) {
    if (!job) return;
    pthread_mutex_lock(&job->mutex);
    int left = --job->refs;
    pthread_mutex_unlock(&job->mutex);
    if (left > 0) return;
    pthread_mutex_destroy(&job->mutex);
    pthread_cond_destroy(&job->changed);
    if (job->stop_strings)
        for (int i = 0; i < job->sampling.n_stop_strings; i++) free(job->stop_strings[i]);
    free(job->stop_strings);
    free(job->logit_bias);
    free(job->prompt);
    free(job->tokens);
    free(job->text);
    free(job);
}

/* Ends the job (under its mutex): its HTTP side wakes and answers. */
static void job_end(ml_job *job, int status, const char *error, int shutdown) {
    pthread_mutex_lock(&job->mutex);
    if (job->state != ML_JOB_DONE) {
        job->state = ML_JOB_DONE;
        job->status = status;
        job->shutdown = shutdown;
        if (error) snprintf(job->error, sizeof job->error, "%s", error);
        pthread_cond_broadcast(&job->changed);
    }
    pthread_mutex_unlock(&job->mutex);
}

void ml_job_cancel(ml_job *job) {
    atomic_store(&job->cancelled, 1);
    ml_scheduler *s = job->scheduler;
    if (s) {
        pthread_mutex_lock(&s->mutex);
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mutex);
    }
}

static int append_text(ml_job *job, const char *text, size_t length) {
    if (job->text_length + length + 1 > job->text_capacity) {
        size_t capacity = (job->text_length + length + 1) * 2 + 256;
        char *grown = realloc(job->text, capacity);
        if (!grown) return -1;
        job->text = grown;
        job->text_capacity = capacity;
    }
    memcpy(job->text + job->text_length, text, length);
    job->text_length += length;
    job->text[job->text_length] = '\0';
    return 0;
}

/* Scheduler thread, inside ml_generator_step: one token of a running job. */
static int on_event(const ml_token_event *ev, void *user) {
    ml_job *job = user;
    ml_scheduler *s = job->scheduler;
    double now = now_ms();
    if (ev->index == 0) ml_metrics_ttft(s->metrics, (now - job->submitted_ms) / 1e3);
    else ml_metrics_inter_token(s->metrics, (now - job->last_token_ms) / 1e3);
    job->last_token_ms = now;
    pthread_mutex_lock(&job->mutex);
    int failed = 0;
    if (job->n_tokens == job->tokens_capacity) {
        int capacity = job->tokens_capacity ? job->tokens_capacity * 2 : 64;
        ml_job_token *grown = realloc(job->tokens, (size_t)capacity * sizeof *grown);
        if (grown) {
            job->tokens = grown;
            job->tokens_capacity = capacity;
        } else {
            failed = 1;
        }
    }
    if (!failed) {
        ml_job_token *t = &job->tokens[job->n_tokens];
        memset(t, 0, sizeof *t);
        t->token = ev->token;
        t->text_begin = job->text_length;
        t->text_length = ev->text_length;
        t->logprob = ev->logprob;
        t->n_top = ev->n_top;
        if (ev->n_top > 0) {
            memcpy(t->top_ids, ev->top_ids, (size_t)ev->n_top * sizeof *ev->top_ids);
            memcpy(t->top_logprobs, ev->top_logprobs, (size_t)ev->n_top * sizeof *ev->top_logprobs);
        }
        failed = append_text(job, ev->text, ev->text_length);
        if (!failed) job->n_tokens++;
    }
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->mutex);
    return failed || atomic_load(&job->cancelled);
}

static void on_done(const ml_generate_stats *stats, int status, void *user) {
    ml_job *job = user;
    ml_scheduler *s = job->scheduler;
    ml_metrics_tokens(s->metrics, 0, stats->n_generated);
    pthread_mutex_lock(&job->mutex);
    job->stats = *stats;
    pthread_mutex_unlock(&job->mutex);
    job_end(job, status, status == ML_OK ? NULL : ml_last_error(), 0);
    s->running[job->slot] = NULL;
    atomic_fetch_sub(&s->n_running, 1);
    ml_job_release(job);
}

static void publish_gauges(ml_scheduler *s) {
    pthread_mutex_lock(&s->mutex);
    int queued = s->n_queued;
    pthread_mutex_unlock(&s->mutex);
    ml_metrics_gauges(s->metrics, queued, atomic_load(&s->n_running), s->slots);
}

/* Takes queued jobs into free slots; drops cancelled ones. Called with s->mutex held. */
static void admit(ml_scheduler *s) {
    while (s->queue_head && ml_generator_free_slots(s->gen) > 0) {
        ml_job *job = s->queue_head;
        s->queue_head = job->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        job->next = NULL;
        if (atomic_load(&job->cancelled)) {
            job_end(job, ML_OK, NULL, 0);
            ml_job_release(job);
            continue;
        }
        ml_sequence_request req = {job->prompt, job->n_prompt, &job->sampling, job->detokenize_flags,
                                   on_event, on_done, job};
        int slot = -1;
        int status = ml_generator_add(s->gen, &req, &slot);
        if (status != ML_OK) {
            job_end(job, status, ml_last_error(), 0);
            ml_job_release(job);
            continue;
        }
        job->slot = slot;
        s->running[slot] = job;
        s->admitted[s->n_admitted++] = job;
        atomic_fetch_add(&s->n_running, 1);
        ml_metrics_tokens(s->metrics, job->n_prompt, 0);
        pthread_mutex_lock(&job->mutex);
        job->state = ML_JOB_RUNNING;
        pthread_mutex_unlock(&job->mutex);
    }
}

/* Frees the slots of jobs whose clients went away. Scheduler thread. */
static void drop_cancelled(ml_scheduler *s) {
    for (int slot = 0; slot < s->slots; slot++) {
        ml_job *job = s->running[slot];
        if (!job || !atomic_load(&job->cancelled)) continue;
        ml_generator_cancel(s->gen, slot);
        s->cancelled[s->n_cancelled++] = slot;
        s->running[slot] = NULL;
        atomic_fetch_sub(&s->n_running, 1);
        job_end(job, ML_OK, NULL, 0);
        ml_job_release(job);
    }
}

static void end_everything(ml_scheduler *s) {
    for (int slot = 0; slot < s->slots; slot++) {
        ml_job *job = s->running[slot];
        if (!job) continue;
        ml_generator_cancel(s->gen, slot);
        s->running[slot] = NULL;
        atomic_fetch_sub(&s->n_running, 1);
        job_end(job, ML_OK, "the server is shutting down", 1);
        ml_job_release(job);
    }
    pthread_mutex_lock(&s->mutex);
    while (s->queue_head) {
        ml_job *job = s->queue_head;
        s->queue_head = job->next;
        job_end(job, ML_OK, "the server is shutting down", 1);
        ml_job_release(job);
    }
    s->queue_tail = NULL;
    s->n_queued = 0;
    pthread_mutex_unlock(&s->mutex);
}

/* Waits for work (s->mutex held); under MPI wakes every second so the other ranks, waiting in a
 * broadcast, hear from rank 0 before the collective watchdog ends the job. */
static void wait_for_work(ml_scheduler *s) {
    while (!s->stopping && !s->queue_head && atomic_load(&s->n_running) == 0) {
        if (s->n_ranks <= 1) {
            pthread_cond_wait(&s->wake, &s->mutex);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_cond_timedwait(&s->wake, &s->mutex, &until) != 0) return;
    }
}

static void *scheduler_main(void *arg) {
    ml_scheduler *s = arg;
    for (;;) {
        s->n_cancelled = s->n_admitted = 0;
        drop_cancelled(s);
        pthread_mutex_lock(&s->mutex);
        wait_for_work(s);
        int stopping = s->stopping;
        if (!stopping) admit(s);
        pthread_mutex_unlock(&s->mutex);
        if (stopping) break;
        publish_gauges(s);
        int status = s->n_ranks > 1 ? ml_sync_ranks(s->model, ML_SYNC_STEP, s->cancelled, s->n_cancelled,
                                                    s->admitted, s->n_admitted)
                                    : ML_OK;
        if (status == ML_OK) status = ml_generator_step(s->gen);
        if (status != ML_OK)
            fprintf(stderr, "meshllama serve: a step failed, its requests ended: %s\n", ml_last_error());
        publish_gauges(s);
    }
    end_everything(s);
    if (s->n_ranks > 1) ml_sync_ranks(s->model, ML_SYNC_STOP, NULL, 0, NULL, 0);
    publish_gauges(s);
    return NULL;
}

int ml_scheduler_start(ml_model *model, const ml_tokenizer *tok, int prefill_chunk, int max_queue,
                       ml_metrics *metrics, ml_scheduler **out) {
    ml_scheduler *s = calloc(1, sizeof *s);
    if (!s) return ML_ERR_NOMEM;
    ml_generator_params gp = {prefill_chunk};
    int status = ml_generator_create(model, tok, &gp, &s->gen);
    if (status != ML_OK) {
        free(s);
        return status;
    }
    ml_model_info info;
    ml_model_get_info(model, &info);
    s->model = model;
    s->n_ranks = info.n_ranks;
    s->slots = info.max_batch;
    s->max_queue = max_queue;
    s->metrics = metrics;
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->wake, NULL);
    ml_metrics_gauges(metrics, 0, 0, s->slots);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        ml_generator_free(s->gen);
        pthread_mutex_destroy(&s->mutex);
        pthread_cond_destroy(&s->wake);
        free(s);
        return ML_ERR_INTERNAL;
    }
    *out = s;
    return ML_OK;
}

int ml_scheduler_submit(ml_scheduler *s, ml_job *job) {
    pthread_mutex_lock(&s->mutex);
    /* max_queue counts requests beyond the slots: a free slot always takes one */
    if (s->closed || s->stopping || s->n_queued + atomic_load(&s->n_running) >= s->slots + s->max_queue) {
        pthread_mutex_unlock(&s->mutex);
        return ML_ERR_UNSUPPORTED;
    }
    pthread_mutex_lock(&job->mutex);
    job->refs++;
    job->state = ML_JOB_QUEUED;
    pthread_mutex_unlock(&job->mutex);
    job->scheduler = s;
    job->submitted_ms = now_ms();
    job->next = NULL;
    if (s->queue_tail) s->queue_tail->next = job;
    else s->queue_head = job;
    s->queue_tail = job;
    s->n_queued++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
    publish_gauges(s);
    return ML_OK;
}

void ml_scheduler_load(ml_scheduler *s, int *queued, int *running) {
    pthread_mutex_lock(&s->mutex);
    *queued = s->n_queued;
    pthread_mutex_unlock(&s->mutex);
    *running = atomic_load(&s->n_running);
}

void ml_scheduler_close(ml_scheduler *s) {
    pthread_mutex_lock(&s->mutex);
    s->closed = 1;
    pthread_mutex_unlock(&s->mutex);
}

void ml_scheduler_stop(ml_scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mutex);
    s->stopping = 1;
    s->closed = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
    pthread_join(s->thread, NULL);
}

void ml_scheduler_free(ml_scheduler *s) {
    if (!s) return;
    ml_generator_free(s->gen);
    pthread_mutex_destroy(&s->mutex);
    pthread_cond_destroy(&s->wake);
    free(s);
}
