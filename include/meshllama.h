/* meshllama: tensor-parallel Llama inference in C.
 *
 * This header is the whole public API. Handles are opaque; every function that can fail
 * returns an ml_status code, and ml_last_error() explains the most recent failure on the
 * calling thread (file, tensor, expected and found values). The library never exits or
 * aborts on bad input. Destroy functions accept NULL.
 */
#ifndef MESHLLAMA_H
#define MESHLLAMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MESHLLAMA_VERSION "0.1.0"

/* Status codes. ML_OK is 0; every failure is negative. */
typedef enum {
    ML_OK = 0,
    ML_ERR_IO = -1,          /* a file or directory is missing or unreadable */
    ML_ERR_FORMAT = -2,      /* a file is malformed (JSON, safetensors header, offsets) */
    ML_ERR_CONFIG = -3,      /* config.json is missing keys or holds nonsense values */
    ML_ERR_TENSOR = -4,      /* a tensor is missing or its dtype/shape disagrees with the config */
    ML_ERR_ARG = -5,         /* a caller argument is invalid (tp, token id, length, ...) */
    ML_ERR_NOMEM = -6,       /* an allocation failed */
    ML_ERR_UNSUPPORTED = -7, /* a valid input that this build cannot run */
    ML_ERR_INTERNAL = -8     /* a system call or library failed (thread creation, ...) */
} ml_status;

/* Static name of a status code ("ML_ERR_CONFIG: bad model configuration"). */
const char *ml_strerror(int status);
/* Message of the last failure on this thread; "" if none. Valid until the next failing call. */
const char *ml_last_error(void);
/* Runtime version string, equal to MESHLLAMA_VERSION of the build. */
const char *ml_version(void);

/* Activation precision (DESIGN.md "Precision"). */
typedef enum {
    ML_ACT_ACCURATE = 0, /* float32 activations and accumulation */
    ML_ACT_FAST = 1      /* matmul inputs rounded to bf16; float32 accumulation */
} ml_act_mode;

/* How the devices of the mesh are spread over processes. */
typedef enum {
    ML_MESH_AUTO = 0,    /* mpi when started by mpirun with more than one rank, else threads */
    ML_MESH_THREADS = 1, /* every device in this process, sharing its threads */
    ML_MESH_MPI = 2      /* one MPI rank per tp / n_ranks devices (Open MPI; on one machine or many) */
} ml_mesh_kind;

/* KV-cache element type. */
typedef enum { ML_KV_F32 = 0, ML_KV_BF16 = 1 } ml_kv_dtype;

typedef struct {
    int tp;             /* tensor-parallel degree: number of devices (1..n_heads); under MPI,
                           1 means one device per rank */
    int mesh_rows;      /* if > 0 with mesh_cols: mesh shape; tp = rows * cols */
    int mesh_cols;
    int n_threads;      /* worker threads of this process; 0 = its share of the online cores */
    int max_seq_len;    /* KV-cache length per sequence; 0 = min(config max_position_embeddings, 4096) */
    int max_batch;      /* sequences held at once (KV-cache slots), 1..32 */
    ml_act_mode act_mode;
    ml_kv_dtype kv_dtype;
    ml_mesh_kind mesh_backend;
} ml_model_params;

ml_model_params ml_model_default_params(void);

typedef struct ml_model ml_model;

/* Opens a Hugging Face Llama checkpoint directory (config.json + safetensors, single or
 * sharded), builds the shard plan for params->tp devices and loads every device's slice.
 * Under MPI every rank calls it; a failure on any rank fails all of them with that rank's
 * message. */
int ml_model_open(const char *path, const ml_model_params *params, ml_model **out_model);
void ml_model_close(ml_model *model);

/* Facts about an opened model. */
typedef struct {
    int vocab_size;
    int hidden_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_seq_len;     /* as allocated */
    int max_batch;
    int tp;
    int n_threads;
    int bos_token_id;    /* -1 if the config has none */
    int n_eos;
    int eos_token_ids[8];
    const char *weight_dtype; /* "bf16", "f16" or "f32" */
    const char *isa;          /* kernel variant in use: "avx512bf16", "avx512", "avx2", "scalar" */
    const char *backend;      /* mesh backend: "threads" or "mpi" */
    const char *path;         /* the checkpoint as opened */
    int rank;                 /* this process's rank (0 without MPI) */
    int n_ranks;              /* processes in the mesh */
    int device_begin;         /* first device hosted here */
    int n_local_devices;      /* devices hosted here */
} ml_model_info;

void ml_model_get_info(const ml_model *model, ml_model_info *out_info);

/* One forward step over a batch of sequences.
 * Sequence s occupies KV-cache slot slots[s] (0..max_batch-1, distinct) and feeds
 * n_tokens[s] >= 1 tokens at positions start_pos[s] .. start_pos[s]+n_tokens[s]-1; the cache
 * of that slot must already hold positions 0..start_pos[s]-1. tokens holds the sequences'
 * tokens one after another. A prefill is one sequence with its whole prompt; a decode step
 * is up to max_batch sequences with one token each.
 * logits receives float32 logits [n_seq, vocab] for the last token of each sequence, or
 * [sum(n_tokens), vocab] for every token when all_logits is non-zero. Under MPI every rank
 * calls it with the same batch, and the logits are complete on rank 0 only. */
