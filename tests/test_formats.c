/* formats/: config.json, generation_config.json and safetensors readers, and the golden files
 * (MLHFREF1, MLEVREF1, MLHIDDN1), on synthetic inputs.
 * Every rejected input must return the documented code and a message naming the file and the
 * offending key or tensor. */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/hf_config.h"
#include "formats/eval_reference.h"
#include "formats/hf_reference.h"
#include "formats/hidden_dump.h"
#include "formats/safetensors.h"
#include "test_util.h"

#define CONFIG_SOURCE "dir/config.json"
#define GENERATION_SOURCE "dir/generation_config.json"
#define ST_SOURCE "dir/bad.safetensors"

static char tmp_root[512];

/* ---------- helpers ---------- */

static void expect_error(const char *label, int status, int code, const char *needle1, const char *needle2) {
    const char *message = ml_last_error();
    if (getenv("MESHLLAMA_TEST_VERBOSE")) printf("%-32s %d  %s\n", label, status, message);
    CHECK(status == code, "%s: status %d (%s), expected %d; message: %s", label, status, ml_strerror(status), code,
          message);
    if (needle1) CHECK(strstr(message, needle1) != NULL, "%s: message \"%s\" lacks \"%s\"", label, message, needle1);
    if (needle2) CHECK(strstr(message, needle2) != NULL, "%s: message \"%s\" lacks \"%s\"", label, message, needle2);
}

static void expect_ok(const char *label, int status) {
    CHECK(status == 0, "%s: status %d, message: %s", label, status, ml_last_error());
}

static void path_join(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static void make_subdir(char *out, size_t size, const char *name) {
    path_join(out, size, tmp_root, name);
    mkdir(out, 0755);
}

static void write_in(const char *dir, const char *name, const void *data, size_t size) {
    char path[1024];
    path_join(path, sizeof path, dir, name);
    CHECK(ml_test_write_file(path, data, size) == 0, "writing %s", path);
}

static void write_text_in(const char *dir, const char *name, const char *text) {
    write_in(dir, name, text, strlen(text));
}

/* 8-byte little-endian header length, the header text, then the data region. */
static uint8_t *make_safetensors(const char *header, const uint8_t *data, size_t data_size, size_t *out_size) {
    size_t header_length = strlen(header);
    size_t size = 8 + header_length + data_size;
    uint8_t *bytes = malloc(size ? size : 1);
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)((uint64_t)header_length >> (8 * i));
    memcpy(bytes + 8, header, header_length);
    if (data_size) memcpy(bytes + 8 + header_length, data, data_size);
    *out_size = size;
    return bytes;
}

static void write_safetensors_in(const char *dir, const char *name, const char *header, const uint8_t *data,
                                 size_t data_size) {
    size_t size;
    uint8_t *bytes = make_safetensors(header, data, data_size, &size);
    write_in(dir, name, bytes, size);
    free(bytes);
}

static void free_views(ml_tensor_view *views, int count) {
    for (int i = 0; i < count; i++) free(views[i].name);
    free(views);
}

/* Parses a header + data held in memory; expects failure with code and the tensor named. */
static void safetensors_error(const char *label, const char *header, size_t data_size, int code, const char *needle) {
    uint8_t data[256];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    size_t size;
    uint8_t *bytes = make_safetensors(header, data, data_size, &size);
    ml_tensor_view *views = NULL;
    int n_views = 0;
    ml_clear_error();
    int status = ml_safetensors_parse(bytes, size, ST_SOURCE, 0, &views, &n_views);
    expect_error(label, status, code, ST_SOURCE, needle);
    CHECK(n_views == 0 && views == NULL, "%s: a failed parse appended %d views", label, n_views);
    free_views(views, n_views);
    free(bytes);
}

/* ---------- config.json ---------- */

static json_t *base_config(void) {
    json_error_t error;
    return json_loads("{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 256,"
                      " \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"hidden_act\": \"silu\","
                      " \"attention_bias\": false, \"mlp_bias\": false}",
                      0, &error);
}

static json_t *with(json_t *config, const char *key, json_t *value) {
    json_object_set_new(config, key, value);
    return config;
}

static json_t *without(json_t *config, const char *key) {
    json_object_del(config, key);
    return config;
}

static json_t *llama3_rope(double factor, double low, double high, int original_max) {
    return json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", factor, "low_freq_factor", low,
                     "high_freq_factor", high, "original_max_position_embeddings", original_max);
}

/* Consumes config. */
static int parse_config_json(json_t *config, ml_config *out) {
    char *text = json_dumps(config, JSON_COMPACT);
    json_decref(config);
    int status = ml_config_parse(text, strlen(text), CONFIG_SOURCE, out);
    free(text);
    return status;
}

static void config_error(const char *label, json_t *config, int code, const char *needle) {
    ml_config parsed;
    ml_clear_error();
    int status = parse_config_json(config, &parsed);
    expect_error(label, status, code, CONFIG_SOURCE, needle);
}

static void config_text_error(const char *label, const char *text, int code, const char *needle) {
    ml_config parsed;
    ml_clear_error();
    int status = ml_config_parse(text, strlen(text), CONFIG_SOURCE, &parsed);
    expect_error(label, status, code, CONFIG_SOURCE, needle);
}

static const char llama32_v4_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 64,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
    " \"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
    " \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.45.0\","
    " \"use_cache\": true, \"vocab_size\": 128256}";

