/* Encode throughput of the meshllama tokenizer on one text file, single-threaded: the whole
 * file is one ml_tokenize call (no special tokens parsed, none added), repeated; prints one JSON
 * line with the best time. bench/tokenizer_bench.py builds and runs this beside HF tokenizers
 * and tiktoken.
 *
 * usage: tokenizer_bench TOKENIZER_PATH TEXT_FILE [REPEATS] [IDS_OUT] [lines]
 *   IDS_OUT: write the ids (one per line) so the script can check them against the others.
 *   lines:   one ml_tokenize call per line (each with its '\n') instead of one for the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meshllama.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_PATH TEXT_FILE [REPEATS] [IDS_OUT]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(size + 1);
    if (!text || fread(text, 1, size, f) != size) {
        fprintf(stderr, "%s: read failed\n", argv[2]);
        return 1;
    }
    fclose(f);
    double t0 = now_s();
    ml_tokenizer *tok;
    if (ml_tokenizer_open(argv[1], &tok) != ML_OK) {
        fprintf(stderr, "%s\n", ml_last_error());
        return 1;
    }
    double load_s = now_s() - t0;
    int by_line = argc > 5 && strcmp(argv[5], "lines") == 0;
    double best = 1e30;
    int32_t *ids = NULL;
    size_t n = 0, capacity = 0;
    for (int r = 0; r < repeats; r++) {
        n = 0;
        t0 = now_s();
        size_t start = 0;
        while (start < size) {
            size_t end = size;
            if (by_line) {
                const char *newline = memchr(text + start, '\n', size - start);
                if (newline) end = (size_t)(newline - text) + 1;
            }
            int32_t *line_ids;
            size_t line_n;
            if (ml_tokenize(tok, text + start, end - start, 0, &line_ids, &line_n) != ML_OK) {
                fprintf(stderr, "%s\n", ml_last_error());
                return 1;
            }
            if (n + line_n > capacity) {
                capacity = (n + line_n) * 2;
                ids = realloc(ids, capacity * sizeof *ids);
                if (!ids) return 1;
            }
            memcpy(ids + n, line_ids, line_n * sizeof *ids);
            n += line_n;
            free(line_ids);
            start = end;
        }
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    if (argc > 4) {
        FILE *out = fopen(argv[4], "w");
        for (size_t i = 0; out && i < n; i++) fprintf(out, "%d\n", (int)ids[i]);
        if (out) fclose(out);
    }
    printf("{\"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f, \"load_seconds\": %.3f}\n", size,
           n, best, size / 1e6 / best, load_s);
    free(ids);
    free(text);
    ml_tokenizer_close(tok);
    return 0;
}
