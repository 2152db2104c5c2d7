/* The device mesh and the collectives the model needs. The model calls this interface and
 * never a backend directly; a single device is a mesh of one with the same code path.
 *
 * A process hosts devices [device_begin, device_begin + n_local) of the plan. Collectives take
 * one buffer per local device; the backend combines them with the other processes' (none for
 * the threads backend, MPI ranks later). Reductions run in a fixed device order, so results
 * are bit-identical from run to run. */
#ifndef ML_MESH_MESH_H
#define ML_MESH_MESH_H

#include <stddef.h>

#include "core/thread_pool.h"
#include "mesh/shard_plan.h"

typedef struct ml_mesh ml_mesh;

typedef struct {
    const char *name;
    /* out[i] = sum over devices d = 0..tp-1 (in that order) of partial_d[i].
     * partials: [n_local] pointers to [n] floats; out: [n] floats, the same on every device. */
    int (*allreduce_sum)(ml_mesh *mesh, float *const *partials, size_t n, float *out);
    /* Vocab gather: each device has written its LM-head slice into columns
     * [vocab_begin, vocab_begin + vocab_count) of logits [n_rows, vocab]; afterwards the
     * host (and every process) holds all columns. A no-op in shared memory. */
    int (*gather_vocab)(ml_mesh *mesh, float *logits, int n_rows);
    void (*destroy_state)(ml_mesh *mesh);
} ml_mesh_backend;

struct ml_mesh {
    const ml_mesh_backend *backend;
    ml_shard_plan *plan;  /* owned */
    int device_begin;     /* first device hosted by this process */
    int n_local;          /* devices hosted by this process */
    ml_pool *pool;        /* this process's worker threads (not owned) */
    void *state;          /* backend state */
};

/* In-process mesh: every device of the plan lives in this process and shares its threads.
 * Takes ownership of plan (freed even on failure). */
int ml_mesh_create_threads(ml_shard_plan *plan, ml_pool *pool, ml_mesh **out_mesh);
void ml_mesh_destroy(ml_mesh *mesh);

static inline int ml_mesh_allreduce_sum(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    return mesh->backend->allreduce_sum(mesh, partials, n, out);
}
static inline int ml_mesh_gather_vocab(ml_mesh *mesh, float *logits, int n_rows) {
    return mesh->backend->gather_vocab(mesh, logits, n_rows);
}

#endif
