/* `meshllama inspect`: what a checkpoint holds and how the mesh would split it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/json_util.h"
#include "meshllama.h"
#include "mesh/shard_plan.h"
#include "model/checkpoint.h"

/* Whether t, a row-parallel matrix (o_proj: is_down 0; down_proj: 1) of a block type, is cut
 * inside a block by the plan and so held as float32 on every device (model/weights.c). */
static int held_as_f32(const ml_shard_plan *plan, const ml_tensor_view *t, int is_down) {
    return t && ml_dtype_is_quantized(t->dtype) &&
           ml_shard_plan_cut_device(plan, is_down, (long)ml_dtype_block_elements(t->dtype)) >= 0;
}

/* Bytes of tensor `name` (0 when absent) as held (float32 for a row-parallel matrix the plan
 * cuts inside a block: row_parallel 1 for o_proj, 2 for down_proj, 0 otherwise), times the
 * share of it a device holds. */
static double share_of(const ml_weight_set *st, const ml_shard_plan *plan, const char *name, double share,
                       int row_parallel) {
    const ml_tensor_view *t = ml_weight_set_find(st, name);
    if (!t) return 0.0;
    if (row_parallel && held_as_f32(plan, t, row_parallel == 2) && t->n_dims == 2)
        return (double)t->shape[0] * (double)t->shape[1] * sizeof(float) * share;
    return (double)t->n_bytes * share;
}

/* Bytes of the weights a device holds: its rows/columns of the sharded matrices plus the
 * replicated embedding and norms, each matrix at its own dtype's size as stored, or as float32
 * where a quantised row-parallel matrix is cut inside a block (docs/GGUF.md). */
static double device_bytes(const ml_config *c, const ml_weight_set *st, const ml_shard_plan *plan,
                           const ml_shard *s) {
    static const char *const by_q[2] = {"self_attn.q_proj", "self_attn.o_proj"};
    static const char *const by_kv[2] = {"self_attn.k_proj", "self_attn.v_proj"};
    static const char *const by_ffn[3] = {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *const norms[2] = {"input_layernorm", "post_attention_layernorm"};
    double q_share = (double)s->q_head_count / c->n_heads, kv_share = (double)s->kv_head_count / c->n_kv_heads;
    double ffn_share = (double)s->ffn_count / c->intermediate_size;
    double total = share_of(st, plan, "model.embed_tokens.weight", 1.0, 0) + share_of(st, plan, "model.norm.weight", 1.0, 0);
    if (!c->tie_word_embeddings)
        total += share_of(st, plan, "lm_head.weight", (double)s->vocab_count / c->vocab_size, 0);
    char name[160];
    for (int layer = 0; layer < c->n_layers; layer++) {
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_q[i]);
            total += share_of(st, plan, name, q_share, i == 1 ? 1 : 0);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_kv[i]);
            total += share_of(st, plan, name, kv_share, 0);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, norms[i]);
            total += share_of(st, plan, name, 1.0, 0);
        }
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_ffn[i]);
            total += share_of(st, plan, name, ffn_share, i == 2 ? 2 : 0);
        }
    }
    return total;
}

/* The quantised row-parallel matrices this plan cuts inside a block (held as float32): their
 * count, and the first one with the device whose columns cut it. */
typedef struct {
    int n_cut, n_quantised;       /* cut / quantised o_proj + down_proj matrices */
    const ml_tensor_view *first;  /* the first cut one */
    int first_is_down, first_device;
} block_cuts;

static block_cuts find_block_cuts(const ml_config *c, const ml_weight_set *st, const ml_shard_plan *plan,
                                  json_t *names) {
    block_cuts cuts = {0, 0, NULL, 0, -1};
    static const char *const row_parallel[2] = {"self_attn.o_proj", "mlp.down_proj"};
    char name[160];
    for (int layer = 0; layer < c->n_layers; layer++) {
        for (int is_down = 0; is_down < 2; is_down++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, row_parallel[is_down]);
            const ml_tensor_view *t = ml_weight_set_find(st, name);
            if (!t || !ml_dtype_is_quantized(t->dtype)) continue;
            cuts.n_quantised++;
            int device = ml_shard_plan_cut_device(plan, is_down, (long)ml_dtype_block_elements(t->dtype));
            if (device < 0) continue;
            if (names) json_array_append_new(names, json_string(name));
            if (cuts.n_cut++ == 0) {
                cuts.first = t;
                cuts.first_is_down = is_down;
                cuts.first_device = device;
            }
        }
    }
    return cuts;
}

