/* A program outside the project built against an installed meshllama (tests/install_check.sh):
 * it includes only <meshllama.h>, prints the library version and, given a GGUF path, the number
 * of tokens of a fixed text. */
#include <meshllama.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    printf("meshllama %s\n", ml_version());
    if (argc < 2) return 0;
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_open_gguf(argv[1], &tok) != ML_OK) {
        fprintf(stderr, "consumer: %s\n", ml_last_error());
        return 1;
    }
    const char *text = "Hello from an installed meshllama.";
    int32_t *ids = NULL;
    size_t n = 0;
    int status = ml_tokenize(tok, text, strlen(text), 0, &ids, &n);
    if (status == ML_OK) printf("tokens %zu\n", n);
    else fprintf(stderr, "consumer: %s\n", ml_last_error());
    free(ids);
    ml_tokenizer_close(tok);
    return status == ML_OK ? 0 : 1;
}
