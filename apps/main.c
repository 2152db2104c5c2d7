/* meshllama: tensor-parallel Llama inference. Dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "meshllama.h"

static const char usage[] =
    "usage: meshllama COMMAND [options]\n"
    "commands:\n"
    "  run       generate tokens from a prompt (meshllama run --help)\n"
    "  inspect   show a checkpoint's config, tensors and shard plan\n"
    "  eval      teacher-forcing accuracy against a Hugging Face reference (YT_METRICS)\n"
    "  chat      talk to the model with its chat template (one message per line)\n"
    "  tokenize  text to token ids and back with a model's tokenizer\n"
    "  bench     prefill and decode speed beside the machine's measured limits\n"
    "  serve     an OpenAI-compatible HTTP server with continuous batching\n"
    "  version   print the version\n";

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return ML_EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "run") == 0) return ml_cmd_run(argc - 1, argv + 1);
    if (strcmp(command, "inspect") == 0) return ml_cmd_inspect(argc - 1, argv + 1);
    if (strcmp(command, "eval") == 0) return ml_cmd_eval(argc - 1, argv + 1);
    if (strcmp(command, "tokenize") == 0) return ml_cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(command, "chat") == 0) return ml_cmd_chat(argc - 1, argv + 1);
    if (strcmp(command, "bench") == 0) return ml_cmd_bench(argc - 1, argv + 1);
    if (strcmp(command, "serve") == 0) return ml_cmd_serve(argc - 1, argv + 1);
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("meshllama %s\n", ml_version());
        return 0;
    }
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "meshllama: unknown command '%s'\n%s", command, usage);
    return ML_EXIT_USAGE;
}

int main(int argc, char **argv) {
    int status = dispatch(argc, argv);
    ml_shutdown();
    return status;
}
