/* The weight set's own operations: sorting, lookup and closing (formats/weight_set.h); the
 * producers (safetensors.c, safetensors_index.c, gguf_llama.c) fill it. */
#include "formats/weight_set.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

static int compare_views_by_name(const void *a, const void *b) {
    return strcmp(((const ml_tensor_view *)a)->name, ((const ml_tensor_view *)b)->name);
}

void ml_weight_set_sort(ml_weight_set *ws) {
    if (ws->n_tensors > 1) qsort(ws->tensors, (size_t)ws->n_tensors, sizeof *ws->tensors, compare_views_by_name);
}

const ml_tensor_view *ml_weight_set_find(const ml_weight_set *ws, const char *name) {
    if (!ws || !name || ws->n_tensors <= 0) return NULL;
    size_t lo = 0, hi = (size_t)ws->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int order = strcmp(ws->tensors[mid].name, name);
        if (order == 0) return &ws->tensors[mid];
        if (order < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const char *ml_weight_set_source(const ml_weight_set *ws, const ml_tensor_view *view) {
    if (view->file_index < 0 || view->file_index >= ws->n_files) return "caller memory";
    return ws->files[view->file_index].path;
}

int ml_weight_set_rows(const ml_weight_set *ws, const ml_tensor_view *view, int64_t row_begin, int64_t row_end,
                       void *dst) {
    if (view->n_dims != 2 || row_begin < 0 || row_end < row_begin || row_end > view->shape[0])
        return ml_set_error(ML_ERR_INTERNAL, "%s: tensor %s: rows %lld..%lld of a %d-D view", ml_weight_set_source(ws, view),
                            view->name, (long long)row_begin, (long long)row_end, view->n_dims);
    size_t row_bytes = ml_dtype_row_bytes(view->dtype, (size_t)view->shape[1]);
    if (view->data) {
        memcpy(dst, (const uint8_t *)view->data + (size_t)row_begin * row_bytes, (size_t)(row_end - row_begin) * row_bytes);
        return ML_OK;
    }
    if (!view->make_rows)
        return ml_set_error(ML_ERR_INTERNAL, "%s: tensor %s has no bytes", ml_weight_set_source(ws, view), view->name);
    int status = view->make_rows(view, row_begin, row_end, dst);
    if (status != ML_OK) return ml_wrap_error(status, "%s: tensor %s", ml_weight_set_source(ws, view), view->name);
    return ML_OK;
}

void ml_weight_set_close(ml_weight_set *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->n_tensors; i++) free(ws->tensors[i].name);
    free(ws->tensors);
    for (int i = 0; i < ws->n_files; i++) ml_mapped_file_close(&ws->files[i]);
    free(ws->files);
    for (int i = 0; i < ws->n_owned; i++) ml_free(ws->owned[i]);
    free(ws->owned);
    memset(ws, 0, sizeof *ws);
}
