/* The MLHIDDN1 hidden-state dump (`meshllama eval --dump-layers`, layout in
 * docs/EVAL_REFERENCE.md): the prompt and, per named intermediate of its forward pass, the
 * (name, layer) it belongs to and its values for every prompt token. Written by apps/cmd_eval.c,
 * read here and by tools/compare_layers.py; a thin layer on the golden-file reader and writer
 * (formats/golden.h). Version 2 names every entry; version 1 (the residual stream only) reads
 * as entries embed, layer_out 0..n-1 and final_norm. */
#ifndef ML_FORMATS_HIDDEN_DUMP_H
#define ML_FORMATS_HIDDEN_DUMP_H

#include <stddef.h>
#include <stdint.h>

#define ML_HIDDEN_DUMP_MAGIC "MLHIDDN1"
#define ML_HIDDEN_DUMP_NAME_MAX 32 /* bytes of an entry name, its NUL included */

typedef struct {
    char name[ML_HIDDEN_DUMP_NAME_MAX]; /* "attn_norm", "q", ..., "layer_out", "embed", "final_norm" */
    int layer;                          /* 0..n_layers-1, or -1 for embed and final_norm */
    int width;                          /* values per token */
    float *data;                        /* [n_tokens, width] */
} ml_hidden_entry;

typedef struct {
    int version; /* as read: 1 or 2 (the writer writes 2) */
    int n_tokens;
    int hidden_size;
    int n_entries;
    int32_t *prompt;          /* [n_tokens] */
    ml_hidden_entry *entries; /* [n_entries], in file order */
} ml_hidden_dump;

/* Writes version 2: the prompt and the entries (each entry's data [n_tokens, width]). */
int ml_hidden_dump_write(const char *path, const int32_t *prompt, int n_tokens, int hidden_size,
                         const ml_hidden_entry *entries, int n_entries);
/* Parses an image in memory (source names it in messages). On failure nothing is left
 * allocated; free a success with ml_hidden_dump_free. */
int ml_hidden_dump_parse(const uint8_t *data, size_t size, const char *source, ml_hidden_dump *out);
int ml_hidden_dump_load(const char *path, ml_hidden_dump *out);
void ml_hidden_dump_free(ml_hidden_dump *dump);
/* The entry (name, layer), or NULL. */
const ml_hidden_entry *ml_hidden_dump_find(const ml_hidden_dump *dump, const char *name, int layer);

#endif
