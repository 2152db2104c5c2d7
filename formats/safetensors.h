/* safetensors: single files and sharded checkpoints (model.safetensors.index.json), memory-mapped.
 * A producer of weight sets (formats/weight_set.h): every view points into a mapping, never a copy. */
#ifndef ML_FORMATS_SAFETENSORS_H
#define ML_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "formats/weight_set.h"

/* Parses one safetensors image held in memory (header and data bounds checked). Appends views
 * to *tensors and *n_tensors (realloc'd), tagging them with file_index. source names the file. */
int ml_safetensors_parse(const uint8_t *data, size_t size, const char *source, int file_index,
                         ml_tensor_view **tensors, int *n_tensors);
/* Opens one .safetensors file. */
int ml_safetensors_open_file(const char *path, ml_weight_set *out);
/* Opens a checkpoint directory: model.safetensors.index.json if present, else model.safetensors.
 * Every tensor in the index must be found in the shard it names; duplicate names are an error. */
int ml_safetensors_open_dir(const char *dir, ml_weight_set *out);

#endif
