/* Hugging Face config.json / generation_config.json for LlamaForCausalLM, MistralForCausalLM and
 * Qwen2ForCausalLM. Defaults follow transformers' LlamaConfig, MistralConfig and Qwen2Config;
 * RoPE parameters are read from either the v4 layout ("rope_theta" + "rope_scaling") or the v5
 * layout ("rope_parameters"). */
#include "formats/hf_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/json_util.h"

/* Upper bounds that keep every product of two dimensions (and dimension * layers) inside
 * int64 and every single dimension inside int with room to spare. */
#define ML_CONFIG_MAX_DIM (1 << 24)
#define ML_CONFIG_MAX_LAYERS 1024

/* Largest double range in which every integer is exact. */
#define ML_JSON_MAX_EXACT_INTEGER 9007199254740992.0

/* HF writes Python None as null; a null optional key means "use the default". */
static json_t *member(const json_t *object, const char *key) {
    json_t *value = json_object_get(object, key);
    return (value && !json_is_null(value)) ? value : NULL;
}

/* An integer, or a real with no fractional part (some writers emit 64.0). */
static int json_as_integer(const json_t *value, long long *out) {
    if (json_is_integer(value)) {
        *out = (long long)json_integer_value(value);
        return 0;
    }
    if (json_is_real(value)) {
        double real = json_real_value(value);
        if (isfinite(real) && real == floor(real) && fabs(real) <= ML_JSON_MAX_EXACT_INTEGER) {
            *out = (long long)real;
            return 0;
        }
    }
    return -1;
}

static int type_error(int code, const char *source, const char *key, const char *expected,
                      const json_t *value) {
    char found[96];
    ml_json_describe(value, found, sizeof found);
    return ml_set_error(code, "%s: key \"%s\": expected %s, found %s", source, key, expected, found);
}

static int top_level_error(const char *source, const json_t *root) {
    char found[96];
    ml_json_describe(root, found, sizeof found);
    return ml_set_error(ML_ERR_CONFIG, "%s: expected a JSON object at the top level, found %s", source, found);
}

static int expect_int_range(const char *source, const char *key, const json_t *value, long long min_value,
                            long long max_value, int *out) {
    long long integer;
    char expected[96];
    snprintf(expected, sizeof expected, "an integer in [%lld, %lld]", min_value, max_value);
    if (json_as_integer(value, &integer) != 0) return type_error(ML_ERR_CONFIG, source, key, expected, value);
    if (integer < min_value || integer > max_value) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected %s, found %lld", source, key, expected,
                            integer);
    }
    *out = (int)integer;
    return ML_OK;
}

static int required_int(const char *source, const json_t *root, const char *key, long long max_value,
                        int *out) {
    const json_t *value = member(root, key);
    if (!value) {
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (expected an integer in [1, %lld])",
                            source, key, max_value);
    }
    return expect_int_range(source, key, value, 1, max_value, out);
}

/* Leaves *out untouched when the key is absent or null. */
static int optional_int(const char *source, const json_t *root, const char *key, long long max_value,
                        int *out) {
    const json_t *value = member(root, key);
    return value ? expect_int_range(source, key, value, 1, max_value, out) : ML_OK;
}

/* A finite, strictly positive number that stays finite and positive as a float. */
static int expect_positive_float(const char *source, const char *key, const json_t *value, float *out) {
    if (!json_is_number(value)) return type_error(ML_ERR_CONFIG, source, key, "a positive number", value);
    double number = json_number_value(value);
    float as_float = (float)number;
    if (!isfinite(number) || !(number > 0) || !isfinite(as_float) || !(as_float > 0)) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a finite positive number, found %.17g",
                            source, key, number);
    }
    *out = as_float;
    return ML_OK;
}

static int optional_positive_float(const char *source, const json_t *root, const char *key, float *out) {
    const json_t *value = member(root, key);
    return value ? expect_positive_float(source, key, value, out) : ML_OK;
}

static int optional_bool(const char *source, const json_t *root, const char *key, int *out) {
    const json_t *value = member(root, key);
    if (!value) return ML_OK;
    if (!json_is_boolean(value)) return type_error(ML_ERR_CONFIG, source, key, "true or false", value);
    *out = json_is_true(value);
    return ML_OK;
}

