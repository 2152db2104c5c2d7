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

static inline uint8_t *tf_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) data[n] = 0;
    if (size) *size = (size_t)n;
    return data;
}

static inline int tf_load_corpus(tf_corpus *c) {
    memset(c, 0, sizeof *c);
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "tokenizer/corpus.bin");
    size_t size;
    uint8_t *blob = tf_read_file(path, &size);
    if (!blob || size < 12 || memcmp(blob, "MLTKCORP", 8) != 0) {
        fprintf(stderr, "%s: missing or not a corpus file\n", path);
        free(blob);
        return -1;
    }
    uint32_t count;
    memcpy(&count, blob + 8, 4);
    c->blob = blob;
    c->n = count;
    c->data = calloc(count + 1, sizeof *c->data);
    c->length = calloc(count + 1, sizeof *c->length);
    c->category = calloc(count + 1, 1);
    size_t at = 12;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t length;
        if (at + 5 > size) return -1;
        c->category[i] = blob[at];
        memcpy(&length, blob + at + 1, 4);
        at += 5;
        if (at + length > size) return -1;
        c->data[i] = blob + at;
        c->length[i] = length;
        at += length;
    }
    /* category names, one per line */
    while (at < size && c->n_names < 32) {
        size_t end = at;
        while (end < size && blob[end] != '\n') end++;
        snprintf(c->names[c->n_names++], sizeof c->names[0], "%.*s", (int)(end - at), (const char *)(blob + at));
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
    char file[128], path[4096];
    snprintf(file, sizeof file, "tokenizer/ids_%s.bin", name);
    ml_test_fixture_path(path, sizeof path, file);
    size_t size;
    uint8_t *data = tf_read_file(path, &size);
    if (!data || size < 12 || memcmp(data, "MLTKIDS2", 8) != 0) {
        fprintf(stderr, "%s: missing or not an MLTKIDS2 file\n", path);
        free(data);
        return -1;
    }
    uint32_t count;
    memcpy(&count, data + 8, 4);
    size_t at = 12;
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
    free(data);
    if (bad) fprintf(stderr, "%s: truncated\n", path);
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

#endif
