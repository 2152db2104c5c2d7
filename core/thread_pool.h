/* A persistent pool of worker threads that run one parallel job at a time.
 * Workers spin briefly between jobs (a job boundary costs microseconds), then sleep. */
#ifndef ML_CORE_THREAD_POOL_H
#define ML_CORE_THREAD_POOL_H

typedef struct ml_pool ml_pool;

/* fn runs once for every task index in [0, n_tasks); thread_index is in [0, n_threads). */
typedef void (*ml_task_fn)(void *ctx, int task_index, int thread_index);

/* n_threads counts the calling thread, which takes part in every job; 0 = online cores. */
int ml_pool_create(int n_threads, ml_pool **out_pool);
void ml_pool_destroy(ml_pool *pool);
int ml_pool_threads(const ml_pool *pool);
/* Runs the job and returns when every task has finished. Tasks are claimed dynamically, so a
 * task's result must not depend on which thread runs it (that keeps results deterministic);
 * a worker that is not running when the job starts is not waited for (the others, the caller
 * included, take its share). */
void ml_pool_run(ml_pool *pool, ml_task_fn fn, void *ctx, int n_tasks);
/* Number of online cores. */
int ml_online_cores(void);

#endif