/* Returns the string value of an optional key, NULL when absent or null. */
static int optional_string(const char *source, const json_t *root, const char *key, const char **out) {
    const json_t *value = member(root, key);
    *out = NULL;
    if (!value) return ML_OK;
    if (!json_is_string(value)) return type_error(ML_ERR_CONFIG, source, key, "a string", value);
    *out = json_string_value(value);
    return ML_OK;
}

/* A token id in [0, vocab_size); vocab_size <= 0 means "unknown", checking only the sign. */
static int expect_token_id(const char *source, const char *key, const json_t *value, int vocab_size,
                           int *out) {
    long long id;
    if (json_as_integer(value, &id) != 0) return type_error(ML_ERR_CONFIG, source, key, "a token id", value);
    long long limit = vocab_size > 0 ? vocab_size : ML_CONFIG_MAX_DIM;
    if (id < 0 || id >= limit) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a token id in [0, %lld) (vocab_size), found %lld",
                            source, key, limit, id);
    }
    *out = (int)id;
    return ML_OK;
}

/* eos_token_id: one id or a list of ids (Llama 3 instruct lists three). */
static int parse_eos(const char *source, const char *key, const json_t *value, int vocab_size,
                     int ids[ML_MAX_EOS], int *n_ids) {
    if (!json_is_array(value)) {
        ML_TRY(expect_token_id(source, key, value, vocab_size, &ids[0]));
        *n_ids = 1;
        return ML_OK;
    }
    size_t count = json_array_size(value);
    if (count > ML_MAX_EOS) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected at most %d token ids, found %zu", source, key,
                            ML_MAX_EOS, count);
    }
    for (size_t i = 0; i < count; i++) {
        char element_key[64];
        snprintf(element_key, sizeof element_key, "%s[%zu]", key, i);
        ML_TRY(expect_token_id(source, element_key, json_array_get(value, i), vocab_size, &ids[i]));
    }
    *n_ids = (int)count;
    return ML_OK;
}

/* The transformers classes this engine runs: one forward pass (RMSNorm, rotate-half RoPE, GQA,
 * SwiGLU), differing in bias terms and the attention window, and in the defaults their config
 * classes give absent keys (LlamaConfig, MistralConfig, Qwen2Config). */
typedef struct {
    const char *model_type;
    const char *class_name;
    ml_arch arch;
    int max_position_embeddings; /* the config class's default */
} arch_info;

static const arch_info known_archs[] = {
    {"llama", "LlamaForCausalLM", ML_ARCH_LLAMA, 2048},
    {"mistral", "MistralForCausalLM", ML_ARCH_MISTRAL, 4096 * 32},
    {"qwen2", "Qwen2ForCausalLM", ML_ARCH_QWEN2, 32768},
};
#define N_KNOWN_ARCHS (sizeof known_archs / sizeof known_archs[0])
#define KNOWN_MODEL_TYPES "\"llama\", \"mistral\" or \"qwen2\""
#define KNOWN_CLASSES "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM"

static const arch_info *arch_by_model_type(const char *model_type) {
    for (size_t i = 0; i < N_KNOWN_ARCHS; i++)
        if (strcmp(known_archs[i].model_type, model_type) == 0) return &known_archs[i];
    return NULL;
}

static const arch_info *arch_by_class(const char *class_name) {
    for (size_t i = 0; i < N_KNOWN_ARCHS; i++)
        if (strcmp(known_archs[i].class_name, class_name) == 0) return &known_archs[i];
    return NULL;
}

/* model_type decides, as transformers' AutoConfig does; every name in "architectures" must be a
 * class this engine runs and agree with it. Without model_type, architectures[0] decides; with
 * neither, the checkpoint is a Llama. */
