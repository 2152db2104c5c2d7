/* Under MPI rank 0 serves and every rank steps the batch: before each step rank 0 broadcasts the
 * slots it cancelled and the requests it admitted (prompt ids and sampling parameters), and
 * every other rank applies them to its own ml_generator in the same order, so all generators
 * hold the same sequences in the same slots; the step's sampled tokens are broadcast by
 * ml_generator_step itself. */
#ifndef ML_SERVER_SYNC_H
#define ML_SERVER_SYNC_H

#include "meshllama.h"
#include "scheduler.h"

typedef enum { ML_SYNC_STEP = 1, ML_SYNC_STOP = 2 } ml_sync_kind;

/* Rank 0: sends one step's changes (or the stop) to the other ranks. */
int ml_sync_ranks(ml_model *model, ml_sync_kind kind, const int *cancelled, int n_cancelled, ml_job *const *admitted,
                  int n_admitted);
/* Ranks other than 0: receives and applies changes and steps until rank 0 stops. */
int ml_sync_follow(ml_model *model, const ml_tokenizer *tok, int prefill_chunk);

#endif
