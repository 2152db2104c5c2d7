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

/* Limits of this build. */
#define ML_MAX_BATCH 32 /* sequences a model holds at once (ml_model_params.max_batch) */
#define ML_MAX_EOS 8    /* end-of-sequence ids a config may list (ml_model_info.eos_token_ids) */

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
    int max_batch;      /* sequences held at once (KV-cache slots), 1..ML_MAX_BATCH */
    ml_act_mode act_mode;
    ml_kv_dtype kv_dtype;
    ml_mesh_kind mesh_backend;
    double collective_timeout_s; /* mpi: a collective that waits longer ends the job, naming the
                                    rank that did not arrive; 0 = wait forever (default 600) */
} ml_model_params;

ml_model_params ml_model_default_params(void);

typedef struct ml_model ml_model;
typedef struct ml_tokenizer ml_tokenizer; /* see "Tokenizer" below */

/* Opens a Llama checkpoint: a Hugging Face directory (config.json + safetensors, single or
 * sharded) or a GGUF file (llama architecture); builds the shard plan for params->tp devices
 * and loads every device's slice (docs/ARCHITECTURE.md, docs/GGUF.md). params may be NULL (the
 * defaults).
 * Under MPI every rank calls it; a failure on any rank fails all of them with that rank's
 * message. */
int ml_model_open(const char *path, const ml_model_params *params, ml_model **out_model);
void ml_model_close(ml_model *model);

/* Opening from caller memory: a Hugging Face config.json text and the tensors of a checkpoint,
 * named as Hugging Face names them ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight"),
 * held by the caller (e.g. the Python package's build_model hands over a torch model's own
 * tensors). */
typedef enum { ML_TENSOR_F32 = 0, ML_TENSOR_F16 = 1, ML_TENSOR_BF16 = 2 } ml_tensor_dtype;

typedef struct {
    const char *name;        /* Hugging Face tensor name */
    int dtype;               /* an ml_tensor_dtype */
    int n_dims;              /* 1..8 */
    const int64_t *shape;    /* [n_dims] */
    const void *data;        /* row-major, contiguous, aligned to the element size */
    size_t n_bytes;          /* product of shape x element size */
} ml_tensor;

/* Like ml_model_open, with the same validation (every tensor against the config, by name, dtype
 * and shape) and shard plan, for a model whose config.json text is config_json[0..config_length)
 * and whose tensors are tensors[0..n_tensors) (names must be distinct; tensors the model does
 * not use are ignored). The tensors are used in place (zero-copy: column-parallel slices point
 * into them; row-parallel slices are packed copies, as for a file), so their memory must stay
 * valid and unchanged until ml_model_close. source names the model in messages and in
 * ml_model_info.path. Under MPI every rank calls it with its own copy of the tensors. */
int ml_model_open_tensors(const char *config_json, size_t config_length, const ml_tensor *tensors, int n_tensors,
                          const char *source, const ml_model_params *params, ml_model **out_model);

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
    int eos_token_ids[ML_MAX_EOS];
    const char *weight_dtype; /* the projections as held in memory: "bf16", "f16", "f32", or a GGUF
                               * block type "q8_0", "q4_0", "q4_1"; "mixed" when they differ */
    const char *isa;          /* kernel variant in use: "avx512bf16", "avx512", "avx2", "scalar" */
    const char *backend;      /* mesh backend: "threads" or "mpi" */
    const char *path;         /* the checkpoint as opened */
    int rank;                 /* this process's rank (0 without MPI) */
    int n_ranks;              /* processes in the mesh */
    int device_begin;         /* first device hosted here */
    int n_local_devices;      /* devices hosted here */
    int intermediate_size;    /* MLP width */
    int tied_embeddings;      /* 1 when the LM head is the embedding matrix */
    double matmul_bytes;      /* bytes of the projection matrices and the LM head as held in
                               * memory: what one decode step reads (KV heads counted once) */
    int max_position_embeddings; /* positions the model was trained for (the config's) */
} ml_model_info;

/* A NULL model leaves every field of *out_info 0 or NULL; a NULL out_info is ignored. */
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

