/* Malformed and unsupported tokenizer files give a clear error: the right status code and a
 * message naming the file and what is wrong. One case per problem: truncated JSON, a non-BPE
 * model, merges naming unknown tokens, bad base64, duplicate ranks, missing bytes, ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "test_tokenizer_fixtures.h"
#include "test_util.h"
#include "meshllama.h"

static char tmpdir[2048];
static int case_number;

/* A small valid byte-level BPE: 256 byte tokens, "ab" (256), "abc" (257), special <|end|> (258). */
static json_t *valid_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char c[4];
        ml_test_byte_text(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    return json_pack("{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:b, s:b, s:b}, s:n, s:{s:s, s:o, "
                     "s:[s, s], s:b}}",
                     "version", "1.0", "added_tokens", "id", 258, "content", "<|end|>", "single_word", 0, "lstrip", 0,
                     "rstrip", 0, "normalized", 0, "special", 1, "normalizer", "pre_tokenizer", "type", "ByteLevel",
                     "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "post_processor", "model", "type", "BPE",
                     "vocab", vocab, "merges", "a b", "ab c", "ignore_merges", 0);
}

static void write_text(const char *path, const char *text, size_t n) {
    if (ml_test_write_file(path, text, n) != 0) fprintf(stderr, "cannot write %s\n", path);
}

/* Writes json (or raw text) as a fresh file and expects status with every substring in the
 * message, and the file's path. */
static void expect_json(json_t *root, const char *raw, int status, const char *what, const char *needle1,
                        const char *needle2) {
    char path[4096];
    snprintf(path, sizeof path, "%s/case%02d_tokenizer.json", tmpdir, ++case_number);
    if (root) {
        char *text = json_dumps(root, JSON_COMPACT);
        write_text(path, text, strlen(text));
        free(text);
        json_decref(root);
    } else {
        write_text(path, raw, strlen(raw));
    }
    ml_tokenizer *tok = NULL;
    int got = ml_tokenizer_open(path, &tok);
    const char *message = ml_last_error();
    CHECK(got == status, "%s: status %d, want %d (%s)", what, got, status, message);
    CHECK(strstr(message, path) != NULL, "%s: message does not name the file: %s", what, message);
    CHECK(!needle1 || strstr(message, needle1), "%s: message lacks \"%s\": %s", what, needle1, message);
    CHECK(!needle2 || strstr(message, needle2), "%s: message lacks \"%s\": %s", what, needle2, message);
    CHECK(tok == NULL, "%s: a handle came back with an error", what);
    ml_tokenizer_close(tok);
    printf("  %-38s -> %s\n", what, message);
}

static json_t *model_of(json_t *root) { return json_object_get(root, "model"); }

