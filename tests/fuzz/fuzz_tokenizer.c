/* libFuzzer harness: the encoder, decoder, streaming decoder and chat templates on arbitrary
 * bytes. Input byte 0 picks the flags; the rest is the text. Three tokenizers are built once:
 * a small byte-level tokenizer.json using every pre-tokenizer feature (Split behaviours, invert,
 * Digits, ByteLevel with add_prefix_space, added tokens with lstrip/rstrip/single_word), a small
 * tiktoken vocabulary (Llama 3 pattern and specials), and SmolLM2's tokenizer.json when the
 * fixtures are reachable (MESHLLAMA_FIXTURES or ./tests/fixtures).
 * Invariants (abort on violation): encoding never fails, every id decodes, decode(encode(x)) == x
 * when the vocabulary has every byte of x and nothing was added, and streaming == one-shot. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "tokenizer/tokenizer_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ml_tokenizer *tokenizers[3];
static int exact[3]; /* decode(encode(x)) == x holds (no add_prefix_space, no lstrip/rstrip) */
static int n_tokenizers;
static ml_chat_template *templates[3];

static void append(char **buf, size_t *n, size_t *cap, const char *text) {
    size_t len = strlen(text);
    if (*n + len + 1 > *cap) {
        *cap = (*n + len + 1) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf) abort();
    }
    memcpy(*buf + *n, text, len + 1);
    *n += len;
}

/* JSON string of a byte-level token: the GPT-2 characters, escaped where JSON needs it. */
static void byte_level_json(uint8_t b, char out[16]) {
    uint32_t cp = ml_byte_level_char(b);
    if (cp == '"' || cp == '\\') snprintf(out, 16, "\"\\%c\"", (char)cp);
    else if (cp < 0x80) snprintf(out, 16, "\"%c\"", (char)cp);
    else snprintf(out, 16, "\"%c%c\"", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
}

static ml_tokenizer *small_json_tokenizer(void) {
    char *json = NULL, item[96], key[16];
    size_t n = 0, cap = 0;
    append(&json, &n, &cap, "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":false,\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        byte_level_json((uint8_t)b, key);
        snprintf(item, sizeof item, "%s%s:%d", b ? "," : "", key, b);
        append(&json, &n, &cap, item);
    }
    append(&json, &n, &cap, ",\"ab\":256,\"abc\":257,\"\\u0120t\":258,\"\\u0120th\":259,\"he\":260,\"11\":261},"
                            "\"merges\":[\"a b\",\"ab c\",\"\\u0120 t\",\"\\u0120t h\",\"h e\",\"1 1\"]},"
                            "\"added_tokens\":["
                            "{\"id\":262,\"content\":\"<x>\",\"special\":false,\"lstrip\":true},"
                            "{\"id\":263,\"content\":\"[Y]\",\"special\":true,\"rstrip\":true},"
                            "{\"id\":264,\"content\":\"word\",\"special\":false,\"single_word\":true},"
                            "{\"id\":265,\"content\":\"<|end|>\",\"special\":true}],"
                            "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                            "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s\"},\"behavior\":\"MergedWithNext\"},"
                            "{\"type\":\"Split\",\"pattern\":{\"String\":\",\"},\"behavior\":\"Contiguous\"},"
                            "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{P}\"},\"behavior\":\"MergedWithPrevious\"},"
                            "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[xyz]+\"},\"behavior\":\"Isolated\",\"invert\":true},"
                            "{\"type\":\"Digits\",\"individual_digits\":false},"
                            "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}]},"
                            "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                            "{\"SpecialToken\":{\"id\":\"<|end|>\"}},{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"[Y]\"}}],"
                            "\"special_tokens\":{\"<|end|>\":{\"ids\":[265]},\"[Y]\":{\"ids\":[263]}}}}");
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_load_hf(json, n, NULL, 0, "fuzz-small.json", &tok) != ML_OK) {
        fprintf(stderr, "small tokenizer: %s\n", ml_last_error());
        abort();
    }
    free(json);
    return tok;
}

static ml_tokenizer *small_tiktoken(void) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *text = NULL, line[64];
    size_t n = 0, cap = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(line, sizeof line, "%c%c== %d\n", alphabet[b >> 2], alphabet[(b & 3) << 4], b);
        append(&text, &n, &cap, line);
    }
    /* "ab" "abc" "  " "the" " the" */
    append(&text, &n, &cap, "YWI= 256\nYWJj 257\nICA= 258\ndGg= 259\ndGhl 260\nIHRoZQ== 261\nIHQ= 262\nIHRo 263\n");
    ml_tokenizer *tok = NULL;
    if (ml_tokenizer_load_tiktoken(text, n, "fuzz-small.model", &tok) != ML_OK) {
        fprintf(stderr, "small tiktoken: %s\n", ml_last_error());
        abort();
    }
    free(text);
    return tok;
}

