/* The thread pool: persistent workers that run one job (a parallel region) at a time.
 *
 * One 64-bit word, `job`, holds the job's generation (high 32 bits) and the next unclaimed task
 * index (low 32 bits); a thread claims a task with one fetch_add on it, which also tells it
 * which job the index belongs to. The caller waits for the job's tasks to be done
 * (`tasks_done`), not for every worker to turn up: a worker that is not running when a job
 * starts (descheduled on a loaded machine, its core taken by another process or by torch's
 * OpenMP team in a Python caller) costs only the tasks it would have taken, which the others
 * take instead, where waiting for it cost up to a scheduler tick per parallel region
 * (docs/BENCHMARKS.md, "The Python layer").
 *
 * A job's fn/ctx/n_tasks go to one of two descriptors, chosen by the generation's parity, so
 * publishing writes the descriptor that the job before last used and then stores the new
 * generation, as the single-counter pool did. A thread reads the descriptor after a claim that
 * returned a new generation and keeps it only if the word still holds that generation
 * afterwards (a sequence-lock read): a late worker whose claim is of a job that has ended may
 * read a descriptor while the caller rewrites it, but it then finds the generation moved on and
 * drops the claim, which was past that job's last task anyway. A claim past the last task is
 * harmless: the index only grows, and the next publish resets it. A job cannot end while a
 * claimed task runs, so the descriptor stays valid for every task run.
 *
 * Waiting backs off in three stages, because the machine may be shared (ctest -j, other
 * processes, more threads than cores), and a thread that spins while the thread it waits for
 * is not running steals that thread's core:
 *   1. spin with `pause` for up to ML_POOL_SPIN_NS (a few microseconds: between the regions of
 *      one forward step workers never leave this stage);
 *   2. sched_yield() up to ML_POOL_YIELD_NS (lets a descheduled worker or another process run,
 *      but still answers within microseconds when the core is free);
 *   3. sleep on a condition variable (workers only, between forward steps); the publisher pays
 *      for a wake-up only when someone sleeps (`sleepers`, checked after the publishing store:
 *      both sides use sequentially consistent operations, so either the publisher sees the
 *      sleeper or the sleeper sees the new generation before it waits).
 * The caller never sleeps while waiting for tasks: it yields, so a preempted worker gets the
 * core back.
 *
 * The hot shared fields live on their own cache lines: all threads hammer `job` (claims) and
 * `tasks_done`; the job's fields are read once per job. */
#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
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

/* Relaxed atomics: a late worker may read a descriptor while the caller rewrites it, and then
 * discards what it read. */