static int parse_model_type(const char *source, const json_t *root, const arch_info **out) {
    const char *model_type;
    ML_TRY(optional_string(source, root, "model_type", &model_type));
    const arch_info *arch = NULL;
    if (model_type) {
        arch = arch_by_model_type(model_type);
        if (!arch)
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"model_type\": expected " KNOWN_MODEL_TYPES
                                ", found \"%.60s\" (unsupported model type)", source, model_type);
    }
    const json_t *classes = member(root, "architectures");
    if (classes && !json_is_array(classes)) return type_error(ML_ERR_CONFIG, source, "architectures", "a list of class names", classes);
    for (size_t i = 0; classes && i < json_array_size(classes); i++) {
        char key[48];
        snprintf(key, sizeof key, "architectures[%zu]", i);
        const json_t *entry = json_array_get(classes, i);
        if (!json_is_string(entry)) return type_error(ML_ERR_CONFIG, source, key, "a class name", entry);
        const arch_info *named = arch_by_class(json_string_value(entry));
        if (!named)
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\": expected " KNOWN_CLASSES ", found \"%.60s\" "
                                "(unsupported architecture)", source, key, json_string_value(entry));
        if (arch && named != arch)
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": %s does not match model_type \"%s\" (expected %s)",
                                source, key, named->class_name, arch->model_type, arch->class_name);
        if (!arch) arch = named;
    }
    *out = arch ? arch : &known_archs[0];
    return ML_OK;
}

/* Keys whose values this engine cannot run even though they describe a valid model. */
static int check_activation(const char *source, const json_t *root) {
    const char *hidden_act;
    ML_TRY(optional_string(source, root, "hidden_act", &hidden_act));
    if (hidden_act && strcmp(hidden_act, "silu") != 0) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"hidden_act\": expected \"silu\", found \"%s\" (unsupported activation)",
                            source, hidden_act);
    }
    return ML_OK;
}

/* Which projections have biases, as each class builds its nn.Linear layers: LlamaAttention
 * bias=attention_bias (q, k, v and o), LlamaMLP bias=mlp_bias; Qwen2Attention q, k, v always and
 * o never, no MLP bias; Mistral none (MistralConfig has neither key: they are ignored). */
static int parse_biases(const char *source, const json_t *root, ml_config *config) {
    config->qkv_bias = config->o_bias = config->mlp_bias = 0;
    if (config->arch == ML_ARCH_QWEN2) {
        config->qkv_bias = 1;
    } else if (config->arch == ML_ARCH_LLAMA) {
        int attention_bias = 0;
        ML_TRY(optional_bool(source, root, "attention_bias", &attention_bias));
        ML_TRY(optional_bool(source, root, "mlp_bias", &config->mlp_bias));
        config->qkv_bias = config->o_bias = attention_bias;
    }
    return ML_OK;
}

/* sliding_window: absent is the config class's default (4096), null is no window. */
static int window_value(const char *source, const json_t *root, int *out) {
    const json_t *value = json_object_get(root, "sliding_window");
    *out = 4096;
    if (!value) return ML_OK;
    if (json_is_null(value)) {
        *out = 0;
        return ML_OK;
    }
    return expect_int_range(source, "sliding_window", value, 1, ML_CONFIG_MAX_DIM, out);
}

/* The attention window the HF class applies: MistralAttention passes config.sliding_window to
 * every layer; Qwen2 only with use_sliding_window, to the layers layer_types names
 * "sliding_attention" (by default those from max_window_layers on, Qwen2Config.__post_init__);
 * LlamaAttention has none. The engine attends to every earlier position, which is exact while
 * max_seq_len <= the window (model.c refuses a longer context). */
static int parse_sliding_window(const char *source, const json_t *root, ml_config *config) {
    config->sliding_window = 0;
    if (config->arch == ML_ARCH_MISTRAL) return window_value(source, root, &config->sliding_window);
    if (config->arch != ML_ARCH_QWEN2) return ML_OK;
    int use_window = 0, window = 0;
    ML_TRY(optional_bool(source, root, "use_sliding_window", &use_window));
    if (!use_window) return ML_OK;
    ML_TRY(window_value(source, root, &window));
    const json_t *layer_types = member(root, "layer_types");
    int any_sliding = 0;
    if (layer_types) {
        if (!json_is_array(layer_types)) return type_error(ML_ERR_CONFIG, source, "layer_types", "a list of strings", layer_types);
        for (size_t i = 0; i < json_array_size(layer_types); i++) {
            const json_t *type = json_array_get(layer_types, i);
            any_sliding |= json_is_string(type) && strcmp(json_string_value(type), "sliding_attention") == 0;
        }
    } else {
        int max_window_layers = 28;
        const json_t *value = member(root, "max_window_layers");
        if (value) ML_TRY(expect_int_range(source, "max_window_layers", value, 0, ML_CONFIG_MAX_LAYERS, &max_window_layers));
        any_sliding = max_window_layers < config->n_layers;
    }
    config->sliding_window = any_sliding ? window : 0;
    return ML_OK;
}

