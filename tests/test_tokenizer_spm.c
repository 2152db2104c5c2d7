/* SentencePiece-style BPE (Llama 2 / TinyLlama / Mistral layout): token ids identical to HF
 * tokenizers on the whole tokenizer corpus for the three tokenizer.json configurations
 * (normalizer Prepend + Replace; Metaspace "first" without split; Metaspace "always" with split)
 * and for the GGUF form (tokenizer.ggml.model "llama", merges ranked by score), all written by
 * tools/make_spm_tokenizer_fixtures.py from one model trained by tokenizers. Also: HF's decode of
 * every valid string, streaming == one-shot without ever splitting a character carried by byte
 * tokens, and the errors for bad files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_tokenizer_fixtures.h"
#include "test_util.h"
#include "meshllama.h"

typedef struct {
    char *data;
    size_t n, capacity;
} byte_buf;

static void buf_append(byte_buf *b, const char *bytes, size_t n) {
    if (b->n + n > b->capacity) {
        b->capacity = (b->n + n) * 2 + 64;
        b->data = realloc(b->data, b->capacity);
    }
    if (n) memcpy(b->data + b->n, bytes, n);
    b->n += n;
}

/* Streaming the reference ids gives ml_detokenize's text, and never half of a character. */
static void check_stream(const char *name, const ml_tokenizer *tok, const tf_corpus *c, const tf_ids *ref) {
    ml_stream_decoder *dec = NULL;
    CHECK(ml_stream_decoder_create(tok, 0, &dec) == ML_OK, "%s", ml_last_error());
    if (!dec) return;
    size_t bad = 0, split = 0;
    byte_buf streamed = {0};
    for (size_t i = 0; i < c->n; i++) {
        char *text = NULL;
        size_t length = 0;
        if (ml_detokenize(tok, ref->special[i], ref->n_special[i], 0, &text, &length) != ML_OK) {
            bad++;
            continue;
        }
        streamed.n = 0;
        int valid = tf_utf8_valid(c->data[i], c->length[i]);
        for (size_t k = 0; k < ref->n_special[i]; k++) {
            const char *piece;
            size_t piece_length;
            if (ml_stream_decoder_push(dec, ref->special[i][k], &piece, &piece_length) != ML_OK) break;
            if (valid && !tf_utf8_valid((const uint8_t *)piece, piece_length)) split++;
            buf_append(&streamed, piece, piece_length);
        }
        const char *rest;
        size_t rest_length;
        ml_stream_decoder_finish(dec, &rest, &rest_length);
        buf_append(&streamed, rest, rest_length);
        if (streamed.n != length || memcmp(streamed.data, text, length) != 0) bad++;
        free(text);
    }
    CHECK(bad == 0, "%s: streaming differs from one-shot decoding for %zu strings", name, bad);
    CHECK(split == 0, "%s: streaming released half a character %zu times", name, split);
    printf("  %-32s streaming == one-shot: %zu/%zu, pieces splitting a character: %zu\n", name, c->n - bad, c->n,
           split);
    free(streamed.data);
    ml_stream_decoder_free(dec);
}

/* ml_detokenize of the plain-mode ids == HF tokenizers' decode (skip_special_tokens=False). */
static void check_decode(const char *name, const ml_tokenizer *tok, const tf_corpus *c, const tf_ids *ref) {
    tf_fixture f;
    int opened = tf_open_fixture("tokenizer/decode_spm_legacy.bin", "MLTKDEC1", &f) == 0;
    CHECK(opened, "%s: missing or not MLTKDEC1", f.path);
    if (!opened) return;
    CHECK(f.count == c->n, "%s: %u strings, corpus %zu", f.path, f.count, c->n);
    size_t checked = 0, bad = 0, roundtrip = 0;
    uint8_t valid;
    const uint8_t *want;
    uint32_t length;
    for (uint32_t i = 0; i < f.count && i < c->n && tf_next_record(&f, &valid, &want, &length) == 0; i++) {
        char *text = NULL;
        size_t n = 0;
        int status = ml_detokenize(tok, ref->plain[i], ref->n_plain[i], 0, &text, &n);
        if (valid) {
            checked++;
            if (status != ML_OK || n != length || memcmp(text, want, length) != 0) {
                if (bad++ < 3) {
                    fprintf(stderr, "FAIL %s: decode of string %u: ours \"", name, i);
                    tf_print_escaped(stderr, (const uint8_t *)text, text ? n : 0, 60);
                    fprintf(stderr, "\" HF \"");
                    tf_print_escaped(stderr, want, length, 60);
                    fprintf(stderr, "\"\n");
                }
            }
        }
        /* Byte tokens give back invalid bytes exactly (HF would print U+FFFD). */
        if (status == ML_OK && n == c->length[i] && memcmp(text, c->data[i], n) == 0) roundtrip++;
        free(text);
    }
    CHECK(checked > 2000 && bad == 0, "%s: %zu of %zu decodes differ from HF", name, bad, checked);
    CHECK(roundtrip == c->n, "%s: decode(encode(s)) == s for %zu of %zu strings", name, roundtrip, c->n);
    printf("  %-32s decode == HF: %zu/%zu valid strings; decode(encode(s)) == s: %zu/%zu\n", name, checked - bad,
           checked, roundtrip, c->n);
    free(f.data);
}

