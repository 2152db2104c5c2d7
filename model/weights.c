/* Loading a checkpoint onto the mesh: every tensor is checked against the config, then each
 * device gets pointers for its column-parallel rows and a packed copy of its row-parallel columns
 * (DESIGN.md "Parallelism", "Memory"). Rows are used in place where the weight set has their
 * bytes (a file mapping: no copy); a made-on-demand view (a GGUF Q/K matrix whose rows must be
 * un-permuted, a converted type) has only this process's devices' rows made, so an MPI rank
 * holds its own share of such a matrix and nothing more, at no point of the load.
 *
 * Each matrix keeps its own dtype (f32, f16, bf16, or a GGUF block type: Q8_0 ... Q6_K); offsets
 * go through ml_dtype_row_bytes. A quantised row-parallel matrix (o_proj, down_proj at tp > 1) is
 * packed as whole blocks when every device's column range starts and ends on a block boundary
 * (32 columns, or 256 for the K-quants). When one does not (an odd tp that cuts the FFN width or a head inside a block),
 * that matrix is dequantised to float32 for all devices while it is packed: the slices then
 * hold exactly the values of the dequantised path, and the kernels need no partial blocks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/mapped_file.h"
#include "core/error.h"
#include "core/numeric.h"
#include "model/model_internal.h"

static int is_plain_float(ml_dtype dtype) {
    return dtype == ML_DTYPE_F32 || dtype == ML_DTYPE_F16 || dtype == ML_DTYPE_BF16;
}

/* Finds a 2-D matrix (any matmul dtype) or, when cols == 0, a 1-D float vector of the expected
 * shape. */
static int find_tensor(const ml_model *model, const char *name, int64_t rows, int64_t cols,
                       const ml_tensor_view **out) {
    const ml_tensor_view *t = ml_weight_set_find(&model->checkpoint.weights, name);
    if (!t) return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s is missing", model->checkpoint.path, name);
    const char *where = ml_weight_set_source(&model->checkpoint.weights, t);
    int matrix = cols > 0;
    if (!is_plain_float(t->dtype) && !(matrix && ml_dtype_is_quantized(t->dtype)))
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has dtype %s; expected f32, f16 or bf16%s", where, name,
                            ml_dtype_name(t->dtype), matrix ? " (or a GGUF block type: q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k ... q8_k)" : "");
    int expected_dims = matrix ? 2 : 1;
    int shape_ok = t->n_dims == expected_dims && t->shape[0] == rows && (!matrix || t->shape[1] == cols);
    if (!shape_ok) {
        char found[96] = "";
        size_t used = 0;
        for (int d = 0; d < t->n_dims && used < sizeof found - 24; d++)
            used += (size_t)snprintf(found + used, sizeof found - used, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (matrix)
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has shape [%s]; config.json implies [%lld, %lld]", where,
                                name, found, (long long)rows, (long long)cols);
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s has shape [%s]; config.json implies [%lld]", where, name,
                            found, (long long)rows);
    }
    if (matrix && (size_t)cols % ml_dtype_block_elements(t->dtype) != 0)
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s: %lld columns are not whole %s blocks of %zu", where, name,
                            (long long)cols, ml_dtype_name(t->dtype), ml_dtype_block_elements(t->dtype));
    *out = t;
    return ML_OK;
}

/* A matrix as this process holds it: rows from row_begin on, row_bytes apart, the first at
 * data. In place: the view's own bytes, every row (a file mapping, or a buffer the weight set
 * owns). Made: a made-on-demand view's rows of this process's devices only (formats/weight_set.h),
 * in a buffer of model->made; another device's rows are never made here, not even for a moment. */
typedef struct {
    const uint8_t *data;
    int64_t row_begin;
    size_t row_bytes;
    ml_dtype dtype;
} held_matrix;

static int remember_made(ml_model *model, void *buffer) {
    if (model->n_made == model->made_capacity) {
        int capacity = model->made_capacity ? 2 * model->made_capacity : 32;
        void **grown = realloc(model->made, (size_t)capacity * sizeof *grown);
        if (!grown) {
            ml_free(buffer);
            return ml_set_error(ML_ERR_NOMEM, "loading weights: out of memory");
        }
        model->made = grown;
        model->made_capacity = capacity;
    }
    model->made[model->n_made++] = buffer;
    return ML_OK;
}

