#include "model_options.h"

#include <stdio.h>
#include <string.h>

#include "cli_args.h"

void ml_cli_model_init(ml_cli_model *m) {
    m->model_path = NULL;
    m->params = ml_model_default_params();
}

int ml_cli_model_option(ml_cli_model *m, int opt, const char *arg) {
    int ok = 0;
    switch (opt) {
    case 'm': m->model_path = arg; return 1;
    case ML_OPT_TP: ok = ml_cli_parse_int("--tp", arg, 1, 4096, &m->params.tp); break;
    case ML_OPT_MESH: ok = ml_cli_parse_mesh("--mesh", arg, &m->params.mesh_rows, &m->params.mesh_cols); break;
    case 't': ok = ml_cli_parse_int("--threads", arg, 1, 1024, &m->params.n_threads); break;
    case 'c': ok = ml_cli_parse_int("--ctx-size", arg, 1, 1 << 24, &m->params.max_seq_len); break;
    case ML_OPT_ACT: ok = ml_cli_parse_act("--act", arg, &m->params.act_mode); break;
    case ML_OPT_KV: ok = ml_cli_parse_kv("--kv", arg, &m->params.kv_dtype); break;
    case ML_OPT_MAX_BATCH: ok = ml_cli_parse_int("--max-batch", arg, 1, 32, &m->params.max_batch); break;
    case ML_OPT_BACKEND:
        if (strcmp(arg, "auto") == 0) m->params.mesh_backend = ML_MESH_AUTO;
        else if (strcmp(arg, "threads") == 0) m->params.mesh_backend = ML_MESH_THREADS;
        else if (strcmp(arg, "mpi") == 0) m->params.mesh_backend = ML_MESH_MPI;
        else {
            fprintf(stderr, "meshllama: --backend '%s': expected auto, threads or mpi\n", arg);
            ok = -1;
        }
        break;
    default: return 0;
    }
    return ok == 0 ? 1 : -1;
}

int ml_cli_model_open(const ml_cli_model *m, ml_model **out) {
    if (!m->model_path) {
        fprintf(stderr, "meshllama: no model given: pass -m DIR (a Hugging Face Llama checkpoint directory)\n");
        return -1;
    }
    int status = ml_model_open(m->model_path, &m->params, out);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama: %s\n  (%s)\n", ml_last_error(), ml_strerror(status));
        return -1;
    }
    return 0;
}
