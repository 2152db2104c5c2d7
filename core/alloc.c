#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void *ml_alloc(size_t bytes, const char *what) {
    size_t rounded = (bytes + ML_ALIGNMENT - 1) / ML_ALIGNMENT * ML_ALIGNMENT;
    if (rounded == 0) rounded = ML_ALIGNMENT;
    if (rounded < bytes) {
        ml_set_error(ML_ERR_NOMEM, "allocating %s: size %zu overflows", what, bytes);
        return NULL;
    }
    void *ptr = aligned_alloc(ML_ALIGNMENT, rounded);
    if (!ptr) {
        ml_set_error(ML_ERR_NOMEM, "allocating %s: out of memory for %zu bytes", what, bytes);
        return NULL;
    }
    memset(ptr, 0, rounded);
    return ptr;
}

void ml_free(void *ptr) { free(ptr); }

int ml_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

#include <sys/mman.h>

void *ml_alloc_pages(size_t bytes, const char *what) {
    if (bytes == 0) bytes = 1;
    void *ptr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptr == MAP_FAILED) {
        ml_set_error(ML_ERR_NOMEM, "allocating %s: cannot map %zu bytes", what, bytes);
        return NULL;
    }
    return ptr;
}

void ml_free_pages(void *ptr, size_t bytes) {
    if (ptr) munmap(ptr, bytes == 0 ? 1 : bytes);
}
