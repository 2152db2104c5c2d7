#include "core/thread_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ML_CPU_RELAX() _mm_pause()
#else
#define ML_CPU_RELAX() ((void)0)
#endif

/* Spin iterations before a worker sleeps; about 50-100 microseconds. */
#define ML_POOL_SPIN_LIMIT 20000

struct ml_pool {
    int n_threads;
    pthread_t *workers;        /* [n_threads - 1] */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation;    /* bumped once per job */
    atomic_int next_task;
    atomic_int workers_busy;
    atomic_int stopping;
    ml_task_fn fn;
    void *ctx;
    int n_tasks;
};

typedef struct {
    ml_pool *pool;
    int thread_index;
} ml_worker_arg;

static void run_tasks(ml_pool *pool, int thread_index) {
    for (;;) {
        int task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (task >= pool->n_tasks) break;
        pool->fn(pool->ctx, task, thread_index);
    }
}

static unsigned wait_for_job(ml_pool *pool, unsigned seen) {
    for (int spin = 0; spin < ML_POOL_SPIN_LIMIT; spin++) {
        unsigned now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now != seen) return now;
        ML_CPU_RELAX();
    }
    pthread_mutex_lock(&pool->mutex);
    unsigned now;
    while ((now = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&pool->wake, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
    return now;
}

static void *worker_main(void *arg_ptr) {
    ml_worker_arg arg = *(ml_worker_arg *)arg_ptr;
    free(arg_ptr);
    ml_pool *pool = arg.pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(pool, seen);
        if (atomic_load_explicit(&pool->stopping, memory_order_acquire)) break;
        run_tasks(pool, arg.thread_index);
        atomic_fetch_sub_explicit(&pool->workers_busy, 1, memory_order_release);
    }
    return NULL;
}

int ml_online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int ml_pool_create(int n_threads, ml_pool **out_pool) {
    *out_pool = NULL;
    if (n_threads < 0 || n_threads > 1024)
        return ml_set_error(ML_ERR_ARG, "thread count %d: expected 0 (all cores) to 1024", n_threads);
    if (n_threads == 0) n_threads = ml_online_cores();
    ml_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return ml_set_error(ML_ERR_NOMEM, "thread pool: out of memory");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->workers_busy, 0);
    atomic_init(&pool->stopping, 0);
    if (n_threads > 1) {
        pool->workers = calloc((size_t)n_threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            ml_pool_destroy(pool);
            return ml_set_error(ML_ERR_NOMEM, "thread pool: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        ml_worker_arg *arg = malloc(sizeof *arg);
        if (!arg) {
            pool->n_threads = i;
            ml_pool_destroy(pool);
            return ml_set_error(ML_ERR_NOMEM, "thread pool: out of memory");
        }
        arg->pool = pool;
        arg->thread_index = i;
        int rc = pthread_create(&pool->workers[i - 1], NULL, worker_main, arg);
        if (rc != 0) {
            free(arg);
            pool->n_threads = i;
            ml_pool_destroy(pool);
            return ml_set_error(ML_ERR_INTERNAL, "thread pool: cannot start thread %d: %s", i, strerror(rc));
        }
    }
    *out_pool = pool;
    return ML_OK;
}

int ml_pool_threads(const ml_pool *pool) { return pool->n_threads; }

static void publish(ml_pool *pool) {
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
}

void ml_pool_run(ml_pool *pool, ml_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (pool->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->workers_busy, pool->n_threads - 1, memory_order_relaxed);
    publish(pool);
    run_tasks(pool, 0);
    while (atomic_load_explicit(&pool->workers_busy, memory_order_acquire) != 0) ML_CPU_RELAX();
}

void ml_pool_destroy(ml_pool *pool) {
    if (!pool) return;
    if (pool->workers) {
        atomic_store_explicit(&pool->stopping, 1, memory_order_release);
        publish(pool);
        for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i - 1], NULL);
        free(pool->workers);
    }
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}
