/* The Llama model over a mesh: weights per device, KV caches, activation buffers. */
#ifndef ML_MODEL_INTERNAL_H
#define ML_MODEL_INTERNAL_H

#include <stdint.h>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "formats/model_config.h"
#include "formats/weight_set.h"
#include "model/checkpoint.h"
#include "meshllama.h"
#include "mesh/mesh.h"
#include "model/collectives.h"

/* Tokens per forward chunk: longer prompts are processed in chunks of this many tokens, which
 * bounds the activation buffers and keeps a chunk's activations in cache. */
#define ML_CHUNK_TOKENS 256
/* Devices one process can host (the threads backend hosts all of them). */
#define ML_MAX_LOCAL_DEVICES 128

/* A matrix in memory: row-major [rows, cols] of dtype: f32, f16, bf16, or ggml blocks
 * (q8_0, q4_0, q4_1: a row is cols / 32 blocks; core/dtype.h); or, where grouped, bf16 in row
 * groups of 16 (backend/cpu/kernels.h ml_bf16_groups_pack; model/regroup.c). */
typedef struct {
    const void *data;
    ml_dtype dtype;
    int grouped;
} ml_weight;

/* One layer's slices on one device (DESIGN.md "Parallelism"). "in place": a pointer into the
 * weight set's view (a file mapping, or a buffer the GGUF loader filled), not copied again here. */
typedef struct {
    ml_weight wq;     /* [q_count * head_dim, hidden]   rows of q_proj (in place) */
    ml_weight wk;     /* [kv_count * head_dim, hidden]  rows of k_proj (in place) */
    ml_weight wv;     /* [kv_count * head_dim, hidden]  rows of v_proj (in place) */
    ml_weight wo;     /* [hidden, q_count * head_dim]   columns of o_proj (packed when tp > 1) */
    ml_weight w_gate; /* [ffn_count, hidden]            rows of gate_proj (in place) */
    ml_weight w_up;   /* [ffn_count, hidden]            rows of up_proj (in place) */
    ml_weight w_down; /* [hidden, ffn_count]            columns of down_proj (packed when tp > 1) */
    /* biases of the column-parallel rows above (into ml_model's replicated copies), NULL if none;
     * o_proj's and down_proj's are added once after their all-reduce (ml_model.bias_o, bias_down) */
    const float *bq;     /* [q_count * head_dim] */
    const float *bk;     /* [kv_count * head_dim] */
    const float *bv;     /* [kv_count * head_dim] */
    const float *b_gate; /* [ffn_count] */
    const float *b_up;   /* [ffn_count] */
} ml_layer_slice;

typedef struct {
    ml_shard shard;
    ml_layer_slice *layers; /* [n_layers] */
    ml_weight lm_head;      /* [vocab_count, hidden] rows of lm_head (or of the embedding when tied) */
    uint16_t *grouped;      /* owned (ml_alloc_pages): this device's bf16 matrices in row groups
                             * (model/regroup.c), NULL when it has none */
    size_t grouped_bytes;
    uint8_t *packed;        /* owned: this device's packed o/down columns (each matrix in its own
                             * dtype, or f32 where a quantised one is cut inside a block); NULL at tp = 1 */
    size_t packed_bytes;
    void *k_cache;          /* [n_layers][max_batch][kv_count][max_seq_len][head_dim] f32 or bf16 */
    void *v_cache;          /* same */
    size_t cache_bytes;     /* bytes of each of k_cache, v_cache */
    /* activations of one chunk */
    float *q;               /* [chunk, q_count * head_dim] */
    float *k;               /* [chunk, kv_count * head_dim] */
    float *v;               /* [chunk, kv_count * head_dim] */
    float *attn;            /* [chunk, q_count * head_dim] */
    float *gate;            /* [chunk, ffn_count] (holds silu(gate) * up after the MLP's first step) */
    float *up;              /* [chunk, ffn_count] */
    float *partial;         /* [chunk, hidden] row-parallel partial sums */
    uint16_t *act_bf16;     /* [chunk, max(q_count * head_dim, ffn_count)] fast-mode matmul input */
    uint8_t *act_q8;        /* the same as int8 blocks (rows ml_q8_row_bytes(width) apart) where
                             * model->act_q8, else NULL */
    uint8_t *act_q8k;       /* the same as int8 super-blocks of 256 for K-quant weights (rows
                             * ml_q8k_row_bytes(width) apart) where model->act_q8k, else NULL */
} ml_device;