static void tokenizer_json_cases(void) {
    printf("tokenizer.json:\n");
    /* the valid one first */
    char path[4096];
    snprintf(path, sizeof path, "%s/valid_tokenizer.json", tmpdir);
    json_t *root = valid_json();
    char *text = json_dumps(root, JSON_COMPACT);
    write_text(path, text, strlen(text));
    ml_tokenizer *tok = NULL;
    CHECK(ml_tokenizer_open(path, &tok) == ML_OK, "valid small tokenizer.json: %s", ml_last_error());
    if (tok) {
        int32_t *ids;
        size_t n;
        ml_tokenize(tok, "abc abd<|end|>", 14, ML_TOKENIZE_PARSE_SPECIAL, &ids, &n);
        /* "abc" -> 257; " abd" -> ' '(32) "ab"(256) 'd'(100); <|end|> -> 258 */
        CHECK(n == 5 && ids[0] == 257 && ids[1] == 32 && ids[2] == 256 && ids[3] == 'd' && ids[4] == 258,
              "small tokenizer ids wrong (n=%zu)", n);
        free(ids);
    }
    ml_tokenizer_close(tok);

    size_t half = strlen(text) / 2;
    text[half] = '\0';
    expect_json(NULL, text, ML_ERR_FORMAT, "truncated file", "not valid JSON", NULL);
    free(text);
    json_decref(root);

    expect_json(NULL, "", ML_ERR_FORMAT, "empty file", "not valid JSON", NULL);

    root = valid_json();
    json_object_set_new(model_of(root), "type", json_string("WordPiece"));
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "model.type WordPiece", "WordPiece", "BPE");

    root = valid_json();
    json_object_set_new(model_of(root), "type", json_string("Unigram"));
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "model.type Unigram", "Unigram", NULL);

    root = valid_json();
    json_array_append_new(json_object_get(model_of(root), "merges"), json_string("a z"));
    expect_json(root, NULL, ML_ERR_FORMAT, "merge result not in vocab", "\"az\"", "not in model.vocab");

    root = valid_json();
    json_array_append_new(json_object_get(model_of(root), "merges"), json_string("q xyz"));
    expect_json(root, NULL, ML_ERR_FORMAT, "merge naming unknown token", "\"xyz\"", "merges[2]");

    root = valid_json();
    json_array_append_new(json_object_get(model_of(root), "merges"), json_string("a b c"));
    expect_json(root, NULL, ML_ERR_FORMAT, "merge with three parts", "merges[2]", "must be");

    root = valid_json();
    json_array_append_new(json_object_get(model_of(root), "merges"), json_integer(42));
    expect_json(root, NULL, ML_ERR_FORMAT, "merge that is a number", "merges[2]", "integer 42");

    root = valid_json();
    json_object_set_new(json_object_get(model_of(root), "vocab"), "zz", json_string("7"));
    expect_json(root, NULL, ML_ERR_FORMAT, "vocab id not an integer", "\"zz\"", "token id");

    root = valid_json();
    json_object_set_new(json_object_get(model_of(root), "vocab"), "zz", json_integer(5));
    expect_json(root, NULL, ML_ERR_FORMAT, "two tokens with one id", "id 5", NULL);

    root = valid_json();
    json_object_del(root, "model");
    expect_json(root, NULL, ML_ERR_FORMAT, "no model", "\"model\"", NULL);

    root = valid_json();
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "Regex", "(unclosed", "behavior",
                                  "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 0));
    expect_json(root, NULL, ML_ERR_FORMAT, "Split regex that does not compile", "does not compile", "(unclosed");

    root = valid_json();
    json_object_set_new(root, "normalizer", json_pack("{s:s}", "type", "NFKC")); /* NFC is read (Qwen2); NFKC is not */
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "NFKC normalizer", "normalizer", "NFKC");

    root = valid_json();
    json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:s}", "type", "Metaspace", "replacement", "_"));
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "Metaspace replacement not '\u2581'", "replacement is \"_\"", NULL);

    root = valid_json();
    json_object_set_new(root, "pre_tokenizer", json_null());
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "no ByteLevel (not byte-level)", "ByteLevel", NULL);

    root = valid_json();
    json_object_set_new(model_of(root), "byte_fallback", json_true());
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "byte_fallback (SentencePiece BPE)", "byte_fallback", NULL);

    root = valid_json();
    json_object_set_new(root, "post_processor", json_pack("{s:s}", "type", "Nonsense"));
    expect_json(root, NULL, ML_ERR_UNSUPPORTED, "unknown post-processor", "Nonsense", NULL);

    root = valid_json();
    json_object_set_new(root, "post_processor",
                        json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}", "type",
                                  "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence",
                                  "id", "A", "type_id", 0, "special_tokens", "<s>", "id", "<s>", "ids", 99999, "tokens",
                                  "<s>"));
    expect_json(root, NULL, ML_ERR_FORMAT, "template token not in vocab", "99999", NULL);

    root = valid_json();
    json_array_append_new(json_object_get(root, "added_tokens"), json_pack("{s:i}", "id", 300));
    expect_json(root, NULL, ML_ERR_FORMAT, "added token without content", "added_tokens[1]", "content");

    expect_json(NULL, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}",
                ML_ERR_FORMAT, "duplicate vocab key", "\"a\" twice", NULL);

    /* missing files and directories */
    snprintf(path, sizeof path, "%s/does_not_exist.json", tmpdir);
    tok = NULL;
    CHECK(ml_tokenizer_open(path, &tok) == ML_ERR_IO && strstr(ml_last_error(), path), "missing file: %s",
          ml_last_error());
    char empty_dir[4096];
    snprintf(empty_dir, sizeof empty_dir, "%s", tmpdir);
    CHECK(ml_tokenizer_open(empty_dir, &tok) == ML_ERR_IO && strstr(ml_last_error(), "tokenizer.json"),
          "directory without tokenizer: %s", ml_last_error());
}

/* ---- tokenizer.model -------------------------------------------------------------------- */

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    out[o] = 0;
}

/* 256 byte lines (rank = byte, or one less after skip_byte, which is left out), "ab" next
 * (rank 256), plus extra. */
