/* The mpi backend: one process per rank, on one machine or many (Open MPI). The all-reduce is
 * the local fixed-order sum followed by MPI_Allreduce; the vocab slices are gathered to rank 0
 * with MPI_Gatherv; control data is broadcast from rank 0.
 *
 * Collectives are started non-blocking and waited for with a deadline (the mesh's
 * collective_timeout_s, the CLI's --collective-timeout): a rank that never arrives (stopped,
 * hung, far behind) would otherwise hold every other rank forever. When the deadline passes,
 * the waiting ranks tell each other they are waiting, and those not heard from within a short
 * grace period are named as the ones that did not arrive; the lowest waiting rank prints one
 * message and the job is aborted. A collective that fails (MPI_ERRORS_RETURN gives the code)
 * also aborts the job: the ranks can no longer agree on anything, and a rank that returned
 * would leave the others waiting. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "mesh/mesh.h"

#define ML_MPI_MESSAGE 1024

typedef struct {
    MPI_Comm comm;
    MPI_Comm watch_comm; /* the watchdog's "I am waiting at collective #n" messages */
    long long sequence;  /* collectives started by this rank */
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

/* A collective failed: the other ranks are inside it or past it, so returning would leave them
 * waiting. Print this rank's reason once and end the job. */
static void abort_job_after(ml_mesh *mesh, int rc, const char *call) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    fprintf(stderr, "meshllama: rank %d of %d: %s failed: %.*s; aborting the MPI job\n", mesh->rank, mesh->n_ranks,
            call, length, text);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void sleep_ms(int ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

enum { TAG_WAITING = 1 };

/* The deadline of collective #sequence passed. Tells every other rank "I am waiting at #n",
 * listens for the same from them for a grace period, and names the ranks not heard from. The
 * collective may still complete meanwhile (a rank that was merely slow): then the job goes on. */
static int collective_timed_out(ml_mesh *mesh, MPI_Request *request, const char *what) {
    mpi_state *s = mesh->state;
    int n = mesh->n_ranks;
    long long mine = s->sequence;
    char *heard = calloc((size_t)n, 1);
    MPI_Request *sends = calloc((size_t)n, sizeof *sends);
    if (!heard || !sends) {
        fprintf(stderr, "meshllama: rank %d of %d: the %s did not complete within %g s; aborting the MPI job\n",
                mesh->rank, n, what, mesh->collective_timeout_s);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    heard[mesh->rank] = 1;
    for (int r = 0; r < n; r++) {
        sends[r] = MPI_REQUEST_NULL;
        if (r != mesh->rank) MPI_Isend(&mine, 1, MPI_LONG_LONG, r, TAG_WAITING, s->watch_comm, &sends[r]);
    }
    /* long enough for every waiting rank to reach its own deadline and answer */
    double grace = mesh->collective_timeout_s < 3.0 ? mesh->collective_timeout_s : 3.0;
    double grace_end = MPI_Wtime() + grace;
    int done = 0;
    while (!done && MPI_Wtime() < grace_end) {
        int flag = 0;
        MPI_Status status;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_WAITING, s->watch_comm, &flag, &status);
        if (flag) {
            long long theirs = -1;
            MPI_Recv(&theirs, 1, MPI_LONG_LONG, status.MPI_SOURCE, TAG_WAITING, s->watch_comm, MPI_STATUS_IGNORE);
            if (theirs == mine) heard[status.MPI_SOURCE] = 1;
            continue;
        }
        MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (!done) sleep_ms(1);
    }
    if (done) {
        /* A slow rank arrived after all. The pings we sent stay unread; a later timeout only
         * counts pings for its own collective number. */
        for (int r = 0; r < n; r++)
            if (sends[r] != MPI_REQUEST_NULL) MPI_Request_free(&sends[r]);
        free(heard);
        free(sends);
        return ML_OK;
    }
    char missing[512] = "";
    size_t used = 0;
    int n_missing = 0, lowest_waiting = mesh->rank;
    for (int r = n - 1; r >= 0; r--)
        if (heard[r]) lowest_waiting = r;
    for (int r = 0; r < n && used + 16 < sizeof missing; r++) {
        if (heard[r]) continue;
        used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d", n_missing ? ", " : "", r);
        n_missing++;
    }
    if (mesh->rank == lowest_waiting) {
        if (n_missing > 0)
            fprintf(stderr,
                    "meshllama: the %s (collective #%lld) did not complete within %g s: rank%s %s of %d did not "
                    "arrive (stopped, hung or far behind); aborting the MPI job (--collective-timeout)\n",
                    what, mine, mesh->collective_timeout_s, n_missing > 1 ? "s" : "", missing, n);
        else
            fprintf(stderr,
                    "meshllama: the %s (collective #%lld) did not complete within %g s although every rank is "
                    "waiting in it; aborting the MPI job (--collective-timeout)\n",
                    what, mine, mesh->collective_timeout_s);
        fflush(stderr);
    } else {
        /* let the lowest waiting rank print first; its abort usually ends us before this does */
        sleep_ms(2000);
    }
    MPI_Abort(MPI_COMM_WORLD, 1);
    return ml_set_error(ML_ERR_INTERNAL, "the %s timed out", what); /* not reached */
}

/* Waits for a started collective, with the mesh's deadline. */
static int wait_collective(ml_mesh *mesh, MPI_Request *request, const char *what) {
    mpi_state *s = mesh->state;
    s->sequence++;
    if (mesh->collective_timeout_s <= 0) {
        int rc = MPI_Wait(request, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) abort_job_after(mesh, rc, what);
        return ML_OK;
    }
    double deadline = MPI_Wtime() + mesh->collective_timeout_s;
    for (unsigned spins = 1;; spins++) {
        int done = 0;
        int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) abort_job_after(mesh, rc, what);
        if (done) return ML_OK;
        /* spin like a blocking MPI call would; look at the clock now and then, and stop
         * spinning hot once the wait is long (a rank loading its weights) */
        if (spins % 1024 == 0) {
            double now = MPI_Wtime();
            if (now > deadline) return collective_timed_out(mesh, request, what);
            if (now > deadline - mesh->collective_timeout_s + 0.1) sleep_ms(1);
        }
    }
}

