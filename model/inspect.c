/* `meshllama inspect`: what a checkpoint holds and how the mesh would split it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/json_util.h"
#include "meshllama.h"
#include "mesh/shard_plan.h"
#include "model/checkpoint.h"

/* Bytes of tensor `name` (0 when absent), times the share of it a device holds. */
static double share_of(const ml_weight_set *st, const char *name, double share) {
    const ml_tensor_view *t = ml_weight_set_find(st, name);
    return t ? (double)t->n_bytes * share : 0.0;
}

/* Bytes of the weights a device holds: its rows/columns of the sharded matrices plus the
 * replicated embedding and norms, each matrix at its own dtype's size as stored (a quantised
 * row-parallel matrix that the plan cuts inside a block is held as float32 instead: not
 * counted here; docs/GGUF.md). */
static double device_bytes(const ml_config *c, const ml_weight_set *st, const ml_shard *s) {
    static const char *const by_q[2] = {"self_attn.q_proj", "self_attn.o_proj"};
    static const char *const by_kv[2] = {"self_attn.k_proj", "self_attn.v_proj"};
    static const char *const by_ffn[3] = {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *const norms[2] = {"input_layernorm", "post_attention_layernorm"};
    double q_share = (double)s->q_head_count / c->n_heads, kv_share = (double)s->kv_head_count / c->n_kv_heads;
    double ffn_share = (double)s->ffn_count / c->intermediate_size;
    double total = share_of(st, "model.embed_tokens.weight", 1.0) + share_of(st, "model.norm.weight", 1.0);
    if (!c->tie_word_embeddings) total += share_of(st, "lm_head.weight", (double)s->vocab_count / c->vocab_size);
    char name[160];
    for (int layer = 0; layer < c->n_layers; layer++) {
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_q[i]);
            total += share_of(st, name, q_share);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_kv[i]);
            total += share_of(st, name, kv_share);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, norms[i]);
            total += share_of(st, name, 1.0);
        }
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, by_ffn[i]);
            total += share_of(st, name, ffn_share);
        }
    }
    return total;
}

static json_t *config_json(const ml_config *c) {
    json_t *eos = json_array();
    for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:s,s:b,s:i,s:o}", "vocab_size", c->vocab_size,
                     "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size, "num_hidden_layers",
                     c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "head_dim",
                     c->head_dim, "max_position_embeddings", c->max_position_embeddings, "rms_norm_eps",
                     (double)c->rms_norm_eps, "rope_theta", (double)c->rope_theta, "rope_type",
                     c->rope_type == ML_ROPE_LLAMA3 ? "llama3" : "default", "tie_word_embeddings",
                     c->tie_word_embeddings, "bos_token_id", c->bos_token_id, "eos_token_ids", eos);
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
                       FILE *out) {
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
    fprintf(out, "shard plan: tp %d (mesh %dx%d)\n", plan->tp, plan->mesh_rows, plan->mesh_cols);
    for (int d = 0; d < plan->tp; d++) {
        const ml_shard *s = &plan->shards[d];
        fprintf(out,
                "  device %d: q heads %d..%d, kv heads %d..%d, ffn %d..%d, vocab %d..%d, weights %.1f MB\n", d,
                s->q_head_begin, s->q_head_begin + s->q_head_count - 1, s->kv_head_begin,
                s->kv_head_begin + s->kv_head_count - 1, s->ffn_begin, s->ffn_begin + s->ffn_count - 1,
                s->vocab_begin, s->vocab_begin + s->vocab_count - 1, device_bytes(c, st, s) / 1e6);
    }
}

static json_t *inspect_json(const ml_config *c, const ml_weight_set *st, const int *order, const ml_shard_plan *plan) {
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
                               device_bytes(c, st, s)));
    }
    return json_pack("{s:o,s:o,s:{s:i,s:[i,i],s:o}}", "config", config_json(c), "tensors", tensors, "shard_plan",
                     "tp", plan->tp, "mesh", plan->mesh_rows, plan->mesh_cols, "devices", devices);
}

int ml_inspect(const char *path, int tp, int mesh_rows, int mesh_cols, int json, FILE *out) {
    if (!path || !out) return ml_set_error(ML_ERR_ARG, "ml_inspect: path and out must not be NULL");
    ml_checkpoint ck;
    ML_TRY(ml_checkpoint_open(path, &ck));
    const ml_config *c = &ck.config;
    const ml_weight_set *st = &ck.weights;
    ml_shard_plan *plan;
    int status = ml_shard_plan_build(c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate_size, c->vocab_size, tp,
                                     mesh_rows, mesh_cols, &plan);
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
        json_t *root = inspect_json(c, st, order, plan);
        if (root) json_object_set_new(root, "path", ml_json_string_lossy(path, strlen(path)));
        char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
        if (text) fprintf(out, "%s\n", text);
        else status = ml_set_error(ML_ERR_NOMEM, "inspect: cannot build JSON");
        free(text);
        json_decref(root);
    } else {
        print_text(c, st, order, plan, out);
    }
    free(order);
    ml_checkpoint_close(&ck);
    ml_shard_plan_free(plan);
    return status;
}