static char *tiktoken_text(int skip_byte, const char *extra) {
    char *text = malloc(65536);
    size_t used = 0;
    int rank = 0;
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte) continue;
        uint8_t byte = (uint8_t)b;
        char encoded[8];
        base64(&byte, 1, encoded);
        used += (size_t)sprintf(text + used, "%s %d\n", encoded, rank++);
    }
    used += (size_t)sprintf(text + used, "YWI= %d\n%s", rank, extra);
    return text;
}

static void expect_model(const char *text, size_t n, int status, const char *what, const char *needle1,
                         const char *needle2) {
    char path[4096];
    snprintf(path, sizeof path, "%s/case%02d_tokenizer.model", tmpdir, ++case_number);
    write_text(path, text, n);
    ml_tokenizer *tok = NULL;
    int got = ml_tokenizer_open(path, &tok);
    const char *message = ml_last_error();
    CHECK(got == status, "%s: status %d, want %d (%s)", what, got, status, message);
    if (status != ML_OK) {
        CHECK(strstr(message, path) != NULL, "%s: message does not name the file: %s", what, message);
        CHECK(!needle1 || strstr(message, needle1), "%s: message lacks \"%s\": %s", what, needle1, message);
        CHECK(!needle2 || strstr(message, needle2), "%s: message lacks \"%s\": %s", what, needle2, message);
        printf("  %-38s -> %s\n", what, message);
    } else if (tok) {
        int32_t *ids;
        size_t count;
        ml_tokenize(tok, "ab<|eot_id|>", 12, ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL, &ids, &count);
        /* BOS is the first id after the ranks (257), <|eot_id|> is BOS + 9 */
        CHECK(count == 3 && ids[0] == 257 && ids[1] == 256 && ids[2] == 266, "small tiktoken ids wrong");
        free(ids);
    }
    ml_tokenizer_close(tok);
}