/* Debugging hook (the seed's "compare layer by layer"): during ml_forward it is called with each
 * named intermediate of every chunk of tokens, identified by (name, layer) as llama.cpp's eval
 * callback identifies tensors, so a dump can be compared with Hugging Face's module hooks one
 * operation at a time. In order, per chunk (HF LlamaForCausalLM's module in brackets):
 *   "embed"          layer -1  [n_tok, hidden]          (model.embed_tokens output)
 *   per layer L = 0..n_layers-1:
 *   "attn_norm"      L  [n_tok, hidden]                 (input_layernorm output)
 *   "q"              L  [n_tok, n_heads * head_dim]     (self_attn.q_proj output: before RoPE)
 *   "k"              L  [n_tok, n_kv_heads * head_dim]  (self_attn.k_proj output: before RoPE)
 *   "v"              L  [n_tok, n_kv_heads * head_dim]  (self_attn.v_proj output)
 *   "attn_out"       L  [n_tok, n_heads * head_dim]     (self_attn.o_proj input: softmax(qk)v)
 *   "o_proj"         L  [n_tok, hidden]                 (self_attn.o_proj output)
 *   "attn_residual"  L  [n_tok, hidden]                 (post_attention_layernorm input: x + o_proj)
 *   "ffn_norm"       L  [n_tok, hidden]                 (post_attention_layernorm output)
 *   "gate"           L  [n_tok, intermediate_size]      (mlp.gate_proj output)
 *   "up"             L  [n_tok, intermediate_size]      (mlp.up_proj output)
 *   "ffn_act"        L  [n_tok, intermediate_size]      (mlp.down_proj input: silu(gate) * up)
 *   "ffn_out"        L  [n_tok, hidden]                 (mlp.down_proj output)
 *   "layer_out"      L  [n_tok, hidden]                 (the decoder layer's output)
 *   "final_norm"     layer -1  [n_tok, hidden]          (model.norm output)
 * Sharded intermediates (q, k, v, attn_out, gate, up, ffn_act) are gathered from the devices
 * into HF's layout (heads and features in order), so any tp compares directly with HF; under
 * MPI, where a process holds only its own devices, they are not reported. In fast mode the
 * matmul inputs (attn_norm, attn_out, ffn_norm, ffn_act) are the bf16-rounded values the
 * matmuls see. tokens token_begin.. of the flattened batch; data is valid during the call only. */
typedef struct {
    const char *name;   /* one of the names above */
    int layer;          /* 0..n_layers-1, or -1 outside the layers */
    int token_begin;    /* index in the flattened batch of the first token */
    int n_tok;          /* tokens (rows) */
    int width;          /* values per token (columns) */
    const float *data;  /* [n_tok, width] */
} ml_hidden_state;
typedef void (*ml_hidden_callback)(const ml_hidden_state *state, void *user);
/* Sets the hook; a NULL callback removes it, a NULL model is ignored. */
void ml_model_set_hidden_callback(ml_model *model, ml_hidden_callback callback, void *user);

/* Forgets the cached positions of a slot (nothing to free; positions are overwritten). */
int ml_reset_slot(ml_model *model, int slot);

/* ---- Generation (runtime/; docs/SAMPLING.md) ---------------------------------------------- */

/* A bias added to one token's logit before sampling (OpenAI's logit_bias); -INFINITY bans it. */
typedef struct {
    int32_t token;
    float bias;
} ml_logit_bias;

/* Most alternatives ml_sampling_params.top_logprobs may ask for (OpenAI allows 20). */
#define ML_MAX_TOP_LOGPROBS 20

/* Sampling parameters; get the defaults from ml_sampling_default_params() and change fields.
 * The logits pass through, in this order: logit_bias, repeat_penalty, presence/frequency
 * penalties, the min_tokens ban; then greedy argmax when temperature <= 0, else temperature,
 * top_k, top_p, min_p, typical_p (Hugging Face's order) and a seeded draw. Each value that
 * disables a step is its default. */
