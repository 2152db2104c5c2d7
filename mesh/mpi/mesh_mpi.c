/* The mpi backend: one process per rank, on one machine or many (Open MPI). The all-reduce is
 * the local fixed-order sum followed by MPI_Allreduce; the vocab slices are gathered to rank 0
 * with MPI_Gatherv; control data is broadcast from rank 0. Every MPI call returns an error
 * code (MPI_ERRORS_RETURN) that becomes an ml_status naming the call. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mesh/mesh.h"

#define ML_MPI_MESSAGE 1024

typedef struct {
    MPI_Comm comm;
    float *pack;        /* this rank's vocab columns, rows packed */
    size_t pack_capacity;
    float *gathered;    /* rank 0: every rank's packed columns */
    size_t gathered_capacity;
    int *counts;        /* [n_ranks] */
    int *displs;        /* [n_ranks] */
} mpi_state;

static int library_initialised_mpi = 0;

static int mpi_error(int rc, const char *call, const char *file, int line) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    return ml_set_error(ML_ERR_INTERNAL, "%s:%d: %s failed: %.*s", file, line, call, length, text);
}

#define ML_MPI_TRY(call)                                                                           \
    do {                                                                                           \
        int ml_mpi_rc_ = (call);                                                                   \
        if (ml_mpi_rc_ != MPI_SUCCESS) return mpi_error(ml_mpi_rc_, #call, __FILE__, __LINE__);    \
    } while (0)

static int grow(float **buf, size_t *capacity, size_t n) {
    if (n <= *capacity) return ML_OK;
    float *bigger = realloc(*buf, n * sizeof(float));
    if (!bigger) return ml_set_error(ML_ERR_NOMEM, "mpi mesh: out of memory for %zu floats", n);
    *buf = bigger;
    *capacity = n;
    return ML_OK;
}

static int mpi_allreduce_sum(ml_mesh *mesh, float *const *partials, size_t n, float *out) {
    mpi_state *s = mesh->state;
    ml_mesh_sum_local(mesh, partials, n, out);
    for (size_t done = 0; done < n;) {
        int count = n - done > (size_t)INT_MAX ? INT_MAX : (int)(n - done);
        ML_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, out + done, count, MPI_FLOAT, MPI_SUM, s->comm));
        done += (size_t)count;
    }
    return ML_OK;
}

/* The vocab columns [begin, begin + count) that rank r's devices computed. */
static void rank_vocab(const ml_mesh *mesh, int r, int *begin, int *count) {
    const ml_shard *first = &mesh->plan->shards[r * mesh->n_local];
    const ml_shard *last = &mesh->plan->shards[(r + 1) * mesh->n_local - 1];
    *begin = first->vocab_begin;
    *count = last->vocab_begin + last->vocab_count - first->vocab_begin;
}

static int mpi_gather_vocab(ml_mesh *mesh, float *logits, int n_rows) {
    mpi_state *s = mesh->state;
    int vocab = mesh->plan->vocab_size, begin, count;
    rank_vocab(mesh, mesh->rank, &begin, &count);
    ML_TRY(grow(&s->pack, &s->pack_capacity, (size_t)n_rows * count));
    for (int row = 0; row < n_rows; row++)
        memcpy(s->pack + (size_t)row * count, logits + (size_t)row * vocab + begin, (size_t)count * sizeof(float));
    if ((size_t)n_rows * vocab > (size_t)INT_MAX)
        return ml_set_error(ML_ERR_UNSUPPORTED, "mpi mesh: %d logit rows of %d are too many for one gather", n_rows,
                            vocab);
    if (mesh->rank == 0) {
        ML_TRY(grow(&s->gathered, &s->gathered_capacity, (size_t)n_rows * vocab));
        for (int r = 0, at = 0; r < mesh->n_ranks; r++) {
            int r_begin, r_count;
            rank_vocab(mesh, r, &r_begin, &r_count);
            s->counts[r] = n_rows * r_count;
            s->displs[r] = at;
            at += n_rows * r_count;
        }
    }
    ML_MPI_TRY(MPI_Gatherv(s->pack, n_rows * count, MPI_FLOAT, s->gathered, s->counts, s->displs, MPI_FLOAT, 0, s->comm));
    if (mesh->rank != 0) return ML_OK;
    for (int r = 1; r < mesh->n_ranks; r++) {
        int r_begin, r_count;
        rank_vocab(mesh, r, &r_begin, &r_count);
        const float *src = s->gathered + s->displs[r];
        for (int row = 0; row < n_rows; row++)
            memcpy(logits + (size_t)row * vocab + r_begin, src + (size_t)row * r_count, (size_t)r_count * sizeof(float));
    }
    return ML_OK;
}