static void tokenizer_model_cases(void) {
    printf("tokenizer.model:\n");
    /* tiktoken_text(skip_byte, extra), then what opening it must give (the valid one first). */
    static const struct {
        int skip_byte;
        const char *extra, *what, *needle1, *needle2;
        int status;
    } cases[] = {
        {-1, "", "valid small tiktoken file", NULL, NULL, ML_OK},
        {-1, "SGVsbG8@ 300\n", "bad base64 character", "line 258", "not valid base64", ML_ERR_FORMAT},
        {-1, "QQ==QQ== 300\n", "padding in the middle", "line 258", "not valid base64", ML_ERR_FORMAT},
        {-1, "QUJD 5\n", "duplicate rank", "rank 5 is already used on line 6", NULL, ML_ERR_FORMAT},
        {-1, "YWI= 257\n", "duplicate token", "ranks 256 and 257 have the same token bytes", NULL, ML_ERR_FORMAT},
        {-1, "QUJD\n", "line without rank", "line 258", "expected", ML_ERR_FORMAT},
        {-1, "QUJD 12x\n", "rank not an integer", "line 258", "12x", ML_ERR_FORMAT},
        {0x41, "", "a byte without a token", "byte 0x41 has no token", NULL, ML_ERR_FORMAT},
        {-1, "QUJD 258\n", "rank gap (ranks not 0..N-1)", "rank 258 is not below the number of tokens, 258", NULL,
         ML_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = tiktoken_text(cases[i].skip_byte, cases[i].extra);
        expect_model(text, strlen(text), cases[i].status, cases[i].what, cases[i].needle1, cases[i].needle2);
        free(text);
    }
    expect_model("", 0, ML_ERR_FORMAT, "empty file", "no tokens", NULL);
    char *text = tiktoken_text(-1, "QUJD 283959432\n");
    expect_model(text, strlen(text), ML_ERR_FORMAT, "huge rank (found by fuzzing)", "rank 283959432", NULL);
    free(text);
    static const char binary[] = "\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02";
    expect_model(binary, sizeof binary - 1, ML_ERR_UNSUPPORTED, "binary (SentencePiece) file", "SentencePiece", NULL);

    /* The real Llama 3 file cut in the middle of a line. */
    char fixture[4096];
    ml_test_fixture_path(fixture, sizeof fixture, "tokenizer/llama3/tokenizer.model.gz");
    char command[16384], path[4096];
    snprintf(path, sizeof path, "%s/full_tokenizer.model", tmpdir);
    snprintf(command, sizeof command, "gzip -dc '%s' > '%s'", fixture, path);
    if (system(command) == 0) {
        size_t size;
        uint8_t *data = ml_test_read_file(path, &size);
        if (data && size > 100000) {
            expect_model((const char *)data, 50003, ML_ERR_FORMAT, "Llama 3 file truncated mid-line", "line", NULL);
            /* Truncated at a line end the file is shorter but valid; bytes are still all there. */
            size_t cut = 50003;
            while (cut > 0 && data[cut - 1] != '\n') cut--;
            char path2[4096];
            snprintf(path2, sizeof path2, "%s/cut_tokenizer.model", tmpdir);
            write_text(path2, (const char *)data, cut);
            ml_tokenizer *tok = NULL;
            CHECK(ml_tokenizer_open(path2, &tok) == ML_OK, "Llama 3 file cut at a line end: %s", ml_last_error());
            ml_tokenizer_close(tok);
        }
        free(data);
    } else {
        printf("SKIP: gzip not available for the truncated Llama 3 case\n");
    }
}

/* ---- arrays ----------------------------------------------------------------------------- */

static void arrays_cases(void) {
    printf("arrays (GGUF metadata):\n");
    const char *tokens[259];
    char storage[256][4];
    int32_t types[259];
    for (int b = 0; b < 256; b++) {
        ml_test_byte_text(b, storage[b]);
        tokens[b] = storage[b];
        types[b] = 6;
    }
    tokens[256] = "ab";
    types[256] = 1;
    tokens[257] = "abc";
    types[257] = 1;
    tokens[258] = "<|end|>";
    types[258] = 3;
    const char *merges[] = {"a b", "ab c", "q xyz"};
    ml_tokenizer_arrays a = {.source = "test.gguf", .model = "gpt2", .pre = "gpt2", .n_tokens = 259, .tokens = tokens,
                             .token_types = types, .n_merges = 2, .merges = merges, .bos_id = -1, .eos_id = 258,
                             .unk_id = -1, .add_bos = -1, .add_eos = -1};
    ml_tokenizer *tok = NULL;
    CHECK(ml_tokenizer_from_arrays(&a, &tok) == ML_OK, "valid arrays: %s", ml_last_error());
    if (tok) {
        int32_t *ids;
        size_t n;
        ml_tokenize(tok, "abc<|end|>", 10, ML_TOKENIZE_PARSE_SPECIAL, &ids, &n);
        CHECK(n == 2 && ids[0] == 257 && ids[1] == 258, "arrays ids wrong");
        free(ids);
        ml_tokenize(tok, "abc<|end|>", 10, 0, &ids, &n);
        CHECK(n > 2, "special token parsed without ML_TOKENIZE_PARSE_SPECIAL");
        free(ids);
    }
    ml_tokenizer_close(tok);

    struct {
        const char *what;
        ml_tokenizer_arrays a;
        int status;
        const char *needle;
    } cases[6];
    for (int i = 0; i < 6; i++) cases[i].a = a;
    cases[0].what = "model bert (WordPiece)", cases[0].a.model = "bert", cases[0].status = ML_ERR_UNSUPPORTED,
    cases[0].needle = "\"bert\"";
    cases[1].what = "unknown pre-tokenizer", cases[1].a.pre = "klingon", cases[1].status = ML_ERR_UNSUPPORTED,
    cases[1].needle = "'klingon'";
    cases[2].what = "merge naming unknown token", cases[2].a.n_merges = 3, cases[2].status = ML_ERR_FORMAT,
    cases[2].needle = "merges[2]";
    cases[3].what = "bos id out of range", cases[3].a.bos_id = 999, cases[3].status = ML_ERR_FORMAT,
    cases[3].needle = "bos_token_id 999";
    int32_t bad_types[259];
    memcpy(bad_types, types, sizeof bad_types);
    bad_types[100] = 9;
    cases[4].what = "token type 9", cases[4].a.token_types = bad_types, cases[4].status = ML_ERR_FORMAT,
    cases[4].needle = "token_type[100]";
    cases[5].what = "no tokens", cases[5].a.n_tokens = 0, cases[5].status = ML_ERR_FORMAT, cases[5].needle = "no tokens";
    for (int i = 0; i < 6; i++) {
        tok = NULL;
        int got = ml_tokenizer_from_arrays(&cases[i].a, &tok);
        const char *message = ml_last_error();
        CHECK(got == cases[i].status, "%s: status %d (%s)", cases[i].what, got, message);
        CHECK(strstr(message, "test.gguf") && strstr(message, cases[i].needle), "%s: message: %s", cases[i].what,
              message);
        CHECK(tok == NULL, "%s: handle returned", cases[i].what);
        printf("  %-38s -> %s\n", cases[i].what, message);
    }
}

/* ---- bad arguments ---------------------------------------------------------------------- */

/* A crafted Split pattern that backtracks exponentially must end in an error naming the
 * pattern, not hang (issue 14). The alarm turns a hang into a failure instead of a ctest
 * timeout; the bound (20 s) is far above the fraction of a second the limit takes. */
static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void regex_bomb_case(void) {
    printf("regex bomb:\n");
    json_t *root = valid_json();
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "Regex", "(a|a)+$", "behavior",
                                  "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets",
                                  1, "use_regex", 0));
    char path[4096];
    snprintf(path, sizeof path, "%s/regex_bomb_tokenizer.json", tmpdir);
    char *text = json_dumps(root, JSON_COMPACT);
    write_text(path, text, strlen(text));
    free(text);
    json_decref(root);
    ml_tokenizer *tok = NULL;
    CHECK(ml_tokenizer_open(path, &tok) == ML_OK, "regex bomb tokenizer.json: %s", ml_last_error());
    if (!tok) return;
    char subject[64];
    memset(subject, 'a', 40);
    subject[40] = '!';
    int32_t *ids = NULL;
    size_t n = 0;
    alarm(20);
    double start = now_seconds();
    int got = ml_tokenize(tok, subject, 41, 0, &ids, &n);
    double seconds = now_seconds() - start;
    alarm(0);
    const char *message = ml_last_error();
    CHECK(got == ML_ERR_FORMAT, "(a|a)+$ on 40 'a's: status %d, want ML_ERR_FORMAT (%s)", got, message);
    CHECK(strstr(message, "(a|a)+$") != NULL, "regex bomb message does not name the pattern: %s", message);
    CHECK(strstr(message, path) != NULL, "regex bomb message does not name the file: %s", message);
    printf("  %-38s -> %s (%.2f s)\n", "(a|a)+$ on 40 'a's", message, seconds);
    if (got == ML_OK) free(ids);
    /* The same tokenizer still works on text the pattern matches cheaply. */
    CHECK(ml_tokenize(tok, "abc", 3, 0, &ids, &n) == ML_OK, "after the bomb: %s", ml_last_error());
    free(ids);
    ml_tokenizer_close(tok);
}