typedef struct {
    float temperature;       /* <= 0: greedy (default 0) */
    int top_k;               /* keep the k most likely tokens (ties with the k-th too); 0 = off */
    float top_p;             /* nucleus: smallest set reaching this probability, (0, 1]; 1 = off */
    uint64_t seed;           /* the same seed gives the same tokens (default 42) */
    int max_tokens;          /* tokens to generate (default 32) */
    int ignore_eos;          /* non-zero: do not stop at end-of-generation ids (stop_tokens still stop) */
    int prefill_decode;      /* non-zero: feed the prompt one token at a time through decode */
    const int32_t *stop_tokens; /* extra ids that end generation (e.g. a chat end-of-turn), or NULL */
    int n_stop_tokens;
    /* --- added in 0.2 (zero-filled structs from 0.1 callers get them off, except as noted) --- */
    float min_p;             /* drop tokens with p < min_p * p(most likely), [0, 1]; 0 = off */
    float typical_p;         /* locally typical sampling mass, (0, 1]; 1 = off (0 is read as 1) */
    float repeat_penalty;    /* HF repetition_penalty on tokens of the window (prompt included):
                                logit < 0 ? logit * p : logit / p; > 0, 1 = off (0 is read as 1) */
    float presence_penalty;  /* OpenAI: logit -= presence_penalty once for a token generated in the
                                window, -100..100 (OpenAI allows -2..2); 0 = off */
    float frequency_penalty; /* OpenAI: logit -= frequency_penalty * times generated in the window */
    int repeat_last_n;       /* the penalties' window: the last N tokens of prompt + generated;
                                -1 = all, 0 = penalties off (default 64, as llama.cpp) */
    const ml_logit_bias *logit_bias; /* added to the logits before everything else, or NULL */
    int n_logit_bias;
    int min_tokens;          /* end-of-generation ids, stop_tokens and stop strings cannot end the
                                generation before this many tokens (their ids are banned) */
    int logprobs;            /* non-zero: report each token's log-probability (ml_token_event) */
    int top_logprobs;        /* and this many most likely alternatives, 0..ML_MAX_TOP_LOGPROBS */
    const char *const *stop_strings; /* text that ends generation (ml_generate_text only): matched
                                on the generated text, never part of it, across token boundaries */
    int n_stop_strings;
} ml_sampling_params;

ml_sampling_params ml_sampling_default_params(void);

/* Called for every generated token; return non-zero to stop. */
typedef int (*ml_token_callback)(int32_t token, void *user);

/* Why a generation ended. */
typedef enum {
    ML_FINISH_LENGTH = 0,     /* max_tokens reached */
    ML_FINISH_EOS = 1,        /* an end-of-generation id or a stop_tokens id was generated */
    ML_FINISH_STOP_STRING = 2,/* a stop string appeared in the text */
    ML_FINISH_CALLBACK = 3    /* the callback returned non-zero */
} ml_finish_reason;

typedef struct {
    int n_generated;         /* ids written to out_tokens (the ending EOS / stop-string tokens included) */
    int stopped_at_eos;      /* finish_reason == ML_FINISH_EOS */
    double prefill_ms;       /* prompt processing, including the first token's logits */
    double decode_ms;        /* all decode steps */
    ml_finish_reason finish_reason;
    int stop_string;         /* index into stop_strings of the one that matched, else -1 */
} ml_generate_stats;

/* Generates up to sp->max_tokens tokens after prompt in KV slot 0. Generated ids go to out_tokens
 * (capacity sp->max_tokens) and to the callback if given. Generation ends at the model's
 * end-of-generation ids (config.json and generation_config.json eos_token_id; GGUF
 * tokenizer.ggml.eos_token_id) unless ignore_eos, and at sp->stop_tokens. Stop strings need
 * the text: they are ML_ERR_ARG here (use ml_generate_text). */
int ml_generate(ml_model *model, const int32_t *prompt, int n_prompt, const ml_sampling_params *sp,
                int32_t *out_tokens, ml_token_callback callback, void *user, ml_generate_stats *stats);

/* Like ml_generate, but keeps the first n_keep positions of slot 0's KV cache, which must hold
 * prompt[0..n_keep-1] from earlier calls (a chat's previous turns), and feeds only the rest.
 * The last generated token is not fed; the next call's prompt carries it. */
int ml_generate_continue(ml_model *model, const int32_t *prompt, int n_prompt, int n_keep,
                         const ml_sampling_params *sp, int32_t *out_tokens, ml_token_callback callback,
                         void *user, ml_generate_stats *stats);

