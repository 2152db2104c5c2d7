/* The thread pool: persistent workers that run one job (a parallel region) at a time.
 *
 * A job is published by bumping `generation`; workers that are spinning see it within a cache
 * line transfer (well under a microsecond), claim task indices from `next_task` and report
 * through `workers_done`. The caller runs tasks too and then waits for the count.
 *
 * Waiting backs off in three stages, because the machine may be shared (ctest -j, other
 * processes, more threads than cores), and a thread that spins while the thread it waits for
 * is not running steals that thread's core:
 *   1. spin with `pause` for up to ML_POOL_SPIN_NS (a few microseconds: between the regions of
 *      one forward step workers never leave this stage);
 *   2. sched_yield() up to ML_POOL_YIELD_NS (lets a descheduled worker or another process run,
 *      but still answers within microseconds when the core is free);
 *   3. sleep on a condition variable (workers only, between forward steps); the publisher pays
 *      for a wake-up only when someone sleeps (`sleepers`, checked after the bump: both sides
 *      use sequentially consistent operations, so either the publisher sees the sleeper or
 *      the sleeper sees the new generation before it waits).
 * The caller never sleeps while waiting for workers: it yields, so a preempted worker gets the
 * core back.
 *
 * The hot shared fields live on their own cache lines: the publisher writes `generation`, all
 * threads hammer `next_task`, workers write `workers_done`; keeping them apart stops claims
 * from invalidating the line that spinning workers poll. */
#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ML_CPU_RELAX() _mm_pause()
#else
#define ML_CPU_RELAX() ((void)0)
#endif

#define ML_POOL_SPIN_NS 20000LL    /* stage 1: pause loop */
#define ML_POOL_YIELD_NS 2000000LL /* stage 2: sched_yield loop (workers); then sleep */
#define ML_POOL_CHECK_EVERY 64     /* polls between clock reads in stage 1 */

struct ml_pool {
    int n_threads;
    pthread_t *workers;           /* [n_threads - 1] */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    /* the job, written by the caller before the generation bump that publishes it */
    ml_task_fn fn;
    void *ctx;
    int n_tasks;
    alignas(64) atomic_uint generation; /* bumped once per job */
    alignas(64) atomic_int next_task;
    alignas(64) atomic_int workers_done;
    alignas(64) atomic_int sleepers;
    atomic_int stopping;
};

typedef struct {
    ml_pool *pool;
    int thread_index;
} ml_worker_arg;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void run_tasks(ml_pool *pool, int thread_index) {
    const ml_task_fn fn = pool->fn;
    void *const ctx = pool->ctx;
    const int n_tasks = pool->n_tasks;
    for (;;) {
        int task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (task >= n_tasks) break;
        fn(ctx, task, thread_index);
    }
}

/* Waits until the generation differs from `seen`; returns the new one. */
static unsigned wait_for_job(ml_pool *pool, unsigned seen) {
    unsigned now;
    long long start = now_ns();
    for (int polls = 1;; polls++) { /* stage 1 */
        now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now != seen) return now;
        ML_CPU_RELAX();
        if (polls % ML_POOL_CHECK_EVERY == 0 && now_ns() - start > ML_POOL_SPIN_NS) break;
    }
    for (;;) { /* stage 2 */
        now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now != seen) return now;
        if (now_ns() - start > ML_POOL_YIELD_NS) break;
        sched_yield();
    }
    pthread_mutex_lock(&pool->mutex); /* stage 3 */
    atomic_fetch_add(&pool->sleepers, 1);
    while ((now = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->wake, &pool->mutex);
    atomic_fetch_sub(&pool->sleepers, 1);
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
        atomic_fetch_add_explicit(&pool->workers_done, 1, memory_order_release);
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
    ml_pool *pool;
    if (posix_memalign((void **)&pool, 64, sizeof *pool) != 0)
        return ml_set_error(ML_ERR_NOMEM, "thread pool: out of memory");
    memset(pool, 0, sizeof *pool);
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->workers_done, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stopping, 0);
    if (n_threads > 1) {
        pool->workers = calloc((size_t)n_threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            pool->n_threads = 1;
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

/* Makes the job visible: the bump releases fn/ctx/n_tasks/next_task/workers_done; sleeping
 * workers are woken only if there are any. */
static void publish(ml_pool *pool) {
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
}

static void wait_for_workers(ml_pool *pool) {
    const int workers = pool->n_threads - 1;
    if (atomic_load_explicit(&pool->workers_done, memory_order_acquire) == workers) return;
    long long start = now_ns();
    for (int polls = 1;; polls++) {
        if (atomic_load_explicit(&pool->workers_done, memory_order_acquire) == workers) return;
        ML_CPU_RELAX();
        if (polls % ML_POOL_CHECK_EVERY == 0 && now_ns() - start > ML_POOL_SPIN_NS) break;
    }
    while (atomic_load_explicit(&pool->workers_done, memory_order_acquire) != workers) sched_yield();
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
    atomic_store_explicit(&pool->workers_done, 0, memory_order_relaxed);
    publish(pool);
    run_tasks(pool, 0);
    wait_for_workers(pool);
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
