/* Read-only memory-mapped files. */
#ifndef ML_CORE_MAPPED_FILE_H
#define ML_CORE_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *path;            /* owned copy, for error messages */
    const uint8_t *data;   /* [size] */
    size_t size;
} ml_mapped_file;

/* Maps path read-only. An empty file maps to data == NULL, size 0. */
int ml_mapped_file_open(const char *path, ml_mapped_file *out);
void ml_mapped_file_close(ml_mapped_file *file);

/* Reads a whole (small) text file into a NUL-terminated malloc'd buffer. */
int ml_read_text_file(const char *path, char **out_text, size_t *out_size);
int ml_file_exists(const char *path);
int ml_is_directory(const char *path);

#endif
