/* Bad input to the model layer: every case returns an error code with a message naming the
 * file, tensor or argument, and nothing crashes or leaks (the sanitizer build runs this). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "meshllama.h"
#include "test_util.h"

static char fixture_dir[512];

/* Opens dir and expects failure with code and a message containing every non-NULL needle. */
static void expect_open_fails(const char *dir, int tp, int code, const char *needle1, const char *needle2) {
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    ml_model *m = (ml_model *)1;
    int status = ml_model_open(dir, &p, &m);
    CHECK(status == code, "%s: expected status %d, got %d (%s)", dir, code, status, ml_last_error());
    CHECK(m == NULL, "%s: handle not cleared on failure", dir);
    if (needle1) CHECK(strstr(ml_last_error(), needle1), "message lacks '%s': %s", needle1, ml_last_error());
    if (needle2) CHECK(strstr(ml_last_error(), needle2), "message lacks '%s': %s", needle2, ml_last_error());
    if (status == ML_OK) ml_model_close(m);
}

/* A copy of a fixture: weight files linked, config.json rewritten by edit (may be NULL). */
static int make_variant(const char *fixture, const char *tag, void (*edit)(json_t *config), char *out, size_t size) {
    char relative[512], src[4096], path[4200], target[4200];
    ml_test_fixture_path(relative, sizeof relative, fixture);
    if (!realpath(relative, src)) return -1;
    if (ml_test_make_tmpdir(out, size, tag) != 0) return -1;
    const char *names[] = {"model.safetensors", "model.safetensors.index.json", "model-00001-of-00004.safetensors",
                           "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
                           "model-00004-of-00004.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(target, sizeof target, "%s/%s", src, names[i]);
        snprintf(path, sizeof path, "%s/%s", out, names[i]);
        if (access(target, F_OK) == 0 && symlink(target, path) != 0) return -1;
    }
    snprintf(path, sizeof path, "%s/config.json", src);
    json_error_t error;
    json_t *config = json_load_file(path, 0, &error);
    if (!config) return -1;
    if (edit) edit(config);
    snprintf(path, sizeof path, "%s/config.json", out);
    int rc = json_dump_file(config, path, JSON_INDENT(2));
    json_decref(config);
    return rc;
}

static void set_wrong_ffn(json_t *c) { json_object_set_new(c, "intermediate_size", json_integer(161)); }
static void set_zero_heads(json_t *c) { json_object_set_new(c, "num_attention_heads", json_integer(0)); }
static void set_string_hidden(json_t *c) { json_object_set_new(c, "hidden_size", json_string("96")); }
static void drop_vocab(json_t *c) { json_object_del(c, "vocab_size"); }