static int parse_dimensions(const char *source, const json_t *root, ml_config *config) {
    ML_TRY(required_int(source, root, "vocab_size", ML_CONFIG_MAX_DIM, &config->vocab_size));
    ML_TRY(required_int(source, root, "hidden_size", ML_CONFIG_MAX_DIM, &config->hidden_size));
    ML_TRY(required_int(source, root, "intermediate_size", ML_CONFIG_MAX_DIM, &config->intermediate_size));
    ML_TRY(required_int(source, root, "num_hidden_layers", ML_CONFIG_MAX_LAYERS, &config->n_layers));
    ML_TRY(required_int(source, root, "num_attention_heads", ML_CONFIG_MAX_DIM, &config->n_heads));

    config->n_kv_heads = config->n_heads;
    /* MistralConfig and Qwen2Config default an absent key to 8 and 32 (null to the head count):
     * the engine asks for the key rather than guess (every published config.json has it) */
    if (config->arch != ML_ARCH_LLAMA && !json_object_get(root, "num_key_value_heads"))
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"num_key_value_heads\" (expected an integer in [1, %d])",
                            source, config->n_heads);
    ML_TRY(optional_int(source, root, "num_key_value_heads", ML_CONFIG_MAX_DIM, &config->n_kv_heads));
    if (config->n_kv_heads > config->n_heads) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"num_key_value_heads\": expected at most num_attention_heads (%d), found %d",
                            source, config->n_heads, config->n_kv_heads);
    }
    if (config->n_heads % config->n_kv_heads != 0) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"num_key_value_heads\": expected a divisor of num_attention_heads (%d), found %d",
                            source, config->n_heads, config->n_kv_heads);
    }

    config->head_dim = 0;
    ML_TRY(optional_int(source, root, "head_dim", ML_CONFIG_MAX_DIM, &config->head_dim));
    if (config->head_dim == 0) {
        if (config->hidden_size % config->n_heads != 0) {
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"hidden_size\": expected a multiple of num_attention_heads (%d) since head_dim is absent, found %d",
                                source, config->n_heads, config->hidden_size);
        }
        config->head_dim = config->hidden_size / config->n_heads;
    }
    if (config->head_dim % 2 != 0) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"head_dim\": expected an even head dimension (RoPE rotates pairs), found %d",
                            source, config->head_dim);
    }
    if ((long long)config->n_heads * config->head_dim > ML_CONFIG_MAX_DIM) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"head_dim\": num_attention_heads * head_dim = %d * %d exceeds %d",
                            source, config->n_heads, config->head_dim, ML_CONFIG_MAX_DIM);
    }

    /* max_position_embeddings holds the class's default (parse_config_object) */
    ML_TRY(optional_int(source, root, "max_position_embeddings", ML_CONFIG_MAX_DIM,
                        &config->max_position_embeddings));
    return ML_OK;
}

static int parse_llama3_rope(const char *source, const char *prefix, const json_t *params, ml_config *config) {
    static const char *const float_keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
    float *const float_fields[] = {&config->rope_factor, &config->rope_low_freq_factor,
                                   &config->rope_high_freq_factor};
    char key[96];
    for (size_t i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "%s.%s", prefix, float_keys[i]);
        const json_t *value = member(params, float_keys[i]);
        if (!value) {
            return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (expected a positive number for llama3 RoPE scaling)",
                                source, key);
        }
        ML_TRY(expect_positive_float(source, key, value, float_fields[i]));
    }
    if (!(config->rope_high_freq_factor > config->rope_low_freq_factor)) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s.high_freq_factor\": expected more than low_freq_factor (%g), found %g",
                            source, prefix, config->rope_low_freq_factor, config->rope_high_freq_factor);
    }
    snprintf(key, sizeof key, "%s.original_max_position_embeddings", prefix);
    const json_t *value = member(params, "original_max_position_embeddings");
    if (!value) {
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (expected a positive integer for llama3 RoPE scaling)",
                            source, key);
    }
    ML_TRY(expect_int_range(source, key, value, 1, ML_CONFIG_MAX_DIM, &config->rope_original_max_position));
    config->rope_type = ML_ROPE_LLAMA3;
    return ML_OK;
}