/* The checkpoint file mapping [*lo, *hi) that holds [begin, end); 0 when none does (caller
 * memory, or an image parsed from memory). */
static int file_mapping_of(const ml_model *model, uintptr_t begin, uintptr_t end, uintptr_t *lo, uintptr_t *hi) {
    const ml_mapped_file *files;
    int n_files = ml_checkpoint_files(&model->checkpoint, &files);
    for (int i = 0; i < n_files; i++) {
        uintptr_t file_begin = (uintptr_t)files[i].data, file_end = file_begin + files[i].size;
        if (!files[i].data || begin < file_begin || end > file_end) continue;
        *lo = file_begin;
        *hi = file_end;
        return 1;
    }
    return 0;
}

void ml_model_drop_whole_pages(uintptr_t begin, uintptr_t end) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t first = (begin + page - 1) & ~(page - 1), last = end & ~(page - 1);
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
}

void ml_model_release_bytes(const ml_model *model, const void *begin, size_t bytes) {
    uintptr_t lo = (uintptr_t)begin, hi = lo + bytes, file_begin, file_end;
    if (!model->checkpoint.weights.borrowed && file_mapping_of(model, lo, hi, &file_begin, &file_end))
        ml_model_drop_whole_pages(lo, hi);
}

/* The stored bytes a made view's rows came from are not read again: drop their pages where they
 * lie in a file the checkpoint maps (a private read-only mapping: the pages are only unmapped).
 * Never caller memory, where MADV_DONTNEED would zero them. */
static void release_source(const ml_model *model, const ml_tensor_view *t) {
    uintptr_t begin = (uintptr_t)t->source, end = begin + t->source_bytes, file_begin, file_end;
    if (file_mapping_of(model, begin, end, &file_begin, &file_end)) ml_model_drop_whole_pages(begin, end);
}

/* Rows [row_begin, row_end) of matrix t as this process holds them (in place, or made). */
static int hold_rows(ml_model *model, const ml_tensor_view *t, int64_t row_begin, int64_t row_end, held_matrix *out) {
    out->dtype = t->dtype;
    out->row_bytes = ml_dtype_row_bytes(t->dtype, (size_t)t->shape[1]);
    if (t->data) {
        out->data = t->data;
        out->row_begin = 0;
        return ML_OK;
    }
    uint8_t *buffer = ml_alloc((size_t)(row_end - row_begin) * out->row_bytes, t->name);
    if (!buffer) return ML_ERR_NOMEM;
    ML_TRY(remember_made(model, buffer));
    ML_TRY(ml_weight_set_rows(&model->checkpoint.weights, t, row_begin, row_end, buffer));
    if (!model->checkpoint.weights.borrowed) release_source(model, t);
    out->data = buffer;
    out->row_begin = row_begin;
    return ML_OK;
}

static int hold_all_rows(ml_model *model, const ml_tensor_view *t, held_matrix *out) {
    return hold_rows(model, t, 0, t->shape[0], out);
}

static ml_weight row_of(const held_matrix *h, int64_t row) {
    ml_weight w = {h->data + (size_t)(row - h->row_begin) * h->row_bytes, h->dtype, 0};
    return w;
}

/* The rows of the column-parallel matrices this process's devices own, as one run each (the
 * devices of a process are consecutive, so are their rows; KV heads replicated on neighbouring
 * devices keep the union one run). */
typedef struct {
    int64_t q_begin, q_end;         /* rows of q_proj */
    int64_t kv_begin, kv_end;       /* rows of k_proj, v_proj */
    int64_t ffn_begin, ffn_end;     /* rows of gate_proj, up_proj */
    int64_t vocab_begin, vocab_end; /* rows of the LM head */
} local_rows;

static local_rows local_rows_of(const ml_model *model) {
    const ml_shard *first = &model->devices[0].shard, *last = &model->devices[model->mesh->n_local - 1].shard;
    int64_t hd = model->config.head_dim;
    local_rows rows = {
        first->q_head_begin * hd,  (last->q_head_begin + last->q_head_count) * hd,
        first->kv_head_begin * hd, (last->kv_head_begin + last->kv_head_count) * hd,
        first->ffn_begin,          last->ffn_begin + last->ffn_count,
        first->vocab_begin,        last->vocab_begin + last->vocab_count,
    };
    return rows;
}

