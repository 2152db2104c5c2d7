/* The threads backend: devices are slices of one process's memory, so the all-reduce is a
 * fixed-order sum over the devices' partial buffers, spread over the pool's threads. */
#include <stdlib.h>

#include "core/error.h"
#include "mesh/mesh.h"

/* Elements per task: large enough to amortise a task claim, small enough to balance. */
#define ML_REDUCE_CHUNK 4096

typedef struct {
    float *const *partials;
    int n_partials;
    size_t n;
    float *out;
} reduce_job;

static void reduce_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const reduce_job *job = ctx;
    size_t begin = (size_t)task * ML_REDUCE_CHUNK;
    size_t end = begin + ML_REDUCE_CHUNK < job->n ? begin + ML_REDUCE_CHUNK : job->n;
    for (size_t i = begin; i < end; i++) {
        float sum = job->partials[0][i];
        for (int d = 1; d < job->n_partials; d++) sum += job->partials[d][i];
        job->out[i] = sum;
    }
}

static int threads_allreduce_sum(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    reduce_job job = {partials, mesh->n_local, n, out};
    int n_tasks = (int)((n + ML_REDUCE_CHUNK - 1) / ML_REDUCE_CHUNK);
    ml_pool_run(mesh->pool, reduce_task, &job, n_tasks);
    return ML_OK;
}

static int threads_gather_vocab(ml_mesh *mesh, float *logits, int n_rows) {
    (void)mesh;
    (void)logits;
    (void)n_rows;
    return ML_OK;
}

static void threads_destroy_state(ml_mesh *mesh) { (void)mesh; }

static const ml_mesh_backend threads_backend = {
    .name = "threads",
    .allreduce_sum = threads_allreduce_sum,
    .gather_vocab = threads_gather_vocab,
    .destroy_state = threads_destroy_state,
};

int ml_mesh_create_threads(ml_shard_plan *plan, ml_pool *pool, ml_mesh **out_mesh) {
    *out_mesh = NULL;
    ml_mesh *mesh = calloc(1, sizeof *mesh);
    if (!mesh) {
        ml_shard_plan_free(plan);
        return ml_set_error(ML_ERR_NOMEM, "mesh: out of memory");
    }
    mesh->backend = &threads_backend;
    mesh->plan = plan;
    mesh->device_begin = 0;
    mesh->n_local = plan->tp;
    mesh->pool = pool;
    *out_mesh = mesh;
    return ML_OK;
}

void ml_mesh_destroy(ml_mesh *mesh) {
    if (!mesh) return;
    mesh->backend->destroy_state(mesh);
    ml_shard_plan_free(mesh->plan);
    free(mesh);
}