static void argument_cases(void) {
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "tokenizer/smollm2");
    ml_tokenizer *tok = NULL;
    CHECK(ml_tokenizer_open(path, &tok) == ML_OK, "smollm2: %s", ml_last_error());
    if (!tok) return;
    int32_t *ids;
    size_t n;
    CHECK(ml_tokenize(NULL, "x", 1, 0, &ids, &n) == ML_ERR_ARG, "NULL tokenizer accepted");
    CHECK(ml_tokenize(tok, NULL, 3, 0, &ids, &n) == ML_ERR_ARG, "NULL text accepted");
    CHECK(ml_tokenize(tok, NULL, 0, 0, &ids, &n) == ML_OK && n == 0 && ids, "empty NULL text should give no ids");
    free(ids);
    int32_t bad[] = {1, 999999};
    char *text;
    CHECK(ml_detokenize(tok, bad, 2, 0, &text, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "999999") &&
              strstr(ml_last_error(), "index 1"),
          "unknown id in decode: %s", ml_last_error());
    const char *bytes;
    size_t length;
    CHECK(ml_tokenizer_token_bytes(tok, -1, &bytes, &length) == ML_ERR_ARG, "token -1 accepted");
    ml_stream_decoder *dec;
    ml_stream_decoder_create(tok, 0, &dec);
    CHECK(ml_stream_decoder_push(dec, 49152, &bytes, &length) == ML_ERR_ARG, "stream push of unknown id accepted");
    ml_stream_decoder_free(dec);
    ml_stream_decoder_free(NULL);
    ml_tokenizer_close(NULL);
    ml_tokenizer_close(tok);
}

int main(void) {
    if (ml_test_make_tmpdir(tmpdir, sizeof tmpdir, "tokenizer_errors") != 0) {
        CHECK(0, "cannot make a temporary directory");
        return ml_test_finish("test_tokenizer_errors");
    }
    tokenizer_json_cases();
    tokenizer_model_cases();
    arrays_cases();
    regex_bomb_case();
    argument_cases();
    return ml_test_finish("test_tokenizer_errors");
}
