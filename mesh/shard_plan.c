#include "mesh/shard_plan.h"

#include <stdlib.h>

#include "core/error.h"

/* Even split of n items over parts: part p gets [begin(p), begin(p+1)). */
static int split_begin(int n, int parts, int p) { return (int)((long long)n * p / parts); }

static void plan_heads_by_kv_groups(ml_shard_plan *plan) {
    int group = plan->n_heads / plan->n_kv_heads;
    for (int d = 0; d < plan->tp; d++) {
        int kv_begin = split_begin(plan->n_kv_heads, plan->tp, d);
        int kv_end = split_begin(plan->n_kv_heads, plan->tp, d + 1);
        ml_shard *s = &plan->shards[d];
        s->kv_head_begin = kv_begin;
        s->kv_head_count = kv_end - kv_begin;
        s->q_head_begin = kv_begin * group;
        s->q_head_count = (kv_end - kv_begin) * group;
    }
}

/* tp > n_kv_heads: KV head k is replicated on devices [split_begin(tp, n_kv, k), ...), which
 * share its group of query heads evenly. */
static void plan_heads_within_groups(ml_shard_plan *plan) {
    int group = plan->n_heads / plan->n_kv_heads;
    for (int k = 0; k < plan->n_kv_heads; k++) {
        int dev_begin = split_begin(plan->tp, plan->n_kv_heads, k);
        int dev_end = split_begin(plan->tp, plan->n_kv_heads, k + 1);
        int n_dev = dev_end - dev_begin;
        for (int j = 0; j < n_dev; j++) {
            ml_shard *s = &plan->shards[dev_begin + j];
            int q_begin = split_begin(group, n_dev, j);
            int q_end = split_begin(group, n_dev, j + 1);
            s->kv_head_begin = k;
            s->kv_head_count = 1;
            s->q_head_begin = k * group + q_begin;
            s->q_head_count = q_end - q_begin;
        }
    }
}

int ml_shard_plan_build(int n_heads, int n_kv_heads, int head_dim, int intermediate_size, int ffn_block,
                        int vocab_size, int tp, int mesh_rows, int mesh_cols, ml_shard_plan **out_plan) {
    *out_plan = NULL;
    if (mesh_rows > 0 || mesh_cols > 0) {
        if (mesh_rows <= 0 || mesh_cols <= 0)
            return ml_set_error(ML_ERR_ARG, "mesh %dx%d: both dimensions must be positive", mesh_rows, mesh_cols);
        if (tp > 0 && tp != mesh_rows * mesh_cols)
            return ml_set_error(ML_ERR_ARG, "mesh %dx%d has %d devices but tp is %d", mesh_rows, mesh_cols,
                                mesh_rows * mesh_cols, tp);
        tp = mesh_rows * mesh_cols;
    } else {
        mesh_rows = 1;
        mesh_cols = tp;
    }
    if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
        return ml_set_error(ML_ERR_ARG, "shard plan: %d query heads cannot be grouped over %d KV heads", n_heads,
                            n_kv_heads);
    if (tp < 1 || tp > n_heads)
        return ml_set_error(ML_ERR_ARG, "tp %d is impossible for this model: expected 1..%d (num_attention_heads)", tp,
                            n_heads);
    if (tp > intermediate_size || tp > vocab_size)
        return ml_set_error(ML_ERR_ARG, "tp %d is impossible: intermediate_size %d and vocab_size %d must be >= tp", tp,
                            intermediate_size, vocab_size);
    ml_shard_plan *plan = calloc(1, sizeof *plan + (size_t)tp * sizeof(ml_shard));
    if (!plan) return ml_set_error(ML_ERR_NOMEM, "shard plan: out of memory");
    plan->tp = tp;
    plan->mesh_rows = mesh_rows;
    plan->mesh_cols = mesh_cols;
    plan->n_heads = n_heads;
    plan->n_kv_heads = n_kv_heads;
    plan->head_dim = head_dim;
    plan->intermediate_size = intermediate_size;
    plan->vocab_size = vocab_size;
    /* whole blocks when there are enough of them for every device to get one; the blocks are
     * split as the features would be (the larger shares on the later devices, as for heads and
     * vocab rows: rank 0 also samples) */
    int aligned = ffn_block > 1 && intermediate_size % ffn_block == 0 && intermediate_size / ffn_block >= tp;
    plan->ffn_block = aligned ? ffn_block : 1;
    int ffn_units = intermediate_size / plan->ffn_block;
    if (tp <= n_kv_heads)
        plan_heads_by_kv_groups(plan);
    else
        plan_heads_within_groups(plan);
    for (int d = 0; d < tp; d++) {
        ml_shard *s = &plan->shards[d];
        s->ffn_begin = split_begin(ffn_units, tp, d) * plan->ffn_block;
        s->ffn_count = split_begin(ffn_units, tp, d + 1) * plan->ffn_block - s->ffn_begin;
        s->vocab_begin = split_begin(vocab_size, tp, d);
        s->vocab_count = split_begin(vocab_size, tp, d + 1) - s->vocab_begin;
    }
    *out_plan = plan;
    return ML_OK;
}

void ml_shard_plan_free(ml_shard_plan *plan) { free(plan); }

int ml_shard_kv_local(const ml_shard *shard, int q_head, int group_size) {
    return q_head / group_size - shard->kv_head_begin;
}

int ml_shard_plan_cut_device(const ml_shard_plan *plan, int is_down, long block) {
    if (block <= 1 || plan->tp <= 1) return -1;
    for (int d = 0; d < plan->tp; d++) {
        const ml_shard *s = &plan->shards[d];
        long begin = is_down ? (long)s->ffn_begin : (long)s->q_head_begin * plan->head_dim;
        long count = is_down ? (long)s->ffn_count : (long)s->q_head_count * plan->head_dim;
        if (begin % block != 0 || count % block != 0) return d;
    }
    return -1;
}