static void test_config_valid(void) {
    ml_config c;
    expect_ok("llama 3.2 v4", ml_config_parse(llama32_v4_config, strlen(llama32_v4_config), CONFIG_SOURCE, &c));
    CHECK(c.vocab_size == 128256 && c.hidden_size == 2048 && c.intermediate_size == 8192, "v4 sizes");
    CHECK(c.n_layers == 16 && c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 64, "v4 heads");
    CHECK(c.max_position_embeddings == 131072, "v4 max_position %d", c.max_position_embeddings);
    CHECK(c.rms_norm_eps == 1e-5f && c.rope_theta == 500000.0f, "v4 eps %g theta %g", c.rms_norm_eps, c.rope_theta);
    CHECK(c.rope_type == ML_ROPE_LLAMA3 && c.rope_factor == 32.0f && c.rope_low_freq_factor == 1.0f &&
              c.rope_high_freq_factor == 4.0f && c.rope_original_max_position == 8192,
          "v4 llama3 rope");
    CHECK(c.tie_word_embeddings == 1 && c.bos_token_id == 128000, "v4 tie/bos");
    CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 128001 && c.eos_token_ids[1] == 128008 && c.eos_token_ids[2] == 128009,
          "v4 eos list");
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0, "v4 torch_dtype \"%s\"", c.torch_dtype);

    /* transformers v5: rope_parameters carries rope_theta; "dtype" replaces "torch_dtype". */
    json_t *v5 = with(base_config(), "rope_parameters",
                      json_pack("{s:s, s:f, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "rope_theta", 500000.0,
                                "factor", 8.0, "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                "original_max_position_embeddings", 8192));
    with(v5, "dtype", json_string("float32"));
    with(v5, "eos_token_id", json_integer(2));
    expect_ok("v5 rope_parameters", parse_config_json(v5, &c));
    CHECK(c.rope_type == ML_ROPE_LLAMA3 && c.rope_theta == 500000.0f && c.rope_factor == 8.0f &&
              c.rope_original_max_position == 8192,
          "v5 rope: type %d theta %g factor %g", (int)c.rope_type, c.rope_theta, c.rope_factor);
    CHECK(strcmp(c.torch_dtype, "float32") == 0 && c.n_eos == 1 && c.eos_token_ids[0] == 2, "v5 dtype/eos");

    json_t *v5_default = with(base_config(), "rope_parameters",
                              json_pack("{s:s, s:f}", "rope_type", "default", "rope_theta", 1000000.0));
    expect_ok("v5 default rope", parse_config_json(v5_default, &c));
    CHECK(c.rope_type == ML_ROPE_DEFAULT && c.rope_theta == 1000000.0f, "v5 default rope theta %g", c.rope_theta);

    /* Only the required keys: LlamaConfig defaults. */
    json_t *minimal = base_config();
    const char *optional_keys[] = {"architectures", "model_type", "num_key_value_heads", "hidden_act",
                                   "attention_bias", "mlp_bias"};
    for (size_t i = 0; i < sizeof optional_keys / sizeof optional_keys[0]; i++) without(minimal, optional_keys[i]);
    expect_ok("minimal", parse_config_json(minimal, &c));
    CHECK(c.n_kv_heads == 4 && c.head_dim == 16 && c.max_position_embeddings == 2048, "minimal defaults");
    CHECK(c.rms_norm_eps == 1e-6f && c.rope_theta == 10000.0f && c.rope_type == ML_ROPE_DEFAULT, "minimal rope/eps");
    CHECK(c.tie_word_embeddings == 0 && c.bos_token_id == -1 && c.n_eos == 0 && c.torch_dtype[0] == '\0',
          "minimal tokens");

    /* Explicit head_dim that is not hidden_size / heads (hidden 100 is not divisible by 3). */
    json_t *explicit_head = with(with(base_config(), "hidden_size", json_integer(100)), "num_attention_heads",
                                 json_integer(3));
    with(explicit_head, "num_key_value_heads", json_integer(1));
    with(explicit_head, "head_dim", json_integer(32));
    expect_ok("explicit head_dim", parse_config_json(explicit_head, &c));
    CHECK(c.head_dim == 32 && c.n_heads == 3 && c.n_kv_heads == 1, "explicit head_dim %d", c.head_dim);

    /* Integral reals, nulls meaning "default", v4 rope_scaling null and "type": "default". */
    json_t *lenient = with(base_config(), "hidden_size", json_real(64.0));
    with(lenient, "num_key_value_heads", json_null());
    with(lenient, "bos_token_id", json_null());
    with(lenient, "rope_scaling", json_null());
    with(lenient, "rms_norm_eps", json_integer(1));
    expect_ok("integral real and nulls", parse_config_json(lenient, &c));
    CHECK(c.hidden_size == 64 && c.n_kv_heads == 4 && c.bos_token_id == -1 && c.rope_type == ML_ROPE_DEFAULT &&
              c.rms_norm_eps == 1.0f,
          "lenient values");
    json_t *old_type = with(base_config(), "rope_scaling", json_pack("{s:s}", "type", "default"));
    expect_ok("rope_scaling type default", parse_config_json(old_type, &c));
    json_t *old_llama3 = with(base_config(), "rope_scaling",
                              json_pack("{s:s, s:f, s:f, s:f, s:i}", "type", "llama3", "factor", 2.0,
                                        "low_freq_factor", 1.0, "high_freq_factor", 2.0,
                                        "original_max_position_embeddings", 512));
    expect_ok("rope_scaling type llama3", parse_config_json(old_llama3, &c));
    CHECK(c.rope_type == ML_ROPE_LLAMA3 && c.rope_original_max_position == 512, "old-style llama3");
}

static void test_config_errors(void) {
    config_text_error("not JSON", "{\"vocab_size\": 10,", ML_ERR_CONFIG, "line 1");
    config_text_error("empty", "", ML_ERR_CONFIG, "not valid JSON");
    config_text_error("top level array", "[1, 2]", ML_ERR_CONFIG, "top level");
    config_text_error("duplicate key",
                      "{\"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1,"
                      " \"num_attention_heads\": 2, \"hidden_size\": 16}",
                      ML_ERR_CONFIG, "\"hidden_size\" twice");

    const char *required[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        config_error("missing required key", without(base_config(), required[i]), ML_ERR_CONFIG, required[i]);
        config_error("required key null", with(base_config(), required[i], json_null()), ML_ERR_CONFIG, required[i]);
        config_error("zero size", with(base_config(), required[i], json_integer(0)), ML_ERR_CONFIG, required[i]);
        config_error("negative size", with(base_config(), required[i], json_integer(-4)), ML_ERR_CONFIG, required[i]);
        config_error("string size", with(base_config(), required[i], json_string("64")), ML_ERR_CONFIG, required[i]);
    }
    config_error("string hidden_size says found", with(base_config(), "hidden_size", json_string("64")), ML_ERR_CONFIG,
                 "string \"64\"");
    config_error("fractional real", with(base_config(), "hidden_size", json_real(64.5)), ML_ERR_CONFIG, "hidden_size");
    config_error("bool size", with(base_config(), "num_hidden_layers", json_true()), ML_ERR_CONFIG, "num_hidden_layers");
    config_error("heads not multiple of kv", with(base_config(), "num_key_value_heads", json_integer(3)),
                 ML_ERR_CONFIG, "num_key_value_heads");
    config_error("kv > heads", with(base_config(), "num_key_value_heads", json_integer(8)), ML_ERR_CONFIG,
                 "num_key_value_heads");
    config_error("kv zero", with(base_config(), "num_key_value_heads", json_integer(0)), ML_ERR_CONFIG,
                 "num_key_value_heads");
    config_error("hidden not divisible", with(base_config(), "hidden_size", json_integer(66)), ML_ERR_CONFIG,
                 "hidden_size");
    config_error("odd explicit head_dim", with(base_config(), "head_dim", json_integer(15)), ML_ERR_CONFIG, "head_dim");
    config_error("odd implied head_dim", with(base_config(), "hidden_size", json_integer(60)), ML_ERR_CONFIG,
                 "head_dim");
    config_error("head_dim string", with(base_config(), "head_dim", json_string("16")), ML_ERR_CONFIG, "head_dim");
    config_error("max_position zero", with(base_config(), "max_position_embeddings", json_integer(0)), ML_ERR_CONFIG,
                 "max_position_embeddings");

    /* Absurd sizes. */
    config_error("huge vocab", with(base_config(), "vocab_size", json_integer(1LL << 30)), ML_ERR_CONFIG, "vocab_size");
    config_error("huge hidden", with(base_config(), "hidden_size", json_integer(1LL << 40)), ML_ERR_CONFIG,
                 "hidden_size");
    config_error("huge real", with(base_config(), "intermediate_size", json_real(1e300)), ML_ERR_CONFIG,
                 "intermediate_size");
    config_error("too many layers", with(base_config(), "num_hidden_layers", json_integer(5000)), ML_ERR_CONFIG,
                 "num_hidden_layers");
    config_error("heads * head_dim too big",
                 with(with(base_config(), "num_attention_heads", json_integer(1 << 20)), "head_dim",
                      json_integer(1 << 20)),
                 ML_ERR_CONFIG, "head_dim");
    config_text_error("integer beyond int64",
                      "{\"vocab_size\": 99999999999999999999999, \"hidden_size\": 8}", ML_ERR_CONFIG, "line 1");

    /* eps and theta. */
    config_error("eps zero", with(base_config(), "rms_norm_eps", json_real(0.0)), ML_ERR_CONFIG, "rms_norm_eps");
    config_error("eps negative", with(base_config(), "rms_norm_eps", json_real(-1e-5)), ML_ERR_CONFIG, "rms_norm_eps");
    config_error("eps underflows float", with(base_config(), "rms_norm_eps", json_real(1e-60)), ML_ERR_CONFIG,
                 "rms_norm_eps");
    config_error("eps string", with(base_config(), "rms_norm_eps", json_string("1e-5")), ML_ERR_CONFIG,
                 "rms_norm_eps");
    config_error("theta zero", with(base_config(), "rope_theta", json_integer(0)), ML_ERR_CONFIG, "rope_theta");
    config_error("theta negative", with(base_config(), "rope_theta", json_real(-10000.0)), ML_ERR_CONFIG,
                 "rope_theta");
    config_error("theta overflows float", with(base_config(), "rope_theta", json_real(1e39)), ML_ERR_CONFIG,
                 "rope_theta");
    config_error("v5 theta zero",
                 with(base_config(), "rope_parameters", json_pack("{s:s, s:f}", "rope_type", "default", "rope_theta", 0.0)),
                 ML_ERR_CONFIG, "rope_parameters.rope_theta");

    /* llama3 factors, v4 and v5 layouts. */
    const char *layouts[] = {"rope_scaling", "rope_parameters"};
    for (int i = 0; i < 2; i++) {
        config_error("factor zero", with(base_config(), layouts[i], llama3_rope(0.0, 1.0, 4.0, 8192)), ML_ERR_CONFIG,
                     "factor");
        config_error("factor negative", with(base_config(), layouts[i], llama3_rope(-2.0, 1.0, 4.0, 8192)),
                     ML_ERR_CONFIG, "factor");
        config_error("high <= low", with(base_config(), layouts[i], llama3_rope(8.0, 4.0, 4.0, 8192)), ML_ERR_CONFIG,
                     "high_freq_factor");
        config_error("low zero", with(base_config(), layouts[i], llama3_rope(8.0, 0.0, 4.0, 8192)), ML_ERR_CONFIG,
                     "low_freq_factor");
        config_error("original max zero", with(base_config(), layouts[i], llama3_rope(8.0, 1.0, 4.0, 0)),
                     ML_ERR_CONFIG, "original_max_position_embeddings");
        json_t *missing_factor = llama3_rope(8.0, 1.0, 4.0, 8192);
        json_object_del(missing_factor, "factor");
        config_error("factor missing", with(base_config(), layouts[i], missing_factor), ML_ERR_CONFIG, "factor");
        config_error("rope not object", with(base_config(), layouts[i], json_integer(5)), ML_ERR_CONFIG, layouts[i]);
    }
    const char *unsupported_types[] = {"linear", "dynamic", "yarn", "longrope"};
    for (size_t i = 0; i < sizeof unsupported_types / sizeof unsupported_types[0]; i++) {
        config_error("v4 rope type",
                     with(base_config(), "rope_scaling", json_pack("{s:s, s:f}", "rope_type", unsupported_types[i], "factor", 2.0)),
                     ML_ERR_UNSUPPORTED, unsupported_types[i]);
        config_error("v5 rope type", with(base_config(), "rope_parameters", json_pack("{s:s}", "rope_type", unsupported_types[i])),
                     ML_ERR_UNSUPPORTED, unsupported_types[i]);
    }
    config_error("v4 legacy type key", with(base_config(), "rope_scaling", json_pack("{s:s, s:f}", "type", "linear", "factor", 2.0)),
                 ML_ERR_UNSUPPORTED, "linear");
    config_error("v4 rope_scaling without type", with(base_config(), "rope_scaling", json_pack("{s:f}", "factor", 2.0)),
                 ML_ERR_CONFIG, "rope_type");
    config_error("rope type not string", with(base_config(), "rope_scaling", json_pack("{s:i}", "rope_type", 3)),
                 ML_ERR_CONFIG, "rope_scaling.rope_type");

    /* Architecture keys. */
    config_error("hidden_act gelu", with(base_config(), "hidden_act", json_string("gelu")), ML_ERR_UNSUPPORTED,
                 "hidden_act");
    config_error("hidden_act number", with(base_config(), "hidden_act", json_integer(1)), ML_ERR_CONFIG, "hidden_act");
    config_error("attention_bias string", with(base_config(), "attention_bias", json_string("no")), ML_ERR_CONFIG,
                 "attention_bias");
    config_error("model_type gemma", with(base_config(), "model_type", json_string("gemma")), ML_ERR_UNSUPPORTED,
                 "gemma");
    config_error("architectures gemma", with(base_config(), "architectures", json_pack("[s]", "GemmaForCausalLM")),
                 ML_ERR_UNSUPPORTED, "GemmaForCausalLM");
    config_error("architectures vs model_type",
                 with(base_config(), "architectures", json_pack("[s]", "MistralForCausalLM")), ML_ERR_CONFIG,
                 "does not match model_type");
    config_error("architectures not a list", with(base_config(), "architectures", json_string("LlamaForCausalLM")),
                 ML_ERR_CONFIG, "architectures");
    config_error("mistral without num_key_value_heads",
                 without(with(without(base_config(), "architectures"), "model_type", json_string("mistral")),
                         "num_key_value_heads"),
                 ML_ERR_CONFIG, "num_key_value_heads");
    config_error("sliding_window zero",
                 with(with(without(base_config(), "architectures"), "model_type", json_string("mistral")),
                      "sliding_window", json_integer(0)),
                 ML_ERR_CONFIG, "sliding_window");
    config_error("tie string", with(base_config(), "tie_word_embeddings", json_string("true")), ML_ERR_CONFIG,
                 "tie_word_embeddings");
    config_error("torch_dtype number", with(base_config(), "torch_dtype", json_integer(16)), ML_ERR_CONFIG,
                 "torch_dtype");
    config_error("dtype too long", with(base_config(), "dtype", json_string("bfloat16bfloat16bfloat16")), ML_ERR_CONFIG,
                 "dtype");

    /* Token ids. */
    config_error("eos beyond vocab", with(base_config(), "eos_token_id", json_integer(256)), ML_ERR_CONFIG,
                 "eos_token_id");
    config_error("eos negative", with(base_config(), "eos_token_id", json_integer(-1)), ML_ERR_CONFIG, "eos_token_id");
    config_error("eos list element", with(base_config(), "eos_token_id", json_pack("[i, i]", 1, 300)), ML_ERR_CONFIG,
                 "eos_token_id[1]");
    config_error("eos string", with(base_config(), "eos_token_id", json_string("2")), ML_ERR_CONFIG, "eos_token_id");
    config_error("eos list too long",
                 with(base_config(), "eos_token_id", json_pack("[i,i,i,i,i,i,i,i,i]", 1, 2, 3, 4, 5, 6, 7, 8, 9)),
                 ML_ERR_CONFIG, "eos_token_id");
    config_error("bos beyond vocab", with(base_config(), "bos_token_id", json_integer(1000)), ML_ERR_CONFIG,
                 "bos_token_id");
}

/* A base config of another model_type (architectures names its class). */
static json_t *family_config(const char *model_type, const char *class_name) {
    return with(with(base_config(), "model_type", json_string(model_type)), "architectures",
                json_pack("[s]", class_name));
}

/* Mistral and Qwen2 configs and the bias keys: which projections have biases, which attention
 * window HF applies, the config classes' defaults. */
static void test_config_family(void) {
    ml_config c;
    expect_ok("llama", parse_config_json(base_config(), &c));
    CHECK(c.arch == ML_ARCH_LLAMA && !c.qkv_bias && !c.o_bias && !c.mlp_bias && c.sliding_window == 0, "llama");
    expect_ok("llama attention_bias", parse_config_json(with(base_config(), "attention_bias", json_true()), &c));
    CHECK(c.qkv_bias && c.o_bias && !c.mlp_bias, "attention_bias: q/k/v and o biases");
    expect_ok("llama mlp_bias", parse_config_json(with(base_config(), "mlp_bias", json_true()), &c));
    CHECK(!c.qkv_bias && !c.o_bias && c.mlp_bias, "mlp_bias");
    expect_ok("llama ignores sliding_window", parse_config_json(with(base_config(), "sliding_window", json_integer(8)), &c));
    CHECK(c.sliding_window == 0, "LlamaAttention has no window: %d", c.sliding_window);
    expect_ok("architectures only", parse_config_json(without(family_config("mistral", "MistralForCausalLM"), "model_type"), &c));
    CHECK(c.arch == ML_ARCH_MISTRAL, "architectures[0] decides without model_type");

    /* Mistral: no biases (the keys are not MistralConfig's), sliding_window 4096 when absent */
    json_t *mistral = with(family_config("mistral", "MistralForCausalLM"), "attention_bias", json_true());
    expect_ok("mistral", parse_config_json(mistral, &c));
    CHECK(c.arch == ML_ARCH_MISTRAL && !c.qkv_bias && !c.o_bias && !c.mlp_bias, "mistral biases");
    CHECK(c.sliding_window == 4096 && c.max_position_embeddings == 4096 * 32, "mistral defaults: window %d, max %d",
          c.sliding_window, c.max_position_embeddings);
    expect_ok("mistral null window", parse_config_json(with(family_config("mistral", "MistralForCausalLM"),
                                                            "sliding_window", json_null()), &c));
    CHECK(c.sliding_window == 0, "sliding_window null: %d", c.sliding_window);
    expect_ok("mistral window", parse_config_json(with(family_config("mistral", "MistralForCausalLM"),
                                                       "sliding_window", json_integer(64)), &c));
    CHECK(c.sliding_window == 64, "sliding_window 64: %d", c.sliding_window);

    /* Qwen2: q/k/v biases always, no o or MLP bias; a window only with use_sliding_window and a
     * layer that uses it */
    json_t *qwen = with(family_config("qwen2", "Qwen2ForCausalLM"), "sliding_window", json_integer(32));
    with(qwen, "mlp_bias", json_true());
    expect_ok("qwen2", parse_config_json(qwen, &c));
    CHECK(c.arch == ML_ARCH_QWEN2 && c.qkv_bias && !c.o_bias && !c.mlp_bias, "qwen2 biases");
    CHECK(c.sliding_window == 0 && c.max_position_embeddings == 32768, "qwen2: no window without use_sliding_window");
    json_t *qwen_window = with(family_config("qwen2", "Qwen2ForCausalLM"), "sliding_window", json_integer(32));
    with(qwen_window, "use_sliding_window", json_true());
    expect_ok("qwen2 window, default max_window_layers 28", parse_config_json(json_deep_copy(qwen_window), &c));
    CHECK(c.sliding_window == 0, "2 layers < max_window_layers 28: every layer is full attention");
    with(qwen_window, "max_window_layers", json_integer(1));
    expect_ok("qwen2 window from layer 1", parse_config_json(json_deep_copy(qwen_window), &c));
    CHECK(c.sliding_window == 32, "qwen2 sliding layer 1: window %d", c.sliding_window);
    with(qwen_window, "layer_types", json_pack("[s, s]", "full_attention", "full_attention"));
    expect_ok("qwen2 layer_types", parse_config_json(qwen_window, &c));
    CHECK(c.sliding_window == 0, "layer_types without sliding_attention: window %d", c.sliding_window);
}

static void test_generation_config(void) {
    ml_config c;
    expect_ok("base", parse_config_json(with(base_config(), "eos_token_id", json_integer(2)), &c));
    const char *override = "{\"bos_token_id\": 1, \"eos_token_id\": [3, 4, 5], \"do_sample\": true}";
    expect_ok("generation override", ml_generation_config_apply(override, strlen(override), GENERATION_SOURCE, &c));
    CHECK(c.bos_token_id == 1 && c.n_eos == 4 && c.eos_token_ids[0] == 2 && c.eos_token_ids[1] == 3 &&
              c.eos_token_ids[3] == 5,
          "generation ids add to the config's: bos %d n_eos %d", c.bos_token_id, c.n_eos);
    const char *single = "{\"eos_token_id\": 7}";
    expect_ok("generation single eos", ml_generation_config_apply(single, strlen(single), GENERATION_SOURCE, &c));
    CHECK(c.n_eos == 5 && c.eos_token_ids[4] == 7 && c.bos_token_id == 1, "single eos added, bos kept");
    expect_ok("generation known eos", ml_generation_config_apply(single, strlen(single), GENERATION_SOURCE, &c));
    CHECK(c.n_eos == 5, "an id already listed is not added twice: n_eos %d", c.n_eos);
    const char *nothing = "{\"temperature\": 0.6}";
    expect_ok("generation without ids", ml_generation_config_apply(nothing, strlen(nothing), GENERATION_SOURCE, &c));
    CHECK(c.n_eos == 5 && c.eos_token_ids[4] == 7, "ids kept");

    struct {
        const char *text;
        const char *needle;
    } bad[] = {
        {"{\"eos_token_id\": [1, 2", "line 1"},
        {"[3]", "top level"},
        {"{\"eos_token_id\": \"x\"}", "eos_token_id"},
        {"{\"eos_token_id\": [1, 999]}", "eos_token_id[1]"},
        {"{\"eos_token_id\": 3, \"bos_token_id\": -5}", "bos_token_id"},
        {"{\"eos_token_id\": 1, \"eos_token_id\": 2}", "eos_token_id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ml_clear_error();
        int status = ml_generation_config_apply(bad[i].text, strlen(bad[i].text), GENERATION_SOURCE, &c);
        expect_error(bad[i].text, status, ML_ERR_CONFIG, GENERATION_SOURCE, bad[i].needle);
        CHECK(c.n_eos == 5 && c.eos_token_ids[4] == 7 && c.bos_token_id == 1, "failed apply changed the config");
    }
}

/* ml_config_load(dir) must fail with code and both needles in the message. */
static void expect_config_error(const char *label, const char *dir, int code, const char *needle1,
                                const char *needle2) {
    ml_config c;
    ml_clear_error();
    expect_error(label, ml_config_load(dir, &c), code, needle1, needle2);
}

static void test_config_load(void) {
    char dir[1024], path[1100];
    make_subdir(dir, sizeof dir, "model_config");
    write_text_in(dir, "config.json", llama32_v4_config);
    ml_config c;
    expect_ok("load without generation_config", ml_config_load(dir, &c));
    CHECK(c.n_eos == 3 && c.bos_token_id == 128000 && c.n_layers == 16, "loaded config");

    write_text_in(dir, "generation_config.json", "{\"bos_token_id\": 128000, \"eos_token_id\": 128009}");
    expect_ok("load with generation_config", ml_config_load(dir, &c));
    CHECK(c.n_eos == 3 && c.eos_token_ids[2] == 128009, "generation_config.json's 128009 already listed: n_eos %d",
          c.n_eos);
    write_text_in(dir, "generation_config.json", "{\"eos_token_id\": [128001, 128000]}");
    expect_ok("load with another generation_config", ml_config_load(dir, &c));
    CHECK(c.n_eos == 4 && c.eos_token_ids[3] == 128000, "generation_config.json's ids add: n_eos %d", c.n_eos);

    write_text_in(dir, "generation_config.json", "{\"eos_token_id\": 128256}");
    expect_config_error("bad generation_config", dir, ML_ERR_CONFIG, "generation_config.json", "eos_token_id");

    char bad_dir[1024];
    make_subdir(bad_dir, sizeof bad_dir, "model_bad_config");
    write_text_in(bad_dir, "config.json", "{\"vocab_size\": 32}");
    expect_config_error("loaded bad config", bad_dir, ML_ERR_CONFIG, "model_bad_config/config.json", "hidden_size");

    char empty_dir[1024];
    make_subdir(empty_dir, sizeof empty_dir, "model_no_config");
    expect_config_error("missing config", empty_dir, ML_ERR_IO, "model_no_config/config.json", NULL);
    path_join(path, sizeof path, tmp_root, "does_not_exist");
    expect_config_error("missing dir", path, ML_ERR_IO, "does_not_exist", "does not exist");
    path_join(path, sizeof path, dir, "config.json");
    expect_config_error("dir is a file", path, ML_ERR_IO, "config.json", "directory");
}

/* ---------- safetensors ---------- */

static void fill_pattern(uint8_t *data, size_t size) {
    for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(i * 7 + 1);
}

static const char valid_header[] =
    "{\"__metadata__\": {\"format\": \"pt\"},"
    " \"a.f32\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
    " \"b.f16\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [24, 32]},"
    " \"c.bf16\": {\"dtype\": \"BF16\", \"shape\": [2, 2, 2], \"data_offsets\": [32, 48]},"
    " \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [48, 48]},"
    " \"inside\": {\"dtype\": \"BF16\", \"shape\": [3, 0], \"data_offsets\": [4, 4]},"
    " \"scalar\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [48, 50]}}";

static void check_valid_views(const ml_weight_set *st, const uint8_t *region) {
    static const struct {
        const char *name;
        ml_dtype dtype;
        int n_dims;
        int64_t shape[3];
        size_t begin, n_bytes;
    } expected[] = {
        {"a.f32", ML_DTYPE_F32, 2, {2, 3, 0}, 0, 24},   {"b.f16", ML_DTYPE_F16, 1, {4, 0, 0}, 24, 8},
        {"c.bf16", ML_DTYPE_BF16, 3, {2, 2, 2}, 32, 16}, {"empty", ML_DTYPE_F32, 2, {0, 5, 0}, 48, 0},
        {"inside", ML_DTYPE_BF16, 2, {3, 0, 0}, 4, 0},  {"scalar", ML_DTYPE_BF16, 0, {0, 0, 0}, 48, 2},
    };
    CHECK(st->n_tensors == 6, "n_tensors %d", st->n_tensors);
    for (int i = 1; i < st->n_tensors; i++) {
        CHECK(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0, "tensors sorted by name at %d", i);
    }
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const ml_tensor_view *view = ml_weight_set_find(st, expected[i].name);
        CHECK(view != NULL, "find %s", expected[i].name);
        if (!view) continue;
        CHECK(view->dtype == expected[i].dtype && view->n_dims == expected[i].n_dims &&
                  view->n_bytes == expected[i].n_bytes,
              "%s: dtype %d dims %d bytes %zu", expected[i].name, (int)view->dtype, view->n_dims, view->n_bytes);
        for (int d = 0; d < expected[i].n_dims; d++) {
            CHECK(view->shape[d] == expected[i].shape[d], "%s shape[%d] = %lld", expected[i].name, d,
                  (long long)view->shape[d]);
        }
        if (expected[i].n_bytes == 0) {
            CHECK(view->data == NULL, "%s: zero-size view has data", expected[i].name);
        } else {
            CHECK(view->data == region + expected[i].begin, "%s: view does not point into the mapping", expected[i].name);
            CHECK(view->data && memcmp(view->data, region + expected[i].begin, expected[i].n_bytes) == 0,
                  "%s bytes", expected[i].name);
        }
    }
    CHECK(ml_weight_set_find(st, "absent") == NULL, "absent tensor found");
    CHECK(ml_weight_set_find(st, "") == NULL, "empty name found");
}

static void test_safetensors_valid(void) {
    uint8_t data[50];
    fill_pattern(data, sizeof data);
    char dir[1024], path[1100];
    make_subdir(dir, sizeof dir, "st_single");
    write_safetensors_in(dir, "model.safetensors", valid_header, data, sizeof data);

    ml_weight_set st;
    path_join(path, sizeof path, dir, "model.safetensors");
    expect_ok("open_file", ml_safetensors_open_file(path, &st));
    CHECK(st.n_files == 1 && st.files[0].size == 8 + strlen(valid_header) + sizeof data, "one mapped file");
    if (st.n_files == 1) check_valid_views(&st, st.files[0].data + 8 + strlen(valid_header));
    ml_weight_set_close(&st);
    CHECK(st.tensors == NULL && st.n_tensors == 0 && st.files == NULL, "close resets");
    ml_weight_set_close(&st);
    ml_weight_set_close(NULL);

    expect_ok("open_dir single", ml_safetensors_open_dir(dir, &st));
    if (st.n_files == 1) check_valid_views(&st, st.files[0].data + 8 + strlen(valid_header));
    ml_weight_set_close(&st);

    /* parse() appends to an existing array and tags file_index. */
    size_t size;
    uint8_t *bytes = make_safetensors(valid_header, data, sizeof data, &size);
    ml_tensor_view *views = calloc(1, sizeof *views);
    views[0].name = strdup("existing");
    int n_views = 1;
    expect_ok("parse appends", ml_safetensors_parse(bytes, size, "memory", 3, &views, &n_views));
    CHECK(n_views == 7 && strcmp(views[0].name, "existing") == 0, "appended: %d views", n_views);
    for (int i = 1; i < n_views; i++) {
        CHECK(views[i].file_index == 3, "file_index tag");
        CHECK(views[i].data == NULL || ((const uint8_t *)views[i].data >= bytes && (const uint8_t *)views[i].data < bytes + size),
              "view inside the image");
    }
    free_views(views, n_views);
    free(bytes);

    /* Empty header: a valid file with no tensors; header padded with spaces as writers do. */
    bytes = make_safetensors("{}      ", NULL, 0, &size);
    views = NULL;
    n_views = 0;
    expect_ok("empty header", ml_safetensors_parse(bytes, size, "memory", 0, &views, &n_views));
    CHECK(n_views == 0, "no tensors");
    free_views(views, n_views);
    free(bytes);
}

static void test_safetensors_errors(void) {
    char dir[1024], path[1100];
    make_subdir(dir, sizeof dir, "st_bad");
    ml_weight_set st;

    path_join(path, sizeof path, dir, "tiny.safetensors");
    write_in(dir, "tiny.safetensors", "abc", 3);
    ml_clear_error();
    expect_error("3-byte file", ml_safetensors_open_file(path, &st), ML_ERR_FORMAT, "tiny.safetensors", "3 bytes");
    CHECK(st.n_tensors == 0 && st.files == NULL, "failed open leaves nothing");

    path_join(path, sizeof path, dir, "empty.safetensors");
    write_in(dir, "empty.safetensors", "", 0);
    ml_clear_error();
    expect_error("empty file", ml_safetensors_open_file(path, &st), ML_ERR_FORMAT, "empty.safetensors", "0 bytes");

    uint8_t beyond[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_in(dir, "beyond.safetensors", beyond, sizeof beyond);
    path_join(path, sizeof path, dir, "beyond.safetensors");
    ml_clear_error();
    expect_error("header beyond file", ml_safetensors_open_file(path, &st), ML_ERR_FORMAT, "beyond.safetensors",
                 "header length 200");
    uint8_t huge_length[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ml_tensor_view *views = NULL;
    int n_views = 0;
    ml_clear_error();
    expect_error("header length 2^64-1", ml_safetensors_parse(huge_length, 8, ST_SOURCE, 0, &views, &n_views),
                 ML_ERR_FORMAT, ST_SOURCE, "header length");

    /* An absurd header length inside a (sparse, zeroed) image that is big enough to hold it. */
    size_t absurd = 100000001;
    uint8_t *big = calloc(8 + absurd, 1);
    if (big) {
        for (int i = 0; i < 8; i++) big[i] = (uint8_t)((uint64_t)absurd >> (8 * i));
        ml_clear_error();
        expect_error("absurd header", ml_safetensors_parse(big, 8 + absurd, ST_SOURCE, 0, &views, &n_views),
                     ML_ERR_FORMAT, ST_SOURCE, "limit");
        free(big);
    }

    write_safetensors_in(dir, "notjson.safetensors", "{\"w\": {\"dtype\": ", NULL, 0);
    path_join(path, sizeof path, dir, "notjson.safetensors");
    ml_clear_error();
    expect_error("header not JSON", ml_safetensors_open_file(path, &st), ML_ERR_FORMAT, "notjson.safetensors",
                 "not valid JSON");

    safetensors_error("header is array", "[1, 2]", 0, ML_ERR_FORMAT, "expected a JSON object");
    safetensors_error("entry not object", "{\"w.entry\": 5}", 0, ML_ERR_FORMAT, "w.entry");
    safetensors_error("unknown dtype", "{\"w.dtype\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2,
                      ML_ERR_FORMAT, "w.dtype");
    safetensors_error("unknown dtype named", "{\"w\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 2]}}",
                      2, ML_ERR_FORMAT, "\"Q4\"");
    safetensors_error("unsupported dtype", "{\"w.e8m0\": {\"dtype\": \"F8_E8M0\", \"shape\": [2], \"data_offsets\": [0, 2]}}",
                      2, ML_ERR_UNSUPPORTED, "w.e8m0");
    safetensors_error("dtype missing", "{\"w.nodtype\": {\"shape\": [2], \"data_offsets\": [0, 2]}}", 2, ML_ERR_FORMAT,
                      "w.nodtype");
    safetensors_error("dtype not string", "{\"w.dnum\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
                      ML_ERR_FORMAT, "w.dnum");
    safetensors_error("shape missing", "{\"w.noshape\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8,
                      ML_ERR_FORMAT, "w.noshape");
    safetensors_error("shape not list", "{\"w.shape\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}",
                      8, ML_ERR_FORMAT, "w.shape");
    safetensors_error("negative dim", "{\"w.neg\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8,
                      ML_ERR_FORMAT, "w.neg");
    safetensors_error("real dim", "{\"w.real\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8,
                      ML_ERR_FORMAT, "w.real");
    safetensors_error("rank 9",
                      "{\"w.rank\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
                      ML_ERR_FORMAT, "w.rank");
    safetensors_error("shape overflow",
                      "{\"w.over\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 4]}}",
                      4, ML_ERR_FORMAT, "w.over");
    safetensors_error("bytes overflow",
                      "{\"w.bytes\": {\"dtype\": \"F64\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 8]}}",
                      8, ML_ERR_FORMAT, "w.bytes");
    safetensors_error("offsets missing", "{\"w.nooff\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, ML_ERR_FORMAT,
                      "w.nooff");
    safetensors_error("offsets one int", "{\"w.one\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8,
                      ML_ERR_FORMAT, "w.one");
    safetensors_error("offsets string", "{\"w.str\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, \"8\"]}}",
                      8, ML_ERR_FORMAT, "w.str");
    safetensors_error("offsets negative", "{\"w.noff\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
                      8, ML_ERR_FORMAT, "w.noff");
    safetensors_error("begin > end", "{\"w.rev\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 8]}}", 16,
                      ML_ERR_FORMAT, "w.rev");
    safetensors_error("end beyond data", "{\"w.far\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                      12, ML_ERR_FORMAT, "w.far");
    safetensors_error("end far beyond",
                      "{\"w.huge\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [9223372036854775806, 9223372036854775807]}}",
                      12, ML_ERR_FORMAT, "w.huge");
    safetensors_error("size mismatch", "{\"w.size\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 8,
                      ML_ERR_FORMAT, "w.size");
    safetensors_error("overlap",
                      "{\"w.first\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"w.second\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                      12, ML_ERR_FORMAT, "overlaps");
    safetensors_error("overlap names both",
                      "{\"w.first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                      " \"w.inner\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      16, ML_ERR_FORMAT, "w.inner");
    safetensors_error("same range",
                      "{\"w.a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"w.b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                      8, ML_ERR_FORMAT, "w.a");
    safetensors_error("duplicate name",
                      "{\"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, ML_ERR_FORMAT, "\"dup\"");
    safetensors_error("duplicate long name",
                      "{\"model.layers.0.self_attn.q_proj.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"model.layers.0.self_attn.q_proj.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, ML_ERR_FORMAT, "model.layers.0.self_attn.q_proj.weight");
    safetensors_error("duplicate escaped name",
                      "{\"a\\\"b\\\\\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"a\\\"b\\\\\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, ML_ERR_FORMAT, "a\"b\\");
    safetensors_error("metadata not object", "{\"__metadata__\": [1]}", 0, ML_ERR_FORMAT, "__metadata__");
    safetensors_error("metadata value not string", "{\"__metadata__\": {\"format\": 1}}", 0, ML_ERR_FORMAT, "format");

    /* A file that fails after some entries parsed cleanly must not leak them (sanitizer build). */
    safetensors_error("late failure",
                      "{\"ok.1\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"ok.2\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]},"
                      " \"bad.3\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [8, 12]}}",
                      12, ML_ERR_FORMAT, "bad.3");
}

static void write_index(const char *dir, const char *weight_map) {
    char text[2048];
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 64}, \"weight_map\": %s}", weight_map);
    write_text_in(dir, "model.safetensors.index.json", text);
}

static const char shard1_header[] = "{\"embed\": {\"dtype\": \"BF16\", \"shape\": [4, 2], \"data_offsets\": [0, 16]},"
                                    " \"layer0.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]}}";
static const char shard2_header[] = "{\"layer1.w\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
                                    " \"norm\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}";

static void make_sharded(char *dir, size_t size, const char *name, const char *weight_map) {
    uint8_t data[24];
    fill_pattern(data, sizeof data);
    make_subdir(dir, size, name);
    write_safetensors_in(dir, "model-00001-of-00002.safetensors", shard1_header, data, sizeof data);
    for (size_t i = 0; i < sizeof data; i++) data[i] ^= 0x5a;
    write_safetensors_in(dir, "model-00002-of-00002.safetensors", shard2_header, data, sizeof data);
    write_index(dir, weight_map);
}

static const char good_weight_map[] =
    "{\"embed\": \"model-00001-of-00002.safetensors\", \"layer0.w\": \"model-00001-of-00002.safetensors\","
    " \"layer1.w\": \"model-00002-of-00002.safetensors\", \"norm\": \"model-00002-of-00002.safetensors\"}";

static void test_sharded(void) {
    char dir[1024], path[1100];
    make_sharded(dir, sizeof dir, "st_sharded", good_weight_map);
    ml_weight_set st;
    expect_ok("sharded open", ml_safetensors_open_dir(dir, &st));
    CHECK(st.n_files == 2 && st.n_tensors == 4, "sharded: %d files, %d tensors", st.n_files, st.n_tensors);
    const char *names[] = {"embed", "layer0.w", "layer1.w", "norm"};
    const char *shards[] = {"00001-of", "00001-of", "00002-of", "00002-of"};
    const size_t begins[] = {0, 16, 0, 8};
    for (int i = 0; i < 4 && st.n_files == 2; i++) {
        const ml_tensor_view *view = ml_weight_set_find(&st, names[i]);
        CHECK(view != NULL, "sharded find %s", names[i]);
        if (!view) continue;
        const ml_mapped_file *file = &st.files[view->file_index];
        CHECK(strstr(file->path, shards[i]) != NULL, "%s is in %s, expected %s", names[i], file->path, shards[i]);
        const uint8_t *region = file->data + 8 + strlen(i < 2 ? shard1_header : shard2_header);
        CHECK(view->data == region + begins[i], "%s view points at its bytes", names[i]);
        uint8_t expected_first = (uint8_t)(begins[i] * 7 + 1) ^ (uint8_t)(i < 2 ? 0 : 0x5a);
        CHECK(view->data && *(const uint8_t *)view->data == expected_first, "%s first byte", names[i]);
    }
    ml_weight_set_close(&st);

    /* Index files that name what is not there, or name it badly. */
    static const struct {
        const char *dir, *weight_map, *label;
        int code;
        const char *needle1, *needle2;
    } index_cases[] = {
        {"st_missing_shard",
         "{\"embed\": \"model-00001-of-00002.safetensors\", \"norm\": \"model-00003-of-00003.safetensors\"}",
         "missing shard", ML_ERR_IO, "model.safetensors.index.json", "model-00003-of-00003.safetensors"},
        {"st_missing_tensor",
         "{\"embed\": \"model-00001-of-00002.safetensors\", \"lm_head.weight\": \"model-00002-of-00002.safetensors\"}",
         "tensor not in shard", ML_ERR_TENSOR, "lm_head.weight", "model-00002-of-00002.safetensors"},
        /* the index says one shard, the tensor lives in the other */
        {"st_wrong_shard",
         "{\"embed\": \"model-00001-of-00002.safetensors\", \"norm\": \"model-00001-of-00002.safetensors\","
         " \"layer1.w\": \"model-00002-of-00002.safetensors\"}",
         "tensor in other shard", ML_ERR_TENSOR, "\"norm\"", "model-00002-of-00002.safetensors"},
        {"st_escape", "{\"embed\": \"../model-00001-of-00002.safetensors\"}", "shard with ..", ML_ERR_FORMAT,
         "model.safetensors.index.json", "embed"},
        {"st_slash", "{\"embed\": \"sub/model.safetensors\"}", "shard with /", ML_ERR_FORMAT,
         "model.safetensors.index.json", "sub/model.safetensors"},
        {"st_index_not_json", "{\"embed\": ", "index not JSON", ML_ERR_FORMAT,
         "st_index_not_json/model.safetensors.index.json", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof index_cases / sizeof index_cases[0]; i++) {
        make_sharded(dir, sizeof dir, index_cases[i].dir, index_cases[i].weight_map);
        ml_clear_error();
        expect_error(index_cases[i].label, ml_safetensors_open_dir(dir, &st), index_cases[i].code,
                     index_cases[i].needle1, index_cases[i].needle2);
        CHECK(st.n_files == 0 && st.tensors == NULL, "%s: failed open_dir leaves nothing", index_cases[i].label);
    }

    /* The same tensor in two shards. */
    make_sharded(dir, sizeof dir, "st_two_copies", good_weight_map);
    uint8_t data[24] = {0};
    write_safetensors_in(dir, "model-00002-of-00002.safetensors",
                         "{\"layer1.w\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
                         " \"embed\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]},"
                         " \"norm\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]}}",
                         data, sizeof data);
    ml_clear_error();
    expect_error("tensor in two shards", ml_safetensors_open_dir(dir, &st), ML_ERR_FORMAT, "\"embed\"",
                 "model-00001-of-00002.safetensors");

    /* A malformed index, a malformed shard. */
    make_sharded(dir, sizeof dir, "st_no_weight_map", good_weight_map);
    write_text_in(dir, "model.safetensors.index.json", "{\"metadata\": {}}");
    ml_clear_error();
    expect_error("no weight_map", ml_safetensors_open_dir(dir, &st), ML_ERR_FORMAT, "model.safetensors.index.json",
                 "weight_map");
    make_sharded(dir, sizeof dir, "st_bad_shard", good_weight_map);
    write_safetensors_in(dir, "model-00002-of-00002.safetensors",
                         "{\"norm\": {\"dtype\": \"F32\", \"shape\": [9], \"data_offsets\": [0, 8]}}", data, 8);
    ml_clear_error();
    expect_error("malformed shard", ml_safetensors_open_dir(dir, &st), ML_ERR_FORMAT, "model-00002-of-00002.safetensors",
                 "norm");

    /* Directories with nothing to open. */
    make_subdir(dir, sizeof dir, "st_empty_dir");
    ml_clear_error();
    expect_error("empty dir", ml_safetensors_open_dir(dir, &st), ML_ERR_IO, "st_empty_dir",
                 "no model.safetensors or model.safetensors.index.json");
    path_join(path, sizeof path, tmp_root, "st_does_not_exist");
    ml_clear_error();
    expect_error("missing dir", ml_safetensors_open_dir(path, &st), ML_ERR_IO, "st_does_not_exist", "does not exist");
    path_join(path, sizeof path, tmp_root, "st_sharded/missing.safetensors");
    ml_clear_error();
    expect_error("missing file", ml_safetensors_open_file(path, &st), ML_ERR_IO, "missing.safetensors", NULL);
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk) {
    (void)info;
    (void)type;
    (void)walk;
    return remove(path);
}

/* ---- MLHFREF1 logit references (formats/hf_reference.c) ---------------------------------- */

/* A damaged golden-file image: the first size bytes, with the uint32 poke written at poke_at
 * (at 0 too when poke is non-zero); the error message must contain needle. */
typedef struct {
    const char *label;
    size_t size;
    size_t poke_at;
    uint32_t poke;
    const char *needle;
} bad_image;

/* A reference image: version, vocab, prompt, generated ids, [logits_first, start_pos] (v2). */
static size_t make_reference(uint8_t *buf, uint32_t version, uint32_t vocab, uint32_t n_prompt, uint32_t n_gen,
                             uint32_t logits_first, uint32_t start_pos) {
    size_t o = 0;
    memcpy(buf, "MLHFREF1", 8);
    o += 8;
    uint32_t header[6] = {version, vocab, n_prompt, n_gen, logits_first, start_pos};
    memcpy(buf + o, header, version == 2 ? 24 : 16);
    o += version == 2 ? 24 : 16;
    for (uint32_t i = 0; i < n_prompt + n_gen; i++) {
        int32_t id = (int32_t)((i * 7 + 3) % vocab);
        memcpy(buf + o, &id, 4);
        o += 4;
    }
    for (uint32_t i = 0; i < (n_prompt - logits_first) * vocab; i++) {
        float v = (float)i * 0.25f - 3.0f;
        memcpy(buf + o, &v, 4);
        o += 4;
    }
    return o;
}

static void test_hf_reference(void) {
    static uint8_t buf[8192];
    ml_hf_reference r;
    /* version 1: every prompt row */
    size_t n = make_reference(buf, 1, 16, 5, 3, 0, 0);
    expect_ok("reference v1", ml_hf_reference_parse(buf, n, "v1.bin", &r));
    CHECK(r.version == 1 && r.vocab_size == 16 && r.n_prompt == 5 && r.n_generated == 3 && r.logits_first == 0,
          "v1 header read as %d/%d/%d/%d/%d", r.version, r.vocab_size, r.n_prompt, r.n_generated, r.logits_first);
    CHECK(r.prompt_ids[4] == (4 * 7 + 3) % 16 && r.generated_ids[2] == (7 * 7 + 3) % 16, "v1 ids");
    CHECK(r.logits[5 * 16 - 1] == (float)(5 * 16 - 1) * 0.25f - 3.0f, "v1 last logit");
    ml_hf_reference_free(&r);
    /* version 2: the last 2 rows, a shifted start */
    n = make_reference(buf, 2, 16, 5, 0, 3, 100);
    expect_ok("reference v2", ml_hf_reference_parse(buf, n, "v2.bin", &r));
    CHECK(r.version == 2 && r.logits_first == 3 && r.start_pos == 100 && r.logits[2 * 16 - 1] == 31 * 0.25f - 3.0f,
          "v2 read as first %d start %d", r.logits_first, r.start_pos);
    ml_hf_reference_free(&r);
    /* the committed fixtures read the same way as the tests' loader sees them */
    char path[4096];
    ml_test_fixture_path(path, sizeof path, "gqa_tied_bf16/reference.bin");
    expect_ok("fixture reference", ml_hf_reference_load(path, &r));
    CHECK(r.vocab_size == 256 && r.n_prompt > 0, "fixture reference: vocab %d", r.vocab_size);
    ml_hf_reference_free(&r);

    /* bad files: a clear ML_ERR_FORMAT naming the file, nothing allocated */
    size_t good = make_reference(buf, 1, 16, 5, 3, 0, 0);
    const bad_image bad[] = {
        {"empty", 0, 0, 0, "magic"},
        {"magic", 8, 0, 0x4c4d4c4d, "magic"},
        {"short header", 12, 0, 0, "truncated header"},
        {"version 3", good, 8, 3, "version 3"},
        {"vocab 0", good, 12, 0, "vocab_size 0"},
        {"prompt 0", good, 16, 0, "prompt"},
        {"huge prompt", good, 16, 0x7fffffff, "prompt"},
        {"truncated logits", good - 1, 0, 0, "truncated"},
        {"id outside vocab", good, 24, 99, "outside the vocabulary"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make_reference(buf, 1, 16, 5, 3, 0, 0);
        if (bad[i].poke_at) memcpy(buf + bad[i].poke_at, &bad[i].poke, 4);
        else if (bad[i].poke) memcpy(buf, &bad[i].poke, 4);
        ml_clear_error();
        int status = ml_hf_reference_parse(buf, bad[i].size, "bad.bin", &r);
        expect_error(bad[i].label, status, ML_ERR_FORMAT, "bad.bin", bad[i].needle);
        CHECK(!r.prompt_ids && !r.generated_ids && !r.logits, "%s: arrays left allocated", bad[i].label);
    }
    n = make_reference(buf, 2, 16, 5, 0, 5, 0); /* logits_first == n_prompt: no rows */
    expect_error("logits_first", ml_hf_reference_parse(buf, n, "bad.bin", &r), ML_ERR_FORMAT, "bad.bin", "logits_first");
    expect_error("missing file", ml_hf_reference_load("/nonexistent/ref.bin", &r), ML_ERR_IO, "/nonexistent/ref.bin",
                 NULL);
}

/* ---- MLEVREF1 teacher-forcing references (formats/eval_reference.c) ------------------------- */

/* vocab 16, prompt 3, decode 2, top_k 2, 1 logit step, metadata "{}"; returns the size. */
static size_t make_eval_reference(uint8_t *buf) {
    const uint32_t header[7] = {1, 16, 3, 2, 2, 1, 2};
    const int32_t prompt[3] = {1, 5, 9}, tokens[2] = {4, 7}, top_ids[4] = {4, 3, 7, 0};
    const float top_logits[4] = {2.5f, 1.0f, 3.0f, -1.0f};
    float logits[16];
    for (int i = 0; i < 16; i++) logits[i] = (float)i * 0.125f - 1.0f;
    size_t o = 0;
#define PUT(src, bytes) (memcpy(buf + o, (src), (bytes)), o += (bytes))
    PUT("MLEVREF1", 8);
    PUT(header, sizeof header);
    PUT("{}", 2);
    PUT(prompt, sizeof prompt);
    PUT(tokens, sizeof tokens);
    PUT(top_ids, sizeof top_ids);
    PUT(top_logits, sizeof top_logits);
    PUT(logits, sizeof logits);
#undef PUT
    return o;
}

static void test_eval_reference(void) {
    static uint8_t buf[1024];
    ml_eval_reference r;
    size_t n = make_eval_reference(buf);
    expect_ok("eval reference", ml_eval_reference_parse(buf, n, "ev.bin", &r));
    CHECK(r.n_prompt == 3 && r.n_decode == 2 && r.top_k == 2 && r.prompt[2] == 9 && r.tokens[1] == 7 &&
              r.top_logits[2] == 3.0f && r.logits[15] == 0.875f && strcmp(r.meta_json, "{}") == 0,
          "eval reference read back wrong");
    ml_eval_reference_free(&r);
    const bad_image bad[] = {
        {"magic", n, 0, 0x4c4d4c4d, "magic is not MLEVREF1"},
        {"short header", 20, 0, 0, "truncated the header"},
        {"version 2", n, 8, 2, "version 2"},
        {"top_k 0", n, 24, 0, "out of range"},
        {"truncated logits", n - 1, 0, 0, "truncated the logits"},
        {"trailing byte", n + 1, 0, 0, "1 unexpected bytes after the logits"},
        {"prompt id", n, 8 + 28 + 2, 16, "prompt[0] = 16"},
        {"greedy not top-1", n, 8 + 28 + 2 + 12 + 8, 3, "is not HF's top-1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make_eval_reference(buf);
        buf[n] = 0;
        if (bad[i].poke || bad[i].poke_at) memcpy(buf + bad[i].poke_at, &bad[i].poke, 4);
        ml_clear_error();
        int status = ml_eval_reference_parse(buf, bad[i].size, "bad.bin", &r);
        expect_error(bad[i].label, status, ML_ERR_FORMAT, "bad.bin", bad[i].needle);
        CHECK(!r.meta_json && !r.prompt && !r.logits, "%s: arrays left allocated", bad[i].label);
    }
}

/* ---- MLHIDDN1 hidden-state dumps (formats/hidden_dump.c) --------------------------------- */

/* Written by ml_hidden_dump_write, read back by ml_hidden_dump_load: every field and value
 * identical (memcmp). Then version 1 (no names) and damaged images. */
static void test_hidden_dump(void) {
    enum { N_TOK = 3, HIDDEN = 4 };
    const int32_t prompt[N_TOK] = {1, 17, 42};
    float values[3][N_TOK * 6];
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < N_TOK * 6; i++) values[e][i] = (float)(e * 100 + i) * 0.5f - 7.0f;
    const ml_hidden_entry entries[3] = {
        {"embed", -1, HIDDEN, values[0]}, {"q", 0, 6, values[1]}, {"final_norm", -1, HIDDEN, values[2]}};
    char path[1024];
    path_join(path, sizeof path, tmp_root, "hidden_prefill3.bin");
    expect_ok("hidden dump write", ml_hidden_dump_write(path, prompt, N_TOK, HIDDEN, entries, 3));
    ml_hidden_dump d;
    expect_ok("hidden dump load", ml_hidden_dump_load(path, &d));
    CHECK(d.version == 2 && d.n_tokens == N_TOK && d.hidden_size == HIDDEN && d.n_entries == 3 &&
              memcmp(d.prompt, prompt, sizeof prompt) == 0,
          "hidden dump header read back as version %d, %d tokens, hidden %d, %d entries", d.version, d.n_tokens,
          d.hidden_size, d.n_entries);
    for (int e = 0; e < 3 && e < d.n_entries; e++) {
        const ml_hidden_entry *got = &d.entries[e];
        CHECK(strcmp(got->name, entries[e].name) == 0 && got->layer == entries[e].layer &&
                  got->width == entries[e].width &&
                  memcmp(got->data, entries[e].data, sizeof(float) * N_TOK * (size_t)entries[e].width) == 0,
              "hidden dump entry %d (%s) read back differently", e, entries[e].name);
    }
    CHECK(d.n_entries == 3 && ml_hidden_dump_find(&d, "q", 0) == &d.entries[1] && !ml_hidden_dump_find(&d, "q", 1),
          "ml_hidden_dump_find");
    ml_hidden_dump_free(&d);

    /* the image, for version 1 and the damaged cases */
    size_t size;
    uint8_t *image = ml_test_read_file(path, &size);
    CHECK(image != NULL, "cannot read %s back", path);
    if (!image) return;
    /* version 1: the same header and prompt, then unnamed [n_entries][n_tokens][hidden] values */
    uint8_t v1[256];
    const uint32_t header_v1[4] = {1, 2, N_TOK, HIDDEN};
    memcpy(v1, "MLHIDDN1", 8);
    memcpy(v1 + 8, header_v1, sizeof header_v1);
    memcpy(v1 + 24, prompt, sizeof prompt);
    memcpy(v1 + 24 + sizeof prompt, values[0], sizeof(float) * N_TOK * HIDDEN);
    memcpy(v1 + 24 + sizeof prompt + sizeof(float) * N_TOK * HIDDEN, values[2], sizeof(float) * N_TOK * HIDDEN);
    size_t v1_size = 24 + sizeof prompt + 2 * sizeof(float) * N_TOK * HIDDEN;
    expect_ok("hidden dump v1", ml_hidden_dump_parse(v1, v1_size, "v1.bin", &d));
    CHECK(d.version == 1 && d.n_entries == 2 && strcmp(d.entries[0].name, "embed") == 0 &&
              strcmp(d.entries[1].name, "final_norm") == 0 && d.entries[1].layer == -1 &&
              d.entries[1].width == HIDDEN && d.entries[1].data[N_TOK * HIDDEN - 1] == values[2][N_TOK * HIDDEN - 1],
          "hidden dump v1 read back wrong");
    ml_hidden_dump_free(&d);

    /* entry 0 (embed) starts after the 24-byte header and the prompt: name length at 36 */
    const size_t entry0 = 24 + sizeof prompt;
    const bad_image bad[] = {
        {"magic", size, 0, 0x4c4d4c4d, "magic is not MLHIDDN1"},
        {"short header", 20, 0, 0, "truncated the header"},
        {"version 3", size, 8, 3, "version 3"},
        {"no tokens", size, 16, 0, "out of range"},
        {"huge entry count", size, 12, 0x7fffffff, "out of range"},
        {"name length 0", size, entry0, 0, "name of 0 bytes"},
        {"name length 40", size, entry0, 40, "name of 40 bytes"},
        {"width 0", size, entry0 + 4 + 5 + 4, 0, "width 0 out of range"},
        {"truncated values", size - 1, 0, 0, "truncated the values of entry 2 (final_norm)"},
        {"trailing byte", size + 1, 0, 0, "1 unexpected bytes after the last entry"},
    };
    uint8_t *buf = malloc(size + 1);
    for (size_t i = 0; buf && i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(buf, image, size);
        buf[size] = 0;
        if (bad[i].poke || bad[i].poke_at) memcpy(buf + bad[i].poke_at, &bad[i].poke, 4);
        ml_clear_error();
        int status = ml_hidden_dump_parse(buf, bad[i].size, "bad.bin", &d);
        expect_error(bad[i].label, status, ML_ERR_FORMAT, "bad.bin", bad[i].needle);
        CHECK(!d.prompt && !d.entries, "%s: arrays left allocated", bad[i].label);
    }
    free(buf);
    free(image);
    expect_error("hidden dump: missing file", ml_hidden_dump_load("/nonexistent/hidden.bin", &d), ML_ERR_IO,
                 "/nonexistent/hidden.bin", NULL);
    expect_error("hidden dump: bad path", ml_hidden_dump_write("/nonexistent/dir/hidden.bin", prompt, N_TOK, HIDDEN,
                                                               entries, 3),
                 ML_ERR_IO, "/nonexistent/dir/hidden.bin", NULL);
    expect_error("hidden dump: no tokens", ml_hidden_dump_write(path, prompt, 0, HIDDEN, entries, 3), ML_ERR_ARG,
                 "n_tokens 0", NULL);
}

int main(void) {
    if (ml_test_make_tmpdir(tmp_root, sizeof tmp_root, "formats") != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_config_valid();
    test_config_errors();
    test_config_family();
    test_generation_config();
    test_config_load();
    test_safetensors_valid();
    test_safetensors_errors();
    test_sharded();
    test_hf_reference();
    test_eval_reference();
    test_hidden_dump();
    nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return ml_test_finish("formats");
}
