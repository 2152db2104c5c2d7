/* `meshllama serve` in a build without libmicrohttpd. */
#include <stdio.h>

#include "apps/commands.h"

int ml_cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "meshllama serve: this build has no HTTP server: install libmicrohttpd-dev "
                    "(scripts/install_deps.sh) and build again\n");
    return 1;
}
