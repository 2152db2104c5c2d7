/* libFuzzer harness: the tiktoken tokenizer.model loader on arbitrary bytes, and the
 * GGUF-style arrays constructor on the same bytes read as lines (first line: pre-tokenizer
 * name; then "T text" token lines, T a token type digit, until an empty line; then merges).
 * A tokenizer that loads must encode and decode a few fixed strings without failing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "fuzz_input.h"

static void exercise(const ml_tokenizer *tok) {
    static const char *const texts[] = {"", "ab", "I'LL they're 1234567 <|eot_id|>\r\n", "\xc3\x28\xf0\x9f\x98", "   a"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (ml_tokenize(tok, texts[i], strlen(texts[i]), flags, &ids, &n) != ML_OK) abort();
            char *text = NULL;
            if (ml_detokenize(tok, ids, n, ML_DETOKENIZE_SKIP_SPECIAL, &text, NULL) != ML_OK) abort();
            free(text);
            free(ids);
        }
    }
}

static void arrays(const char *text, size_t size) {
    const char *lines[512];
    size_t lengths[512];
    int n_lines = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n_lines < 512; i++) {
        if (i == size || text[i] == '\n') {
            lines[n_lines] = text + start;
            lengths[n_lines++] = i - start;
            start = i + 1;
        }
    }
    if (n_lines < 2) return;
    char pre[32];
    size_t pre_length = lengths[0] < sizeof pre - 1 ? lengths[0] : sizeof pre - 1;
    memcpy(pre, lines[0], pre_length);
    pre[pre_length] = '\0';
    const char *tokens[512], *merges[512];
    size_t token_lengths[512], merge_lengths[512];
    int32_t types[512];
    int n_tokens = 0, n_merges = 0, i = 1;
    for (; i < n_lines && lengths[i] > 0; i++) {
        types[n_tokens] = lines[i][0] - '0';
        tokens[n_tokens] = lines[i] + 1;
        token_lengths[n_tokens++] = lengths[i] - 1;
    }
    for (i++; i < n_lines; i++) {
        merges[n_merges] = lines[i];
        merge_lengths[n_merges++] = lengths[i];
    }
    ml_tokenizer_arrays a = {.source = "fuzz.gguf", .model = "gpt2", .pre = pre, .n_tokens = n_tokens,
                             .tokens = tokens, .token_lengths = token_lengths, .token_types = types,
                             .n_merges = n_merges, .merges = merges, .merge_lengths = merge_lengths,
                             .bos_id = n_tokens > 0 ? 0 : -1, .eos_id = -1, .unk_id = -1, .add_bos = -1, .add_eos = 0};
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_from_arrays(&a, &tok) == ML_OK) exercise(tok);
    ml_tokenizer_close(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_copy(data, size);
    if (!text) return 0;
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_load_tiktoken(text, size, "fuzz/tokenizer.model", &tok) == ML_OK) exercise(tok);
    ml_tokenizer_close(tok);
    arrays(text, size);
    free(text);
    return 0;
}