/* transformers v4: "rope_theta" and "rope_scaling" ({"rope_type" or "type": ...} or null).
 * transformers v5: "rope_parameters" {"rope_type", "rope_theta", ...}, which wins when present. */
static int parse_rope(const char *source, const json_t *root, ml_config *config) {
    config->rope_theta = 10000.0f;
    config->rope_type = ML_ROPE_DEFAULT;
    config->rope_factor = 1.0f;
    config->rope_low_freq_factor = 0.0f;
    config->rope_high_freq_factor = 0.0f;
    config->rope_original_max_position = config->max_position_embeddings;
    ML_TRY(optional_positive_float(source, root, "rope_theta", &config->rope_theta));

    const json_t *v5 = member(root, "rope_parameters");
    const json_t *params = v5 ? v5 : member(root, "rope_scaling");
    const char *prefix = v5 ? "rope_parameters" : "rope_scaling";
    if (!params) return ML_OK;
    if (!json_is_object(params)) return type_error(ML_ERR_CONFIG, source, prefix, "an object or null", params);

    char key[96];
    if (v5) {
        const char *name;
        json_t *value;
        json_object_foreach((json_t *)params, name, value) {
            if (json_is_object(value)) {
                return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"rope_parameters.%s\": per-layer-type RoPE parameters are not supported",
                                    source, name);
            }
        }
        snprintf(key, sizeof key, "%s.rope_theta", prefix);
        const json_t *theta = member(params, "rope_theta");
        if (theta) ML_TRY(expect_positive_float(source, key, theta, &config->rope_theta));
    }

    const char *type_key = member(params, "rope_type") ? "rope_type" : "type";
    const json_t *type = member(params, type_key);
    snprintf(key, sizeof key, "%s.%s", prefix, type_key);
    if (!type) {
        if (v5) return ML_OK; /* v5 defaults rope_type to "default" */
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s.rope_type\" (expected \"default\" or \"llama3\")",
                            source, prefix);
    }
    if (!json_is_string(type)) return type_error(ML_ERR_CONFIG, source, key, "a string", type);
    const char *type_name = json_string_value(type);
    if (strcmp(type_name, "default") == 0) return ML_OK;
    if (strcmp(type_name, "llama3") == 0) return parse_llama3_rope(source, prefix, params, config);
    return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\": RoPE type \"%s\" is not supported (expected \"default\" or \"llama3\")",
                        source, key, type_name);
}

static int parse_tokens_and_dtype(const char *source, const json_t *root, ml_config *config) {
    config->bos_token_id = -1;
    const json_t *bos = member(root, "bos_token_id");
    if (bos) ML_TRY(expect_token_id(source, "bos_token_id", bos, config->vocab_size, &config->bos_token_id));
    config->n_eos = 0;
    const json_t *eos = member(root, "eos_token_id");
    if (eos) ML_TRY(parse_eos(source, "eos_token_id", eos, config->vocab_size, config->eos_token_ids, &config->n_eos));

    /* transformers v5 writes "dtype", v4 "torch_dtype". */
    const char *dtype_key = member(root, "dtype") ? "dtype" : "torch_dtype";
    const char *dtype;
    ML_TRY(optional_string(source, root, dtype_key, &dtype));
    config->torch_dtype[0] = '\0';
    if (dtype) {
        if (strlen(dtype) >= sizeof config->torch_dtype) {
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a dtype name such as \"bfloat16\", found \"%.40s\"",
                                source, dtype_key, dtype);
        }
        snprintf(config->torch_dtype, sizeof config->torch_dtype, "%s", dtype);
    }
    return ML_OK;
}

static int parse_config_object(const char *source, const json_t *root, ml_config *config) {
    if (!json_is_object(root)) return top_level_error(source, root);
    const arch_info *arch = &known_archs[0];
    ML_TRY(parse_model_type(source, root, &arch));
    config->arch = arch->arch;
    config->max_position_embeddings = arch->max_position_embeddings;
    ML_TRY(check_activation(source, root));
    ML_TRY(parse_biases(source, root, config));
    ML_TRY(parse_dimensions(source, root, config));
    ML_TRY(parse_sliding_window(source, root, config));
    config->rms_norm_eps = 1e-6f;
    ML_TRY(optional_positive_float(source, root, "rms_norm_eps", &config->rms_norm_eps));
    ML_TRY(parse_rope(source, root, config));
    config->tie_word_embeddings = 0;
    ML_TRY(optional_bool(source, root, "tie_word_embeddings", &config->tie_word_embeddings));
    return parse_tokens_and_dtype(source, root, config);
}

