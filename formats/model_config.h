/* The engine's model configuration: what the forward pass needs to know about a checkpoint of
 * the Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM: one forward pass,
 * differing only in the bias terms and the attention window), whatever file it came from. Producers: formats/hf_config.c (config.json and
 * generation_config.json) and formats/gguf_llama.c (GGUF llama.* metadata). */
#ifndef ML_FORMATS_MODEL_CONFIG_H
#define ML_FORMATS_MODEL_CONFIG_H

#include "meshllama.h"

typedef enum { ML_ROPE_DEFAULT = 0, ML_ROPE_LLAMA3 = 1 } ml_rope_type;

/* HF model_type: which transformers class the checkpoint's config describes. */
typedef enum { ML_ARCH_LLAMA = 0, ML_ARCH_MISTRAL = 1, ML_ARCH_QWEN2 = 2 } ml_arch;

static inline const char *ml_arch_model_type(ml_arch arch) {
    return arch == ML_ARCH_MISTRAL ? "mistral" : arch == ML_ARCH_QWEN2 ? "qwen2" : "llama";
}

typedef struct {
    ml_arch arch;
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;                    /* num_hidden_layers */
    int n_heads;                     /* num_attention_heads */
    int n_kv_heads;                  /* num_key_value_heads (default n_heads) */
    int head_dim;                    /* explicit head_dim, else hidden_size / n_heads */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    ml_rope_type rope_type;          /* from rope_scaling (v4) or rope_parameters (v5) */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int rope_original_max_position;  /* original_max_position_embeddings */
    int tie_word_embeddings;
    int sliding_window;              /* keys within this many positions of the query; 0: no window
                                      * (Mistral's sliding_window; Qwen2's when use_sliding_window) */
    int qkv_bias;                    /* q_proj, k_proj, v_proj have biases (Llama attention_bias, Qwen2) */
    int o_bias;                      /* o_proj has a bias (Llama attention_bias) */
    int mlp_bias;                    /* gate_proj, up_proj, down_proj have biases (Llama mlp_bias) */
    int bos_token_id;                /* -1 if absent */
    int n_eos;
    int eos_token_ids[ML_MAX_EOS];   /* config.json's, then generation_config.json's new ones */
    char torch_dtype[16];            /* "bfloat16", "float32", ... or "" */
} ml_config;

#endif