void ml_weight_row_to_f32(const ml_cpu_kernels *k, ml_dtype dtype, const void *src, size_t n, float *dst) {
    switch (dtype) {
    case ML_DTYPE_BF16: k->bf16_to_f32(dst, src, n); break;
    case ML_DTYPE_F16: k->f16_to_f32(dst, src, n); break;
    case ML_DTYPE_Q8_0: k->q8_0_to_f32(dst, src, n); break;
    case ML_DTYPE_Q4_0: k->q4_0_to_f32(dst, src, n); break;
    case ML_DTYPE_Q4_1: k->q4_1_to_f32(dst, src, n); break;
    default:
        if (ml_dtype_is_quantized(dtype))
            k->blocks_to_f32(dtype, dst, src, n);
        else
            memcpy(dst, src, n * sizeof(float));
        break;
    }
}

/* The dtype a device holds its columns [col_begin, col_begin + n_cols_local) of a row-parallel
 * matrix in: the tensor's own, or float32 for a quantised one that the plan cuts inside a block
 * (decided over all devices of the plan, so every rank of an MPI mesh decides alike). */
static ml_dtype row_parallel_dtype(const ml_model *model, const ml_tensor_view *t, int is_down) {
    long block = (long)ml_dtype_block_elements(t->dtype);
    return ml_shard_plan_cut_device(model->mesh->plan, is_down, block) >= 0 ? ML_DTYPE_F32 : t->dtype;
}

/* Buffers of packing: one dequantised run of blocks (the float32 fallback), and one made row of
 * a made-on-demand source. */
typedef struct {
    float *scratch;    /* [widest + 2 * ML_QUANT_SUPER_BLOCK] */
    uint8_t *made_row; /* a row of up to widest float32 */
} pack_buffers;

/* Copies columns [col_begin, col_begin + n_cols_local) of t [rows, n_cols] into dst, row-major,
 * as `dtype`: t's own (whole blocks when quantised) or float32 (dequantised, block by block).
 * A made-on-demand t is made one row at a time. */
static int pack_columns(ml_model *model, const ml_tensor_view *t, ml_dtype dtype, int64_t rows, int64_t n_cols,
                        int64_t col_begin, int64_t n_cols_local, uint8_t *dst, const pack_buffers *buffers,
                        ml_weight *out) {
    size_t src_row_bytes = ml_dtype_row_bytes(t->dtype, (size_t)n_cols);
    size_t dst_row_bytes = ml_dtype_row_bytes(dtype, (size_t)n_cols_local);
    size_t block = ml_dtype_block_elements(t->dtype);
    size_t first = (size_t)col_begin / block, end = ((size_t)(col_begin + n_cols_local) + block - 1) / block;
    size_t within = (size_t)col_begin - first * block;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = (const uint8_t *)t->data + (size_t)r * src_row_bytes;
        if (!t->data) {
            ML_TRY(ml_weight_set_rows(&model->checkpoint.weights, t, r, r + 1, buffers->made_row));
            src = buffers->made_row;
        }
        if (dtype == t->dtype) {
            memcpy(dst + (size_t)r * dst_row_bytes, src + ml_dtype_row_bytes(t->dtype, (size_t)col_begin), dst_row_bytes);
        } else { /* the blocks that hold the columns, dequantised, then the columns */
            const uint8_t *blocks = src + first * ml_dtype_block_bytes(t->dtype);
            ml_weight_row_to_f32(model->kernels, t->dtype, blocks, (end - first) * block, buffers->scratch);
            memcpy(dst + (size_t)r * dst_row_bytes, buffers->scratch + within, (size_t)n_cols_local * sizeof(float));
        }
    }
    out->data = dst;
    out->dtype = dtype;
    return ML_OK;
}

/* After packing, the source of a row-parallel slice is never read again: drop its pages so a
 * process (an MPI rank above all) keeps only ~1/tp of o_proj/down_proj resident. Not for a
 * borrowed weight set (ml_model_open_tensors): that memory is the caller's, and MADV_DONTNEED
 * would zero it. */