int ml_config_parse(const char *json_text, size_t length, const char *source, ml_config *out) {
    if (!source) source = "config.json";
    memset(out, 0, sizeof *out);
    if (!json_text) return ml_set_error(ML_ERR_ARG, "%s: no text to parse", source);
    json_t *root;
    ML_TRY(ml_json_load(json_text, length, source, "config", ML_ERR_CONFIG, &root));
    ml_config config;
    memset(&config, 0, sizeof config);
    int status = parse_config_object(source, root, &config);
    json_decref(root);
    if (status == ML_OK) *out = config;
    return status;
}

int ml_generation_config_apply(const char *json_text, size_t length, const char *source, ml_config *config) {
    if (!source) source = "generation_config.json";
    if (!json_text) return ml_set_error(ML_ERR_ARG, "%s: no text to parse", source);
    json_t *root;
    ML_TRY(ml_json_load(json_text, length, source, "generation config", ML_ERR_CONFIG, &root));
    int status = ML_OK;
    int eos_ids[ML_MAX_EOS];
    int n_eos = -1, bos = -2;
    if (!json_is_object(root)) {
        status = top_level_error(source, root);
    } else {
        const json_t *eos_value = member(root, "eos_token_id");
        const json_t *bos_value = member(root, "bos_token_id");
        if (eos_value) status = parse_eos(source, "eos_token_id", eos_value, config->vocab_size, eos_ids, &n_eos);
        if (status == ML_OK && bos_value) {
            status = expect_token_id(source, "bos_token_id", bos_value, config->vocab_size, &bos);
        }
    }
    json_decref(root);
    if (status != ML_OK) return status;
    /* Only a fully valid file changes the config. */
    /* generation_config's ids add to config.json's: every one of them ends a generation (a
     * model's two files may list different end tokens, e.g. <|end_of_text|> and <|eot_id|>) */
    for (int i = 0; i < n_eos; i++) {
        int known = 0;
        for (int j = 0; j < config->n_eos; j++) known |= config->eos_token_ids[j] == eos_ids[i];
        if (!known && config->n_eos < ML_MAX_EOS) config->eos_token_ids[config->n_eos++] = eos_ids[i];
    }
    if (bos != -2) config->bos_token_id = bos;
    return ML_OK;
}

static int load_file_into(const char *path, ml_config *config, int is_generation_config) {
    char *text;
    size_t size;
    ML_TRY(ml_read_text_file(path, &text, &size));
    int status = is_generation_config ? ml_generation_config_apply(text, size, path, config)
                                      : ml_config_parse(text, size, path, config);
    free(text);
    return status;
}

int ml_config_load(const char *model_dir, ml_config *out) {
    memset(out, 0, sizeof *out);
    if (!model_dir) return ml_set_error(ML_ERR_ARG, "ml_config_load: model directory is NULL");
    struct stat dir_stat;
    if (stat(model_dir, &dir_stat) != 0) {
        return ml_set_error(ML_ERR_IO, "%s: model directory does not exist (%s)", model_dir, strerror(errno));
    }
    if (!S_ISDIR(dir_stat.st_mode)) return ml_set_error(ML_ERR_IO, "%s: expected a model directory, found a file", model_dir);

    char *config_path = ml_path_join(model_dir, "config.json");
    char *generation_path = ml_path_join(model_dir, "generation_config.json");
    int status = ML_OK;
    if (!config_path || !generation_path) {
        status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory building paths", model_dir);
    } else if (!ml_file_exists(config_path)) {
        status = ml_set_error(ML_ERR_IO, "%s: missing (every model directory needs config.json)", config_path);
    } else {
        ml_config config;
        status = load_file_into(config_path, &config, 0);
        if (status == ML_OK && ml_file_exists(generation_path)) status = load_file_into(generation_path, &config, 1);
        if (status == ML_OK) *out = config;
    }
    free(config_path);
    free(generation_path);
    return status;
}