/* Starts a collective (its MPI call's result in rc) and waits for it; a failure aborts the job. */
#define ML_MPI_COLLECTIVE(mesh, request, what, call)                                               \
    do {                                                                                           \
        int ml_mpi_rc_ = (call);                                                                   \
        if (ml_mpi_rc_ != MPI_SUCCESS) abort_job_after((mesh), ml_mpi_rc_, #call);                 \
        ML_TRY(wait_collective((mesh), (request), (what)));                                        \
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
        MPI_Request request;
        ML_MPI_COLLECTIVE(mesh, &request, "all-reduce",
                          MPI_Iallreduce(MPI_IN_PLACE, out + done, count, MPI_FLOAT, MPI_SUM, s->comm, &request));
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
    MPI_Request request;
    ML_MPI_COLLECTIVE(mesh, &request, "vocab gather",
                      MPI_Igatherv(s->pack, n_rows * count, MPI_FLOAT, s->gathered, s->counts, s->displs, MPI_FLOAT, 0,
                                   s->comm, &request));
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
    MPI_Request request;
    ML_MPI_COLLECTIVE(mesh, &request, "broadcast", MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, s->comm, &request));
    return ML_OK;
}

static int mpi_agree(ml_mesh *mesh, int status) {
    mpi_state *s = mesh->state;
    int mine = status == ML_OK ? mesh->n_ranks : mesh->rank, first_failed;
    MPI_Request request;
    ML_MPI_COLLECTIVE(mesh, &request, "agreement on the outcome",
                      MPI_Iallreduce(&mine, &first_failed, 1, MPI_INT, MPI_MIN, s->comm, &request));
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
    ML_MPI_COLLECTIVE(mesh, &request, "agreement on the outcome",
                      MPI_Ibcast(&failure, (int)sizeof failure, MPI_BYTE, first_failed, s->comm, &request));
    int status_all = ml_set_error(failure.status, "rank %d of %d: %s", first_failed, mesh->n_ranks, failure.message);
    ml_mark_error_shared(); /* every rank returns this message: print it once */
    return status_all;
}

static void mpi_destroy_state(ml_mesh *mesh) {
    mpi_state *s = mesh->state;
    if (!s) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
    if (!finalized && s->watch_comm != MPI_COMM_NULL) MPI_Comm_free(&s->watch_comm);
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
    ML_MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &s->watch_comm));
    ML_MPI_TRY(MPI_Comm_rank(s->comm, &mesh->rank));
    ml_mesh_set_process_rank(mesh->rank);
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
    s->watch_comm = MPI_COMM_NULL;
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

void ml_mesh_abort_job(int exit_code) {
    int initialised = 0, finalized = 0, size = 1;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalized);
    if (!initialised || finalized) return;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) {
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, exit_code);
    }
}

void ml_mesh_shutdown(void) {
    int initialised = 0, finalized = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalized);
    if (library_initialised_mpi && initialised && !finalized) MPI_Finalize();
}
