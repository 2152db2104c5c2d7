/* The device mesh and the collectives the model needs. The model calls this interface and
 * never a backend directly; a single device is a mesh of one with the same code path.
 *
 * A process (an MPI rank, or the only process) hosts devices [device_begin, device_begin +
 * n_local) of the plan. Collectives take one buffer per local device; the backend combines
 * them with the other processes'. Reductions run in a fixed order, so results are
 * bit-identical from run to run. */
#ifndef ML_MESH_MESH_H
#define ML_MESH_MESH_H

#include <stddef.h>

#include "core/thread_pool.h"
#include "mesh/shard_plan.h"

typedef struct ml_mesh ml_mesh;

typedef struct {
    const char *name;
    /* out[i] = sum over devices d = 0..tp-1 of partial_d[i]; local devices are summed in order,
     * then processes. partials: [n_local] pointers to [n] floats; out: [n] floats, the same in
     * every process. */
    int (*allreduce_sum)(ml_mesh *mesh, float *const *partials, size_t n, float *out);
    /* Vocab gather: each device has written its LM-head slice into columns
     * [vocab_begin, vocab_begin + vocab_count) of logits [n_rows, vocab]; afterwards process 0
     * holds all columns. A no-op in shared memory. */
    int (*gather_vocab)(ml_mesh *mesh, float *logits, int n_rows);
    /* Copies bytes of buf from process 0 to every process. */
    int (*broadcast)(ml_mesh *mesh, void *buf, size_t bytes);
    /* Every process passes its status; all return the first failure (lowest rank), with that
     * rank's message, or ML_OK. Bad input on one rank thus stops all of them together. */
    int (*agree)(ml_mesh *mesh, int status);
    void (*destroy_state)(ml_mesh *mesh);
} ml_mesh_backend;

struct ml_mesh {
    const ml_mesh_backend *backend;
    int rank;             /* this process */
    int n_ranks;          /* processes in the mesh */
    int ranks_on_node;    /* processes sharing this machine (for the default thread count) */
    ml_shard_plan *plan;  /* owned; NULL until ml_mesh_attach */
    int device_begin;     /* first device hosted by this process */
    int n_local;          /* devices hosted by this process */
    ml_pool *pool;        /* this process's worker threads (not owned) */
    void *state;          /* backend state */
};

/* Which backend ml_mesh_open picks (the public ml_mesh_kind has the same values). */
enum { ML_MESH_KIND_AUTO = 0, ML_MESH_KIND_THREADS = 1, ML_MESH_KIND_MPI = 2 };

/* Opens the mesh's processes: the threads backend (one process), or MPI (one rank per process,
 * initialising MPI if needed). AUTO picks MPI when launched by mpirun with more than one rank. */
int ml_mesh_open(int kind, ml_mesh **out_mesh);
/* Gives the mesh its plan (ownership passes, freed even on failure) and this process's threads.
 * Each process hosts tp / n_ranks consecutive devices; tp must be a multiple of n_ranks. */
int ml_mesh_attach(ml_mesh *mesh, ml_shard_plan *plan, ml_pool *pool);
void ml_mesh_destroy(ml_mesh *mesh);

int ml_mesh_open_threads(ml_mesh **out_mesh);
/* Returns ML_ERR_UNSUPPORTED when the library was built without MPI. */
int ml_mesh_open_mpi(ml_mesh **out_mesh);
/* Non-zero when this process was started by an MPI launcher with more than one rank. */
int ml_mesh_launched_by_mpi(void);
/* Finalizes MPI if the library initialised it; safe to call always. */
void ml_mesh_shutdown(void);

static inline int ml_mesh_allreduce_sum(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    return mesh->backend->allreduce_sum(mesh, partials, n, out);
}
static inline int ml_mesh_gather_vocab(ml_mesh *mesh, float *logits, int n_rows) {
    return mesh->backend->gather_vocab(mesh, logits, n_rows);
}
static inline int ml_mesh_broadcast(ml_mesh *mesh, void *buf, size_t bytes) {
    return mesh->backend->broadcast(mesh, buf, bytes);
}
static inline int ml_mesh_agree(ml_mesh *mesh, int status) { return mesh->backend->agree(mesh, status); }

/* Sums the local devices' partials into out in device order, spread over the pool. */
void ml_mesh_sum_local(ml_mesh *mesh, float *const *partials, size_t n, float *out);

#endif