static void release_pages(const ml_model *model, const ml_tensor_view *t) {
    if (model->checkpoint.weights.borrowed || !t->data) return;
    ml_model_drop_whole_pages((uintptr_t)t->data, (uintptr_t)t->data + t->n_bytes);
}

/* The mapping asks for 2 MiB pages (core/mapped_file.c), and a fault maps the whole page-cache
 * folio it hits (up to 2 MiB) where that folio lies within one mapping (VMA). So where a process
 * reads rows that start or end inside such a folio, the other rows beside them would come into
 * its memory too. MADV_NOHUGEPAGE on the part of the folio's 2 MiB outside the rows splits the
 * mapping exactly at the rows' edge (rounded to a page): the folio then spans two mappings, and a
 * fault inside the rows maps only pages inside them (measured: 64 KiB instead of 2 MiB; docs/BENCHMARKS.md).
 * Advice on the whole 2 MiB, rows included, would not do: the folio would still fit one mapping.
 * The part outside may belong to the neighbouring tensor: advice changes only how its pages
 * are mapped. keep_begin/keep_end: the rows' edges; [lo, hi): the file mapping. */
static void split_at_edges(uintptr_t keep_begin, uintptr_t keep_end, uintptr_t lo, uintptr_t hi) {
#ifdef MADV_NOHUGEPAGE
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), huge = ML_MAPPED_HUGE_PAGE;
    uintptr_t outside[2][2] = {
        {keep_begin & ~(huge - 1), keep_begin & ~(page - 1)},                           /* before */
        {(keep_end + page - 1) & ~(page - 1), (keep_end & ~(huge - 1)) + huge},         /* after */
    };
    for (int e = 0; e < 2; e++) {
        uintptr_t begin = outside[e][0] < lo ? lo : outside[e][0], end = outside[e][1] > hi ? hi : outside[e][1];
        begin = (begin + page - 1) & ~(page - 1);
        end &= ~(page - 1);
        if ((e == 0 ? keep_begin : keep_end) % huge != 0 && end > begin)
            madvise((void *)begin, end - begin, MADV_NOHUGEPAGE);
    }
#else
    (void)keep_begin, (void)keep_end, (void)lo, (void)hi;
#endif
}

/* A process that hosts only some devices (an MPI rank) never reads the rows of a column-parallel
 * matrix (or of the LM head) that belong to other devices: drop the whole pages of an in-place
 * matrix outside rows [row_begin, row_end) (the union of its devices' ranges; mapped file pages
 * are only unmapped), and split the mapping at the rows' edges (split_at_edges), so that a fault
 * in the first or last rows does not map up to 2 MiB of other devices' rows beside them (tens of
 * MB per rank over a 1B model's layers). A made matrix holds the process's rows only: nothing to
 * do. Not for caller memory (see release_pages). */
static void release_other_rows(const ml_model *model, const ml_tensor_view *t, int64_t row_begin, int64_t row_end) {
    if (model->checkpoint.weights.borrowed || model->mesh->n_local >= model->mesh->plan->tp || t->n_dims != 2 ||
        !t->data)
        return;
    size_t row_bytes = ml_dtype_row_bytes(t->dtype, (size_t)t->shape[1]);
    uintptr_t data = (uintptr_t)t->data, end = data + t->n_bytes, file_begin, file_end;
    if (!file_mapping_of(model, data, end, &file_begin, &file_end)) return;
    uintptr_t keep_begin = data + (size_t)row_begin * row_bytes, keep_end = data + (size_t)row_end * row_bytes;
    ml_model_drop_whole_pages(data, keep_begin);
    ml_model_drop_whole_pages(keep_end, end);
    split_at_edges(keep_begin, keep_end, file_begin, file_end);
}

