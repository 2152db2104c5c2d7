/* The flags every model-running command shares: -m, --tp, --mesh, -t, -c, --batch, --act, --kv. */
#ifndef ML_APPS_MODEL_OPTIONS_H
#define ML_APPS_MODEL_OPTIONS_H

#include <getopt.h>
#include <stddef.h>

#include "meshllama.h"

enum {
    ML_OPT_TP = 1000,
    ML_OPT_MESH,
    ML_OPT_ACT,
    ML_OPT_KV,
    ML_OPT_MAX_BATCH,
    ML_OPT_BACKEND,
    ML_OPT_COLLECTIVE_TIMEOUT,
    ML_OPT_ROPE_EXTRAPOLATE,
    ML_OPT_FIRST_COMMAND_OPTION /* commands number their own options from here */
};

/* The model `run`, `eval`, `chat` and `bench` use without -m (scripts/fetch_default_model.sh). */
#define ML_DEFAULT_MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct {
    const char *model_path; /* NULL: the default model */
    int ctx_given;          /* -c was given: clamped to the model's positions */
    int rope_extrapolate;   /* --rope-extrapolate: -c beyond the model's positions is kept */
    ml_model_params params;
} ml_cli_model;

#define ML_MODEL_LONG_OPTIONS                                                                      \
    {"model", required_argument, NULL, 'm'}, {"tp", required_argument, NULL, ML_OPT_TP},            \
        {"mesh", required_argument, NULL, ML_OPT_MESH}, {"threads", required_argument, NULL, 't'}, \
        {"ctx-size", required_argument, NULL, 'c'}, {"act", required_argument, NULL, ML_OPT_ACT},  \
        {"kv", required_argument, NULL, ML_OPT_KV}, {"max-batch", required_argument, NULL, ML_OPT_MAX_BATCH}, \
        {"backend", required_argument, NULL, ML_OPT_BACKEND},                                      \
        {"collective-timeout", required_argument, NULL, ML_OPT_COLLECTIVE_TIMEOUT},                \
        {"rope-extrapolate", no_argument, NULL, ML_OPT_ROPE_EXTRAPOLATE}

#define ML_MODEL_SHORT_OPTIONS "m:t:c:"

#define ML_MODEL_OPTIONS_HELP                                                                      \
    "  -m, --model PATH      Hugging Face checkpoint directory or GGUF file\n"                      \
    "                        (default: models/" ML_DEFAULT_MODEL_NAME ")\n"                      \
    "      --tp N            tensor-parallel devices (1..num_attention_heads; default 1)\n"        \
    "      --mesh RxC        mesh shape, tp = R*C (the seed's 2x4)\n"                              \
    "  -t, --threads N       worker threads for the whole mesh (default: all cores)\n"             \
    "  -c, --ctx-size N      KV-cache positions per sequence (default min(config, 4096)); more\n"  \
    "                        than the model's max_position_embeddings is clamped with a warning\n" \
    "      --rope-extrapolate  keep a -c beyond max_position_embeddings (quality not promised)\n"    \
    "      --act MODE        activations: accurate (float32, default) or fast (matmul inputs as\n"  \
    "                        bf16, or int8 per block for Q8_0/Q4_0/Q4_1/Q4_K/Q5_K/Q6_K weights)\n" \
    "      --kv TYPE         KV-cache type: f32 (default) or bf16\n"                            \
    "      --backend B       mesh backend: auto (default: mpi under mpirun), threads or mpi\n"     \
    "      --collective-timeout S  mpi: end the job, naming the rank that did not arrive, when a\n"  \
    "                        collective waits more than S seconds (default 600; 0 = never)\n"

void ml_cli_model_init(ml_cli_model *m);
/* Writes the default model's path; returns 1 when it is readable, 0 when it is missing. */
int ml_cli_default_model(char *path, size_t size);
/* Handles opt if it is a model option: 1 handled, 0 not a model option, -1 bad value (printed). */
int ml_cli_model_option(ml_cli_model *m, int opt, const char *arg);
/* Opens the model, printing the library's message on failure. Returns 0 on success. */
int ml_cli_model_open(const ml_cli_model *m, ml_model **out);
/* Prints "meshllama COMMAND: <the library's message>" for a failed status. Under MPI a failure
 * every rank shares is printed by rank 0 only; a failure of this rank alone is printed and then
 * ends the whole job (the other ranks would wait for this one forever). */
void ml_cli_report_failure(const char *command, int status);

#endif
