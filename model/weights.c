/* Loading a checkpoint onto the mesh: every tensor is checked against the config, then each
 * device gets zero-copy pointers to its column-parallel rows and a packed copy of its
 * row-parallel columns (DESIGN.md "Parallelism", "Memory"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/numeric.h"
#include "model/model_internal.h"

static int is_matmul_dtype(ml_dtype dtype) {
    return dtype == ML_DTYPE_F32 || dtype == ML_DTYPE_F16 || dtype == ML_DTYPE_BF16;
}

/* Finds a 2-D (or 1-D when cols == 0) float tensor of the expected shape. */
static int find_tensor(const ml_model *model, const char *name, int64_t rows, int64_t cols,
                       const ml_tensor_view **out) {
    const ml_tensor_view *t = ml_safetensors_find(&model->weights, name);
    if (!t) return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s is missing", model->path, name);
    const char *where = model->weights.files[t->file_index].path;
    if (!is_matmul_dtype(t->dtype))
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has dtype %s; expected f32, f16 or bf16", where, name,
                            ml_dtype_name(t->dtype));
    int expected_dims = cols > 0 ? 2 : 1;
    int shape_ok = t->n_dims == expected_dims && t->shape[0] == rows && (cols == 0 || t->shape[1] == cols);
    if (!shape_ok) {
        char found[96] = "";
        size_t used = 0;
        for (int d = 0; d < t->n_dims && used < sizeof found - 24; d++)
            used += (size_t)snprintf(found + used, sizeof found - used, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (cols > 0)
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has shape [%s]; config.json implies [%lld, %lld]", where,
                                name, found, (long long)rows, (long long)cols);
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has shape [%s]; config.json implies [%lld]", where, name,
                            found, (long long)rows);
    }
    *out = t;
    return ML_OK;
}

static ml_weight rows_of(const ml_tensor_view *t, int64_t row_begin, int64_t n_cols) {
    size_t offset = (size_t)row_begin * (size_t)n_cols * ml_dtype_size(t->dtype);
    ml_weight w = {(const uint8_t *)t->data + offset, t->dtype};
    return w;
}

/* Copies columns [col_begin, col_begin + n_cols_local) of t [rows, n_cols] into dst, row-major. */
static ml_weight pack_columns(const ml_tensor_view *t, int64_t rows, int64_t n_cols, int64_t col_begin,
                              int64_t n_cols_local, uint8_t *dst) {
    size_t element = ml_dtype_size(t->dtype);
    const uint8_t *src = t->data;
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * n_cols_local * element, src + ((size_t)r * n_cols + col_begin) * element,
               (size_t)n_cols_local * element);
    ml_weight w = {dst, t->dtype};
    return w;
}

/* After packing, the source of a row-parallel slice is never read again: drop its pages so a
 * process (an MPI rank above all) keeps only ~1/tp of o_proj/down_proj resident. */
static void release_pages(const ml_tensor_view *t) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)t->data + t->n_bytes) & ~(page - 1);
    if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

static int load_norm(ml_model *model, const char *name, float *dst) {
    const ml_tensor_view *t;
    ML_TRY(find_tensor(model, name, model->config.hidden_size, 0, &t));
    const uint8_t *src = t->data;
    for (int i = 0; i < model->config.hidden_size; i++) {
        switch (t->dtype) {
        case ML_DTYPE_F32: memcpy(&dst[i], src + 4 * (size_t)i, 4); break;
        case ML_DTYPE_F16: {
            uint16_t h;
            memcpy(&h, src + 2 * (size_t)i, 2);
            dst[i] = ml_f16_to_f32(h);
            break;
        }
        default: {
            uint16_t h;
            memcpy(&h, src + 2 * (size_t)i, 2);
            dst[i] = ml_bf16_to_f32(h);
            break;
        }
        }
    }
    return ML_OK;
}

static int check_same_dtype(ml_model *model, const ml_tensor_view *t) {
    if (t->dtype == model->weight_dtype) return ML_OK;
    return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has dtype %s but the other projections are %s",
                        model->weights.files[t->file_index].path, t->name, ml_dtype_name(t->dtype),
                        ml_dtype_name(model->weight_dtype));
}

typedef struct {
    const ml_tensor_view *q, *k, *v, *o, *gate, *up, *down;
} layer_tensors;

static int find_layer(ml_model *model, int layer, layer_tensors *lt) {
    const ml_config *c = &model->config;
    int64_t hidden = c->hidden_size, q_dim = (int64_t)c->n_heads * c->head_dim;
    int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim, ffn = c->intermediate_size;
    char name[160];
#define FIND(field, suffix, rows, cols)                                                                \
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);                                  \
    ML_TRY(find_tensor(model, name, rows, cols, &lt->field));                                          \
    ML_TRY(check_same_dtype(model, lt->field))
    FIND(q, "self_attn.q_proj.weight", q_dim, hidden);
    FIND(k, "self_attn.k_proj.weight", kv_dim, hidden);
    FIND(v, "self_attn.v_proj.weight", kv_dim, hidden);
    FIND(o, "self_attn.o_proj.weight", hidden, q_dim);
    FIND(gate, "mlp.gate_proj.weight", ffn, hidden);
    FIND(up, "mlp.up_proj.weight", ffn, hidden);
    FIND(down, "mlp.down_proj.weight", hidden, ffn);
