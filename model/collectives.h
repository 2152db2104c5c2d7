/* What runtime/ uses of the model beyond the public header: its mesh's collectives, so that
 * rank 0's sampling decisions reach every rank and the ranks agree on their inputs
 * (runtime/generate.c, runtime/eval.c). */
#ifndef ML_MODEL_COLLECTIVES_H
#define ML_MODEL_COLLECTIVES_H

#include <stddef.h>

#include "meshllama.h"
#include "mesh/mesh.h"

/* Copies bytes of buf from rank 0 to every rank of the model's mesh (a no-op in one process). */
int ml_model_broadcast(ml_model *model, void *buf, size_t bytes);
/* The number of ranks (processes) of the model's mesh: 1 without MPI. */
int ml_model_n_ranks(const ml_model *model);
/* ml_mesh_agree_fingerprint over the model's mesh: ML_OK when every rank passed the same items. */
int ml_model_agree_fingerprint(ml_model *model, const ml_mesh_fingerprint *items, int n_items);

#endif