static void check_basics(const ml_tokenizer *tok) {
    ml_tokenizer_info info;
    ml_tokenizer_get_info(tok, &info);
    CHECK(strcmp(info.pre_tokenizer, "metaspace") == 0, "pre_tokenizer %s", info.pre_tokenizer);
    CHECK(info.bos_id == 1 && info.adds_bos, "bos %d adds %d", (int)info.bos_id, info.adds_bos);
    /* A character far outside the vocabulary becomes its four UTF-8 bytes' tokens <0xXX> = 3 + byte. */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(ml_tokenize(tok, "\xF0\x9F\xA6\x80", 4, 0, &ids, &n) == ML_OK, "%s", ml_last_error());
    int32_t want[5] = {-1, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x80};
    CHECK(n == 5 && memcmp(ids + 1, want + 1, 4 * sizeof *ids) == 0, "crab: %zu ids", n);
    /* streaming: the crab's bytes come one token at a time; nothing is released until the last. */
    ml_stream_decoder *dec = NULL;
    CHECK(ml_stream_decoder_create(tok, 0, &dec) == ML_OK, "%s", ml_last_error());
    size_t released[5] = {0};
    for (size_t k = 0; k < n && k < 5 && dec; k++) {
        const char *piece;
        CHECK(ml_stream_decoder_push(dec, ids[k], &piece, &released[k]) == ML_OK, "%s", ml_last_error());
        if (k == 4) CHECK(released[k] == 4 && memcmp(piece, "\xF0\x9F\xA6\x80", 4) == 0, "crab released whole");
    }
    CHECK(released[1] == 0 && released[2] == 0 && released[3] == 0, "half a character released: %zu %zu %zu",
          released[1], released[2], released[3]);
    ml_stream_decoder_free(dec);
    free(ids);
}

static int ids_equal_json(const int32_t *ids, size_t n, json_t *want) {
    if (!json_is_array(want) || json_array_size(want) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return 0;
    return 1;
}

/* spm/extra.json: added tokens inside the text, leading spaces, literal '▁'; both modes' ids
 * and HF's decode with and without the special tokens. */
static void check_extra(const char *name, const ml_tokenizer *tok, const char *kind) {
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "tokenizer/spm/extra.json");
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    json_t *list = json_object_get(root, kind);
    CHECK(json_is_array(list) && json_array_size(list) > 10, "%s: no \"%s\" list", path, kind);
    size_t i, good = 0;
    json_t *entry;
    json_array_foreach(list, i, entry) {
        const char *text = json_string_value(json_object_get(entry, "text"));
        size_t length = json_string_length(json_object_get(entry, "text"));
        int ok = 1;
        for (int mode = 0; mode < 2; mode++) {
            int32_t *ids = NULL;
            size_t n = 0;
            unsigned flags = mode ? ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL : 0;
            ok &= ml_tokenize(tok, text, length, flags, &ids, &n) == ML_OK &&
                  ids_equal_json(ids, n, json_object_get(entry, mode ? "special" : "plain"));
            if (mode) {
                for (int skip = 0; skip < 2; skip++) {
                    json_t *want = json_object_get(entry, skip ? "decode_skip" : "decode");
                    char *out = NULL;
                    size_t out_length = 0;
                    int status = ml_detokenize(tok, ids, n, skip ? ML_DETOKENIZE_SKIP_SPECIAL : 0, &out, &out_length);
                    int same = status == ML_OK && out_length == json_string_length(want) &&
                               memcmp(out, json_string_value(want), out_length) == 0;
                    if (!same) fprintf(stderr, "FAIL %s: decode%s of \"%s\": ours \"%s\" HF \"%s\"\n", name,
                                       skip ? " (skip special)" : "", text, out ? out : "?", json_string_value(want));
                    ok &= same;
                    free(out);
                }
            }
            free(ids);
        }
        if (!ok) fprintf(stderr, "FAIL %s: extra string \"%s\"\n", name, text);
        good += ok;
    }
    CHECK(good == json_array_size(list), "%s: %zu of %zu extra strings as HF", name, good, json_array_size(list));
    printf("  %-32s added tokens / spaces / '\u2581' in text: %zu/%zu as HF (ids and decode)\n", name, good,
           json_array_size(list));
    json_decref(root);
}

