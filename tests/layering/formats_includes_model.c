/* Must NOT compile with formats/' include tree (cmake/layers.cmake): formats is layer 2 and
 * model/ is layer 6. The ctest layering_wrong_include_fails expects this build to fail. */
#include "model/model_internal.h"

int layering_probe(void) { return ML_CHUNK_TOKENS; }
