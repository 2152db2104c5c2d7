/* Small helpers shared by the C tests: checks that count failures, seeded random data,
 * normalised error, fixture paths. Every test exits non-zero on any failure. */
#ifndef ML_TEST_UTIL_H
#define ML_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "formats/hf_reference.h"

extern int ml_test_failures;
extern int ml_test_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        ml_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            ml_test_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* Prints "N passed, M failed" and returns the exit status (non-zero on failure or no checks). */
int ml_test_finish(const char *suite);

/* Deterministic xorshift random numbers. */
typedef struct { uint64_t state; } ml_test_rng;
void ml_test_rng_seed(ml_test_rng *rng, uint64_t seed);
float ml_test_uniform(ml_test_rng *rng, float lo, float hi);
void ml_test_fill(ml_test_rng *rng, float *x, size_t n, float lo, float hi);

/* max_i |a[i] - b[i]| / (max_i |b[i]| + tiny) */
double ml_test_norm_error(const float *a, const float *b, size_t n);

/* $MESHLLAMA_FIXTURES/name (static buffer per call site is not needed: caller provides). */
void ml_test_fixture_path(char *out, size_t size, const char *name);
/* A fresh temporary directory under $MESHLLAMA_TMP (or /tmp); returns 0 on success. */
int ml_test_make_tmpdir(char *out, size_t size, const char *tag);
/* The default model: $MESHLLAMA_DEFAULT_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf in
 * the checkout. One rule for every test, C and shell (tests/lib/check.sh has the same): a
 * missing default model is a FAILURE, never a SKIP (scripts/test.sh fetches it). Returns 0 and
 * the path when present; else records a failed check naming the path and returns -1. */
int ml_test_default_model(char *out, size_t size);
/* GPT-2's byte-level alphabet (bytes_to_unicode), written independently of the library:
 * a printable byte stands for itself, the others map to U+0100 and up in byte order.
 * ml_test_byte_text writes the character of byte b as NUL-terminated UTF-8. */
int ml_test_byte_is_printable(int b);
void ml_test_byte_text(int b, char out[4]);
/* The whole file, NUL-terminated (size excludes the NUL); NULL when it cannot be read. */
uint8_t *ml_test_read_file(const char *path, size_t *size);
/* Writes bytes to a file; returns 0 on success. */
int ml_test_write_file(const char *path, const void *data, size_t size);


/* tests/fixtures/<name>/reference.bin, written by tools/make_fixtures.py (docs/FIXTURES.md):
 * read by the library's reader; the tests need every prompt row (logits [n_prompt, vocab]). */
typedef ml_hf_reference ml_test_reference;

/* Returns 0 on success; prints why on failure (also a file without every prompt row). */
int ml_test_reference_load(const char *path, ml_test_reference *ref);
void ml_test_reference_free(ml_test_reference *ref);

#endif
