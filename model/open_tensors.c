/* ml_model_open_tensors: a model from caller-owned tensors, the non-file producer of a
 * checkpoint (formats/weight_set.h describes the seam). The config is config.json text; each
 * tensor becomes a zero-copy view in a borrowed weight set (file_index ML_WEIGHT_SET_NO_FILE)
 * after the checks a safetensors header gets (a known dtype, a shape whose size matches the
 * bytes, distinct names), and from there the model opens exactly as from a file (model.c:
 * validation against the config, shard plan, device slices). It maps no file, so the
 * changed-file checks have nothing to watch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/hf_config.h"
#include "model/model_internal.h"

typedef struct {
    const char *config_json;
    size_t config_length;
    const ml_tensor *tensors;
    int n_tensors;
} tensor_source;

static const char *dtype_names[] = {"ML_TENSOR_F32", "ML_TENSOR_F16", "ML_TENSOR_BF16"};

static int check_tensor(const char *source, int index, const ml_tensor *t, ml_dtype *out_dtype) {
    if (!t->name || !t->name[0]) return ml_set_error(ML_ERR_ARG, "%s: tensors[%d] has no name", source, index);
    switch (t->dtype) {
    case ML_TENSOR_F32: *out_dtype = ML_DTYPE_F32; break;
    case ML_TENSOR_F16: *out_dtype = ML_DTYPE_F16; break;
    case ML_TENSOR_BF16: *out_dtype = ML_DTYPE_BF16; break;
    default:
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has dtype code %d; expected %s (0), %s (1) or %s (2)",
                            source, t->name, t->dtype, dtype_names[0], dtype_names[1], dtype_names[2]);
    }
    if (t->n_dims < 1 || t->n_dims > ML_MAX_DIMS || !t->shape)
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has %d dimensions%s; expected 1..%d", source, t->name,
                            t->n_dims, t->shape ? "" : " and no shape", ML_MAX_DIMS);
    size_t element = ml_dtype_size(*out_dtype), elements = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] < 0 || (t->shape[d] > 0 && elements > SIZE_MAX / element / (size_t)t->shape[d]))
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s: dimension %d is %lld", source, t->name, d,
                                (long long)t->shape[d]);
        elements *= (size_t)t->shape[d];
    }
    if (t->n_bytes != elements * element)
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s: %zu bytes given; its shape and dtype hold %zu", source,
                            t->name, t->n_bytes, elements * element);
    if (t->n_bytes > 0 && !t->data)
        return ml_set_error(ML_ERR_ARG, "%s: tensor %s: data is NULL", source, t->name);
    if ((uintptr_t)t->data % element != 0)
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s: data %p is not aligned to its %zu-byte elements", source,
                            t->name, t->data, element);
    return ML_OK;
}

static int produce_from_tensors(const ml_model_source *src, ml_checkpoint *ck) {
    const tensor_source *ts = src->context;
    memset(ck, 0, sizeof *ck);
    ck->path = strdup(src->path);
    if (!ck->path) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", src->path);
    ML_TRY(ml_config_parse(ts->config_json, ts->config_length, src->path, &ck->config));
    ml_weight_set *ws = &ck->weights;
    ws->borrowed = 1;
    ws->tensors = calloc((size_t)ts->n_tensors, sizeof *ws->tensors);
    if (!ws->tensors) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", src->path);
    for (int i = 0; i < ts->n_tensors; i++) {
        const ml_tensor *t = &ts->tensors[i];
        ml_tensor_view *v = &ws->tensors[i];
        ML_TRY(check_tensor(src->path, i, t, &v->dtype));
        v->name = strdup(t->name);
        if (!v->name) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", src->path);
        ws->n_tensors = i + 1;
        v->n_dims = t->n_dims;
        memcpy(v->shape, t->shape, (size_t)t->n_dims * sizeof *t->shape);
        v->data = t->n_bytes ? t->data : NULL;
        v->n_bytes = t->n_bytes;
        v->file_index = ML_WEIGHT_SET_NO_FILE;
    }
    ml_weight_set_sort(ws);
    for (int i = 1; i < ws->n_tensors; i++)
        if (strcmp(ws->tensors[i - 1].name, ws->tensors[i].name) == 0)
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s is given twice", src->path, ws->tensors[i].name);
    return ML_OK;
}

int ml_model_open_tensors(const char *config_json, size_t config_length, const ml_tensor *tensors, int n_tensors,
                          const char *source, const ml_model_params *params, ml_model **out_model) {
    if (!out_model) return ml_set_error(ML_ERR_ARG, "ml_model_open_tensors: out_model is NULL");
    *out_model = NULL;
    if (!source) source = "caller tensors";
    if (!config_json) return ml_set_error(ML_ERR_ARG, "%s: config_json is NULL", source);
    if (n_tensors < 1 || !tensors)
        return ml_set_error(ML_ERR_ARG, "%s: %d tensors given%s; expected the checkpoint's tensors", source,
                            n_tensors, tensors ? "" : " (tensors is NULL)");
    tensor_source ts = {config_json, config_length, tensors, n_tensors};
    ml_model_source src = {source, produce_from_tensors, &ts};
    return ml_model_open_source(&src, params, out_model);
}
