/* Which slice of every sharded tensor each device of the mesh owns (DESIGN.md "Parallelism").
 *   column-parallel q/k/v/gate/up and LM head: a run of whole output rows;
 *   row-parallel o/down: the matching run of input columns (packed at load);
 *   KV cache: the KV heads of the device's query-head groups.
 * Heads are split at KV-group granularity; when tp > n_kv_heads the query heads of one group are
 * split over several devices and each of them holds (replicates) that group's KV head. */
#ifndef ML_MESH_SHARD_PLAN_H
#define ML_MESH_SHARD_PLAN_H

typedef struct {
    int q_head_begin, q_head_count;   /* global query heads owned */
    int kv_head_begin, kv_head_count; /* global KV heads held (replicated when tp > n_kv_heads) */
    int ffn_begin, ffn_count;         /* intermediate features (gate/up rows, down columns) */
    int vocab_begin, vocab_count;     /* LM-head rows */
} ml_shard;

typedef struct {
    int tp;
    int mesh_rows, mesh_cols;         /* tp = rows * cols; 1-D TP over all of them */
    int n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    int ffn_block;                    /* the FFN range is split in whole runs of this many features
                                       * (down_proj's quantisation block); 1: an even split */
    ml_shard shards[];                /* [tp] */
} ml_shard_plan;

/* Builds the plan; ML_ERR_ARG with a message when tp is impossible for the model
 * (tp < 1, tp > n_heads, tp > intermediate_size or vocab_size, rows*cols != tp).
 * ffn_block: the columns per block of a block-quantised down_proj (32, or 256 for the K-quants;
 * ml_checkpoint_ffn_block), 1 for float weights. When it divides intermediate_size into at least
 * tp blocks, the FFN range is split in whole blocks, as evenly as they allow (a device's slice of
 * down_proj then keeps its blocks as stored; e.g. 8192 in blocks of 256 at tp 3: 2560, 2816,
 * 2816); otherwise, and for ffn_block 1, evenly by feature (plan->ffn_block records which). */
int ml_shard_plan_build(int n_heads, int n_kv_heads, int head_dim, int intermediate_size, int ffn_block,
                        int vocab_size, int tp, int mesh_rows, int mesh_cols, ml_shard_plan **out_plan);
void ml_shard_plan_free(ml_shard_plan *plan);

/* Which device, if any, the plan gives a run of a row-parallel matrix's input columns that
 * starts or ends inside a block of `block` columns (a ggml block of a quantised o_proj or
 * down_proj: 32, or 256 for the K-quants): o_proj (is_down 0) columns are the device's query
 * heads times head_dim, down_proj (is_down 1) columns its FFN range. Returns the first such
 * device, or -1 when every device's run is whole blocks (always for block <= 1 or tp 1). */
int ml_shard_plan_cut_device(const ml_shard_plan *plan, int is_down, long block);

/* Local index of the KV head that serves global query head q_head on this shard. */
int ml_shard_kv_local(const ml_shard *shard, int q_head, int group_size);

#endif
