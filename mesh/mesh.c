/* Backend-independent parts of the mesh: choosing a backend, attaching the plan, the local
 * fixed-order sum every backend starts its all-reduce with. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mesh/mesh.h"

static int process_rank;

void ml_mesh_set_process_rank(int rank) { process_rank = rank; }

int ml_process_rank(void) { return process_rank; }

void ml_abort_job(int exit_code) { ml_mesh_abort_job(exit_code); }

/* Non-zero when this process was started by an MPI launcher with more than one rank. */
static int launched_by_mpi(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *value = getenv(keys[i]);
        if (value && atoi(value) > 1) return 1;
    }
    return 0;
}

int ml_mesh_open(ml_mesh_kind kind, ml_mesh **out_mesh) {
    *out_mesh = NULL;
    switch (kind) {
    case ML_MESH_THREADS: return ml_mesh_open_threads(out_mesh);
    case ML_MESH_MPI: return ml_mesh_open_mpi(out_mesh);
    case ML_MESH_AUTO:
        return launched_by_mpi() ? ml_mesh_open_mpi(out_mesh) : ml_mesh_open_threads(out_mesh);
    default: return ml_set_error(ML_ERR_ARG, "mesh backend %d: expected auto (0), threads (1) or mpi (2)", (int)kind);
    }
}

int ml_mesh_attach(ml_mesh *mesh, ml_shard_plan *plan, ml_pool *pool) {
    if (plan->tp % mesh->n_ranks != 0) {
        int tp = plan->tp;
        ml_shard_plan_free(plan);
        return ml_set_error(ML_ERR_ARG, "tp %d cannot be spread over %d %s ranks: tp must be a multiple of the rank count",
                            tp, mesh->n_ranks, mesh->backend->name);
    }
    ml_shard_plan_free(mesh->plan);
    mesh->plan = plan;
    mesh->pool = pool;
    mesh->n_local = plan->tp / mesh->n_ranks;
    mesh->device_begin = mesh->rank * mesh->n_local;
    return ML_OK;
}

void ml_mesh_destroy(ml_mesh *mesh) {
    if (!mesh) return;
    mesh->backend->destroy_state(mesh);
    ml_shard_plan_free(mesh->plan);
    free(mesh);
}

uint64_t ml_fingerprint_hash(uint64_t hash, const void *bytes, size_t n) {
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

int ml_mesh_agree_fingerprint(ml_mesh *mesh, const ml_mesh_fingerprint *items, int n_items) {
    if (mesh->n_ranks <= 1) return ML_OK;
    ml_mesh_fingerprint *first = malloc((size_t)n_items * sizeof *first);
    int status = first ? ML_OK : ml_set_error(ML_ERR_NOMEM, "fingerprint: out of memory");
    if (first) {
        /* what points into this process's memory: only hash and detail travel */
        memcpy(first, items, (size_t)n_items * sizeof *first);
        status = ml_mesh_broadcast(mesh, first, (size_t)n_items * sizeof *first);
    }
    if (status != ML_OK) {
        free(first);
        return status;
    }
    for (int i = 0; i < n_items && status == ML_OK; i++) {
        if (first[i].hash == items[i].hash) continue;
        status = ml_set_error(ML_ERR_ARG, "ranks disagree on %s: rank 0 has %.112s; rank %d has %.112s", items[i].what,
                              first[i].detail, mesh->rank, items[i].detail);
    }
    free(first);
    return ml_mesh_agree(mesh, status);
}

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

void ml_mesh_sum_local(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    reduce_job job = {partials, mesh->n_local, n, out};
    ml_pool_run(mesh->pool, reduce_task, &job, (int)((n + ML_REDUCE_CHUNK - 1) / ML_REDUCE_CHUNK));
}
