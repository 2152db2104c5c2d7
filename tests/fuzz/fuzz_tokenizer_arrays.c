/* libFuzzer harness: ml_tokenizer_from_arrays (tokenizer_arrays.c) on arbitrary arrays, as a
 * GGUF file could hold them. Input format (tests/fuzz/corpus/tokenizer_arrays):
 *   line 1: the pre-tokenizer name; line 2: "add_bos add_eos bos_id eos_id";
 *   then "token<TAB>type" lines up to an empty line, "left right" merge lines up to an empty
 *   line, and the rest is text to encode. Tokens and merges are passed with lengths (not
 *   NUL-terminated, as from a mapped file). A tokenizer that builds must encode the text and
 *   decode every id it gives. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_ITEMS = 4096 };

/* Next line of [*at, end): its start and length; *at moves past the newline. */
static int next_line(const char **at, const char *end, const char **line, size_t *length) {
    if (*at >= end) return 0;
    const char *newline = memchr(*at, '\n', (size_t)(end - *at));
    *line = *at;
    *length = (size_t)((newline ? newline : end) - *at);
    *at = newline ? newline + 1 : end;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *at = copy, *end = copy + size, *line;
    size_t length;
    char pre[64] = "";
    if (next_line(&at, end, &line, &length)) snprintf(pre, sizeof pre, "%.*s", (int)(length < 63 ? length : 63), line);
    int add_bos = -1, add_eos = -1, bos = -1, eos = -1;
    if (next_line(&at, end, &line, &length)) {
        char flags[64];
        snprintf(flags, sizeof flags, "%.*s", (int)(length < 63 ? length : 63), line);
        sscanf(flags, "%d %d %d %d", &add_bos, &add_eos, &bos, &eos);
    }
    static const char *tokens[MAX_ITEMS], *merges[MAX_ITEMS];
    static size_t token_lengths[MAX_ITEMS], merge_lengths[MAX_ITEMS];
    static int32_t types[MAX_ITEMS];
    int32_t n_tokens = 0, n_merges = 0;
    while (n_tokens < MAX_ITEMS && next_line(&at, end, &line, &length) && length > 0) {
        const char *tab = memchr(line, '\t', length);
        tokens[n_tokens] = line;
        token_lengths[n_tokens] = tab ? (size_t)(tab - line) : length;
        types[n_tokens] = tab ? atoi(tab + 1) : 1;
        n_tokens++;
    }
    while (n_merges < MAX_ITEMS && next_line(&at, end, &line, &length) && length > 0) {
        merges[n_merges] = line;
        merge_lengths[n_merges] = length;
        n_merges++;
    }
    ml_tokenizer_arrays arrays = {
        .source = "fuzz",
        .model = "gpt2",
        .pre = pre[0] ? pre : NULL,
        .n_tokens = n_tokens,
        .tokens = tokens,
        .token_lengths = token_lengths,
        .token_types = types,
        .n_merges = n_merges,
        .merges = merges,
        .merge_lengths = merge_lengths,
        .bos_id = bos,
        .eos_id = eos,
        .unk_id = -1,
        .add_bos = add_bos,
        .add_eos = add_eos,
        .chat_template = NULL,
    };
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_from_arrays(&arrays, &tok) == 0) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (ml_tokenize(tok, at, (size_t)(end - at), ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL, &ids, &n) != 0)
            abort();
        char *back = NULL;
        size_t back_n = 0;
        if (ml_detokenize(tok, ids, n, 0, &back, &back_n) != 0) abort();
        for (size_t i = 0; i < n; i++) {
            const char *bytes;
            size_t bytes_n;
            if (ml_tokenizer_token_bytes(tok, ids[i], &bytes, &bytes_n) != 0) abort();
        }
        free(back);
        free(ids);
        ml_tokenizer_close(tok);
    } else if (tok) {
        abort();
    }
    free(copy);
    return 0;
}
