/* Per-thread scratch memory for the kernels, whose signatures carry none: a float buffer that
 * grows on demand, is reused by every later call on the same thread, and is freed when the
 * thread ends (a pthread key destructor; the pool's workers end at ml_pool_destroy). Used by
 * the quantised matmuls to hold a decoded tile of weight rows during prefill. */
#include "backend/cpu/kernels.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    float *data;   /* 64-byte aligned */
    size_t floats; /* capacity */
} scratch;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_made;

static void release(void *p) {
    scratch *s = p;
    free(s->data);
    free(s);
}

static void make_key(void) { key_made = pthread_key_create(&key, release) == 0; }

float *ml_cpu_scratch(size_t floats) {
    pthread_once(&key_once, make_key);
    if (!key_made) return NULL;
    scratch *s = pthread_getspecific(key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->floats < floats) {
        size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        if (floats > ((size_t)-1) / 2 / sizeof(float)) return NULL;
        float *grown = aligned_alloc(64, bytes);
        if (!grown) return NULL;
        free(s->data);
        s->data = grown;
        s->floats = floats;
    }
    return s->data;
}