/* A 1-D float tensor of n elements (a norm's weights, a bias) as float32 into dst [n]. */
static int load_vector(ml_model *model, const char *name, int n, float *dst) {
    const ml_tensor_view *t;
    ML_TRY(find_tensor(model, name, n, 0, &t));
    const uint8_t *src = t->data;
    for (int i = 0; i < n; i++) {
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

static int load_norm(ml_model *model, const char *name, float *dst) {
    return load_vector(model, name, model->config.hidden_size, dst);
}

/* The projections' biases, as nn.Linear names them: model.layers.N.<projection>.bias. */
typedef struct {
    const char *projection;
    int has;       /* the config says this projection has a bias */
    float *dst;    /* [n_layers, width] */
    int64_t width;
} bias_spec;

static int bias_specs(const ml_model *model, bias_spec specs[7]) {
    const ml_config *c = &model->config;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    const bias_spec table[7] = {
        {"self_attn.q_proj", c->qkv_bias, model->bias_q, q_dim},
        {"self_attn.k_proj", c->qkv_bias, model->bias_k, kv_dim},
        {"self_attn.v_proj", c->qkv_bias, model->bias_v, kv_dim},
        {"self_attn.o_proj", c->o_bias, model->bias_o, c->hidden_size},
        {"mlp.gate_proj", c->mlp_bias, model->bias_gate, c->intermediate_size},
        {"mlp.up_proj", c->mlp_bias, model->bias_up, c->intermediate_size},
        {"mlp.down_proj", c->mlp_bias, model->bias_down, c->hidden_size},
    };
    memcpy(specs, table, sizeof table);
    return 7;
}

/* One allocation for every bias the config announces (model->biases), the bias_* pointers into
 * it; all NULL when there are none. */
static int alloc_biases(ml_model *model) {
    const ml_config *c = &model->config;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    size_t per_layer = (size_t)((c->qkv_bias ? q_dim + 2 * kv_dim : 0) + (c->o_bias ? c->hidden_size : 0) +
                                (c->mlp_bias ? 2 * (int64_t)c->intermediate_size + c->hidden_size : 0));
    if (per_layer == 0) return ML_OK;
    model->biases = ml_alloc(per_layer * (size_t)c->n_layers * sizeof(float), "biases");
    if (!model->biases) return ML_ERR_NOMEM;
    float *cursor = model->biases;
#define TAKE(field, cond, width)                                                                       \
    if (cond) {                                                                                         \
        model->field = cursor;                                                                          \
        cursor += (size_t)(width) * (size_t)c->n_layers;                                                \
    }
    TAKE(bias_q, c->qkv_bias, q_dim)
    TAKE(bias_k, c->qkv_bias, kv_dim)
    TAKE(bias_v, c->qkv_bias, kv_dim)
    TAKE(bias_o, c->o_bias, c->hidden_size)
    TAKE(bias_gate, c->mlp_bias, c->intermediate_size)
    TAKE(bias_up, c->mlp_bias, c->intermediate_size)
    TAKE(bias_down, c->mlp_bias, c->hidden_size)
#undef TAKE
    return ML_OK;
}

/* Each bias the config announces, checked like any tensor ([width], f32/f16/bf16); a bias the
 * config does not announce is refused rather than ignored (HF would drop it with a warning, and a
 * checkpoint that has one was most likely meant to use it: say so instead of computing without). */
static int load_layer_biases(ml_model *model, int layer) {
    bias_spec specs[7];
    int n = bias_specs(model, specs);
    char name[160];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, specs[i].projection);
        if (specs[i].has) {
            ML_TRY(load_vector(model, name, (int)specs[i].width, specs[i].dst + (size_t)layer * (size_t)specs[i].width));
        } else if (ml_weight_set_find(&model->checkpoint.weights, name)) {
            const char *key = i < 4 ? "attention_bias" : "mlp_bias";
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor %s is present, but config.json gives %s no bias "
                                "(%s is false or absent for this model_type); the engine would ignore it",
                                ml_weight_set_source(&model->checkpoint.weights, ml_weight_set_find(&model->checkpoint.weights, name)),
                                name, specs[i].projection, key);
        }
    }
    return ML_OK;
}

typedef struct {
    const ml_tensor_view *q, *k, *v, *o, *gate, *up, *down;
    ml_dtype o_dtype, down_dtype; /* as the devices hold their packed columns (tp > 1) */
} layer_tensors;

/* A layer's matrices as this process holds them: the column-parallel ones' local rows, and at
 * tp 1 o/down whole (at tp > 1 they are packed from the views instead). */
typedef struct {
    held_matrix q, k, v, gate, up, o, down;
} layer_held;

