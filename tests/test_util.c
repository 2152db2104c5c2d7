#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ml_test_failures = 0;
int ml_test_checks = 0;

int ml_test_finish(const char *suite) {
    if (ml_test_checks == 0) {
        printf("%s: no checks ran\n0 passed, 1 failed\n", suite);
        return 1;
    }
    printf("%s: %d passed, %d failed\n", suite, ml_test_checks - ml_test_failures, ml_test_failures);
    return ml_test_failures == 0 ? 0 : 1;
}

void ml_test_rng_seed(ml_test_rng *rng, uint64_t seed) { rng->state = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t next_u64(ml_test_rng *rng) {
    uint64_t x = rng->state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float ml_test_uniform(ml_test_rng *rng, float lo, float hi) {
    double unit = (double)(next_u64(rng) >> 11) / (double)(1ull << 53);
    return (float)(lo + (hi - lo) * unit);
}

void ml_test_fill(ml_test_rng *rng, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = ml_test_uniform(rng, lo, hi);
}

double ml_test_norm_error(const float *a, const float *b, size_t n) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= max_diff)) max_diff = d; /* NaN propagates as failure */
        if (fabs((double)b[i]) > max_ref) max_ref = fabs((double)b[i]);
    }
    return max_diff / (max_ref + 1e-30);
}

void ml_test_fixture_path(char *out, size_t size, const char *name) {
    const char *root = getenv("MESHLLAMA_FIXTURES");
    snprintf(out, size, "%s/%s", root ? root : "tests/fixtures", name);
}

int ml_test_make_tmpdir(char *out, size_t size, const char *tag) {
    const char *root = getenv("MESHLLAMA_TMP");
    if (!root) root = "/tmp";
    mkdir(root, 0755);
    snprintf(out, size, "%s/%s.XXXXXX", root, tag);
    return mkdtemp(out) ? 0 : -1;
}

int ml_test_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t written = fwrite(data, 1, size, f);
    return (fclose(f) == 0 && written == size) ? 0 : -1;
}

static int read_exact(FILE *f, void *dst, size_t bytes) { return fread(dst, 1, bytes, f) == bytes ? 0 : -1; }

int ml_test_reference_load(const char *path, ml_test_reference *ref) {
    memset(ref, 0, sizeof *ref);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    char magic[8];
    uint32_t header[4];
    int bad = read_exact(f, magic, 8) || memcmp(magic, "MLHFREF1", 8) != 0 || read_exact(f, header, sizeof header) ||
              header[0] != 1 || header[1] == 0 || header[1] > (1u << 22) || header[2] == 0 || header[2] > (1u << 20) ||
              header[3] > (1u << 20);
    if (!bad) {
        ref->vocab_size = (int)header[1];
        ref->n_prompt = (int)header[2];
        ref->n_generated = (int)header[3];
        ref->prompt_ids = malloc(header[2] * sizeof(int32_t));
        ref->generated_ids = malloc((header[3] + 1) * sizeof(int32_t));
        ref->logits = malloc((size_t)header[2] * header[1] * sizeof(float));
        bad = !ref->prompt_ids || !ref->generated_ids || !ref->logits ||
              read_exact(f, ref->prompt_ids, header[2] * sizeof(int32_t)) ||
              read_exact(f, ref->generated_ids, header[3] * sizeof(int32_t)) ||
              read_exact(f, ref->logits, (size_t)header[2] * header[1] * sizeof(float));
    }
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: not a valid MLHFREF1 version 1 reference file\n", path);
        ml_test_reference_free(ref);
        return -1;
    }
    return 0;
}

void ml_test_reference_free(ml_test_reference *ref) {
    free(ref->prompt_ids);
    free(ref->generated_ids);
    free(ref->logits);
    memset(ref, 0, sizeof *ref);
}
