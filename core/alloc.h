/* Aligned allocation (64-byte, for vector loads and no false sharing). */
#ifndef ML_CORE_ALLOC_H
#define ML_CORE_ALLOC_H

#include <stddef.h>

#define ML_ALIGNMENT 64

/* Returns zeroed, 64-byte aligned memory or NULL (and records ML_ERR_NOMEM naming what). */
void *ml_alloc(size_t bytes, const char *what);
void ml_free(void *ptr);
/* a * b with overflow check; returns 0 and sets *out on success, -1 on overflow. */
int ml_mul_size(size_t a, size_t b, size_t *out);

/* Large zero-filled buffers (KV cache) from anonymous mappings: pages are only touched, and so
 * only count in RSS, when used. Returns NULL and records ML_ERR_NOMEM on failure. */
void *ml_alloc_pages(size_t bytes, const char *what);
void ml_free_pages(void *ptr, size_t bytes);
#endif