/* One generated token, as ml_generate_text reports it. */
typedef struct {
    int32_t token;
    int index;                  /* 0 for the first generated token */
    const char *text;           /* text this token releases (not NUL-terminated, maybe empty: text
                                   that could begin a stop string, or an incomplete UTF-8
                                   character, is held until it is known); never an end-of-
                                   generation token's text, never a stop string */
    size_t text_length;
    int is_end;                 /* this token ended the generation (EOS id or stop string) */
    /* with sp->logprobs: natural-log probabilities under the model's distribution (log-softmax
     * of the logits before any penalty or warper), as OpenAI's logprobs */
    float logprob;
    int n_top;                  /* sp->top_logprobs */
    const int32_t *top_ids;     /* [n_top] most likely tokens, best first */
    const float *top_logprobs;  /* [n_top] */
} ml_token_event;

/* Return non-zero to stop the generation (finish_reason ML_FINISH_CALLBACK). */
typedef int (*ml_event_callback)(const ml_token_event *event, void *user);

/* The text front ends use (the CLI, the Python package, the server): ml_generate_continue plus
 *   - the tokenizer's end-of-generation ids stop as well (its EOS and end-of-turn specials such
 *     as <|eot_id|>, <|im_end|>, <|end_of_text|>, <|endoftext|>, <|eom_id|>), unless ignore_eos;
 *   - the callback receives each token's text, decoded with detokenize_flags
 *     (ML_DETOKENIZE_SKIP_SPECIAL or 0); end-of-generation tokens give no text;
 *   - sp->stop_strings end the generation when they appear in the text; the text before a stop
 *     string is delivered, the stop string and anything after it are not.
 * The concatenated event texts are the generated text: the last event of a run carries any text
 * still held (unless the callback stopped the run). */
int ml_generate_text(ml_model *model, const ml_tokenizer *tok, const int32_t *prompt, int n_prompt,
                     int n_keep, const ml_sampling_params *sp, unsigned detokenize_flags, int32_t *out_tokens,
                     ml_event_callback callback, void *user, ml_generate_stats *stats);

/* The ids that end a generation for this model and tokenizer (tok may be NULL): the config's
 * and generation_config's EOS ids, and the tokenizer's EOS and end-of-turn specials, each once.
 * Returns how many were found (may exceed capacity; ids beyond it are not written). */
int ml_end_of_generation_ids(const ml_model *model, const ml_tokenizer *tok, int32_t *ids, int capacity);

/* ---- Continuous batching (runtime/generator.c; docs/SERVER.md) --------------------------------
 * A generator runs many sequences over the model's KV slots at once: each ml_generator_step is
 * one ml_forward over every running sequence, where a sequence still reading its prompt feeds
 * its next chunk of prompt tokens and the others feed their last generated token. Sequences are
 * added and cancelled between steps, each into a free slot, so a new request starts at the next
 * step and a long prompt never stops the others' tokens for more than one chunk. Each sequence
 * samples, stops and streams text exactly as ml_generate_text does. Not thread-safe: one thread
 * (the server's scheduler) owns the generator and the model. Under MPI every rank makes the same
 * calls in the same order; rank 0 samples and the callbacks run on rank 0 only. */
typedef struct ml_generator ml_generator;

typedef struct {
    int prefill_chunk; /* prompt tokens fed per step, over all sequences still reading their
                          prompts (0: 256); a smaller chunk keeps the others' steps shorter */
} ml_generator_params;

typedef struct {
    const int32_t *prompt;              /* [n_prompt] (copied) */
    int n_prompt;                       /* >= 1; n_prompt + sampling->max_tokens <= max_seq_len */
    const ml_sampling_params *sampling; /* copied with its arrays; max_tokens >= 1 */
    unsigned detokenize_flags;          /* ML_DETOKENIZE_* for the events' text */
    ml_event_callback on_event;         /* each token, as ml_generate_text; non-zero ends it */
    /* once, when the sequence ends by itself (not after ml_generator_cancel); status is ML_OK, or
     * the failure of the step that ended it */
    void (*on_done)(const ml_generate_stats *stats, int status, void *user);
    void *user;
} ml_sequence_request;