static int hold_layer(ml_model *model, const layer_tensors *lt, const local_rows *rows, layer_held *held) {
    ML_TRY(hold_rows(model, lt->q, rows->q_begin, rows->q_end, &held->q));
    ML_TRY(hold_rows(model, lt->k, rows->kv_begin, rows->kv_end, &held->k));
    ML_TRY(hold_rows(model, lt->v, rows->kv_begin, rows->kv_end, &held->v));
    ML_TRY(hold_rows(model, lt->gate, rows->ffn_begin, rows->ffn_end, &held->gate));
    ML_TRY(hold_rows(model, lt->up, rows->ffn_begin, rows->ffn_end, &held->up));
    if (model->mesh->plan->tp > 1) return ML_OK;
    ML_TRY(hold_all_rows(model, lt->o, &held->o));
    return hold_all_rows(model, lt->down, &held->down);
}

static int find_layer(ml_model *model, int layer, layer_tensors *lt) {
    const ml_config *c = &model->config;
    int64_t hidden = c->hidden_size, q_dim = (int64_t)c->n_heads * c->head_dim;
    int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim, ffn = c->intermediate_size;
    char name[160];
#define FIND(field, suffix, rows, cols)                                                                \
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);                                  \
    ML_TRY(find_tensor(model, name, rows, cols, &lt->field))
    FIND(q, "self_attn.q_proj.weight", q_dim, hidden);
    FIND(k, "self_attn.k_proj.weight", kv_dim, hidden);
    FIND(v, "self_attn.v_proj.weight", kv_dim, hidden);
    FIND(o, "self_attn.o_proj.weight", hidden, q_dim);
    FIND(gate, "mlp.gate_proj.weight", ffn, hidden);
    FIND(up, "mlp.up_proj.weight", ffn, hidden);
    FIND(down, "mlp.down_proj.weight", hidden, ffn);
#undef FIND
    lt->o_dtype = model->mesh->plan->tp > 1 ? row_parallel_dtype(model, lt->o, 0) : lt->o->dtype;
    lt->down_dtype = model->mesh->plan->tp > 1 ? row_parallel_dtype(model, lt->down, 1) : lt->down->dtype;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    ML_TRY(load_norm(model, name, model->attn_norm + (size_t)layer * hidden));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    ML_TRY(load_norm(model, name, model->mlp_norm + (size_t)layer * hidden));
    return load_layer_biases(model, layer);
}

/* Bytes of a device's packed o/down columns over all layers. */
static size_t packed_bytes_for(const ml_model *model, const layer_tensors *layers, const ml_shard *s) {
    const ml_config *c = &model->config;
    size_t total = 0, q_cols = (size_t)s->q_head_count * c->head_dim;
    for (int l = 0; l < c->n_layers; l++)
        total += (size_t)c->hidden_size * (ml_dtype_row_bytes(layers[l].o_dtype, q_cols) +
                                           ml_dtype_row_bytes(layers[l].down_dtype, (size_t)s->ffn_count));
    return total;
}

