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
#include <stdint.h>

#include "core/thread_pool.h"
#include "meshllama.h"
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
    double collective_timeout_s; /* mpi: a collective waiting longer ends the job naming the
                                  * rank that did not arrive; 0 = wait forever */
    void *state;          /* backend state */
};

/* Opens the mesh's processes: the threads backend (one process), or MPI (one rank per process,
 * initialising MPI if needed). ML_MESH_AUTO picks MPI when launched by mpirun with more than one
 * rank. */
int ml_mesh_open(ml_mesh_kind kind, ml_mesh **out_mesh);
/* Gives the mesh its plan (ownership passes, freed even on failure) and this process's threads.
 * Each process hosts tp / n_ranks consecutive devices; tp must be a multiple of n_ranks. */
int ml_mesh_attach(ml_mesh *mesh, ml_shard_plan *plan, ml_pool *pool);
void ml_mesh_destroy(ml_mesh *mesh);

int ml_mesh_open_threads(ml_mesh **out_mesh);
/* Returns ML_ERR_UNSUPPORTED when the library was built without MPI. */
int ml_mesh_open_mpi(ml_mesh **out_mesh);
/* Finalizes MPI if the library initialised it; safe to call always. */
void ml_mesh_shutdown(void);
/* MPI_Abort when this process is one of several MPI ranks; otherwise nothing. */
void ml_mesh_abort_job(int exit_code);
/* Records this process's MPI rank for ml_process_rank. */
void ml_mesh_set_process_rank(int rank);

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

/* One thing every rank must have the same of (the config, the shard plan, the weights, the
 * options, the prompt): a hash to compare and a short description for the message. */
typedef struct {
    const char *what;     /* "the model configuration", ... */
    uint64_t hash;
    char detail[112];     /* "hidden 64, 2 layers, ..." */
} ml_mesh_fingerprint;

/* Compares every rank's items with rank 0's. On a difference every rank returns the same
 * ML_ERR_ARG "rank R of N: ranks disagree on WHAT: rank 0 has ..., rank R has ..." (the lowest
 * rank that differs). ML_OK at once for a mesh of one process. */
int ml_mesh_agree_fingerprint(ml_mesh *mesh, const ml_mesh_fingerprint *items, int n_items);

/* FNV-1a, 64-bit: hash = ml_fingerprint_hash(hash, bytes, n), starting from ML_FINGERPRINT_SEED. */
#define ML_FINGERPRINT_SEED 0xcbf29ce484222325ull
uint64_t ml_fingerprint_hash(uint64_t hash, const void *bytes, size_t n);

/* Sums the local devices' partials into out in device order, spread over the pool. */
void ml_mesh_sum_local(ml_mesh *mesh, float *const *partials, size_t n, float *out);

#endif