static int mpi_broadcast(ml_mesh *mesh, void *buf, size_t bytes) {
    mpi_state *s = mesh->state;
    if (bytes > (size_t)INT_MAX) return ml_set_error(ML_ERR_ARG, "mpi broadcast of %zu bytes is too large", bytes);
    ML_MPI_TRY(MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, s->comm));
    return ML_OK;
}

static int mpi_agree(ml_mesh *mesh, int status) {
    mpi_state *s = mesh->state;
    int mine = status == ML_OK ? mesh->n_ranks : mesh->rank, first_failed;
    ML_MPI_TRY(MPI_Allreduce(&mine, &first_failed, 1, MPI_INT, MPI_MIN, s->comm));
    if (first_failed == mesh->n_ranks) return ML_OK;
    struct {
        int status;
        char message[ML_MPI_MESSAGE];
    } failure;
    memset(&failure, 0, sizeof failure);
    if (mesh->rank == first_failed) {
        failure.status = status;
        strncpy(failure.message, ml_last_error(), sizeof failure.message - 1);
    }
    ML_MPI_TRY(MPI_Bcast(&failure, (int)sizeof failure, MPI_BYTE, first_failed, s->comm));
    return ml_set_error(failure.status, "rank %d of %d: %s", first_failed, mesh->n_ranks, failure.message);
}

static void mpi_destroy_state(ml_mesh *mesh) {
    mpi_state *s = mesh->state;
    if (!s) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
    free(s->pack);
    free(s->gathered);
    free(s->counts);
    free(s->displs);
    free(s);
    mesh->state = NULL;
}

static const ml_mesh_backend mpi_backend = {
    .name = "mpi",
    .allreduce_sum = mpi_allreduce_sum,
    .gather_vocab = mpi_gather_vocab,
    .broadcast = mpi_broadcast,
    .agree = mpi_agree,
    .destroy_state = mpi_destroy_state,
};

static int init_mpi(void) {
    int initialised = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return ml_set_error(ML_ERR_INTERNAL, "MPI was already finalized in this process");
    MPI_Initialized(&initialised);
    if (initialised) return ML_OK;
    int provided = 0;
    ML_MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    library_initialised_mpi = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return ML_OK;
}

static int open_state(ml_mesh *mesh, mpi_state *s) {
    ML_MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &s->comm));
    ML_MPI_TRY(MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN));
    ML_MPI_TRY(MPI_Comm_rank(s->comm, &mesh->rank));
    ML_MPI_TRY(MPI_Comm_size(s->comm, &mesh->n_ranks));
    MPI_Comm node;
    ML_MPI_TRY(MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, mesh->rank, MPI_INFO_NULL, &node));
    MPI_Comm_size(node, &mesh->ranks_on_node);
    MPI_Comm_free(&node);
    s->counts = calloc((size_t)mesh->n_ranks, sizeof *s->counts);
    s->displs = calloc((size_t)mesh->n_ranks, sizeof *s->displs);
    if (!s->counts || !s->displs) return ml_set_error(ML_ERR_NOMEM, "mpi mesh: out of memory");
    return ML_OK;
}

int ml_mesh_open_mpi(ml_mesh **out_mesh) {
    *out_mesh = NULL;
    ML_TRY(init_mpi());
    ml_mesh *mesh = calloc(1, sizeof *mesh);
    mpi_state *s = calloc(1, sizeof *s);
    if (!mesh || !s) {
        free(mesh);
        free(s);
        return ml_set_error(ML_ERR_NOMEM, "mpi mesh: out of memory");
    }
    s->comm = MPI_COMM_NULL;
    mesh->backend = &mpi_backend;
    mesh->state = s;
    int status = open_state(mesh, s);
    if (status != ML_OK) {
        ml_mesh_destroy(mesh);
        return status;
    }
    *out_mesh = mesh;
    return ML_OK;
}

void ml_mesh_shutdown(void) {
    int initialised = 0, finalized = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalized);
    if (library_initialised_mpi && initialised && !finalized) MPI_Finalize();
}