static int slice_layer(ml_model *model, ml_device *dev, const layer_tensors *lt, const layer_held *held,
                       uint8_t **pack_cursor, const pack_buffers *buffers, ml_layer_slice *slice) {
    const ml_config *c = &model->config;
    const ml_shard *s = &dev->shard;
    int64_t hidden = c->hidden_size, hd = c->head_dim;
    slice->wq = row_of(&held->q, s->q_head_begin * hd);
    slice->wk = row_of(&held->k, s->kv_head_begin * hd);
    slice->wv = row_of(&held->v, s->kv_head_begin * hd);
    slice->w_gate = row_of(&held->gate, s->ffn_begin);
    slice->w_up = row_of(&held->up, s->ffn_begin);
    /* column-parallel biases go with their rows: q by the device's query heads, k/v by its KV
     * heads (a replicated KV head's bias with it), gate/up by its FFN features */
    int64_t q_dim = (int64_t)c->n_heads * hd, kv_dim = (int64_t)c->n_kv_heads * hd, layer = slice - dev->layers;
    if (model->bias_q) {
        slice->bq = model->bias_q + (size_t)(layer * q_dim + s->q_head_begin * hd);
        slice->bk = model->bias_k + (size_t)(layer * kv_dim + s->kv_head_begin * hd);
        slice->bv = model->bias_v + (size_t)(layer * kv_dim + s->kv_head_begin * hd);
    }
    if (model->bias_gate) {
        slice->b_gate = model->bias_gate + (size_t)(layer * c->intermediate_size + s->ffn_begin);
        slice->b_up = model->bias_up + (size_t)(layer * c->intermediate_size + s->ffn_begin);
    }
    if (model->mesh->plan->tp == 1) {
        slice->wo = row_of(&held->o, 0);
        slice->w_down = row_of(&held->down, 0);
        return ML_OK;
    }
    int64_t q_dim_local = s->q_head_count * hd;
    ML_TRY(pack_columns(model, lt->o, lt->o_dtype, hidden, (int64_t)c->n_heads * hd, s->q_head_begin * hd,
                        q_dim_local, *pack_cursor, buffers, &slice->wo));
    *pack_cursor += (size_t)hidden * ml_dtype_row_bytes(lt->o_dtype, (size_t)q_dim_local);
    ML_TRY(pack_columns(model, lt->down, lt->down_dtype, hidden, c->intermediate_size, s->ffn_begin, s->ffn_count,
                        *pack_cursor, buffers, &slice->w_down));
    *pack_cursor += (size_t)hidden * ml_dtype_row_bytes(lt->down_dtype, (size_t)s->ffn_count);
    return ML_OK;
}

/* What get_info reports: the projections' dtype as held in memory (NULL when they differ) and
 * the bytes one decode step reads (every projection once, KV heads counted once, the LM head). */
static void note_held_weights(ml_model *model, const layer_tensors *layers, const ml_tensor_view *lm_head) {
    const ml_config *c = &model->config;
    double bytes = (double)lm_head->n_bytes;
    ml_dtype first = layers[0].q->dtype;
    int same = 1;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_tensors *lt = &layers[l];
        const ml_tensor_view *kept[5] = {lt->q, lt->k, lt->v, lt->gate, lt->up};
        for (int i = 0; i < 5; i++) {
            bytes += (double)kept[i]->n_bytes;
            same &= kept[i]->dtype == first;
        }
        bytes += (double)c->hidden_size * (double)ml_dtype_row_bytes(lt->o_dtype, (size_t)c->n_heads * c->head_dim);
        bytes += (double)c->hidden_size * (double)ml_dtype_row_bytes(lt->down_dtype, (size_t)c->intermediate_size);
        same &= lt->o_dtype == first && lt->down_dtype == first;
    }
    model->weight_dtype = first;
    model->weight_dtype_mixed = !same;
    model->matmul_bytes = bytes;
}

/* release_other_rows for a layer's column-parallel matrices, rows of this process's devices. */
static void release_other_layer_rows(const ml_model *model, const layer_tensors *lt, const local_rows *rows) {
    release_other_rows(model, lt->q, rows->q_begin, rows->q_end);
    release_other_rows(model, lt->k, rows->kv_begin, rows->kv_end);
    release_other_rows(model, lt->v, rows->kv_begin, rows->kv_end);
    release_other_rows(model, lt->gate, rows->ffn_begin, rows->ffn_end);
    release_other_rows(model, lt->up, rows->ffn_begin, rows->ffn_end);
}

/* One layer onto every local device: the local rows held, the row-parallel columns packed, and
 * the pages no local device reads dropped. */
static int load_layer(ml_model *model, const layer_tensors *lt, int layer, const local_rows *rows,
                      uint8_t **cursors, const pack_buffers *buffers) {
    layer_held held;
    ML_TRY(hold_layer(model, lt, rows, &held));
    for (int d = 0; d < model->mesh->n_local; d++) {
        ml_device *dev = &model->devices[d];
        ML_TRY(slice_layer(model, dev, lt, &held, &cursors[d], buffers, &dev->layers[layer]));
    }
    if (model->mesh->plan->tp > 1) {
        release_pages(model, lt->o);
        release_pages(model, lt->down);
        release_other_layer_rows(model, lt, rows);
    }
    return ML_OK;
}

