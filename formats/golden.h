/* Golden files: the small versioned little-endian binaries that carry reference data between
 * Hugging Face (the scripts in tools/) and meshllama: an 8-byte magic, uint32 header fields, then int32 and
 * float32 arrays. One reader and one writer serve every format; each format is a thin layer on
 * them: MLHFREF1 (hf_reference.c), MLEVREF1 (eval_reference.c) and the MLHIDDN1 layer dump
 * (`eval --dump-layers`, hidden_dump.c: writer and reader).
 * Layouts in docs/FIXTURES.md and docs/EVAL_REFERENCE.md. */
#ifndef ML_FORMATS_GOLDEN_H
#define ML_FORMATS_GOLDEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ML_GOLDEN_MAGIC_BYTES 8

/* A read position in an image of a golden file; source names the file in every message. */
typedef struct {
    const uint8_t *data;  /* [size] */
    size_t size;
    size_t at;
    const char *source;
} ml_golden_reader;

void ml_golden_reader_init(ml_golden_reader *r, const uint8_t *data, size_t size, const char *source);
/* ML_ERR_FORMAT "not a <format> (magic is not <magic>)" unless the next 8 bytes are magic. */
int ml_golden_read_magic(ml_golden_reader *r, const char *magic, const char *format);
/* Copies the next bytes; ML_ERR_FORMAT "truncated <what>" when fewer are left. */
int ml_golden_read(ml_golden_reader *r, void *dst, size_t bytes, const char *what);
/* Copies the next count * element bytes into a new array (at least one byte, so never NULL on
 * success). The size is checked against the bytes left before anything is allocated. */
int ml_golden_read_array(ml_golden_reader *r, void **dst, size_t count, size_t element, const char *what);
/* Copies the next length bytes into a new NUL-terminated string. */
int ml_golden_read_string(ml_golden_reader *r, char **dst, size_t length, const char *what);
/* ML_ERR_FORMAT "<n> unexpected bytes after <what>" unless the image is used up. */
int ml_golden_expect_end(const ml_golden_reader *r, const char *what);

/* One golden format's reader: parse fills a zeroed *out (out_size bytes) from the reader,
 * free_out releases whatever a parse left there. */
typedef struct {
    size_t out_size;
    int (*parse)(ml_golden_reader *r, void *out);
    void (*free_out)(void *out);
} ml_golden_format;

/* Zeroes *out and parses the image into it; on failure *out is freed (and zero again). */
int ml_golden_parse(const ml_golden_format *format, const uint8_t *data, size_t size, const char *source, void *out);
/* ml_golden_parse of the file at path, memory-mapped while it is parsed (source = path). */
int ml_golden_load(const ml_golden_format *format, const char *path, void *out);

/* Writes a golden file: open with the magic, write fields and arrays, close. A failed write
 * is remembered and reported once, by close, naming the path. */
typedef struct {
    FILE *file;
    const char *path;
    int failed;
} ml_golden_writer;

int ml_golden_writer_open(ml_golden_writer *w, const char *path, const char *magic);
void ml_golden_write(ml_golden_writer *w, const void *data, size_t bytes);
int ml_golden_writer_close(ml_golden_writer *w);

#endif
