#include "cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ml_cli_no_operands(const char *command, int argc, char **argv, int first) {
    if (first >= argc) return 0;
    fprintf(stderr, "meshllama %s: unexpected argument '%s'\n", command, argv[first]);
    return -1;
}

int ml_cli_parse_int(const char *flag, const char *text, long min, long max, int *out) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "meshllama: %s '%s': expected an integer in %ld..%ld\n", flag, text, min, max);
        return -1;
    }
    *out = (int)value;
    return 0;
}

int ml_cli_parse_float(const char *flag, const char *text, double min, double max, float *out) {
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) || value < min || value > max) {
        fprintf(stderr, "meshllama: %s '%s': expected a number in %g..%g\n", flag, text, min, max);
        return -1;
    }
    *out = (float)value;
    return 0;
}

int ml_cli_parse_u64(const char *flag, const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "meshllama: %s '%s': expected a non-negative integer\n", flag, text);
        return -1;
    }
    *out = (uint64_t)value;
    return 0;
}

int ml_cli_parse_mesh(const char *flag, const char *text, int *rows, int *cols) {
    int r, c, used = 0;
    if (sscanf(text, "%d%*[xX]%d%n", &r, &c, &used) != 2 || text[used] != '\0' || r < 1 || c < 1 || r > 4096 ||
        c > 4096) {
        fprintf(stderr, "meshllama: %s '%s': expected ROWSxCOLS with positive integers, e.g. 2x4\n", flag, text);
        return -1;
    }
    *rows = r;
    *cols = c;
    return 0;
}

int ml_cli_parse_ids(const char *flag, const char *text, int32_t **ids, int *n) {
    size_t capacity = 1;
    for (const char *p = text; *p; p++) capacity += *p == ',';
    int32_t *list = malloc(capacity * sizeof *list);
    if (!list) {
        fprintf(stderr, "meshllama: %s: out of memory\n", flag);
        return -1;
    }
    int count = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long value = strtol(p, &end, 10);
        if (errno != 0 || end == p || value < 0 || value > INT32_MAX || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "meshllama: %s '%s': expected comma-separated non-negative token ids, e.g. 1,2,3\n", flag,
                    text);
            free(list);
            return -1;
        }
        list[count++] = (int32_t)value;
        if (*end == '\0') break;
        p = end + 1;
    }
    *ids = list;
    *n = count;
    return 0;
}

int ml_cli_parse_act(const char *flag, const char *text, ml_act_mode *out) {
    if (strcmp(text, "accurate") == 0) *out = ML_ACT_ACCURATE;
    else if (strcmp(text, "fast") == 0) *out = ML_ACT_FAST;
    else {
        fprintf(stderr, "meshllama: %s '%s': expected accurate or fast\n", flag, text);
        return -1;
    }
    return 0;
}

int ml_cli_parse_kv(const char *flag, const char *text, ml_kv_dtype *out) {
    if (strcmp(text, "f32") == 0) *out = ML_KV_F32;
    else if (strcmp(text, "bf16") == 0) *out = ML_KV_BF16;
    else {
        fprintf(stderr, "meshllama: %s '%s': expected f32 or bf16\n", flag, text);
        return -1;
    }
    return 0;
}

int ml_cli_parse_range(const char *flag, const char *text, long min, long max, int **values, int *n) {
    long a, b, step = 1;
    int used = 0;
    int fields = sscanf(text, "%ld:%ld%n:%ld%n", &a, &b, &used, &step, &used);
    if ((fields != 2 && fields != 3) || text[used] != '\0' || a < min || b > max || a > b || step < 1 ||
        (b - a) / step >= 100000) {
        fprintf(stderr, "meshllama: %s '%s': expected START:END[:STEP] with %ld <= START <= END <= %ld, STEP >= 1\n",
                flag, text, min, max);
        return -1;
    }
    int count = (int)((b - a) / step) + 1;
    int *list = malloc((size_t)count * sizeof *list);
    if (!list) return -1;
    for (int i = 0; i < count; i++) list[i] = (int)(a + i * step);
    *values = list;
    *n = count;
    return 0;
}
