/* A weight set: a checkpoint's tensors by Hugging Face name, each a view (name, dtype, shape,
 * bytes) of memory the set either maps, owns, or borrows. Producers fill it and sort it; the
 * model reads it through ml_weight_set_find.
 *
 * Producers today:
 *   formats/safetensors.c, safetensors_index.c: a .safetensors file or a checkpoint directory;
 *     every view points into a mapped file (files[file_index]); nothing is copied.
 *   formats/gguf_llama.c: a GGUF file; views point into the file's mapping where the bytes can
 *     be used as they are. Where they must be changed (Q/K rows un-permuted, types converted),
 *     a view either points into an owned buffer (owned[]) holding the changed copy, or, in the
 *     checkpoint's own weight set, is a made-on-demand view (below).
 *
 * A made-on-demand view has data NULL and make_rows set: its bytes (n_bytes of them for the
 * whole tensor) exist only as ml_weight_set_rows makes them, rows [row_begin, row_end) at a
 * time, into the caller's memory. The model makes only the rows its process's devices use, so
 * an MPI rank never holds (even briefly) another rank's share of such a matrix
 * (model/weights.c). Only 2-D views are made on demand.
 *
 * The seam for a producer that is not a file (caller-owned tensors: name, dtype, shape,
 * pointer, e.g. torch tensors handed over by the Python package): it leaves files and owned
 * empty, sets every view's file_index to ML_WEIGHT_SET_NO_FILE and data to the caller's
 * memory (zero-copy; the caller keeps that memory alive and unchanged until
 * ml_weight_set_close), strdup's each name, then calls ml_weight_set_sort. A producer that must
 * copy or convert a tensor adds the buffer to owned[] (freed by ml_weight_set_close, with
 * ml_free). Nothing downstream depends on where a view's bytes live. */
#ifndef ML_FORMATS_WEIGHT_SET_H
#define ML_FORMATS_WEIGHT_SET_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/mapped_file.h"

#define ML_MAX_DIMS 8
/* file_index of a view whose bytes are in no file of the set (owned or caller memory). */
#define ML_WEIGHT_SET_NO_FILE (-1)

typedef struct ml_tensor_view ml_tensor_view;

/* Makes rows [row_begin, row_end) of a made-on-demand view into dst (row-major, rows of
 * ml_dtype_row_bytes(view->dtype, shape[1]) bytes), from the producer's source fields. */
typedef int (*ml_make_rows_fn)(const ml_tensor_view *view, int64_t row_begin, int64_t row_end, void *dst);

struct ml_tensor_view {
    char *name;                  /* owned (strdup) */
    ml_dtype dtype;
    int n_dims;
    int64_t shape[ML_MAX_DIMS];
    const void *data;            /* into a mapping, an owned buffer or caller memory; NULL when n_bytes == 0 */
    size_t n_bytes;
    int file_index;              /* which files[] entry names its source, or ML_WEIGHT_SET_NO_FILE */
    /* made on demand (data NULL) when set; the source fields are the producer's own description
     * of what the rows are made from (GGUF: the stored bytes, their ggml type, and the head size
     * whose rows are stored interleaved, 0 for rows in order) */
    ml_make_rows_fn make_rows;
    const void *source;
    size_t source_bytes;         /* the stored bytes' extent from source (e.g. a file's pages to drop
                                  * once every row needed was made) */
    uint32_t source_type;
    int source_head_dim;
};

typedef struct {
    ml_mapped_file *files;       /* [n_files] mapped (or, for an image parsed from memory, path-only) */
    int n_files;
    ml_tensor_view *tensors;     /* [n_tensors], sorted by name once the producer is done */
    int n_tensors;
    void **owned;                /* [n_owned] buffers (ml_alloc) some views point into; freed by close */
    int n_owned;
    int borrowed;                /* non-zero: views point into caller memory (ml_model_open_tensors),
                                    which the model only reads: never released or advised */
} ml_weight_set;

/* Sorts ws->tensors by name, as ml_weight_set_find expects; every producer calls it last. */
void ml_weight_set_sort(ml_weight_set *ws);
/* Binary search by name; NULL if absent. */
const ml_tensor_view *ml_weight_set_find(const ml_weight_set *ws, const char *name);
/* Where a view's bytes come from, for messages: the file's path, or "caller memory". */
const char *ml_weight_set_source(const ml_weight_set *ws, const ml_tensor_view *view);
/* Rows [row_begin, row_end) of a 2-D view (0 <= row_begin <= row_end <= shape[0]) into dst:
 * copied from its bytes, or made (a made-on-demand view). Errors name the view's source. */
int ml_weight_set_rows(const ml_weight_set *ws, const ml_tensor_view *view, int64_t row_begin, int64_t row_end,
                       void *dst);
/* Frees names, views, mappings and owned buffers (never caller memory); zeroes *ws. NULL is harmless. */
void ml_weight_set_close(ml_weight_set *ws);

#endif
