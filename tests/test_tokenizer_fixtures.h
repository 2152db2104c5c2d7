/* Shared by the tokenizer tests: the corpus and reference ids written by
 * tools/make_tokenizer_fixtures.py (tests/fixtures/tokenizer/), the gzip'd Llama 3 files
 * unpacked into a temporary directory, and GGUF-style arrays taken from a tokenizer.json. */
#ifndef ML_TEST_TOKENIZER_FIXTURES_H
#define ML_TEST_TOKENIZER_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "test_util.h"
#include "meshllama.h"

typedef struct {
    size_t n;
    uint8_t **data;     /* [n] */
    size_t *length;     /* [n] */
    uint8_t *category;  /* [n] index into names */
    char names[32][32];
    int n_names;
    uint8_t *blob;
} tf_corpus;

typedef struct {
    size_t n;
    int32_t **plain;    /* [n] ids without special tokens */
    size_t *n_plain;
    int32_t **special;  /* [n] ids with ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL */
    size_t *n_special;
} tf_ids;

/* A fixture file of tools/make_tokenizer_fixtures.py: an 8-byte magic and a uint32 count, then
 * (for the record files) per record a tag byte, a uint32 length and that many bytes. */
typedef struct {
    char path[4096];
    uint8_t *data;
    size_t size, at;
    uint32_t count;
} tf_fixture;

/* Reads tests/fixtures/<file> whole; -1 with a message when it is missing or lacks the magic. */
static inline int tf_open_fixture(const char *file, const char *magic, tf_fixture *f) {
    memset(f, 0, sizeof *f);
    ml_test_fixture_path(f->path, sizeof f->path, file);
    f->data = ml_test_read_file(f->path, &f->size);
    if (!f->data || f->size < 12 || memcmp(f->data, magic, 8) != 0) {
        fprintf(stderr, "%s: missing or not an %s file\n", f->path, magic);
        free(f->data);
        f->data = NULL;
        return -1;
    }
    memcpy(&f->count, f->data + 8, 4);
    f->at = 12;
    return 0;
}

/* The next record (tag, bytes, length); -1 when the file ends inside it. */
static inline int tf_next_record(tf_fixture *f, uint8_t *tag, const uint8_t **bytes, uint32_t *length) {
    if (f->at + 5 > f->size) return -1;
    *tag = f->data[f->at];
    memcpy(length, f->data + f->at + 1, 4);
    if (*length > f->size - f->at - 5) return -1;
    *bytes = f->data + f->at + 5;
    f->at += 5 + (size_t)*length;
    return 0;
}

static inline int tf_load_corpus(tf_corpus *c) {
    memset(c, 0, sizeof *c);
    tf_fixture f;
    if (tf_open_fixture("tokenizer/corpus.bin", "MLTKCORP", &f) != 0) return -1;
    uint32_t count = f.count;
    c->blob = f.data;
    c->n = count;
    c->data = calloc(count + 1, sizeof *c->data);
    c->length = calloc(count + 1, sizeof *c->length);
    c->category = calloc(count + 1, 1);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *bytes;
        uint32_t length;
        if (tf_next_record(&f, &c->category[i], &bytes, &length) != 0) return -1;
        c->data[i] = (uint8_t *)bytes;
        c->length[i] = length;
    }
    /* category names, one per line */
    size_t at = f.at, size = f.size;
    while (at < size && c->n_names < 32) {
        size_t end = at;
        while (end < size && f.data[end] != '\n') end++;
        snprintf(c->names[c->n_names++], sizeof c->names[0], "%.*s", (int)(end - at), (const char *)(f.data + at));
        at = end + 1;
    }
    return 0;
}

static inline void tf_free_corpus(tf_corpus *c) {
    free(c->blob);
    free(c->data);
    free(c->length);
    free(c->category);
}

static inline uint32_t tf_varint(const uint8_t *data, size_t size, size_t *at, int *bad) {
    uint32_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*at >= size) {
            *bad = 1;
            return 0;
        }
        uint8_t b = data[(*at)++];
        value |= (uint32_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return value;
    }
    *bad = 1;
    return 0;
}

static inline int32_t *tf_read_list(const uint8_t *data, size_t size, size_t *at, size_t n, int *bad) {
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n && !*bad; i++) ids[i] = (int32_t)tf_varint(data, size, at, bad);
    return ids;
}