typedef struct {
    int n_seq;
    const int *slots;        /* [n_seq] */
    const int *start_pos;    /* [n_seq] */
    const int *n_tokens;     /* [n_seq] */
    const int32_t *tokens;   /* [sum(n_tokens)] */
    int all_logits;
} ml_batch;

int ml_forward(ml_model *model, const ml_batch *batch, float *logits);

/* Debugging hook (the seed's "compare layer by layer"): called during ml_forward with the
 * residual stream [n_tok, hidden_size] of tokens token_begin.. of the flattened batch.
 * entry 0 = the embeddings, entry i = after layer i-1 (1..n_layers), entry n_layers + 1 = after
 * the final norm; entries 0..n_layers-1 and n_layers+1 are what HF's output_hidden_states
 * returns. NULL removes it. */
typedef void (*ml_hidden_callback)(int entry, int token_begin, int n_tok, int hidden_size, const float *hidden,
                                   void *user);
void ml_model_set_hidden_callback(ml_model *model, ml_hidden_callback callback, void *user);

/* Forgets the cached positions of a slot (nothing to free; positions are overwritten). */
int ml_reset_slot(ml_model *model, int slot);

/* Sampling (runtime/). temperature <= 0 means greedy. top_k <= 0 and top_p >= 1 disable them. */
typedef struct {
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
    int max_tokens;          /* tokens to generate */
    int ignore_eos;          /* non-zero: do not stop at the config's EOS ids */
    int prefill_decode;      /* non-zero: feed the prompt one token at a time through decode */
} ml_sampling_params;

ml_sampling_params ml_sampling_default_params(void);

/* Called for every generated token; return non-zero to stop. */
typedef int (*ml_token_callback)(int32_t token, void *user);

typedef struct {
    int n_generated;
    int stopped_at_eos;
    double prefill_ms;       /* prompt processing, including the first token's logits */
    double decode_ms;        /* all decode steps */
} ml_generate_stats;

/* Generates up to sp->max_tokens tokens after prompt in KV slot 0. Generated ids go to out_tokens
 * (capacity sp->max_tokens) and to the callback if given. */
int ml_generate(ml_model *model, const int32_t *prompt, int n_prompt, const ml_sampling_params *sp,
                int32_t *out_tokens, ml_token_callback callback, void *user, ml_generate_stats *stats);

/* Teacher-forcing evaluation against Hugging Face (the seed's eval.py protocol; DESIGN.md
 * "Accuracy"). A reference file (tools/hf_reference.py) holds the prompt, HF's greedy tokens,
 * HF's top-5 ids per step and HF's logits for the first steps. */
typedef struct ml_eval_reference ml_eval_reference;

int ml_eval_reference_open(const char *path, ml_eval_reference **out_ref);
void ml_eval_reference_close(ml_eval_reference *ref);

typedef struct {
    int n_prompt;
    int n_decode;           /* reference tokens stored */
    int vocab_size;
    int n_logit_steps;      /* steps with HF logits stored */
    const char *meta_json;  /* metadata written by the tool (model, prompt, versions) */
} ml_eval_reference_info;

void ml_eval_reference_get_info(const ml_eval_reference *ref, ml_eval_reference_info *out_info);
/* The reference's prompt ids [n_prompt]. */
const int32_t *ml_eval_reference_prompt(const ml_eval_reference *ref);

typedef struct {
    int decode_len;      /* positions to score; 0 = every reference token */
    int batch;           /* sequences run at once, each on the reference (1..max_batch) */
    int prefill_decode;  /* feed the prompt one token at a time through decode */
    /* optional: called after every scored step (for a progress bar); NULL for none */
    void (*progress)(int step, int total, void *user);
    void *progress_user;
} ml_eval_params;

typedef struct {
    int total;             /* positions scored per sequence */
    double top1;           /* our argmax == HF token */
    double top5;           /* HF token in our top 5 */
    double top5_ref;       /* our argmax in HF's top 5 */
    int slots_agree;       /* every sequence of the batch scored the same */
    int logit_steps;       /* steps compared with HF's stored logits */
    double logit_error;    /* worst max|ours - HF| / max|HF| over those steps */
    double ttft_ms;        /* prompt to first logits (whole batch) */
    double prefill_tok_s;  /* prompt tokens per second, all sequences */
    double decode_tok_s_u; /* decode steps per second per sequence */
} ml_eval_result;

/* Prefill the reference prompt in every slot, score the last position against HF's first
 * token, then feed HF's token i (teacher forcing) and score against token i+1. */
int ml_eval_run(ml_model *model, const ml_eval_reference *ref, const ml_eval_params *params, ml_eval_result *out);

/* Releases process-wide resources (finalizes MPI if the library started it). Call once at exit. */
void ml_shutdown(void);

/* Describes a checkpoint without loading it: config, every tensor (dtype, shape, bytes) and
 * the shard plan of each device for the given tp / mesh (mesh_rows = mesh_cols = 0 for 1-D).
 * Writes human-readable text, or one JSON object when json is non-zero, to out. */
int ml_inspect(const char *path, int tp, int mesh_rows, int mesh_cols, int json, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