static void init(void) {
    tokenizers[n_tokenizers++] = small_json_tokenizer();
    exact[n_tokenizers] = 1;
    tokenizers[n_tokenizers++] = small_tiktoken();
    exact[n_tokenizers] = 1;
    const char *root = getenv("MESHLLAMA_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/smollm2", root ? root : "tests/fixtures");
    ml_tokenizer *smol = NULL;
    if (ml_tokenizer_open(path, &smol) == ML_OK) tokenizers[n_tokenizers++] = smol;
    else fprintf(stderr, "fuzz_tokenizer: %s not found; fuzzing the two small tokenizers only\n", path);
    static const char *const names[3] = {"llama3", "llama3.1", "chatml"};
    for (int i = 0; i < 3; i++)
        if (ml_chat_template_create(NULL, names[i], NULL, &templates[i]) != ML_OK) abort();
}

static int all_bytes_known(const ml_tokenizer *tok, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tok->vocab.byte_token[s[i]] < 0) return 0;
    return 1;
}

static void check(const ml_tokenizer *tok, int must_roundtrip, const uint8_t *text, size_t n, unsigned flags) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ml_tokenize(tok, (const char *)text, n, flags, &ids, &n_ids) != ML_OK) abort();
    char *decoded = NULL;
    size_t decoded_n = 0;
    if (ml_detokenize(tok, ids, n_ids, 0, &decoded, &decoded_n) != ML_OK) abort();
    if (must_roundtrip && !(flags & ML_TOKENIZE_ADD_SPECIAL) && all_bytes_known(tok, text, n) &&
        (decoded_n != n || memcmp(decoded, text, n) != 0))
        abort();
    ml_stream_decoder *dec = NULL;
    if (ml_stream_decoder_create(tok, 0, &dec) != ML_OK) abort();
    size_t at = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const char *piece;
        size_t piece_n;
        if (ml_stream_decoder_push(dec, ids[i], &piece, &piece_n) != ML_OK) abort();
        if (at + piece_n > decoded_n || memcmp(decoded + at, piece, piece_n) != 0) abort();
        at += piece_n;
    }
    const char *rest;
    size_t rest_n;
    if (ml_stream_decoder_finish(dec, &rest, &rest_n) != ML_OK) abort();
    if (at + rest_n != decoded_n || memcmp(decoded + at, rest, rest_n) != 0) abort();
    ml_stream_decoder_free(dec);
    free(decoded);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n_tokenizers) init();
    if (size == 0) return 0;
    unsigned flags = data[0] & 3;
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    for (int t = 0; t < n_tokenizers; t++) check(tokenizers[t], exact[t], text, n, flags);

    /* Chat: the text as message content (NUL-terminated copy), and as a template source. */
    char *copy = malloc(n + 1);
    if (!copy) return 0;
    memcpy(copy, text, n);
    copy[n] = '\0';
    ml_chat_message messages[3] = {{"system", copy}, {"user", copy}, {"assistant", "ok"}};
    ml_chat_params params = {(int)(data[0] >> 2) & 1, "26 Jul 2024"};
    for (int i = 0; i < 3; i++) {
        char *rendered = NULL;
        if (ml_chat_template_apply(templates[i], messages + (data[0] >> 3) % 2, 2, &params, &rendered, NULL) != ML_OK)
            abort();
        free(rendered);
    }
    ml_chat_template *tmpl = NULL;
    if (ml_chat_template_create(copy, NULL, NULL, &tmpl) == ML_OK) {
        char *rendered = NULL;
        /* A template that parses can still fail when it runs (an attribute of an undefined
         * value, as jinja2's UndefinedError): an error with a message and no text, never a crash. */
        int status = ml_chat_template_apply(tmpl, messages, 3, &params, &rendered, NULL);
        if (status == ML_OK && !rendered) abort();
        if (status != ML_OK && (rendered || !ml_last_error()[0])) abort();
        free(rendered);
    }
    ml_chat_template_free(tmpl);
    free(copy);
    return 0;
}