static inline int tf_load_ids(const char *name, tf_ids *r) {
    memset(r, 0, sizeof *r);
    char file[128];
    snprintf(file, sizeof file, "tokenizer/ids_%s.bin", name);
    tf_fixture f;
    if (tf_open_fixture(file, "MLTKIDS2", &f) != 0) return -1;
    const uint8_t *data = f.data;
    size_t size = f.size, at = f.at;
    uint32_t count = f.count;
    int bad = 0;
    size_t n_prefix = tf_varint(data, size, &at, &bad);
    int32_t *prefix = tf_read_list(data, size, &at, n_prefix, &bad);
    size_t n_suffix = tf_varint(data, size, &at, &bad);
    int32_t *suffix = tf_read_list(data, size, &at, n_suffix, &bad);
    r->n = count;
    r->plain = calloc(count + 1, sizeof *r->plain);
    r->special = calloc(count + 1, sizeof *r->special);
    r->n_plain = calloc(count + 1, sizeof *r->n_plain);
    r->n_special = calloc(count + 1, sizeof *r->n_special);
    for (uint32_t i = 0; i < count && !bad; i++) {
        r->n_plain[i] = tf_varint(data, size, &at, &bad);
        r->plain[i] = tf_read_list(data, size, &at, r->n_plain[i], &bad);
        size_t m = tf_varint(data, size, &at, &bad);
        if (m == 0) {
            r->n_special[i] = n_prefix + r->n_plain[i] + n_suffix;
            r->special[i] = malloc((r->n_special[i] + 1) * sizeof(int32_t));
            memcpy(r->special[i], prefix, n_prefix * sizeof(int32_t));
            memcpy(r->special[i] + n_prefix, r->plain[i], r->n_plain[i] * sizeof(int32_t));
            memcpy(r->special[i] + n_prefix + r->n_plain[i], suffix, n_suffix * sizeof(int32_t));
        } else {
            r->n_special[i] = m - 1;
            r->special[i] = tf_read_list(data, size, &at, m - 1, &bad);
        }
    }
    free(prefix);
    free(suffix);
    free(f.data);
    if (bad) fprintf(stderr, "%s: truncated\n", f.path);
    return bad ? -1 : 0;
}

static inline void tf_free_ids(tf_ids *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->plain[i]);
        free(r->special[i]);
    }
    free(r->plain);
    free(r->special);
    free(r->n_plain);
    free(r->n_special);
}

/* Unpacks the gzip'd Llama 3 files: dir/llama3_tiktoken/tokenizer.model and
 * dir/llama3_json/{tokenizer.json, tokenizer_config.json}. Returns 0 on success. */
static inline int tf_unpack_llama3(char *dir, size_t size) {
    if (ml_test_make_tmpdir(dir, size, "tokenizer") != 0) return -1;
    char fixtures[2048], command[16384];
    ml_test_fixture_path(fixtures, sizeof fixtures, "tokenizer/llama3");
    if (strlen(dir) > 1800 || strlen(fixtures) > 1800) return -1;
    snprintf(command, sizeof command,
             "mkdir -p '%s/llama3_tiktoken' '%s/llama3_json' && gzip -dc '%s/tokenizer.model.gz' > "
             "'%s/llama3_tiktoken/tokenizer.model' && gzip -dc '%s/tokenizer.json.gz' > '%s/llama3_json/tokenizer.json' "
             "&& cp '%s/tokenizer_config.json' '%s/llama3_json/'",
             dir, dir, fixtures, dir, fixtures, dir, fixtures, dir);
    return system(command) == 0 ? 0 : -1;
}

/* A tokenizer built through ml_tokenizer_from_arrays from a tokenizer.json, the way the GGUF
 * reader passes tokenizer.ggml.* (added special tokens become control tokens). */