/* prefill_chunk and the slots (the model's max_batch) are fixed at creation; params may be NULL. */
int ml_generator_create(ml_model *model, const ml_tokenizer *tok, const ml_generator_params *params,
                        ml_generator **out);
/* Frees the generator; running sequences end without callbacks. */
void ml_generator_free(ml_generator *gen);
/* Slots not held by a sequence. */
int ml_generator_free_slots(const ml_generator *gen);
/* Starts a sequence in a free slot (*out_slot, may be NULL). ML_ERR_ARG names a bad request
 * (empty prompt, too long for the context, bad sampling values); ML_ERR_UNSUPPORTED when every
 * slot is busy. Nothing runs until the next step. */
int ml_generator_add(ml_generator *gen, const ml_sequence_request *request, int *out_slot);
/* Ends the sequence in slot at once, without callbacks; its slot is free for the next add. */
int ml_generator_cancel(ml_generator *gen, int slot);
/* Under MPI: copies bytes of buf from rank 0 to every rank of the model's mesh (every rank calls
 * it with the same size); a no-op in one process. For front ends that keep the ranks' generators
 * in step (the server sends each step's new and cancelled sequences). */
int ml_broadcast(ml_model *model, void *buf, size_t bytes);
/* One forward over every running sequence, then one sampled token for each that has read its
 * whole prompt; sequences that end call on_done and free their slot. Does nothing when no
 * sequence runs. A failed forward ends every running sequence with that status. */
int ml_generator_step(ml_generator *gen);

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

/* Checkpoint files are memory-mapped. A file truncated or rewritten in place (cp over it) while
 * a model uses it makes reads of the mapping raise SIGBUS, which by default kills the process.
 * ml_model_open installs, once per process, a SIGBUS handler that maps zero pages over the
 * affected checkpoint mapping and flags it; ml_forward (and so ml_generate and ml_eval_run) then
 * fails with ML_ERR_IO "FILE changed or was truncated while in use", as it does when the file's
 * size or modification time has changed since it was mapped (checked with fstat before and
 * after each forward). Replacing a file by rename is safe: the old inode stays mapped. A SIGBUS
 * outside checkpoint mappings goes to the handler that was installed before ours. An embedding
 * program that installs its own SIGBUS handler after ml_model_open must either chain to the one
 * it replaces or call ml_install_sigbus_handler() again afterwards (ours chains to theirs).
 * Idempotent; ML_ERR_INTERNAL if sigaction fails. */
int ml_install_sigbus_handler(void);

/* Under MPI, every rank sees the same failure when the ranks agreed on it: a rank could not load
 * its model, or the ranks disagree on the configuration, shard plan, weights, options or inputs
 * (compared before the first step). Then ml_last_error_is_shared() is non-zero and a program
 * should print the message on rank 0 only (ml_process_rank). Any other failure under MPI is
 * this rank's own: print it, then ml_abort_job() so the other ranks do not wait for it. */
int ml_last_error_is_shared(void);
/* This process's rank in the MPI job the library joined; 0 without MPI. */
int ml_process_rank(void);
/* Ends every rank of the MPI job with exit_code (MPI_Abort) when this process is one of several
 * ranks; returns without doing anything otherwise. */
void ml_abort_job(int exit_code);

/* ---- Tokenizer (tokenizer/): byte-level BPE from tokenizer.json, tokenizer.model (tiktoken) or
 * GGUF metadata; streaming detokenisation; chat templates. ------------------------------------ */
typedef struct ml_tokenizer ml_tokenizer;

/* ---- Loading ---------------------------------------------------------------------------- */

/* Opens a tokenizer from a model directory or a file:
 *   DIR             DIR/tokenizer.json if present, else DIR/tokenizer.model (tiktoken format),
 *                   with DIR/tokenizer_config.json and DIR/chat_template.jinja when present;
 *   FILE.json       a tokenizer.json (tokenizer_config.json beside it is read if present);
 *   FILE.gguf       the tokenizer.ggml.* metadata of a GGUF file (or any file starting "GGUF");
 *   other FILE      a tiktoken tokenizer.model (base64 token, space, rank per line).
 * Errors: ML_ERR_IO (missing/unreadable), ML_ERR_FORMAT (malformed file),
 *         ML_ERR_UNSUPPORTED (a valid file this engine cannot run, e.g. a SentencePiece or
 *         WordPiece model, a normalizer, a non-byte-level vocabulary). */