static void check_directory_errors(void) {
    expect_open_fails("/nonexistent/meshllama-model", 1, ML_ERR_IO, "/nonexistent/meshllama-model", NULL);
    char dir[512];
    CHECK(ml_test_make_tmpdir(dir, sizeof dir, "empty") == 0, "tmpdir");
    expect_open_fails(dir, 1, ML_ERR_IO, "config.json", NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ml_test_write_file(path, "{ not json", 10);
    expect_open_fails(dir, 1, ML_ERR_CONFIG, "config.json", NULL);
}

static void check_config_errors(void) {
    char dir[512];
    CHECK(make_variant("gqa_tied_bf16", "ffn", set_wrong_ffn, dir, sizeof dir) == 0, "variant");
    expect_open_fails(dir, 1, ML_ERR_TENSOR, "mlp.gate_proj.weight", "[161, 96]");
    CHECK(make_variant("gqa_tied_bf16", "heads", set_zero_heads, dir, sizeof dir) == 0, "variant");
    expect_open_fails(dir, 1, ML_ERR_CONFIG, "num_attention_heads", NULL);
    CHECK(make_variant("gqa_tied_bf16", "type", set_string_hidden, dir, sizeof dir) == 0, "variant");
    expect_open_fails(dir, 1, ML_ERR_CONFIG, "hidden_size", NULL);
    CHECK(make_variant("gqa_tied_bf16", "vocab", drop_vocab, dir, sizeof dir) == 0, "variant");
    expect_open_fails(dir, 1, ML_ERR_CONFIG, "vocab_size", NULL);
    expect_open_fails(fixture_dir, 7, ML_ERR_ARG, "tp 7", NULL);
    expect_open_fails(fixture_dir, 0, ML_ERR_ARG, "tp 0", NULL);
}

/* Rewrites a fixture's safetensors without one tensor (drop), with one tensor's dtype renamed
 * (retype), or with a 1-D tensor one element short (shorten). */
static int write_fixture_safetensors(const char *fixture, const char *dir, const char *drop, const char *retype,
                                     const char *new_dtype, const char *shorten) {
    char src[600], path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    ml_test_fixture_path(src, sizeof src, path);
    ml_weight_set st;
    if (ml_safetensors_open_file(src, &st) != ML_OK) return -1;
    json_t *header = json_object();
    size_t offset = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const ml_tensor_view *t = &st.tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        int short_one = shorten && strcmp(t->name, shorten) == 0 && t->n_dims == 1;
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d] - short_one));
        const char *dtype = t->dtype == ML_DTYPE_F32 ? "F32" : t->dtype == ML_DTYPE_F16 ? "F16" : "BF16";
        if (retype && strcmp(t->name, retype) == 0) dtype = new_dtype;
        size_t n_bytes = t->n_bytes - (short_one ? t->n_bytes / (size_t)t->shape[0] : 0);
        json_object_set_new(header, t->name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtype, "shape", shape, "data_offsets",
                                      (json_int_t)offset, (json_int_t)(offset + n_bytes)));
        offset += n_bytes;
    }
    char *text = json_dumps(header, JSON_COMPACT);
    json_decref(header);
    uint64_t header_len = strlen(text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite(&header_len, 8, 1, f);
    fwrite(text, 1, header_len, f);
    for (int i = 0; i < st.n_tensors; i++) {
        const ml_tensor_view *t = &st.tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        int short_one = shorten && strcmp(t->name, shorten) == 0 && t->n_dims == 1;
        fwrite(t->data, 1, t->n_bytes - (short_one ? t->n_bytes / (size_t)t->shape[0] : 0), f);
    }
    fclose(f);
    free(text);
    ml_weight_set_close(&st);
    return 0;
}

static int write_modified_safetensors(const char *dir, const char *drop, const char *retype, const char *new_dtype) {
    return write_fixture_safetensors("gqa_tied_bf16", dir, drop, retype, new_dtype, NULL);
}

static void set_window_64(json_t *c) { json_object_set_new(c, "sliding_window", json_integer(64)); }
static void clear_attention_bias(json_t *c) { json_object_set_new(c, "attention_bias", json_false()); }

/* Mistral's sliding window and the projections' biases: a context longer than the window, and a
 * bias that is missing, mis-shaped or not announced by the config, each refused with a message. */
static void check_family_errors(void) {
    char dir[512];
    CHECK(make_variant("mistral_window_bf16", "window", set_window_64, dir, sizeof dir) == 0, "variant");
    ml_model_params p = ml_model_default_params();
    p.max_seq_len = 128;
    ml_model *m = (ml_model *)1;
    int status = ml_model_open(dir, &p, &m);
    CHECK(status == ML_ERR_UNSUPPORTED && m == NULL, "window 64, max_seq_len 128: status %d", status);
    CHECK(strstr(ml_last_error(), "sliding_window 64") && strstr(ml_last_error(), "max_seq_len 128"), "message: %s",
          ml_last_error());
    p.max_seq_len = 64; /* at the window: exact, so it opens */
    status = ml_model_open(dir, &p, &m);
    CHECK(status == ML_OK, "window 64, max_seq_len 64: %s", ml_last_error());
    ml_model_close(m);
    p.max_seq_len = 0; /* the default context stops at the window */
    status = ml_model_open(dir, &p, &m);
    CHECK(status == ML_OK, "window 64, default max_seq_len: %s", ml_last_error());
    if (status == ML_OK) {
        ml_model_info info;
        ml_model_get_info(m, &info);
        CHECK(info.max_seq_len == 64, "default max_seq_len %d with sliding_window 64", info.max_seq_len);
        ml_model_close(m);
    }

    CHECK(make_variant("qwen2_bias_bf16", "bias", NULL, dir, sizeof dir) == 0, "variant");
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    CHECK(write_fixture_safetensors("qwen2_bias_bf16", dir, NULL, NULL, NULL, "model.layers.1.self_attn.k_proj.bias") == 0,
          "write");
    expect_open_fails(dir, 3, ML_ERR_TENSOR, "model.layers.1.self_attn.k_proj.bias has shape [23]", "[24]");
    CHECK(write_fixture_safetensors("qwen2_bias_bf16", dir, "model.layers.0.self_attn.q_proj.bias", NULL, NULL, NULL) == 0,
          "write");
    expect_open_fails(dir, 2, ML_ERR_TENSOR, "model.layers.0.self_attn.q_proj.bias", "missing");
    CHECK(write_fixture_safetensors("qwen2_bias_bf16", dir, NULL, "model.layers.0.self_attn.v_proj.bias", "I16", NULL) == 0,
          "write");
    expect_open_fails(dir, 1, ML_ERR_TENSOR, "model.layers.0.self_attn.v_proj.bias", "i16");

    CHECK(make_variant("llama_bias_f32", "nobias", clear_attention_bias, dir, sizeof dir) == 0, "variant");
    expect_open_fails(dir, 2, ML_ERR_TENSOR, "model.layers.0.self_attn.q_proj.bias", "attention_bias");
}