/* A small tokenizer.json: vocab <unk> a ▁ ▁a, one merge; %s slots: model options, normalizer,
 * pre_tokenizer, decoder. */
static int load_small(const char *model_extra, const char *normalizer, const char *pre, const char *decoder,
                      ml_tokenizer **out) {
    char json[4096];
    snprintf(json, sizeof json,
             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, \"a\": 1, \"\u2581\": 2, \"\u2581a\": 3, "
             "\"<0x41>\": 4}, \"merges\": [\"\u2581 a\"]%s}, \"normalizer\": %s, \"pre_tokenizer\": %s, "
             "\"decoder\": %s, \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}]}",
             model_extra, normalizer, pre, decoder);
    return ml_tokenizer_load_hf(json, strlen(json), NULL, 0, "small.json", out);
}

#define LEGACY_NORMALIZER                                                                                  \
    "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\u2581\"}, {\"type\": " \
    "\"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}]}"
#define METASPACE(fields) "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\"" fields "}"

static void expect_error(const char *what, int status, ml_tokenizer *tok, const char *needle) {
    CHECK(status != ML_OK && !tok, "%s: loaded", what);
    CHECK(status != ML_OK && strstr(ml_last_error(), needle), "%s: error \"%s\" lacks \"%s\"", what, ml_last_error(),
          needle);
    ml_tokenizer_close(tok);
}

static void check_errors(void) {
    ml_tokenizer *tok = NULL;
    /* The good case first: unk (fused) for characters outside the vocabulary, no byte fallback. */
    int status = load_small(", \"unk_token\": \"<unk>\", \"fuse_unk\": true", LEGACY_NORMALIZER, "null", "null", &tok);
    CHECK(status == ML_OK, "small tokenizer: %s", ml_last_error());
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(ml_tokenize(tok, "a bbb a", 7, 0, &ids, &n) == ML_OK, "%s", ml_last_error());
        int32_t want[] = {3, 2, 0, 3}; /* ▁a ▁ <unk> ▁a */
        CHECK(n == 4 && memcmp(ids, want, sizeof want) == 0, "small: %zu ids", n);
        free(ids);
        ml_tokenizer_close(tok);
        tok = NULL;
    }
    /* Bad files: each fails, naming what is wrong. */
    static const struct {
        const char *what, *model_extra, *normalizer, *pre, *decoder, *needle;
    } bad[] = {
        {"no unk, no byte_fallback", "", LEGACY_NORMALIZER, "null", "null", "neither byte_fallback nor an unk token"},
        {"unk not in vocab", ", \"unk_token\": \"<nope>\"", LEGACY_NORMALIZER,
         "null", "null", "model.unk_token \"<nope>\" is not in model.vocab"},
        {"byte_fallback without all byte tokens", ", \"byte_fallback\": true", LEGACY_NORMALIZER,
         "null", "null", "no <0x00> token and no unk token"},
        {"Metaspace replacement", ", \"unk_token\": \"<unk>\"", "null",
         "{\"type\": \"Metaspace\", \"replacement\": \"_\"}", "null", "pre_tokenizer.replacement is \"_\""},
        {"Metaspace without replacement", ", \"unk_token\": \"<unk>\"", "null",
         "{\"type\": \"Metaspace\"}", "null", "pre_tokenizer.replacement must be a string"},
        {"Metaspace prepend_scheme", ", \"unk_token\": \"<unk>\"", "null",
         METASPACE(", \"prepend_scheme\": \"sometimes\""), "null",
         "prepend_scheme must be \"first\", \"always\" or \"never\""},
        {"Metaspace split", ", \"unk_token\": \"<unk>\"", "null",
         METASPACE(", \"split\": \"yes\""), "null", "pre_tokenizer.split must be true or false"},
        {"Prepend without Replace", ", \"unk_token\": \"<unk>\"", "{\"type\": \"Prepend\", \"prepend\": \"\u2581\"}",
         "null", "null", "without Replace"},
        {"other normalizer", ", \"unk_token\": \"<unk>\"", "{\"type\": \"Lowercase\"}",
         "null", "null", "normalizer \"Lowercase\" is not supported"},
        {"byte_fallback with ByteLevel", ", \"unk_token\": \"<unk>\", \"byte_fallback\": true", "null",
         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}", "null",
         "byte_fallback is true but neither a Metaspace"},
        {"Metaspace with Digits", ", \"unk_token\": \"<unk>\"", "null",
         "{\"type\": \"Sequence\", \"pretokenizers\": [" METASPACE("") ", {\"type\": \"Digits\"}]}", "null",
         "with other pre-tokenizer stages"},
        {"decoder", ", \"unk_token\": \"<unk>\"", LEGACY_NORMALIZER,
         "null", "{\"type\": \"WordPiece\"}", "decoder \"WordPiece\" is not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        status = load_small(bad[i].model_extra, bad[i].normalizer, bad[i].pre, bad[i].decoder, &tok);
        expect_error(bad[i].what, status, tok, bad[i].needle);
        tok = NULL;
    }

    /* GGUF-style arrays: "llama" needs scores (or merges); byte tokens must read <0xXX>. */
    const char *tokens[] = {"<unk>", "<s>", "a", "\u2581", "\u2581a", "<0x41>"};
    int32_t types[] = {2, 3, 1, 1, 1, 6};
    float scores[] = {0, 0, 0, 0, -1, 0};
    ml_tokenizer_arrays a = {.source = "small.gguf", .model = "llama", .n_tokens = 6, .tokens = tokens,
                             .token_types = types, .bos_id = 1, .eos_id = -1, .unk_id = 0, .add_bos = -1,
                             .add_eos = -1, .add_space_prefix = -1};
    status = ml_tokenizer_from_arrays(&a, &tok);
    expect_error("llama without scores", status, tok, "needs tokenizer.ggml.scores");
    tok = NULL;
    a.scores = scores;
    types[2] = 6;
    status = ml_tokenizer_from_arrays(&a, &tok);
    expect_error("byte type on text", status, tok, "has type 6 (byte) but is not <0xXX>");
    tok = NULL;
    types[2] = 1;
    status = ml_tokenizer_from_arrays(&a, &tok);
    CHECK(status == ML_OK, "llama arrays: %s", ml_last_error());
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(ml_tokenize(tok, "a a", 3, ML_TOKENIZE_ADD_SPECIAL, &ids, &n) == ML_OK, "%s", ml_last_error());
        int32_t want[] = {1, 4, 4}; /* <s> ▁a ▁a */
        CHECK(n == 3 && memcmp(ids, want, sizeof want) == 0, "llama arrays: %zu ids", n);
        free(ids);
    }
    ml_tokenizer_close(tok);
}