int ml_tokenizer_open(const char *path, ml_tokenizer **out);

/* The same loaders from memory; source names the input in error messages. config_json may be
 * NULL (no tokenizer_config.json). The texts need not be NUL-terminated. */
int ml_tokenizer_load_hf(const char *json, size_t json_length, const char *config_json, size_t config_length,
                         const char *source, ml_tokenizer **out);
int ml_tokenizer_load_tiktoken(const char *text, size_t length, const char *source, ml_tokenizer **out);

/* Construction from plain arrays, as GGUF stores a tokenizer (tokenizer.ggml.*). Strings need
 * not be NUL-terminated when their lengths are given, so they may point into a mapped file. */
typedef struct {
    const char *source;            /* for error messages, e.g. the GGUF path */
    const char *model;             /* tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" */
    const char *pre;               /* tokenizer.ggml.pre: "llama-bpe", "llama3", "gpt2", "smollm",
                                      "qwen2", "default", ...; NULL = "default" (GPT-2 pattern) */
    int32_t n_tokens;
    const char *const *tokens;     /* [n_tokens] tokenizer.ggml.tokens, GPT-2 byte-level text */
    const size_t *token_lengths;   /* [n_tokens] byte lengths, or NULL for NUL-terminated */
    const int32_t *token_types;    /* [n_tokens] tokenizer.ggml.token_type (1 normal, 2 unknown,
                                      3 control, 4 user-defined, 5 unused, 6 byte), or NULL */
    int32_t n_merges;
    const char *const *merges;     /* [n_merges] tokenizer.ggml.merges, "left right", by rank */
    const size_t *merge_lengths;   /* [n_merges] or NULL */
    int32_t bos_id;                /* tokenizer.ggml.bos_token_id, -1 if absent */
    int32_t eos_id;                /* tokenizer.ggml.eos_token_id, -1 if absent */
    int32_t unk_id;                /* tokenizer.ggml.unknown_token_id, -1 if absent (checked, not
                                      used: BPE drops bytes the vocabulary lacks, as llama.cpp) */
    int add_bos;                   /* tokenizer.ggml.add_bos_token: 1, 0, or -1 if absent (then:
                                      1 for the Llama 3 pre-tokenizer, else 0, as llama.cpp) */
    int add_eos;                   /* tokenizer.ggml.add_eos_token: 1, 0, or -1 if absent (0) */
    const char *chat_template;     /* tokenizer.chat_template, NUL-terminated, or NULL */
    /* model "llama" (SentencePiece-style BPE; tokens are text with '▁' for spaces, byte tokens
     * "<0xXX>" have type 6): */
    const float *scores;           /* [n_tokens] tokenizer.ggml.scores: without merges, a pair of
                                      tokens merges when their concatenation is a normal token,
                                      the highest score first (leftmost on ties), as llama.cpp */
    int add_space_prefix;          /* tokenizer.ggml.add_space_prefix: 1 (also when -1: absent) puts
                                      '▁' before each text segment and strips it on decoding */
} ml_tokenizer_arrays;

int ml_tokenizer_from_arrays(const ml_tokenizer_arrays *arrays, ml_tokenizer **out);

/* The tokenizer of a GGUF file (tokenizer.ggml.* metadata). */
int ml_tokenizer_open_gguf(const char *path, ml_tokenizer **out);

/* The tokenizer of an opened model's checkpoint, as ml_tokenizer_open on its path would give,
 * but a GGUF file's metadata is not read again: the model parsed it once at open. */
int ml_model_open_tokenizer(const ml_model *model, ml_tokenizer **out);

void ml_tokenizer_close(ml_tokenizer *tok);

/* ---- Facts ------------------------------------------------------------------------------ */

