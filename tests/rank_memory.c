/* What one process (an MPI rank, or a single process on the threads backend) holds resident
 * for a model: run under mpirun, every rank prints one JSON line with its memory before the
 * model is opened (MPI already initialised), after opening it, and after a short generation
 * (which reads every weight the rank uses), from /proc/self/status (VmHWM, VmRSS, RssAnon,
 * RssFile) and /proc/self/smaps (the resident bytes of the checkpoint's own mappings).
 * tests/cli_mpi_memory.sh checks the numbers against each rank's shard; docs/BENCHMARKS.md
 * ("Memory per MPI rank") has a table made with it.
 *
 * usage: rank_memory MODEL [TP] [THREADS]   (all sizes in KiB) */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"

typedef struct {
    long hwm, rss, anon, file; /* KiB, the process */
    long model_file, model_file_huge; /* KiB, the checkpoint's mappings: resident, of it in 2 MiB pages */
} memory_sample;

/* A "Name:   1234 kB" line of /proc/self/status. */
static long status_kib(const char *text, const char *key) {
    const char *at = strstr(text, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

/* Sums of Rss and FilePmdMapped over the mappings of files whose path contains `model` (a GGUF
 * file, or the safetensors files of a directory). */
static void model_file_kib(const char *model, memory_sample *s) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return;
    char line[4096];
    int inside = 0;
    long total = 0, huge = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long begin, end;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &begin, &end, perms) == 3) { /* a mapping's first line */
            inside = strstr(line, model) != NULL;
            continue;
        }
        long kib;
        if (inside && sscanf(line, "Rss: %ld kB", &kib) == 1) total += kib;
        if (inside && sscanf(line, "FilePmdMapped: %ld kB", &kib) == 1) huge += kib;
    }
    fclose(f);
    s->model_file = total;
    s->model_file_huge = huge;
}

static memory_sample sample(const char *model) {
    memory_sample s = {-1, -1, -1, -1, -1, -1};
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return s;
    static char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    s.hwm = status_kib(text, "VmHWM:");
    s.rss = status_kib(text, "VmRSS:");
    s.anon = status_kib(text, "RssAnon:");
    s.file = status_kib(text, "RssFile:");
    model_file_kib(model, &s);
    return s;
}

static void print_sample(const char *name, memory_sample s, int last) {
    printf("\"%s\": {\"hwm\": %ld, \"rss\": %ld, \"anon\": %ld, \"file\": %ld, \"model_file\": %ld, "
           "\"model_file_huge\": %ld}%s", name, s.hwm, s.rss, s.anon, s.file, s.model_file, s.model_file_huge,
           last ? "" : ", ");
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: rank_memory MODEL [TP] [THREADS]\n");
        return 2;
    }
    int provided = 0, rank = 0, n_ranks = 1;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    /* the directory or file as mapped (smaps names the resolved path, without a trailing slash) */
    char model[PATH_MAX];
    if (!realpath(argv[1], model)) snprintf(model, sizeof model, "%s", argv[1]);

    memory_sample before = sample(model);
    ml_model_params params = ml_model_default_params();
    params.mesh_backend = n_ranks > 1 ? ML_MESH_MPI : ML_MESH_THREADS;
    params.tp = argc > 2 ? atoi(argv[2]) : n_ranks;
    params.n_threads = argc > 3 ? atoi(argv[3]) : 1;
    params.max_seq_len = 64;
    ml_model *m = NULL;
    int status = ml_model_open(argv[1], &params, &m);
    memory_sample opened = sample(model), ran = opened;
    if (status == ML_OK) {
        int32_t prompt[4] = {1, 2, 3, 4}, out[4];
        ml_sampling_params sp = ml_sampling_default_params();
        sp.max_tokens = 4;
        sp.ignore_eos = 1;
        status = ml_generate(m, prompt, 4, &sp, out, NULL, NULL, NULL);
        ran = sample(model);
    }
    if (status != ML_OK) {
        fprintf(stderr, "rank_memory: rank %d: %s\n", rank, ml_last_error());
    } else {
        ml_model_info info;
        ml_model_get_info(m, &info);
        /* one line per rank, printed in rank order */
        for (int r = 0; r < n_ranks; r++) {
            if (r == rank) {
                printf("{\"rank\": %d, \"ranks\": %d, \"tp\": %d, \"local_devices\": %d, \"weight_dtype\": \"%s\", ", rank,
                       n_ranks, info.tp, info.n_local_devices, info.weight_dtype);
                print_sample("before_open", before, 0);
                print_sample("opened", opened, 0);
                print_sample("generated", ran, 1);
                printf("}\n");
                fflush(stdout);
            }
            MPI_Barrier(MPI_COMM_WORLD);
        }
    }
    ml_model_close(m);
    MPI_Finalize();
    return status == ML_OK ? 0 : 1;
}