static inline int tf_open_arrays(const char *json_path, const char *pre, int add_bos, ml_tokenizer **out) {
    *out = NULL;
    json_error_t error;
    json_t *root = json_load_file(json_path, 0, &error);
    if (!root) {
        fprintf(stderr, "%s: %s\n", json_path, error.text);
        return -1;
    }
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    json_t *added = json_object_get(root, "added_tokens");
    int32_t n = 0;
    const char *key;
    json_t *value;
    json_object_foreach(vocab, key, value) if ((int32_t)json_integer_value(value) >= n) n = (int32_t)json_integer_value(value) + 1;
    size_t i;
    json_array_foreach(added, i, value) {
        int32_t id = (int32_t)json_integer_value(json_object_get(value, "id"));
        if (id >= n) n = id + 1;
    }
    const char **tokens = calloc((size_t)n, sizeof *tokens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    json_object_foreach(vocab, key, value) {
        tokens[json_integer_value(value)] = key;
        types[json_integer_value(value)] = 1;
    }
    json_array_foreach(added, i, value) {
        int32_t id = (int32_t)json_integer_value(json_object_get(value, "id"));
        tokens[id] = json_string_value(json_object_get(value, "content"));
        types[id] = json_is_true(json_object_get(value, "special")) ? 3 : 4;
    }
    size_t n_merges = json_array_size(merges);
    char **merge_text = calloc(n_merges + 1, sizeof *merge_text);
    json_array_foreach(merges, i, value) {
        if (json_is_string(value)) {
            merge_text[i] = strdup(json_string_value(value));
        } else {
            const char *a = json_string_value(json_array_get(value, 0)), *b = json_string_value(json_array_get(value, 1));
            merge_text[i] = malloc(strlen(a) + strlen(b) + 2);
            sprintf(merge_text[i], "%s %s", a, b);
        }
    }
    ml_tokenizer_arrays arrays = {
        .source = json_path,
        .model = "gpt2",
        .pre = pre,
        .n_tokens = n,
        .tokens = tokens,
        .token_types = types,
        .n_merges = (int32_t)n_merges,
        .merges = (const char *const *)merge_text,
        .bos_id = -1,
        .eos_id = -1,
        .unk_id = -1,
        .add_bos = add_bos,
        .add_eos = -1,
    };
    json_array_foreach(added, i, value) {
        const char *content = json_string_value(json_object_get(value, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(value, "id"));
        if (strcmp(content, "<|begin_of_text|>") == 0 || strcmp(content, "<|im_start|>") == 0) arrays.bos_id = id;
        if (strcmp(content, "<|end_of_text|>") == 0 || strcmp(content, "<|im_end|>") == 0) arrays.eos_id = id;
    }
    int status = ml_tokenizer_from_arrays(&arrays, out);
    if (status != ML_OK) fprintf(stderr, "%s: arrays: %s\n", json_path, ml_last_error());
    for (i = 0; i < n_merges; i++) free(merge_text[i]);
    free(merge_text);
    free(tokens);
    free(types);
    json_decref(root);
    return status == ML_OK ? 0 : -1;
}

/* Prints up to max bytes of s with C escapes, for failure messages. */
static inline void tf_print_escaped(FILE *f, const uint8_t *s, size_t n, size_t max) {
    for (size_t i = 0; i < n && i < max; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\' && s[i] != '"') fputc(s[i], f);
        else if (s[i] == '\n') fputs("\\n", f);
        else fprintf(f, "\\x%02x", s[i]);
    }
    if (n > max) fputs("...", f);
}

static inline void tf_print_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n && i < 24; i++) fprintf(f, "%s%d", i ? "," : "", (int)ids[i]);
    if (n > 24) fputs(",...", f);
    fprintf(f, "] (%zu)", n);
}

static inline int tf_same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Strict UTF-8 validation (shortest form, no surrogates, <= U+10FFFF). */
static inline int tf_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        if (len == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F))) return 0;
        if (len == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))) return 0;
        i += len;
    }
    return 1;
}

/* Token ids == the reference for every corpus string in both modes (plain; BOS + special tokens
 * parsed): one check per string and mode; the first few differences are printed in full. */
static inline void tf_check_ids(const char *name, const ml_tokenizer *tok, const tf_corpus *c, const tf_ids *ref) {
    int printed = 0;
    size_t differ[2] = {0, 0};
    for (size_t i = 0; i < c->n; i++) {
        for (int mode = 0; mode < 2; mode++) {
            unsigned flags = mode ? ML_TOKENIZE_ADD_SPECIAL | ML_TOKENIZE_PARSE_SPECIAL : 0;
            int32_t *ids = NULL;
            size_t n = 0;
            int status = ml_tokenize(tok, (const char *)c->data[i], c->length[i], flags, &ids, &n);
            const int32_t *want = mode ? ref->special[i] : ref->plain[i];
            size_t n_want = mode ? ref->n_special[i] : ref->n_plain[i];
            ml_test_checks++;
            if (status != ML_OK || !tf_same_ids(ids, n, want, n_want)) {
                ml_test_failures++;
                differ[mode]++;
                if (printed++ < 6) {
                    fprintf(stderr, "FAIL %s: string %zu (%s, %s mode) \"", name, i, c->names[c->category[i]],
                            mode ? "special" : "plain");
                    tf_print_escaped(stderr, c->data[i], c->length[i], 80);
                    fprintf(stderr, "\"\n   ours ");
                    if (status == ML_OK) tf_print_ids(stderr, ids, n);
                    else fprintf(stderr, "error %s", ml_last_error());
                    fprintf(stderr, "\n   want ");
                    tf_print_ids(stderr, want, n_want);
                    fprintf(stderr, "\n");
                }
            }
            free(ids);
        }
    }
    printf("  %-34s plain: %zu/%zu identical, special: %zu/%zu identical\n", name, c->n - differ[0], c->n,
           c->n - differ[1], c->n);
}

#endif