typedef struct {
    const char *name, *ids, *path, *kind;
} setup;

int main(void) {
    tf_corpus corpus;
    if (tf_load_corpus(&corpus) != 0) {
        CHECK(0, "corpus fixture missing");
        return ml_test_finish("test_tokenizer_spm");
    }
    const setup setups[] = {
        {"legacy tokenizer.json", "spm_legacy", "tokenizer/spm/legacy", "legacy"},
        {"metaspace (first) tokenizer.json", "spm_metaspace", "tokenizer/spm/metaspace/tokenizer.json", "metaspace"},
        {"metaspace (always, split)", "spm_split", "tokenizer/spm/split", "split"},
        {"legacy GGUF (scores)", "spm_legacy", "tokenizer/spm/legacy.gguf", "legacy"},
    };
    for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
        char path[4096];
        ml_test_fixture_path(path, sizeof path, setups[s].path);
        tf_ids ref;
        if (tf_load_ids(setups[s].ids, &ref) != 0) {
            CHECK(0, "reference ids %s missing", setups[s].ids);
            continue;
        }
        ml_tokenizer *tok = NULL;
        CHECK(ml_tokenizer_open(path, &tok) == ML_OK, "%s: %s", path, ml_last_error());
        if (tok) {
            printf("%s\n", setups[s].name);
            tf_check_ids(setups[s].name, tok, &corpus, &ref);
            check_stream(setups[s].name, tok, &corpus, &ref);
            if (strcmp(setups[s].ids, "spm_legacy") == 0) check_decode(setups[s].name, tok, &corpus, &ref);
            check_extra(setups[s].name, tok, setups[s].kind);
            check_basics(tok);
        }
        ml_tokenizer_close(tok);
        tf_free_ids(&ref);
    }
    tf_free_corpus(&corpus);
    check_errors();
    return ml_test_finish("test_tokenizer_spm");
}