typedef struct {
    int32_t vocab_size;        /* highest token id + 1 */
    int32_t n_merges;          /* merge rules (tiktoken: derived from the ranks) */
    int32_t n_added;           /* added tokens (special or not) */
    int32_t bos_id;            /* -1 if none */
    int32_t eos_id;            /* -1 if none */
    int adds_bos;              /* ML_TOKENIZE_ADD_SPECIAL puts bos_id first */
    int n_prefix, n_suffix;    /* tokens ML_TOKENIZE_ADD_SPECIAL adds before / after */
    const char *format;        /* "tokenizer.json", "tiktoken" or "arrays" */
    const char *pre_tokenizer; /* "llama3", "gpt2", "smollm", "qwen2" or "custom" */
    const char *source;        /* path or description given at load */
} ml_tokenizer_info;

void ml_tokenizer_get_info(const ml_tokenizer *tok, ml_tokenizer_info *out_info);

/* Id of the token whose text is exactly text[0..length) (an added/special token's content, or a
 * vocabulary entry's bytes); -1 if there is none. */
int32_t ml_tokenizer_token_id(const ml_tokenizer *tok, const char *text, size_t length);
/* Bytes of token id (not NUL-terminated; valid while tok lives). ML_ERR_ARG for an unknown id. */
int ml_tokenizer_token_bytes(const ml_tokenizer *tok, int32_t id, const char **bytes, size_t *length);
/* Non-zero for special (control) tokens such as <|eot_id|>. */
int ml_tokenizer_is_special(const ml_tokenizer *tok, int32_t id);
/* The model's chat_template (Jinja source) from tokenizer_config.json, chat_template.jinja or
 * GGUF; NULL if none. */
const char *ml_tokenizer_chat_template(const ml_tokenizer *tok);

/* ---- Encoding and decoding -------------------------------------------------------------- */

enum {
    /* Add the special tokens the tokenizer's post-processor (or tokenizer_config.json, or the
     * tiktoken Llama 3 convention, or GGUF add_bos_token) calls for, e.g. BOS. */
    ML_TOKENIZE_ADD_SPECIAL = 1u << 0,
    /* Recognise special-token strings in the text ("<|eot_id|>" becomes one token). Without it
     * they are encoded as plain text, like HF's split_special_tokens=True and tiktoken's
     * encode_ordinary. Non-special added tokens are always recognised, as HF does. */
    ML_TOKENIZE_PARSE_SPECIAL = 1u << 1,
};

/* Encodes text[0..length) (any bytes: invalid UTF-8 is encoded as bytes, never rejected).
 * *out_ids is malloc'd (free() it; non-NULL even when *out_n is 0). */
int ml_tokenize(const ml_tokenizer *tok, const char *text, size_t length, unsigned flags, int32_t **out_ids,
                size_t *out_n);

enum {
    ML_DETOKENIZE_SKIP_SPECIAL = 1u << 0, /* leave special tokens out of the text */
};

/* Decodes ids to their bytes (concatenated; the result may hold invalid UTF-8 when the ids
 * split a character). *out_text is malloc'd and NUL-terminated (free() it).
 * ML_ERR_ARG names the first id that is not in the vocabulary. */
int ml_detokenize(const ml_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, char **out_text,
                  size_t *out_length);

/* Streaming decoder: feed generated ids one at a time and get back only text that ends on a
 * whole UTF-8 character; bytes of an incomplete character are held until the next token
 * completes it. Bytes that can never form a valid character are released as they are, so the
 * concatenation of every push and the final finish equals ml_detokenize of all the ids. */
typedef struct ml_stream_decoder ml_stream_decoder;

int ml_stream_decoder_create(const ml_tokenizer *tok, unsigned flags, ml_stream_decoder **out);
/* *text (not NUL-terminated, maybe empty) is valid until the next call on the decoder. */
int ml_stream_decoder_push(ml_stream_decoder *dec, int32_t id, const char **text, size_t *length);
/* Releases the held bytes (an incomplete character at the very end) and resets the decoder. */
int ml_stream_decoder_finish(ml_stream_decoder *dec, const char **text, size_t *length);
void ml_stream_decoder_free(ml_stream_decoder *dec);

/* ---- Chat templates --------------------------------------------------------------------- */

typedef struct {
    const char *role;    /* "system", "user", "assistant" (other roles are rendered as given) */
    const char *content; /* UTF-8, NUL-terminated */
} ml_chat_message;

typedef struct ml_chat_template ml_chat_template;

