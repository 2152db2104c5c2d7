/* The threads backend: devices are slices of one process's memory, so the all-reduce is a
 * fixed-order sum over the devices' partial buffers, spread over the pool's threads. */
#include <stdlib.h>

#include "core/error.h"
#include "mesh/mesh.h"

static int threads_allreduce_sum(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    ml_mesh_sum_local(mesh, partials, n, out);
    return ML_OK;
}

static int threads_gather_vocab(ml_mesh *mesh, float *logits, int n_rows) {
    (void)mesh;
    (void)logits;
    (void)n_rows;
    return ML_OK;
}

static int threads_broadcast(ml_mesh *mesh, void *buf, size_t bytes) {
    (void)mesh;
    (void)buf;
    (void)bytes;
    return ML_OK;
}

static int threads_agree(ml_mesh *mesh, int status) {
    (void)mesh;
    return status;
}

static void threads_destroy_state(ml_mesh *mesh) { (void)mesh; }

static const ml_mesh_backend threads_backend = {
    .name = "threads",
    .allreduce_sum = threads_allreduce_sum,
    .gather_vocab = threads_gather_vocab,
    .broadcast = threads_broadcast,
    .agree = threads_agree,
    .destroy_state = threads_destroy_state,
};

int ml_mesh_open_threads(ml_mesh **out_mesh) {
    *out_mesh = NULL;
    ml_mesh *mesh = calloc(1, sizeof *mesh);
    if (!mesh) return ml_set_error(ML_ERR_NOMEM, "mesh: out of memory");
    mesh->backend = &threads_backend;
    mesh->rank = 0;
    mesh->n_ranks = 1;
    mesh->ranks_on_node = 1;
    *out_mesh = mesh;
    return ML_OK;
}
