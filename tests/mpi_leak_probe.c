/* Built only for the sanitizer build with MPI (tests/cli_mpi_asan.sh runs it under mpirun):
 * opens a fixture model on the mpi mesh, generates a few tokens (every collective runs), closes
 * everything, and with "leak" also drops a few allocations of its own. Shows that the CI's
 * LeakSanitizer settings for MPI runs hide Open MPI's process-lifetime allocations and still
 * catch a leak in our code. usage: mpi_leak_probe MODEL_DIR clean|leak */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"

/* noinline and overwritten in a loop, so no stale pointer keeps the blocks reachable */
__attribute__((noinline)) static void deliberate_leak_in_meshllama(void) {
    for (int i = 0; i < 8; i++) {
        char *volatile block = malloc(4096 + (size_t)i);
        if (block) block[0] = (char)i;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mpi_leak_probe MODEL_DIR clean|leak\n");
        return 2;
    }
    ml_model_params params = ml_model_default_params();
    params.mesh_backend = ML_MESH_MPI;
    params.n_threads = 1;
    params.max_seq_len = 32;
    ml_model *model = NULL;
    int status = ml_model_open(argv[1], &params, &model);
    if (status == ML_OK) {
        int32_t prompt[3] = {1, 2, 3}, out[4];
        ml_sampling_params sp = ml_sampling_default_params();
        sp.max_tokens = 4;
        sp.ignore_eos = 1;
        status = ml_generate(model, prompt, 3, &sp, out, NULL, NULL, NULL);
    }
    if (status != ML_OK) fprintf(stderr, "mpi_leak_probe: %s\n", ml_last_error());
    ml_model_close(model);
    if (strcmp(argv[2], "leak") == 0) deliberate_leak_in_meshllama();
    ml_shutdown();
    return status == ML_OK ? 0 : 1;
}