#undef FIND
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    ML_TRY(load_norm(model, name, model->attn_norm + (size_t)layer * hidden));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    ML_TRY(load_norm(model, name, model->mlp_norm + (size_t)layer * hidden));
    return ML_OK;
}

static size_t packed_bytes_for(const ml_model *model, const ml_shard *s) {
    const ml_config *c = &model->config;
    size_t element = ml_dtype_size(model->weight_dtype);
    size_t per_layer = (size_t)c->hidden_size * ((size_t)s->q_head_count * c->head_dim + (size_t)s->ffn_count);
    return per_layer * element * (size_t)c->n_layers;
}

static int slice_layer(ml_model *model, ml_device *dev, const layer_tensors *lt, uint8_t **pack_cursor,
                       ml_layer_slice *slice) {
    const ml_config *c = &model->config;
    const ml_shard *s = &dev->shard;
    int64_t hidden = c->hidden_size, hd = c->head_dim;
    slice->wq = rows_of(lt->q, s->q_head_begin * hd, hidden);
    slice->wk = rows_of(lt->k, s->kv_head_begin * hd, hidden);
    slice->wv = rows_of(lt->v, s->kv_head_begin * hd, hidden);
    slice->w_gate = rows_of(lt->gate, s->ffn_begin, hidden);
    slice->w_up = rows_of(lt->up, s->ffn_begin, hidden);
    if (model->mesh->plan->tp == 1) {
        slice->wo = rows_of(lt->o, 0, 0);
        slice->w_down = rows_of(lt->down, 0, 0);
        return ML_OK;
    }
    size_t element = ml_dtype_size(model->weight_dtype);
    int64_t q_dim_local = s->q_head_count * hd;
    slice->wo = pack_columns(lt->o, hidden, (int64_t)c->n_heads * hd, s->q_head_begin * hd, q_dim_local, *pack_cursor);
    *pack_cursor += (size_t)hidden * q_dim_local * element;
    slice->w_down = pack_columns(lt->down, hidden, c->intermediate_size, s->ffn_begin, s->ffn_count, *pack_cursor);
    *pack_cursor += (size_t)hidden * s->ffn_count * element;
    return ML_OK;
}

int ml_model_load_weights(ml_model *model) {
    const ml_config *c = &model->config;
    const ml_tensor_view *embed, *lm_head = NULL, *first;
    ML_TRY(find_tensor(model, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &embed));
    ML_TRY(find_tensor(model, "model.layers.0.self_attn.q_proj.weight", (int64_t)c->n_heads * c->head_dim,
                       c->hidden_size, &first));
    model->weight_dtype = first->dtype;
    model->embed = rows_of(embed, 0, 0);
    if (!c->tie_word_embeddings)
        ML_TRY(find_tensor(model, "lm_head.weight", c->vocab_size, c->hidden_size, &lm_head));
    else
        lm_head = embed;
    ML_TRY(load_norm(model, "model.norm.weight", model->final_norm));

    int n_local = model->mesh->n_local;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &model->devices[d];
        dev->layers = calloc((size_t)c->n_layers, sizeof *dev->layers);
        if (!dev->layers) return ml_set_error(ML_ERR_NOMEM, "device %d: out of memory", d);
        if (model->mesh->plan->tp > 1) {
            dev->packed_bytes = packed_bytes_for(model, &dev->shard);
            dev->packed = ml_alloc(dev->packed_bytes, "packed row-parallel weights");
            if (!dev->packed) return ML_ERR_NOMEM;
        }
        dev->lm_head = rows_of(lm_head, dev->shard.vocab_begin, c->hidden_size);
    }
    uint8_t **cursors = calloc(n_local > 0 ? (size_t)n_local : 1, sizeof *cursors);
    if (!cursors) return ml_set_error(ML_ERR_NOMEM, "loading weights: out of memory");
    for (int d = 0; d < n_local; d++) cursors[d] = model->devices[d].packed;
    int status = ML_OK;
    for (int layer = 0; layer < c->n_layers && status == ML_OK; layer++) {
        layer_tensors lt;
        status = find_layer(model, layer, &lt);
        for (int d = 0; d < n_local && status == ML_OK; d++)
            status = slice_layer(model, &model->devices[d], &lt, &cursors[d], &model->devices[d].layers[layer]);
        if (status == ML_OK && model->mesh->plan->tp > 1) {
            release_pages(lt.o);
            release_pages(lt.down);
        }
    }
    free(cursors);
    return status;
}

void ml_model_free_weights(ml_model *model) {
    if (!model->devices) return;
    for (int d = 0; d < model->mesh->n_local; d++) {
        free(model->devices[d].layers);
        ml_free(model->devices[d].packed);
    }
}
