/* libFuzzer harness: the tokenizer.json loader on arbitrary text, and the tokenizer_config.json
 * reader on the same text beside a small valid tokenizer.json. A tokenizer that loads must
 * encode, decode and stream a few fixed strings without failing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "fuzz_input.h"

static const char base_json[] =
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"\\u0120\":3,\"ab\":4,\"<s>\":5},"
    "\"merges\":[\"a b\"]},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
    "\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true}],"
    "\"post_processor\":null}";

static void exercise(const ml_tokenizer *tok) {
    static const char *const texts[] = {"", "ab c", "Hello, world! 123 <s> <|eot_id|>", "\xff\xfe\xe4\xbd", "  \n\t x"};
    ml_tokenizer_info info;
    ml_tokenizer_get_info(tok, &info);
    if (info.vocab_size <= 0) abort();
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            size_t n = 0;
            int status = ml_tokenize(tok, texts[i], strlen(texts[i]), flags, &ids, &n);
            /* the one allowed failure: a crafted pattern that backtracks past the match limit */
            if (status == ML_ERR_FORMAT && strstr(ml_last_error(), "regex gave up")) continue;
            if (status != ML_OK) abort();
            char *text = NULL;
            if (ml_detokenize(tok, ids, n, 0, &text, NULL) != ML_OK) abort();
            ml_stream_decoder *dec;
            if (ml_stream_decoder_create(tok, ML_DETOKENIZE_SKIP_SPECIAL, &dec) != ML_OK) abort();
            for (size_t k = 0; k < n; k++) {
                const char *piece;
                size_t length;
                if (ml_stream_decoder_push(dec, ids[k], &piece, &length) != ML_OK) abort();
            }
            ml_stream_decoder_free(dec);
            free(text);
            free(ids);
        }
    }
    ml_chat_template *tmpl = NULL;
    if (ml_chat_template_from_tokenizer(tok, NULL, &tmpl) == ML_OK) {
        ml_chat_message m = {"user", "hi"};
        char *text = NULL;
        if (ml_chat_template_apply(tmpl, &m, 1, NULL, &text, NULL) != ML_OK) abort();
        free(text);
    }
    ml_chat_template_free(tmpl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_copy(data, size);
    if (!text) return 0;
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_load_hf(text, size, NULL, 0, "fuzz/tokenizer.json", &tok) == ML_OK) exercise(tok);
    ml_tokenizer_close(tok);
    tok = NULL;
    if (ml_tokenizer_load_hf(base_json, sizeof base_json - 1, text, size, "base.json", &tok) == ML_OK) exercise(tok);
    ml_tokenizer_close(tok);
    free(text);
    return 0;
}
