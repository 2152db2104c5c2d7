/* What every libFuzzer harness does first: copy the input into a heap block of exactly its size.
 * libFuzzer's own buffer may be larger, so only a private copy makes a read one byte past the
 * end hit AddressSanitizer's redzone; and the readers take (bytes, length), so the copy has no
 * terminator they could lean on. */
#ifndef MESHLLAMA_FUZZ_INPUT_H
#define MESHLLAMA_FUZZ_INPUT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The copy (free() it), or NULL when out of memory: the harness then returns 0. */
static inline void *fuzz_copy(const uint8_t *data, size_t size) {
    void *copy = malloc(size ? size : 1);
    if (copy && size) memcpy(copy, data, size);
    return copy;
}

static volatile uint8_t fuzz_sink;

/* Reads every byte of [p, p + n): a reader that returned an array shorter than it claims makes
 * AddressSanitizer report here. */
static inline void fuzz_touch(const void *p, size_t n) {
    const uint8_t *bytes = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= bytes[i];
    fuzz_sink ^= x;
}

#endif
