/* safetensors: single files and sharded checkpoints (model.safetensors.index.json), memory-mapped.
 * Tensor data is never copied: views point into the mapping. */
#ifndef ML_FORMATS_SAFETENSORS_H
#define ML_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/mapped_file.h"

#define ML_MAX_DIMS 8

typedef struct {
    char *name;                  /* owned */
    ml_dtype dtype;
    int n_dims;
    int64_t shape[ML_MAX_DIMS];
    const void *data;            /* into the mapping; NULL when n_bytes == 0 */
    size_t n_bytes;
    int file_index;              /* which mapped file holds it */
} ml_tensor_view;

typedef struct {
    ml_mapped_file *files;       /* [n_files] */
    int n_files;
    ml_tensor_view *tensors;     /* [n_tensors], sorted by name */
    int n_tensors;
    void **owned;                /* [n_owned] buffers some views point into (GGUF); freed by close */
    int n_owned;
} ml_safetensors;

/* Parses one safetensors image held in memory (header and data bounds checked). Appends views
 * to *tensors and *n_tensors (realloc'd), tagging them with file_index. source names the file. */
int ml_safetensors_parse(const uint8_t *data, size_t size, const char *source, int file_index,
                         ml_tensor_view **tensors, int *n_tensors);
/* Opens one .safetensors file. */
int ml_safetensors_open_file(const char *path, ml_safetensors *out);
/* Opens a checkpoint directory: model.safetensors.index.json if present, else model.safetensors.
 * Every tensor in the index must be found in the shard it names; duplicate names are an error. */
int ml_safetensors_open_dir(const char *dir, ml_safetensors *out);
/* Binary search by name; NULL if absent. */
const ml_tensor_view *ml_safetensors_find(const ml_safetensors *st, const char *name);
void ml_safetensors_close(ml_safetensors *st);

#endif