static int load_layers(ml_model *model, layer_tensors *layers) {
    const ml_config *c = &model->config;
    int n_local = model->mesh->n_local, tp = model->mesh->plan->tp;
    for (int layer = 0; layer < c->n_layers; layer++) ML_TRY(find_layer(model, layer, &layers[layer]));
    size_t widest = (size_t)(c->intermediate_size > c->n_heads * c->head_dim ? c->intermediate_size
                                                                            : c->n_heads * c->head_dim);
    /* the packing buffers, and where each device's packing has got to */
    pack_buffers buffers = {NULL, NULL};
    if (tp > 1) {
        buffers.scratch = ml_alloc((widest + 2 * ML_QUANT_SUPER_BLOCK) * sizeof(float), "dequantisation scratch");
        buffers.made_row = ml_alloc(widest * sizeof(float), "made weight row");
    }
    uint8_t **cursors = calloc(n_local > 0 ? (size_t)n_local : 1, sizeof *cursors);
    int status = ML_OK;
    if ((tp > 1 && (!buffers.scratch || !buffers.made_row)) || !cursors)
        status = ml_set_error(ML_ERR_NOMEM, "loading weights: out of memory");
    for (int d = 0; d < n_local && status == ML_OK && tp > 1; d++) {
        ml_device *dev = &model->devices[d];
        dev->packed_bytes = packed_bytes_for(model, layers, &dev->shard);
        dev->packed = ml_alloc(dev->packed_bytes, "packed row-parallel weights");
        if (!dev->packed) status = ML_ERR_NOMEM;
        cursors[d] = dev->packed;
    }
    local_rows rows = local_rows_of(model);
    for (int layer = 0; layer < c->n_layers && status == ML_OK; layer++)
        status = load_layer(model, &layers[layer], layer, &rows, cursors, &buffers);
    free(cursors);
    ml_free(buffers.scratch);
    ml_free(buffers.made_row);
    return status;
}

int ml_model_load_weights(ml_model *model) {
    const ml_config *c = &model->config;
    const ml_tensor_view *embed, *lm_head = NULL;
    ML_TRY(find_tensor(model, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &embed));
    /* the embedding is replicated (any token's row may be gathered); the LM head is the local
     * devices' vocab rows of its own matrix, or of the embedding when tied */
    held_matrix embed_held, lm_head_held;
    ML_TRY(hold_all_rows(model, embed, &embed_held));
    model->embed = row_of(&embed_held, 0);
    local_rows rows = local_rows_of(model);
    if (!c->tie_word_embeddings) {
        ML_TRY(find_tensor(model, "lm_head.weight", c->vocab_size, c->hidden_size, &lm_head));
        ML_TRY(hold_rows(model, lm_head, rows.vocab_begin, rows.vocab_end, &lm_head_held));
    } else {
        lm_head = embed;
        lm_head_held = embed_held;
    }
    release_other_rows(model, lm_head, rows.vocab_begin, rows.vocab_end);
    ML_TRY(load_norm(model, "model.norm.weight", model->final_norm));
    ML_TRY(alloc_biases(model));

    int n_local = model->mesh->n_local;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &model->devices[d];
        dev->layers = calloc((size_t)c->n_layers, sizeof *dev->layers);
        if (!dev->layers) return ml_set_error(ML_ERR_NOMEM, "device %d: out of memory", d);
        dev->lm_head = row_of(&lm_head_held, dev->shard.vocab_begin);
    }
    layer_tensors *layers = calloc((size_t)c->n_layers, sizeof *layers);
    if (!layers) return ml_set_error(ML_ERR_NOMEM, "loading weights: out of memory");
    int status = load_layers(model, layers);
    if (status == ML_OK) note_held_weights(model, layers, lm_head);
    free(layers);
    return status;
}

void ml_model_free_weights(ml_model *model) {
    for (int i = 0; i < model->n_made; i++) ml_free(model->made[i]);
    free(model->made);
    model->made = NULL;
    model->n_made = model->made_capacity = 0;
    if (!model->devices) return;
    for (int d = 0; d < model->mesh->n_local; d++) {
        free(model->devices[d].layers);
        ml_free(model->devices[d].packed);
        if (model->devices[d].grouped) ml_free_pages(model->devices[d].grouped, model->devices[d].grouped_bytes);
    }
}