static void check_tensor_errors(void) {
    char dir[512], path[600];
    CHECK(make_variant("gqa_tied_bf16", "missing", NULL, dir, sizeof dir) == 0, "variant");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    expect_open_fails(dir, 1, ML_ERR_IO, "model.safetensors", NULL);
    CHECK(write_modified_safetensors(dir, "model.layers.1.mlp.up_proj.weight", NULL, NULL) == 0, "write");
    expect_open_fails(dir, 2, ML_ERR_TENSOR, "model.layers.1.mlp.up_proj.weight", "missing");
    CHECK(write_modified_safetensors(dir, NULL, "model.layers.0.self_attn.k_proj.weight", "I16") == 0, "write");
    expect_open_fails(dir, 1, ML_ERR_TENSOR, "model.layers.0.self_attn.k_proj.weight", "i16");
    CHECK(write_modified_safetensors(dir, NULL, "model.norm.weight", "U16") == 0, "write");
    expect_open_fails(dir, 1, ML_ERR_TENSOR, "model.norm.weight", NULL);

    /* a sharded checkpoint whose index names a shard that is not there */
    CHECK(make_variant("mha_sharded_bf16", "shard", NULL, dir, sizeof dir) == 0, "variant");
    snprintf(path, sizeof path, "%s/model-00003-of-00004.safetensors", dir);
    unlink(path);
    expect_open_fails(dir, 1, ML_ERR_IO, "model-00003-of-00004.safetensors", NULL);
}