/* A chat template from its Jinja source (tokenizer_config.json "chat_template", GGUF
 * tokenizer.chat_template), run by meshllama's Jinja engine as transformers runs it. Built-in
 * renderings of three formats are the fallback, used when the source does not parse (or at
 * render time needs a Jinja feature the engine lacks) but is recognisably one of them:
 *   "llama3"    Llama 3 instruct (<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>)
 *   "llama3.1"  Llama 3.1/3.2/3.3 instruct (system block with the knowledge/today dates)
 *   "chatml"    ChatML (<|im_start|>role\n...<|im_end|>\n), with the template's default system
 *               prompt if it has one (SmolLM2).
 * force_name (one of the names above, or NULL) uses that built-in format: source may then be
 * NULL. bos_token is the template's bos_token (NULL: "<|begin_of_text|>"). A source that is
 * neither usable Jinja nor a known format, or none, is ML_ERR_UNSUPPORTED naming the Jinja error
 * and how to force a format. */
int ml_chat_template_create(const char *source, const char *force_name, const char *bos_token,
                            ml_chat_template **out);
/* The same, also giving the template's eos_token (NULL: undefined in the template). */
int ml_chat_template_create_with_tokens(const char *source, const char *force_name, const char *bos_token,
                                        const char *eos_token, ml_chat_template **out);
/* The same with the tokenizer's own template and BOS/EOS texts. */
int ml_chat_template_from_tokenizer(const ml_tokenizer *tok, const char *force_name, ml_chat_template **out);

typedef struct {
    int add_generation_prompt; /* end with the assistant header, ready for the reply */
    const char *date_string;   /* Llama 3.1+ "Today Date: ..." (e.g. "26 Jul 2024"), passed to the
                                  template as date_string; NULL: the template decides (3.2 calls
                                  strftime_now, today; 3.1 uses "26 Jul 2024"), as in transformers */
} ml_chat_params;

/* Renders the conversation exactly as transformers' apply_chat_template(tokenize=False) does
 * (messages with role and content, no tools). A "system" first message is the system prompt.
 * params may be NULL (add_generation_prompt on, no date_string: the template's own default).
 * Errors from the model's template (raise_exception, e.g. "Conversation roles must alternate")
 * are ML_ERR_ARG with the template's message and line. At least one message is required. Encode the
 * result with ML_TOKENIZE_PARSE_SPECIAL and without ML_TOKENIZE_ADD_SPECIAL (the Llama
 * templates already start with BOS). *out_text is malloc'd and NUL-terminated. */
int ml_chat_template_apply(const ml_chat_template *tmpl, const ml_chat_message *messages, size_t n_messages,
                           const ml_chat_params *params, char **out_text, size_t *out_length);
/* The same with the conversation as JSON, as chat APIs send it: messages_json is an array of
 * message objects (role, content, and any other fields such as tool_calls, which the model's
 * template may read); tools_json is an array of tool schemas ({"type": "function", "function":
 * {...}}) passed to the template as `tools`, or NULL. A built-in format renders role and text
 * content only (other content is ML_ERR_UNSUPPORTED). Malformed JSON is ML_ERR_ARG naming the
 * line and column. */
int ml_chat_template_apply_json(const ml_chat_template *tmpl, const char *messages_json, const char *tools_json,
                                const ml_chat_params *params, char **out_text, size_t *out_length);
/* "jinja" (the model's own template), or the built-in "llama3", "llama3.1", "chatml". */
const char *ml_chat_template_name(const ml_chat_template *tmpl);
/* Text of the token that ends a turn, to add to the stop ids: "<|eot_id|>" or "<|im_end|>" when
 * the template is (or looks like) a built-in format, else the eos_token text, else "". */
const char *ml_chat_template_end_of_turn(const ml_chat_template *tmpl);
void ml_chat_template_free(ml_chat_template *tmpl);

/* Describes a checkpoint without loading it: config, every tensor (dtype, shape, bytes) and
 * the shard plan of each device for the given tp / mesh (mesh_rows = mesh_cols = 0 for 1-D).
 * Writes human-readable text, or one JSON object when json is non-zero, to out. */
int ml_inspect(const char *path, int tp, int mesh_rows, int mesh_cols, int json, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