/* The tp values (1 .. n_heads, at most 64) whose plan cuts no quantised row-parallel matrix. */
static json_t *tp_keeping_blocks(const ml_config *c, const ml_weight_set *st, int ffn_block) {
    json_t *list = json_array();
    for (int tp = 1; tp <= c->n_heads && tp <= 64; tp++) {
        ml_shard_plan *plan;
        if (ml_shard_plan_build(c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate_size, ffn_block,
                                c->vocab_size, tp, 0, 0, &plan) != ML_OK)
            continue;
        if (find_block_cuts(c, st, plan, NULL).n_cut == 0) json_array_append_new(list, json_integer(tp));
        ml_shard_plan_free(plan);
    }
    return list;
}

/* What inspect says about quantised o_proj/down_proj slices: never a silent float32 fallback;
 * and which tp values keep every block whole (with the FFN split in whole blocks of ffn_block,
 * the checkpoint's, where there are enough of them). */
static void print_block_cuts(const ml_config *c, const ml_weight_set *st, const ml_shard_plan *plan, int ffn_block,
                             FILE *out) {
    block_cuts cuts = find_block_cuts(c, st, plan, NULL);
    if (cuts.n_quantised == 0) return;
    json_t *keeping = tp_keeping_blocks(c, st, ffn_block);
    if (cuts.n_cut == 0) {
        fprintf(out, "quantised row-parallel slices: all %d o_proj/down_proj matrices split on block boundaries "
                     "(kept as stored)\n", cuts.n_quantised);
    } else {
        const ml_shard *s = &plan->shards[cuts.first_device];
        int begin = cuts.first_is_down ? s->ffn_begin : s->q_head_begin * c->head_dim;
        int count = cuts.first_is_down ? s->ffn_count : s->q_head_count * c->head_dim;
        fprintf(out,
                "FLOAT32 FALLBACK: %d of %d quantised o_proj/down_proj matrices are cut inside a block by this plan "
                "and are held as float32 on every device (exact: the dequantised values; about %.1fx the memory and "
                "bandwidth of the blocks), e.g. %s (%s, blocks of %zu columns): device %d holds columns %d..%d\n",
                cuts.n_cut, cuts.n_quantised, 32.0 * (double)ml_dtype_block_elements(cuts.first->dtype) /
                                                  (8.0 * (double)ml_dtype_block_bytes(cuts.first->dtype)),
                cuts.first->name, ml_dtype_name(cuts.first->dtype), ml_dtype_block_elements(cuts.first->dtype),
                cuts.first_device, begin, begin + count - 1);
    }
    fprintf(out, "  tp values that keep every matrix in its blocks:");
    size_t i;
    json_t *value;
    json_array_foreach(keeping, i, value) fprintf(out, " %lld", (long long)json_integer_value(value));
    fprintf(out, "\n");
    json_decref(keeping);
}

static json_t *config_json(const ml_config *c) {
    json_t *eos = json_array();
    for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    json_t *config = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:s,s:b,s:i,s:o}", "vocab_size", c->vocab_size,
                     "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size, "num_hidden_layers",
                     c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "head_dim",
                     c->head_dim, "max_position_embeddings", c->max_position_embeddings, "rms_norm_eps",
                     (double)c->rms_norm_eps, "rope_theta", (double)c->rope_theta, "rope_type",
                     c->rope_type == ML_ROPE_LLAMA3 ? "llama3" : "default", "tie_word_embeddings",
                     c->tie_word_embeddings, "bos_token_id", c->bos_token_id, "eos_token_ids", eos);
    json_object_set_new(config, "model_type", json_string(ml_arch_model_type(c->arch)));
    json_object_set_new(config, "sliding_window", c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null());
    json_object_set_new(config, "qkv_bias", json_boolean(c->qkv_bias));
    json_object_set_new(config, "o_bias", json_boolean(c->o_bias));
    json_object_set_new(config, "mlp_bias", json_boolean(c->mlp_bias));
    return config;
}