static void check_forward_errors(void) {
    ml_model_params p = ml_model_default_params();
    p.max_seq_len = 8;
    p.max_batch = 2;
    p.n_threads = 2;
    ml_model *m = NULL;
    CHECK(ml_model_open(fixture_dir, &p, &m) == ML_OK, "open: %s", ml_last_error());
    if (!m) return;
    float *logits = malloc(16 * 256 * sizeof(float));
    int32_t tokens[12] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    int slots[2] = {0, 1}, starts[2] = {0, 0}, counts[2] = {3, 3};
    ml_batch b = {1, slots, starts, counts, tokens, 0};

    tokens[1] = 256; /* vocab is 256 */
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "id 256"), "%s", ml_last_error());
    tokens[1] = -1;
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "id -1"), "%s", ml_last_error());
    tokens[1] = 6;
    counts[0] = 9; /* longer than max_seq_len 8 */
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "max_seq_len 8"), "%s", ml_last_error());
    counts[0] = 3;
    starts[0] = 2; /* the slot holds nothing yet */
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "holds 0"), "%s", ml_last_error());
    starts[0] = 0;
    slots[1] = 0;
    b.n_seq = 2;
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "slot 0"), "%s", ml_last_error());
    slots[1] = 2; /* max_batch 2 */
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG && strstr(ml_last_error(), "slot 2"), "%s", ml_last_error());
    b.n_seq = 3;
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG, "3 sequences with max_batch 2 accepted");
    b.n_seq = 1;
    counts[0] = 0;
    CHECK(ml_forward(m, &b, logits) == ML_ERR_ARG, "empty sequence accepted");
    counts[0] = 3;
    CHECK(ml_forward(m, &b, logits) == ML_OK, "valid batch after errors: %s", ml_last_error());

    ml_sampling_params sp = ml_sampling_default_params();
    sp.max_tokens = 6; /* 3 + 6 > 8 */
    int32_t out[8];
    CHECK(ml_generate(m, tokens, 3, &sp, out, NULL, NULL, NULL) == ML_ERR_ARG &&
              strstr(ml_last_error(), "max_seq_len 8"),
          "%s", ml_last_error());
    CHECK(ml_generate(m, tokens, 0, &sp, out, NULL, NULL, NULL) == ML_ERR_ARG, "empty prompt accepted");
    sp.max_tokens = 2;
    sp.temperature = -1.0f;
    CHECK(ml_generate(m, tokens, 3, &sp, out, NULL, NULL, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "temperature"),
          "%s", ml_last_error());
    sp.temperature = 0.0f;
    sp.min_p = 2.0f;
    CHECK(ml_generate(m, tokens, 3, &sp, out, NULL, NULL, NULL) == ML_ERR_ARG && strstr(ml_last_error(), "min_p"),
          "%s", ml_last_error());
    sp.min_p = 0.0f;
    /* stop strings are matched on text: ml_generate has none, ml_generate_text needs a tokenizer */
    const char *stops[] = {"x"};
    sp.stop_strings = stops;
    sp.n_stop_strings = 1;
    CHECK(ml_generate(m, tokens, 3, &sp, out, NULL, NULL, NULL) == ML_ERR_ARG &&
              strstr(ml_last_error(), "ml_generate_text"),
          "%s", ml_last_error());
    CHECK(ml_generate_text(m, NULL, tokens, 3, 0, &sp, 0, out, NULL, NULL, NULL) == ML_ERR_ARG &&
              strstr(ml_last_error(), "tokenizer"),
          "%s", ml_last_error());
    sp.n_stop_strings = 0;
    /* the fixture's config lists EOS 2; without a tokenizer that is all */
    int32_t eog[4];
    CHECK(ml_end_of_generation_ids(m, NULL, eog, 4) == 1 && eog[0] == 2, "end-of-generation ids of the fixture");
    CHECK(ml_end_of_generation_ids(m, NULL, NULL, 0) == 1, "counting without an array");
    free(logits);
    ml_model_close(m);
    ml_model_close(NULL); /* harmless */
}

/* The entry points that return nothing take NULL handles without crashing. */
static void check_null_handles(void) {
    ml_model_info info;
    memset(&info, 0xab, sizeof info);
    ml_model_get_info(NULL, &info);
    CHECK(info.vocab_size == 0 && info.n_layers == 0 && info.path == NULL && info.isa == NULL &&
              info.backend == NULL && info.weight_dtype == NULL && info.matmul_bytes == 0.0,
          "ml_model_get_info(NULL): expected every field 0 or NULL");
    ml_model_get_info(NULL, NULL);
    ml_model_set_hidden_callback(NULL, NULL, NULL);
    ml_model *m = NULL;
    CHECK(ml_model_open(fixture_dir, NULL, &m) == ML_OK, "open with NULL params: %s", ml_last_error());
    if (!m) return;
    ml_model_get_info(m, NULL); /* nothing to fill */
    ml_model_get_info(m, &info);
    CHECK(info.vocab_size == 256 && info.max_batch == 1, "ml_model_get_info: vocab %d, max_batch %d", info.vocab_size,
          info.max_batch);
    ml_model_close(m);
}

/* ml_model_open_tensors: the fixture's own tensors (mapped by the safetensors reader) handed over
 * as caller memory give the same logits as opening the directory, bit for bit; each bad
 * argument or tensor is refused with a message naming it. */