struct ml_model {
    ml_checkpoint checkpoint;        /* path, config, weight set and tokenizer source, opened once */
    ml_config config;                /* checkpoint.config, copied where the forward pass reads it */
    ml_model_params params;          /* as resolved (tp, threads, max_seq_len filled in) */
    ml_dtype weight_dtype;           /* dtype of the projection matrices as held (the first q_proj's) */
    int weight_dtype_mixed;          /* 1 when the projections are held in more than one dtype */
    double matmul_bytes;             /* bytes of the projections (as held) and the LM head */
    const ml_cpu_kernels *kernels;
    ml_pool *pool;
    ml_mesh *mesh;
    ml_device *devices;              /* [mesh->n_local] */
    void **made;                     /* [n_made] owned: rows of made-on-demand weight views that
                                      * this process's devices use (model/weights.c) */
    int n_made;
    int made_capacity;
    int *slot_length;                /* [max_batch] positions held in each KV slot */

    /* replicated on every device */
    ml_weight embed;                 /* [vocab, hidden] */
    float *attn_norm;                /* [n_layers, hidden] */
    float *mlp_norm;                 /* [n_layers, hidden] */
    float *final_norm;               /* [hidden] */
    /* bias terms as float32 (ml_config's qkv_bias, o_bias, mlp_bias), NULL where there are none;
     * all in one allocation, biases */
    float *biases;
    float *bias_q;                   /* [n_layers, n_heads * head_dim] */
    float *bias_k;                   /* [n_layers, n_kv_heads * head_dim] */
    float *bias_v;                   /* [n_layers, n_kv_heads * head_dim] */
    float *bias_o;                   /* [n_layers, hidden] */
    float *bias_gate;                /* [n_layers, intermediate_size] */
    float *bias_up;                  /* [n_layers, intermediate_size] */
    float *bias_down;                /* [n_layers, hidden] */
    float *rope_cos;                 /* [max_seq_len, head_dim / 2] */
    float *rope_sin;                 /* [max_seq_len, head_dim / 2] */

    /* activations of one chunk, shared by the local devices */
    float *x;                        /* [chunk, hidden] residual stream */
    float *xn;                       /* [chunk, hidden] normed input of a sublayer */
    uint16_t *xn_bf16;               /* [chunk, hidden] fast mode */
    int act_q8;                      /* fast mode and some projection has int8 products (ml_q8_supports):
                                      * matmul inputs are also quantised to int8 blocks */
    uint8_t *xn_q8;                  /* [chunk, ml_q8_row_bytes(hidden)] where act_q8, else NULL */
    int act_q8k;                     /* fast mode and some projection is a K-quant (ml_q8k_supports):
                                      * matmul inputs are also quantised to int8 super-blocks */
    uint8_t *xn_q8k;                 /* [chunk, ml_q8k_row_bytes(hidden)] where act_q8k, else NULL */
    float *reduced;                  /* [chunk, hidden] all-reduce result */
    void *x_interleaved;             /* owned: matmul inputs in the row-group kernels' order
                                      * (model/matmul_jobs.c), grown on demand */
    size_t x_interleaved_bytes;
    float *attn_scratch;             /* [n_threads, max_seq_len] attention scores */
    ml_hidden_callback hidden_callback; /* named intermediates (--dump-layers), or NULL */
    void *hidden_callback_user;
};

/* Devices this process hosts: at least one, as ml_mesh_open guarantees. Saying so lets the
 * compiler see that the per-device job arrays are filled (UBSan checks it). */
static inline int ml_local_devices(const ml_model *model) {
    int n_local = model->mesh->n_local;
    if (n_local < 1) __builtin_unreachable();
    return n_local;
}

/* Gives every bf16 matrix of the local devices (even width) the row-group layout of the CPU
 * kernels (model/regroup.c); MESHLLAMA_BF16_GROUPS=0 keeps the natural rows. */
int ml_model_regroup_bf16(ml_model *model);
/* Drops the pages of [begin, begin + bytes) where they lie in a file the checkpoint maps (not in a
 * borrowed weight set): bytes that will not be read again (model/weights.c). */
void ml_model_release_bytes(const ml_model *model, const void *begin, size_t bytes);
/* Drops the whole pages inside [begin, end) (partial pages at either end stay): a file mapping's
 * pages are only unmapped, an owned buffer's freed (read again, they would be zeros). */
void ml_model_drop_whole_pages(uintptr_t begin, uintptr_t end);

/* Loads every device's weights: validates names, dtypes and shapes against the config, aims
 * column-parallel slices into the mapping and packs row-parallel slices. */
int ml_model_load_weights(ml_model *model);

