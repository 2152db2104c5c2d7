/* MLHIDDN1 hidden-state dumps (formats/hidden_dump.h) on the golden-file reader and writer. */
#include "formats/hidden_dump.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/golden.h"

/* Bounds on the header, far above any real model, so that a damaged count fails cleanly. */
#define MAX_TOKENS (1u << 24)
#define MAX_ENTRIES (1u << 20)
#define MAX_WIDTH (1u << 24)

int ml_hidden_dump_write(const char *path, const int32_t *prompt, int n_tokens, int hidden_size,
                         const ml_hidden_entry *entries, int n_entries) {
    if (!path || n_tokens < 1 || hidden_size < 1 || n_entries < 0 || !prompt || (n_entries && !entries))
        return ml_set_error(ML_ERR_ARG, "ml_hidden_dump_write: %s: bad arguments (n_tokens %d, hidden %d, "
                            "entries %d)", path ? path : "(null)", n_tokens, hidden_size, n_entries);
    uint32_t header[4] = {2, (uint32_t)n_entries, (uint32_t)n_tokens, (uint32_t)hidden_size};
    ml_golden_writer w;
    ML_TRY(ml_golden_writer_open(&w, path, ML_HIDDEN_DUMP_MAGIC));
    ml_golden_write(&w, header, sizeof header);
    ml_golden_write(&w, prompt, (size_t)n_tokens * sizeof *prompt);
    for (int i = 0; i < n_entries; i++) {
        const ml_hidden_entry *e = &entries[i];
        uint32_t name_bytes = (uint32_t)strnlen(e->name, sizeof e->name);
        int32_t shape[2] = {e->layer, e->width};
        ml_golden_write(&w, &name_bytes, sizeof name_bytes);
        ml_golden_write(&w, e->name, name_bytes);
        ml_golden_write(&w, shape, sizeof shape);
        ml_golden_write(&w, e->data, (size_t)n_tokens * (size_t)e->width * sizeof(float));
    }
    return ml_golden_writer_close(&w);
}

/* Version 1 has no names: entry 0 is the embeddings, the last the final norm, entry i the
 * residual stream after layer i - 1. */
static void name_v1(ml_hidden_entry *e, int i, int n_entries) {
    int last = i == n_entries - 1 && i > 0;
    snprintf(e->name, sizeof e->name, "%s", i == 0 ? "embed" : last ? "final_norm" : "layer_out");
    e->layer = i == 0 || last ? -1 : i - 1;
}

static int read_entry(ml_golden_reader *in, ml_hidden_dump *d, int i) {
    ml_hidden_entry *e = &d->entries[i];
    uint32_t width = (uint32_t)d->hidden_size;
    if (d->version == 1) {
        name_v1(e, i, d->n_entries);
    } else {
        uint32_t name_bytes;
        int32_t shape[2];
        ML_TRY(ml_golden_read(in, &name_bytes, sizeof name_bytes, "an entry's name length"));
        if (name_bytes == 0 || name_bytes >= sizeof e->name)
            return ml_set_error(ML_ERR_FORMAT, "%s: entry %d: name of %u bytes; expected 1..%zu", in->source, i,
                                name_bytes, sizeof e->name - 1);
        ML_TRY(ml_golden_read(in, e->name, name_bytes, "an entry's name"));
        ML_TRY(ml_golden_read(in, shape, sizeof shape, "an entry's layer and width"));
        e->layer = shape[0];
        width = (uint32_t)shape[1];
        if (e->layer < -1 || width == 0 || width > MAX_WIDTH)
            return ml_set_error(ML_ERR_FORMAT, "%s: entry %d (%s): layer %d, width %u out of range", in->source, i,
                                e->name, e->layer, width);
    }
    e->width = (int)width;
    char what[96];
    snprintf(what, sizeof what, "the values of entry %d (%s)", i, e->name);
    return ml_golden_read_array(in, (void **)&e->data, (size_t)d->n_tokens * width, sizeof(float), what);
}

static int parse(ml_golden_reader *in, ml_hidden_dump *d) {
    uint32_t h[4]; /* version, entries, tokens, hidden size */
    ML_TRY(ml_golden_read_magic(in, ML_HIDDEN_DUMP_MAGIC, "meshllama hidden-state dump"));
    ML_TRY(ml_golden_read(in, h, sizeof h, "the header"));
    if (h[0] != 1 && h[0] != 2)
        return ml_set_error(ML_ERR_FORMAT, "%s: version %u; expected 1 or 2", in->source, h[0]);
    if (h[1] > MAX_ENTRIES || h[2] == 0 || h[2] > MAX_TOKENS || h[3] == 0 || h[3] > MAX_WIDTH)
        return ml_set_error(ML_ERR_FORMAT, "%s: header out of range (entries %u, tokens %u, hidden size %u)",
                            in->source, h[1], h[2], h[3]);
    d->version = (int)h[0];
    d->n_tokens = (int)h[2];
    d->hidden_size = (int)h[3];
    ML_TRY(ml_golden_read_array(in, (void **)&d->prompt, (size_t)d->n_tokens, sizeof(int32_t), "the prompt"));
    d->entries = calloc(h[1] ? h[1] : 1, sizeof *d->entries);
    if (!d->entries) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %u entries", in->source, h[1]);
    d->n_entries = (int)h[1];
    for (int i = 0; i < d->n_entries; i++) ML_TRY(read_entry(in, d, i));
    return ml_golden_expect_end(in, "the last entry");
}

static int parse_any(ml_golden_reader *in, void *out) { return parse(in, out); }
static void free_any(void *out) { ml_hidden_dump_free(out); }
static const ml_golden_format format = {sizeof(ml_hidden_dump), parse_any, free_any};

int ml_hidden_dump_parse(const uint8_t *data, size_t size, const char *source, ml_hidden_dump *out) {
    return ml_golden_parse(&format, data, size, source, out);
}

int ml_hidden_dump_load(const char *path, ml_hidden_dump *out) { return ml_golden_load(&format, path, out); }

void ml_hidden_dump_free(ml_hidden_dump *dump) {
    if (!dump) return;
    for (int i = 0; dump->entries && i < dump->n_entries; i++) free(dump->entries[i].data);
    free(dump->entries);
    free(dump->prompt);
    memset(dump, 0, sizeof *dump);
}

const ml_hidden_entry *ml_hidden_dump_find(const ml_hidden_dump *dump, const char *name, int layer) {
    for (int i = 0; i < dump->n_entries; i++)
        if (dump->entries[i].layer == layer && strcmp(dump->entries[i].name, name) == 0) return &dump->entries[i];
    return NULL;
}
