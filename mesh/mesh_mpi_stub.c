/* Builds without MPI: the mpi backend reports that it is missing. */
#ifndef MESHLLAMA_HAVE_MPI
#include "core/error.h"
#include "mesh/mesh.h"

int ml_mesh_open_mpi(ml_mesh **out_mesh) {
    *out_mesh = NULL;
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "the mpi mesh backend is not in this build: install Open MPI (libopenmpi-dev) and rebuild");
}

void ml_mesh_shutdown(void) {}

void ml_mesh_abort_job(int exit_code) { (void)exit_code; }
#endif
