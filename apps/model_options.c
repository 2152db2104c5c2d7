#include "model_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_args.h"

void ml_cli_model_init(ml_cli_model *m) {
    m->model_path = NULL;
    m->ctx_given = 0;
    m->rope_extrapolate = 0;
    m->params = ml_model_default_params();
}

int ml_cli_model_option(ml_cli_model *m, int opt, const char *arg) {
    int ok = 0;
    switch (opt) {
    case 'm': m->model_path = arg; return 1;
    case ML_OPT_TP: ok = ml_cli_parse_int("--tp", arg, 1, 4096, &m->params.tp); break;
    case ML_OPT_MESH: ok = ml_cli_parse_mesh("--mesh", arg, &m->params.mesh_rows, &m->params.mesh_cols); break;
    case 't': ok = ml_cli_parse_int("--threads", arg, 1, 1024, &m->params.n_threads); break;
    case 'c':
        ok = ml_cli_parse_int("--ctx-size", arg, 1, 1 << 24, &m->params.max_seq_len);
        m->ctx_given = 1;
        break;
    case ML_OPT_ACT: ok = ml_cli_parse_act("--act", arg, &m->params.act_mode); break;
    case ML_OPT_KV: ok = ml_cli_parse_kv("--kv", arg, &m->params.kv_dtype); break;
    case ML_OPT_MAX_BATCH: ok = ml_cli_parse_int("--max-batch", arg, 1, ML_MAX_BATCH, &m->params.max_batch); break;
    case ML_OPT_COLLECTIVE_TIMEOUT: {
        float seconds = 0;
        ok = ml_cli_parse_float("--collective-timeout", arg, 0.0, 1e9, &seconds);
        m->params.collective_timeout_s = seconds;
        break;
    }
    case ML_OPT_ROPE_EXTRAPOLATE: m->rope_extrapolate = 1; return 1;
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

/* The default model (scripts/fetch_default_model.sh): $MESHLLAMA_DEFAULT_MODEL, else
 * models/<name> beside the build directory of this executable, else ./models/<name>. */
int ml_cli_default_model(char *path, size_t size) {
    if (!path || size == 0) return 0;
    const char *env = getenv("MESHLLAMA_DEFAULT_MODEL");
    if (env && *env) {
        snprintf(path, size, "%s", env);
        return access(path, R_OK) == 0;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(path, size, "%s/../models/%s", exe, ML_DEFAULT_MODEL_NAME);
        if (access(path, R_OK) == 0) return 1;
    }
    snprintf(path, size, "models/%s", ML_DEFAULT_MODEL_NAME);
    return access(path, R_OK) == 0;
}

int ml_cli_model_open(const ml_cli_model *m, ml_model **out) {
    char default_path[4200];
    const char *path = m->model_path;
    if (!path) {
        if (!ml_cli_default_model(default_path, sizeof default_path)) {
            fprintf(stderr, "meshllama: no model given (-m DIR or FILE.gguf) and the default model %s is missing:\n"
                            "  fetch it with scripts/fetch_default_model.sh\n",
                    ML_DEFAULT_MODEL_NAME);
            return -1;
        }
        path = default_path;
    }
    ml_model_params params = m->params;
    int status = ml_model_open(path, &params, out);
    /* -c past the trained positions would give garbage, not an error: clamped to them with a
     * warning (the model is opened again at that size) unless --rope-extrapolate. */
    ml_model_info info;
    ml_model_get_info(status == ML_OK ? *out : NULL, &info);
    if (status == ML_OK && m->ctx_given && !m->rope_extrapolate && info.max_position_embeddings > 0 &&
        info.max_seq_len > info.max_position_embeddings) {
        if (info.rank == 0)
            fprintf(stderr, "meshllama: warning: -c %d exceeds the model's %d positions (max_position_embeddings of "
                            "%s): using -c %d (--rope-extrapolate keeps %d)\n",
                    info.max_seq_len, info.max_position_embeddings, path, info.max_position_embeddings,
                    info.max_seq_len);
        ml_model_close(*out);
        *out = NULL;
        params.max_seq_len = info.max_position_embeddings;
        status = ml_model_open(path, &params, out);
    }
    if (status != ML_OK) {
        if (!ml_last_error_is_shared() || ml_process_rank() == 0)
            fprintf(stderr, "meshllama: %s\n  (%s)\n", ml_last_error(), ml_strerror(status));
        return -1;
    }
    return 0;
}

void ml_cli_report_failure(const char *command, int status) {
    if (ml_last_error_is_shared()) {
        if (ml_process_rank() == 0) fprintf(stderr, "meshllama %s: %s\n  (%s)\n", command, ml_last_error(), ml_strerror(status));
        return;
    }
    fprintf(stderr, "meshllama %s: %s\n  (%s)\n", command, ml_last_error(), ml_strerror(status));
    ml_abort_job(1);
}