/* Tensor names in natural order: runs of digits compare as numbers, so layers.2 comes before
 * layers.10 (files list them in byte order). */
static int natural_compare(const char *a, const char *b) {
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            char *end_a, *end_b;
            unsigned long long x = strtoull(a, &end_a, 10), y = strtoull(b, &end_b, 10);
            if (x != y) return x < y ? -1 : 1;
            a = end_a;
            b = end_b;
            continue;
        }
        if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int compare_tensor_index(const void *x, const void *y, void *tensors) {
    const ml_tensor_view *t = tensors;
    return natural_compare(t[*(const int *)x].name, t[*(const int *)y].name);
}

static void print_text(const ml_config *c, const ml_weight_set *st, const int *order, const ml_shard_plan *plan,
                       int ffn_block, FILE *out) {
    fprintf(out, "config: vocab %d, hidden %d, ffn %d, layers %d, heads %d, kv heads %d, head_dim %d\n",
            c->vocab_size, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    fprintf(out, "        rms_norm_eps %g, rope_theta %g, rope %s", (double)c->rms_norm_eps, (double)c->rope_theta,
            c->rope_type == ML_ROPE_LLAMA3 ? "llama3" : "default");
    if (c->rope_type == ML_ROPE_LLAMA3)
        fprintf(out, " (factor %g, low %g, high %g, original %d)", (double)c->rope_factor,
                (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor, c->rope_original_max_position);
    fprintf(out, ", max positions %d, tied head %s, bos %d, eos", c->max_position_embeddings,
            c->tie_word_embeddings ? "yes" : "no", c->bos_token_id);
    for (int i = 0; i < c->n_eos; i++) fprintf(out, " %d", c->eos_token_ids[i]);
    char biases[48] = "";
    snprintf(biases, sizeof biases, "%s%s%s", c->qkv_bias ? " q/k/v" : "", c->o_bias ? " o" : "",
             c->mlp_bias ? " gate/up/down" : "");
    fprintf(out, "\n        model_type %s, biases%s", ml_arch_model_type(c->arch), biases[0] ? biases : " none");
    if (c->sliding_window > 0) fprintf(out, ", sliding_window %d (max_seq_len <= it)", c->sliding_window);
    fprintf(out, "\ntensors (%d in %d file%s):\n", st->n_tensors, st->n_files, st->n_files == 1 ? "" : "s");
    size_t total = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const ml_tensor_view *t = &st->tensors[order[i]];
        fprintf(out, "  %-52s %-5s [", t->name, ml_dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        fprintf(out, "] %zu bytes\n", t->n_bytes);
        total += t->n_bytes;
    }
    fprintf(out, "total: %zu bytes (%.3f GB)\n", total, (double)total / 1e9);
    fprintf(out, "shard plan: tp %d (mesh %dx%d)", plan->tp, plan->mesh_rows, plan->mesh_cols);
    if (plan->ffn_block > 1)
        fprintf(out, ", ffn split in whole blocks of %d (down_proj's quantisation blocks)", plan->ffn_block);
    else if (ffn_block > 1)
        fprintf(out, ", ffn split evenly: its %d features are %d blocks of %d (down_proj's), fewer than tp",
                c->intermediate_size, c->intermediate_size / ffn_block, ffn_block);
    fprintf(out, "\n");
    for (int d = 0; d < plan->tp; d++) {
        const ml_shard *s = &plan->shards[d];
        fprintf(out,
                "  device %d: q heads %d..%d, kv heads %d..%d, ffn %d..%d, vocab %d..%d, weights %.1f MB\n", d,
                s->q_head_begin, s->q_head_begin + s->q_head_count - 1, s->kv_head_begin,
                s->kv_head_begin + s->kv_head_count - 1, s->ffn_begin, s->ffn_begin + s->ffn_count - 1,
                s->vocab_begin, s->vocab_begin + s->vocab_count - 1, device_bytes(c, st, plan, s) / 1e6);
    }
    print_block_cuts(c, st, plan, ffn_block, out);
}

static json_t *inspect_json(const ml_config *c, const ml_weight_set *st, const int *order, const ml_shard_plan *plan,
                            int ffn_block) {
    json_t *tensors = json_array();
    for (int i = 0; i < st->n_tensors; i++) {
        const ml_tensor_view *t = &st->tensors[order[i]];
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(tensors, json_pack("{s:o,s:s,s:o,s:I}", "name",
                                                 ml_json_string_lossy(t->name, strlen(t->name)), "dtype",
                                                 ml_dtype_name(t->dtype), "shape", shape, "bytes",
                                                 (json_int_t)t->n_bytes));
    }
    json_t *devices = json_array();
    for (int d = 0; d < plan->tp; d++) {
        const ml_shard *s = &plan->shards[d];
        json_array_append_new(
            devices, json_pack("{s:i,s:[i,i],s:[i,i],s:[i,i],s:[i,i],s:f}", "device", d, "q_heads", s->q_head_begin,
                               s->q_head_count, "kv_heads", s->kv_head_begin, s->kv_head_count, "ffn", s->ffn_begin,
                               s->ffn_count, "vocab", s->vocab_begin, s->vocab_count, "weight_bytes",
                               device_bytes(c, st, plan, s)));
    }
    json_t *fallback = json_array();
    find_block_cuts(c, st, plan, fallback);
    return json_pack("{s:o,s:o,s:{s:i,s:[i,i],s:i,s:o,s:o,s:o}}", "config", config_json(c), "tensors", tensors,
                     "shard_plan", "tp", plan->tp, "mesh", plan->mesh_rows, plan->mesh_cols, "ffn_block",
                     plan->ffn_block, "devices", devices, "float32_fallback", fallback, "tp_keeping_blocks",
                     tp_keeping_blocks(c, st, ffn_block));
}

int ml_inspect(const char *path, int tp, int mesh_rows, int mesh_cols, int json, FILE *out) {
    if (!path || !out) return ml_set_error(ML_ERR_ARG, "ml_inspect: path and out must not be NULL");
    ml_checkpoint ck;
    ML_TRY(ml_checkpoint_open(path, &ck));
    const ml_config *c = &ck.config;
    const ml_weight_set *st = &ck.weights;
    ml_shard_plan *plan;
    int ffn_block = ml_checkpoint_ffn_block(&ck);
    int status = ml_shard_plan_build(c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate_size, ffn_block,
                                     c->vocab_size, tp, mesh_rows, mesh_cols, &plan);
    if (status != ML_OK) {
        ml_checkpoint_close(&ck);
        return status;
    }
    int *order = malloc(sizeof(int) * (size_t)(st->n_tensors + 1));
    if (!order) {
        ml_checkpoint_close(&ck);
        ml_shard_plan_free(plan);
        return ml_set_error(ML_ERR_NOMEM, "inspect: out of memory");
    }
    for (int i = 0; i < st->n_tensors; i++) order[i] = i;
    qsort_r(order, (size_t)st->n_tensors, sizeof(int), compare_tensor_index, (void *)st->tensors);
    if (json) {
        json_t *root = inspect_json(c, st, order, plan, ffn_block);
        if (root) json_object_set_new(root, "path", ml_json_string_lossy(path, strlen(path)));
        char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
        if (text) fprintf(out, "%s\n", text);
        else status = ml_set_error(ML_ERR_NOMEM, "inspect: cannot build JSON");
        free(text);
        json_decref(root);
    } else {
        print_text(c, st, order, plan, ffn_block, out);
    }
    free(order);
    ml_checkpoint_close(&ck);
    ml_shard_plan_free(plan);
    return status;
}
