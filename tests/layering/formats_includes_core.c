/* Must compile with formats/' include tree: the control for formats_includes_model.c (the same
 * flags, an allowed header). */
#include "core/error.h"
#include "formats/weight_set.h"

int layering_probe(void) { return ml_weight_set_find(NULL, "x") == NULL ? ML_OK : ML_ERR_INTERNAL; }
