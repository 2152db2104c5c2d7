/* `meshllama inspect DIR`: config, tensors and the shard plan, without loading the weights. */
#include <getopt.h>
#include <stdio.h>

#include "cli_args.h"
#include "commands.h"
#include "model_options.h"

enum { OPT_TP = 1000, OPT_MESH, OPT_JSON };

static const char inspect_usage[] =
    "usage: meshllama inspect [DIR | FILE.gguf | -m PATH] [--tp N | --mesh RxC] [--json]\n"
    "Prints the config, every tensor (dtype, shape, bytes; layers in numeric order) and each\n"
    "device's shard. Without a path: the default model (models/" ML_DEFAULT_MODEL_NAME ").\n";

int ml_cmd_inspect(int argc, char **argv) {
    static const struct option options[] = {
        {"tp", required_argument, NULL, OPT_TP},
        {"mesh", required_argument, NULL, OPT_MESH},
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int tp = 1, rows = 0, cols = 0, json = 0, opt, bad = 0;
    const char *path = NULL;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, "m:h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_TP: bad = ml_cli_parse_int("--tp", optarg, 1, 4096, &tp) != 0; break;
        case OPT_MESH: bad = ml_cli_parse_mesh("--mesh", optarg, &rows, &cols) != 0; break;
        case 'm': path = optarg; break;
        case OPT_JSON: json = 1; break;
        case 'h': fputs(inspect_usage, stdout); return 0;
        default: bad = 1; break;
        }
    }
    if (!bad && optind < argc) path = argv[optind++];
    if (!bad && optind < argc) {
        fprintf(stderr, "meshllama inspect: expected one model (DIR or FILE.gguf), got '%s' too\n", argv[optind]);
        bad = 1;
    }
    char default_path[4200];
    if (!bad && !path) {
        if (!ml_cli_default_model(default_path, sizeof default_path)) {
            fprintf(stderr, "meshllama inspect: no model given and the default model %s is missing:\n"
                            "  fetch it with scripts/fetch_default_model.sh\n", default_path);
            return 1;
        }
        path = default_path;
    }
    if (bad) {
        fputs(inspect_usage, stderr);
        return ML_EXIT_USAGE;
    }
    if (rows > 0) tp = rows * cols;
    int status = ml_inspect(path, tp, rows, cols, json, stdout);
    if (status != ML_OK) {
        fprintf(stderr, "meshllama inspect: %s\n  (%s)\n", ml_last_error(), ml_strerror(status));
        return 1;
    }
    return 0;
}