/* Where opening gets its checkpoint (config + weight set): a directory or GGUF file on disk
 * (produce == NULL: ml_checkpoint_open(path)), or a producer that fills the checkpoint from
 * elsewhere (caller-owned tensors: model/open_tensors.c); path then names the model in messages
 * and ml_model_info. Everything after that (validation against the config, shard plan, device
 * slices) is shared. */
typedef struct ml_model_source {
    const char *path;
    int (*produce)(const struct ml_model_source *src, ml_checkpoint *out);
    const void *context;
} ml_model_source;

int ml_model_open_source(const ml_model_source *src, const ml_model_params *params, ml_model **out_model);
void ml_model_free_weights(ml_model *model);
/* n elements (a multiple of the dtype's block) of a weight row as float32, bit for bit as the
 * dequantiser (quantised) or the exact widening (f16, bf16). dst: [n]. */
void ml_weight_row_to_f32(const ml_cpu_kernels *k, ml_dtype dtype, const void *src, size_t n, float *dst);

/* RoPE tables as HF computes them (LlamaRotaryEmbedding, _compute_llama3_parameters). */
int ml_rope_tables_build(const ml_config *config, int max_seq_len, float **out_cos, float **out_sin);

/* A matrix product y = x W^T for n_tok tokens, split into tasks over the pool. */
typedef struct {
    ml_weight w;             /* [n_rows, n_in] */
    int n_rows;
    int n_in;
    const float *x;          /* [n_tok, ldx] float32 input (accurate mode, or non-bf16 weights) */
    const uint16_t *x_bf16;  /* [n_tok, ldx] bf16 input; used instead of x for bf16 weights when set */
    size_t ldx;
    const uint8_t *x_q8;     /* [n_tok] int8 block rows, ldx_q8 bytes apart (fast mode); used instead
                              * of x for weights with int8 products when set */
    size_t ldx_q8;
    const uint8_t *x_q8k;    /* [n_tok] int8 super-block rows, ldx_q8k bytes apart (fast mode); used
                              * instead of x for K-quant weights when set */
    size_t ldx_q8k;
    float *y;                /* [n_tok, ldy] */
    size_t ldy;
    int n_tok;
    const float *bias;       /* [n_rows] added to every token's outputs (nn.Linear's bias), or NULL */
} ml_matmul_job;

/* Runs the jobs together (one parallel region); the result does not depend on the split. */
void ml_run_matmuls(ml_model *model, const ml_matmul_job *jobs, int n_jobs);

/* The tokens of one forward chunk, handed to every step of the pass. */
typedef struct {
    int n_tok;              /* 1..ML_CHUNK_TOKENS */
    const int32_t *tokens;  /* [n_tok] token ids */
    const int *slot;        /* [n_tok] KV slot of each token */
    const int *pos;         /* [n_tok] position of each token in its sequence */
    int token_begin;        /* index in the flattened batch of the chunk's first token */
} ml_chunk_tokens;

/* The hidden-state callback's named intermediates (model/intermediates.c; the names are listed
 * in include/meshllama.h). Each is a no-op without a callback. */
void ml_emit_intermediate(ml_model *model, const ml_chunk_tokens *chunk, const char *name, int layer,
                          const float *data, int width); /* data: [n_tok, width], replicated */
/* The device buffers of a sharded activation, gathered into HF's layout before the call. */
typedef enum {
    ML_SHARDED_Q,    /* dev->q    [n_tok, n_heads * head_dim] */
    ML_SHARDED_K,    /* dev->k    [n_tok, n_kv_heads * head_dim] */
    ML_SHARDED_V,    /* dev->v    [n_tok, n_kv_heads * head_dim] */
    ML_SHARDED_ATTN, /* dev->attn [n_tok, n_heads * head_dim] */
    ML_SHARDED_GATE, /* dev->gate [n_tok, intermediate_size] (gate, then silu(gate) * up) */
    ML_SHARDED_UP    /* dev->up   [n_tok, intermediate_size] */
} ml_sharded_activation;
void ml_emit_sharded(ml_model *model, const ml_chunk_tokens *chunk, const char *name, int layer,
                     ml_sharded_activation which);
/* rmsnorm(x) with the final norm for every token of the chunk, as "final_norm". */
void ml_emit_final_norm(ml_model *model, const ml_chunk_tokens *chunk);


/* One chunk of tokens through the whole model; out_rows[t] >= 0 selects tokens whose logits go
 * to logits[out_rows[t]] (consecutive rows). */
int ml_forward_chunk(ml_model *model, const ml_chunk_tokens *chunk, const int *out_rows, float *logits);

#endif
