/* Shared between safetensors.c (single files) and safetensors_index.c (sharded directories). */
#ifndef ML_FORMATS_SAFETENSORS_INTERNAL_H
#define ML_FORMATS_SAFETENSORS_INTERNAL_H

#include "formats/safetensors.h"

/* Sorts st->tensors by name, as ml_safetensors_find expects. */
void ml_safetensors_sort(ml_safetensors *st);

#endif
