#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meshllama.h"

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

int ml_test_default_model(char *out, size_t size) {
    const char *env = getenv("MESHLLAMA_DEFAULT_MODEL");
    if (env) snprintf(out, size, "%s", env);
    else ml_test_fixture_path(out, size, "../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    struct stat st;
    int present = stat(out, &st) == 0 && S_ISREG(st.st_mode);
    CHECK(present, "the default model %s is missing: scripts/fetch_default_model.sh fetches it (scripts/test.sh runs it)",
          out);
    return present ? 0 : -1;
}

int ml_test_byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

void ml_test_byte_text(int b, char out[4]) {
    int cp = b;
    if (!ml_test_byte_is_printable(b)) {
        cp = 256;
        for (int x = 0; x < b; x++) cp += !ml_test_byte_is_printable(x);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

uint8_t *ml_test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) data[n] = 0;
    if (data && size) *size = (size_t)n;
    return data;
}

int ml_test_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t written = fwrite(data, 1, size, f);
    return (fclose(f) == 0 && written == size) ? 0 : -1;
}

int ml_test_reference_load(const char *path, ml_test_reference *ref) {
    if (ml_hf_reference_load(path, ref) != ML_OK) {
        fprintf(stderr, "%s\n", ml_last_error());
        return -1;
    }
    if (ref->logits_first != 0 || ref->start_pos != 0) {
        fprintf(stderr, "%s: the tests need logits for every prompt position from position 0\n", path);
        ml_hf_reference_free(ref);
        return -1;
    }
    return 0;
}

void ml_test_reference_free(ml_test_reference *ref) { ml_hf_reference_free(ref); }
