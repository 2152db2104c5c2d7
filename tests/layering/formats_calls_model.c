/* Compiles (it declares the model function itself instead of including model/), but must NOT
 * link into formats/' link check (cmake/layers.cmake): the ctest
 * layering_wrong_call_fails_to_link expects the link to fail on the undefined model symbol. */
#include <stddef.h>

#include "meshllama.h"

int ml_model_broadcast(ml_model *model, void *buf, size_t bytes);

int layering_probe(ml_model *model) { return ml_model_broadcast(model, NULL, 0); }
