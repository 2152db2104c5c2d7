#include "json_out.h"

#include <math.h>

double ml_json_round(double x, int decimals) {
    double scale = pow(10.0, decimals);
    return isfinite(x) ? round(x * scale) / scale : 0.0;
}

int ml_json_print(FILE *out, const char *prefix, json_t *value, int compact) {
    if (!value) {
        fprintf(stderr, "meshllama: out of memory for the JSON output\n");
        return -1;
    }
    size_t flags = JSON_REAL_PRECISION(10) | (compact ? JSON_COMPACT : 0);
    int failed = (prefix && fputs(prefix, out) == EOF) || json_dumpf(value, out, flags) != 0 || fputc('\n', out) == EOF;
    json_decref(value);
    if (failed) fprintf(stderr, "meshllama: cannot write the JSON output\n");
    return failed ? -1 : 0;
}