typedef struct {
    alignas(64) _Atomic(ml_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int n_tasks;
} ml_job_descriptor;

struct ml_pool {
    int n_threads;
    pthread_t *workers;           /* [n_threads - 1] */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    unsigned generation;          /* the caller's copy of the last published generation */
    ml_job_descriptor jobs[2];    /* generation g's job is jobs[g & 1] */
    alignas(64) _Atomic(uint64_t) job; /* generation << 32 | next unclaimed task index */
    alignas(64) atomic_int tasks_done;
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

static unsigned job_generation(uint64_t job) { return (unsigned)(job >> 32); }

/* Claims and runs tasks until the job it finds has none left; adds the number run to
 * tasks_done. A claim is one fetch_add on `job`; what it returns says which job the index
 * belongs to, so a worker that arrives late may find (and help with) a newer job than the one
 * it woke for, or nothing. */
static void run_tasks(ml_pool *pool, int thread_index) {
    ml_task_fn fn = NULL;
    void *ctx = NULL;
    unsigned n_tasks = 0;
    int known = 0, done = 0;
    unsigned known_generation = 0;
    for (;;) {
        uint64_t claim = atomic_fetch_add_explicit(&pool->job, 1, memory_order_acquire);
        unsigned generation = job_generation(claim), index = (unsigned)claim;
        if (!known || generation != known_generation) {
            const ml_job_descriptor *d = &pool->jobs[generation & 1];
            fn = atomic_load_explicit(&d->fn, memory_order_relaxed);
            ctx = atomic_load_explicit(&d->ctx, memory_order_relaxed);
            n_tasks = (unsigned)atomic_load_explicit(&d->n_tasks, memory_order_relaxed);
            /* A sequence-lock read: if the generation is still the claim's, the descriptor was
             * not being rewritten while it was read (that happens only after two newer
             * publishes), so it is that job's. If it moved on, the job had ended, so the claim
             * was past its last task. */
            atomic_thread_fence(memory_order_acquire);
            if (job_generation(atomic_load_explicit(&pool->job, memory_order_relaxed)) != generation) break;
            known = 1;
            known_generation = generation;
        }
        if (index >= n_tasks) break;
        fn(ctx, (int)index, thread_index);
        done++;
    }
    /* the job cannot end (nor tasks_done be reset) while tasks claimed here are not counted */
    if (done) atomic_fetch_add_explicit(&pool->tasks_done, done, memory_order_release);
}

/* Waits until a generation other than `seen` is published; returns it. */
static unsigned wait_for_job(ml_pool *pool, unsigned seen) {
    unsigned now;
    long long start = now_ns();
    for (int polls = 1;; polls++) { /* stage 1 */
        now = job_generation(atomic_load_explicit(&pool->job, memory_order_acquire));
        if (now != seen) return now;
        ML_CPU_RELAX();
        if (polls % ML_POOL_CHECK_EVERY == 0 && now_ns() - start > ML_POOL_SPIN_NS) break;
    }
    for (;;) { /* stage 2 */
        now = job_generation(atomic_load_explicit(&pool->job, memory_order_acquire));
        if (now != seen) return now;
        if (now_ns() - start > ML_POOL_YIELD_NS) break;
        sched_yield();
    }
    pthread_mutex_lock(&pool->mutex); /* stage 3 */
    atomic_fetch_add(&pool->sleepers, 1);
    while ((now = job_generation(atomic_load(&pool->job))) == seen) pthread_cond_wait(&pool->wake, &pool->mutex);
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
    for (int i = 0; i < 2; i++) {
        atomic_init(&pool->jobs[i].fn, NULL);
        atomic_init(&pool->jobs[i].ctx, NULL);
        atomic_init(&pool->jobs[i].n_tasks, 0);
    }
    atomic_init(&pool->job, 0);
    atomic_init(&pool->tasks_done, 0);
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

/* Publishes a job; sleeping workers are woken only if there are any. */
static void publish(ml_pool *pool, ml_task_fn fn, void *ctx, int n_tasks) {
    unsigned generation = pool->generation + 1;
    ml_job_descriptor *d = &pool->jobs[generation & 1];
    /* orders the last publishing store before the descriptor writes, for a late worker's
     * sequence-lock read (see run_tasks) */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&d->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&d->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&d->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&pool->tasks_done, 0, memory_order_relaxed);
    atomic_store(&pool->job, (uint64_t)generation << 32); /* releases the descriptor */
    pool->generation = generation;
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
}

/* Waits until every task has run (workers that never turned up are not waited for). */
static void wait_for_tasks(ml_pool *pool, int n_tasks) {
    if (atomic_load_explicit(&pool->tasks_done, memory_order_acquire) == n_tasks) return;
    long long start = now_ns();
    for (int polls = 1;; polls++) {
        if (atomic_load_explicit(&pool->tasks_done, memory_order_acquire) == n_tasks) return;
        ML_CPU_RELAX();
        if (polls % ML_POOL_CHECK_EVERY == 0 && now_ns() - start > ML_POOL_SPIN_NS) break;
    }
    while (atomic_load_explicit(&pool->tasks_done, memory_order_acquire) != n_tasks) sched_yield();
}

void ml_pool_run(ml_pool *pool, ml_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (pool->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    publish(pool, fn, ctx, n_tasks);
    run_tasks(pool, 0);
    wait_for_tasks(pool, n_tasks);
}

void ml_pool_destroy(ml_pool *pool) {
    if (!pool) return;
    if (pool->workers) {
        atomic_store_explicit(&pool->stopping, 1, memory_order_release);
        publish(pool, NULL, NULL, 0);
        for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i - 1], NULL);
        free(pool->workers);
    }
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}
