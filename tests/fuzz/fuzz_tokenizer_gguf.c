/* libFuzzer harness: the GGUF tokenizer path (tokenizer_gguf.c, then tokenizer_arrays.c). The
 * input is a GGUF image; when it parses, ml_tokenizer_from_gguf must build a tokenizer or fail
 * with a message, never read out of bounds. A tokenizer that builds must encode fixed texts,
 * and every id it gives must decode. Seeds: tests/fuzz/corpus/tokenizer_gguf (make_seeds.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "meshllama.h"
#include "tokenizer/tokenizer_gguf.h"
#include "fuzz_input.h"

static const char *const texts[] = {"the theme 123 4567 héllo\n\n  x", "<|begin_of_text|>a<user>b", "\xff\xfe ab\xc3"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_copy(data, size);
    if (!image) return 0;
    ml_gguf g;
    if (ml_gguf_parse(image, size, "fuzz.gguf", &g) == 0) {
        ml_tokenizer *tok = NULL;
        if (ml_tokenizer_from_gguf(&g, &tok) == 0) {
            ml_gguf_close(&g); /* the tokenizer must not point into the image's metadata */
            for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
                int32_t *ids = NULL;
                size_t n = 0;
                unsigned flags = t == 1 ? ML_TOKENIZE_PARSE_SPECIAL | ML_TOKENIZE_ADD_SPECIAL : 0;
                if (ml_tokenize(tok, texts[t], strlen(texts[t]), flags, &ids, &n) != 0) abort();
                char *back = NULL;
                size_t back_n = 0;
                if (ml_detokenize(tok, ids, n, 0, &back, &back_n) != 0) abort();
                free(back);
                free(ids);
            }
            ml_tokenizer_info info;
            ml_tokenizer_get_info(tok, &info);
            ml_tokenizer_close(tok);
        } else {
            if (tok) abort(); /* no handle with an error */
            ml_gguf_close(&g);
        }
    }
    free(image);
    return 0;
}