static void check_open_tensors(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    char *config;
    size_t config_len;
    CHECK(ml_read_text_file(path, &config, &config_len) == ML_OK, "read %s", path);
    snprintf(path, sizeof path, "%s/model.safetensors", fixture_dir);
    ml_weight_set ws;
    memset(&ws, 0, sizeof ws);
    CHECK(ml_safetensors_open_file(path, &ws) == ML_OK, "open %s: %s", path, ml_last_error());
    ml_tensor *tensors = calloc((size_t)ws.n_tensors + 1, sizeof *tensors);
    for (int i = 0; i < ws.n_tensors; i++) {
        const ml_tensor_view *v = &ws.tensors[i];
        tensors[i].name = v->name;
        tensors[i].dtype = v->dtype == ML_DTYPE_BF16 ? ML_TENSOR_BF16 : v->dtype == ML_DTYPE_F16 ? ML_TENSOR_F16 : ML_TENSOR_F32;
        tensors[i].n_dims = v->n_dims;
        tensors[i].shape = v->shape;
        tensors[i].data = v->data;
        tensors[i].n_bytes = v->n_bytes;
    }
    int n = ws.n_tensors;
    ml_model_params p = ml_model_default_params();
    p.tp = 3;
    p.max_seq_len = 16;
    ml_model *a = NULL, *b = NULL;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "fixture tensors", &p, &a) == ML_OK, "open_tensors: %s",
          ml_last_error());
    CHECK(ml_model_open(fixture_dir, &p, &b) == ML_OK, "open: %s", ml_last_error());
    if (a && b) {
        ml_model_info info;
        ml_model_get_info(a, &info);
        CHECK(strcmp(info.path, "fixture tensors") == 0, "info.path %s", info.path);
        int slot = 0, start = 0, count = 5;
        int32_t ids[5] = {1, 17, 92, 33, 5};
        ml_batch batch = {1, &slot, &start, &count, ids, 1};
        float *la = malloc(5 * 256 * sizeof(float)), *lb = malloc(5 * 256 * sizeof(float));
        CHECK(ml_forward(a, &batch, la) == ML_OK && ml_forward(b, &batch, lb) == ML_OK, "forward: %s", ml_last_error());
        CHECK(memcmp(la, lb, 5 * 256 * sizeof(float)) == 0, "open_tensors and open differ");
        free(la);
        free(lb);
    }
    ml_model_close(a);
    ml_model_close(b);

    ml_model *m = NULL;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "t", &p, NULL) == ML_ERR_ARG, "NULL out_model");
    CHECK(ml_model_open_tensors(NULL, 0, tensors, n, "t", &p, &m) == ML_ERR_ARG && strstr(ml_last_error(), "config_json"),
          "%s", ml_last_error());
    CHECK(ml_model_open_tensors(config, config_len, tensors, 0, "t", &p, &m) == ML_ERR_ARG, "no tensors accepted");
    CHECK(ml_model_open_tensors("{", 1, tensors, n, "t", &p, &m) == ML_ERR_CONFIG || ml_last_error()[0],
          "bad config JSON: %s", ml_last_error());
    CHECK(m == NULL, "handle set on failure");
    ml_tensor saved = tensors[0];
    tensors[0].dtype = 7;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), saved.name) && strstr(ml_last_error(), "dtype code 7"),
          "%s", ml_last_error());
    tensors[0] = saved;
    tensors[0].n_bytes += 2;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), "bytes given"), "%s", ml_last_error());
    tensors[0] = saved;
    tensors[0].data = (const char *)saved.data + 1;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), "aligned"), "%s", ml_last_error());
    tensors[0] = saved;
    tensors[n] = tensors[1];
    CHECK(ml_model_open_tensors(config, config_len, tensors, n + 1, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), "given twice"), "%s", ml_last_error());
    CHECK(ml_model_open_tensors(config, config_len, tensors + 1, n - 1, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), saved.name) && strstr(ml_last_error(), "missing"),
          "%s", ml_last_error());
    tensors[0].n_dims = 9;
    CHECK(ml_model_open_tensors(config, config_len, tensors, n, "t", &p, &m) == ML_ERR_TENSOR &&
              strstr(ml_last_error(), "dimensions"), "%s", ml_last_error());
    tensors[0] = saved;
    CHECK(m == NULL, "handle set on failure");
    free(tensors);
    ml_weight_set_close(&ws);
    free(config);
}

int main(void) {
    ml_test_fixture_path(fixture_dir, sizeof fixture_dir, "gqa_tied_bf16");
    check_open_tensors();
    check_null_handles();
    check_directory_errors();
    check_config_errors();
    check_tensor_errors();
    check_family_errors();
    check_forward_errors();
    return ml_test_finish("model_errors");
}
