/* Golden-file reader and writer (formats/golden.h). */
#include "formats/golden.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mapped_file.h"

void ml_golden_reader_init(ml_golden_reader *r, const uint8_t *data, size_t size, const char *source) {
    r->data = data;
    r->size = size;
    r->at = 0;
    r->source = source;
}

static int check_left(const ml_golden_reader *r, size_t bytes, const char *what) {
    if (bytes > r->size - r->at)
        return ml_set_error(ML_ERR_FORMAT, "%s: truncated %s: need %zu bytes at offset %zu, the file has %zu",
                            r->source, what, bytes, r->at, r->size);
    return ML_OK;
}

int ml_golden_read_magic(ml_golden_reader *r, const char *magic, const char *format) {
    if (r->size - r->at < ML_GOLDEN_MAGIC_BYTES || memcmp(r->data + r->at, magic, ML_GOLDEN_MAGIC_BYTES) != 0)
        return ml_set_error(ML_ERR_FORMAT, "%s: not a %s (magic is not %s)", r->source, format, magic);
    r->at += ML_GOLDEN_MAGIC_BYTES;
    return ML_OK;
}

int ml_golden_read(ml_golden_reader *r, void *dst, size_t bytes, const char *what) {
    ML_TRY(check_left(r, bytes, what));
    if (bytes) memcpy(dst, r->data + r->at, bytes);
    r->at += bytes;
    return ML_OK;
}

int ml_golden_read_array(ml_golden_reader *r, void **dst, size_t count, size_t element, const char *what) {
    *dst = NULL;
    size_t bytes = count * element;
    if (element != 0 && bytes / element != count)
        return ml_set_error(ML_ERR_FORMAT, "%s: %s: %zu elements of %zu bytes overflow", r->source, what, count,
                            element);
    ML_TRY(check_left(r, bytes, what));
    *dst = malloc(bytes ? bytes : 1);
    if (!*dst) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %s", r->source, what);
    return ml_golden_read(r, *dst, bytes, what);
}

int ml_golden_read_string(ml_golden_reader *r, char **dst, size_t length, const char *what) {
    *dst = NULL;
    ML_TRY(check_left(r, length, what));
    *dst = malloc(length + 1);
    if (!*dst) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %s", r->source, what);
    (*dst)[length] = '\0';
    return ml_golden_read(r, *dst, length, what);
}

int ml_golden_expect_end(const ml_golden_reader *r, const char *what) {
    if (r->at != r->size)
        return ml_set_error(ML_ERR_FORMAT, "%s: %zu unexpected bytes after %s", r->source, r->size - r->at, what);
    return ML_OK;
}

int ml_golden_parse(const ml_golden_format *format, const uint8_t *data, size_t size, const char *source, void *out) {
    memset(out, 0, format->out_size);
    ml_golden_reader r;
    ml_golden_reader_init(&r, data, size, source);
    int status = format->parse(&r, out);
    if (status != ML_OK) format->free_out(out);
    return status;
}

int ml_golden_load(const ml_golden_format *format, const char *path, void *out) {
    memset(out, 0, format->out_size);
    ml_mapped_file file;
    ML_TRY(ml_mapped_file_open(path, &file));
    int status = ml_golden_parse(format, file.data, file.size, path, out);
    ml_mapped_file_close(&file);
    return status;
}

int ml_golden_writer_open(ml_golden_writer *w, const char *path, const char *magic) {
    w->path = path;
    w->failed = 0;
    w->file = fopen(path, "wb");
    if (!w->file) return ml_set_error(ML_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    ml_golden_write(w, magic, ML_GOLDEN_MAGIC_BYTES);
    return ML_OK;
}

void ml_golden_write(ml_golden_writer *w, const void *data, size_t bytes) {
    if (!w->failed && bytes && fwrite(data, 1, bytes, w->file) != bytes) w->failed = 1;
}

int ml_golden_writer_close(ml_golden_writer *w) {
    if (!w->file) return ML_OK;
    int failed = fclose(w->file) != 0 || w->failed;
    w->file = NULL;
    if (failed) return ml_set_error(ML_ERR_IO, "%s: cannot write", w->path);
    return ML_OK;
}
