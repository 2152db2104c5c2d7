/* formats/gguf*.c: the GGUF reader, the block formats and the mapping onto the engine.
 *  (a) every metadata type of tests/fixtures/gguf/metadata.gguf (written by gguf-py) round-trips;
 *  (b) every tensor type converts to exactly the float32 that gguf-py's dequantize gives;
 *  (c) the HF fixtures written as GGUF give the same config and, after un-permuting Q/K, the same
 *      weights bit for bit (F32/BF16) or within Q8_0's rounding (Q8_0), the quantised matrices
 *      kept as blocks (zero-copy but for Q/K) or, in ML_GGUF_DEQUANTIZE mode, as float32;
 *  (d) malformed files give the documented code and a message naming the file and key/tensor;
 *  (e) llama3 RoPE parameters are recovered from rope_freqs divisors;
 *  (f) the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf) loads (missing: a failure);
 *  (g) the checkpoint's weight set copies nothing: the matrices that need changing are made on
 *      demand, and any run of rows made alone equals those rows of the copying weight set.
 * Fixtures: tools/make_gguf_fixtures.py (docs/GGUF.md). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "meshllama.h"
#include "test_util.h"

#define SRC "dir/bad.gguf"

static char tmp_root[512];

static void expect_error(const char *label, int status, int code, const char *needle1, const char *needle2) {
    const char *message = ml_last_error();
    if (getenv("MESHLLAMA_TEST_VERBOSE")) printf("%-36s %d  %s\n", label, status, message);
    CHECK(status == code, "%s: status %d (%s), expected %d; message: %s", label, status, ml_strerror(status), code,
          message);
    if (needle1) CHECK(strstr(message, needle1) != NULL, "%s: message \"%s\" lacks \"%s\"", label, message, needle1);
    if (needle2) CHECK(strstr(message, needle2) != NULL, "%s: message \"%s\" lacks \"%s\"", label, message, needle2);
}

static void expect_ok(const char *label, int status) {
    CHECK(status == ML_OK, "%s: status %d, message: %s", label, status, ml_last_error());
}

static void gguf_fixture(char *out, size_t size, const char *name) {
    char relative[256];
    snprintf(relative, sizeof relative, "gguf/%s", name);
    ml_test_fixture_path(out, size, relative);
}

/* Opens tests/fixtures/gguf/NAME into *g, a failed check when it cannot. */
static int open_gguf_fixture(const char *name, ml_gguf *g) {
    char path[1024], label[300];
    gguf_fixture(path, sizeof path, name);
    int status = ml_gguf_open(path, g);
    snprintf(label, sizeof label, "open %s", name);
    expect_ok(label, status);
    return status;
}

static int same_bits_or_nan(float a, float b) {
    if (isnan(a) && isnan(b)) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ---------- (a) metadata ---------- */

static int64_t int_of(const ml_gguf *g, const char *key) {
    int64_t v = 0;
    expect_ok(key, ml_gguf_get_int(g, key, &v));
    return v;
}

static void check_array(const ml_gguf *g, const char *key, ml_gguf_type type, size_t count) {
    const ml_gguf_value *v = ml_gguf_find(g, key);
    CHECK(v && v->type == ML_GGUF_ARRAY && v->as.array.type == type && v->as.array.count == count,
          "%s: array of %zu %s", key, count, ml_gguf_type_name(type));
}

static int64_t element(const ml_gguf *g, const char *key, size_t i) {
    int64_t v = 0;
    CHECK(ml_gguf_array_int(ml_gguf_find(g, key), i, &v) == 0, "%s[%zu] readable as an integer", key, i);
    return v;
}

static double element_f(const ml_gguf *g, const char *key, size_t i) {
    double v = 0;
    CHECK(ml_gguf_array_float(ml_gguf_find(g, key), i, &v) == 0, "%s[%zu] readable as a number", key, i);
    return v;
}

static void check_metadata_values(const ml_gguf *g) {
    CHECK(g->alignment == 64, "alignment %u", g->alignment);
    CHECK(int_of(g, "test.u8") == 200 && int_of(g, "test.i8") == -100, "u8/i8");
    CHECK(int_of(g, "test.u16") == 60000 && int_of(g, "test.i16") == -30000, "u16/i16");
    CHECK(int_of(g, "test.u32") == 4000000000ll && int_of(g, "test.i32") == -2000000000ll, "u32/i32");
    CHECK(int_of(g, "test.i64") == -9000000000000000000ll, "i64");
    const ml_gguf_value *u64 = ml_gguf_find(g, "test.u64");
    CHECK(u64 && u64->type == ML_GGUF_UINT64 && u64->as.u64 == UINT64_MAX, "u64 max");
    int64_t too_big;
    expect_error("get_int u64 max", ml_gguf_get_int(g, "test.u64", &too_big), ML_ERR_CONFIG, "test.u64", "out of range");
    double f32 = 0, f64 = 0;
    expect_ok("f32", ml_gguf_get_float(g, "test.f32", &f32));
    expect_ok("f64", ml_gguf_get_float(g, "test.f64", &f64));
    CHECK(f32 == (double)0.1f && f64 == 0.1, "f32 %.17g f64 %.17g", f32, f64);
    int yes = 0, no = 1;
    expect_ok("bool", ml_gguf_get_bool(g, "test.true", &yes));
    expect_ok("bool", ml_gguf_get_bool(g, "test.false", &no));
    CHECK(yes == 1 && no == 0, "bools %d %d", yes, no);
    const char *text;
    size_t length;
    expect_ok("string", ml_gguf_get_string(g, "test.string", &text, &length));
    CHECK(strcmp(text, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93") == 0 && length == strlen(text), "utf-8 string");
    expect_ok("empty", ml_gguf_get_string(g, "test.empty", &text, &length));
    CHECK(length == 0 && text[0] == '\0', "empty string");
    expect_ok("nul", ml_gguf_get_string(g, "test.nul", &text, &length));
    CHECK(length == 3 && memcmp(text, "a\0b", 4) == 0, "string with a NUL byte keeps its length");
    expect_ok("architecture", ml_gguf_get_string(g, "general.architecture", &text, NULL));
    CHECK(strcmp(text, "llama") == 0, "architecture %s", text);

    check_array(g, "test.arr.u8", ML_GGUF_UINT8, 3);
    CHECK(element(g, "test.arr.u8", 2) == 255, "u8 array");
    check_array(g, "test.arr.i8", ML_GGUF_INT8, 3);
    CHECK(element(g, "test.arr.i8", 0) == -128 && element(g, "test.arr.i8", 2) == 127, "i8 array");
    check_array(g, "test.arr.u16", ML_GGUF_UINT16, 2);
    CHECK(element(g, "test.arr.u16", 1) == 65535, "u16 array");
    check_array(g, "test.arr.i16", ML_GGUF_INT16, 2);
    CHECK(element(g, "test.arr.i16", 0) == -32768 && element(g, "test.arr.i16", 1) == 32767, "i16 array");
    check_array(g, "test.arr.u32", ML_GGUF_UINT32, 2);
    CHECK(element(g, "test.arr.u32", 1) == 4294967295ll, "u32 array");
    check_array(g, "test.arr.i32", ML_GGUF_INT32, 3);
    CHECK(element(g, "test.arr.i32", 0) == INT32_MIN && element(g, "test.arr.i32", 1) == INT32_MAX, "i32 array");
    check_array(g, "test.arr.i64", ML_GGUF_INT64, 2);
    CHECK(element(g, "test.arr.i64", 0) == INT64_MIN && element(g, "test.arr.i64", 1) == INT64_MAX, "i64 array");
    check_array(g, "test.arr.u64", ML_GGUF_UINT64, 2);
    int64_t unused;
    CHECK(ml_gguf_array_int(ml_gguf_find(g, "test.arr.u64"), 1, &unused) == -1, "u64 max is no int64");
    CHECK(element_f(g, "test.arr.u64", 1) == 18446744073709551615.0, "u64 array as a number");
    check_array(g, "test.arr.f32", ML_GGUF_FLOAT32, 2);
    CHECK(element_f(g, "test.arr.f32", 0) == 1.5 && element_f(g, "test.arr.f32", 1) == -2.25, "f32 array");
    check_array(g, "test.arr.f64", ML_GGUF_FLOAT64, 2);
    CHECK(element_f(g, "test.arr.f64", 0) == 0.1 && element_f(g, "test.arr.f64", 1) == -1e300, "f64 array");
    check_array(g, "test.arr.bool", ML_GGUF_BOOL, 3);
    const ml_gguf_value *bools = ml_gguf_find(g, "test.arr.bool");
    CHECK(bools && bools->as.array.raw[0] == 1 && bools->as.array.raw[1] == 0 && bools->as.array.raw[2] == 1, "bools");
    CHECK(ml_gguf_array_float(bools, 5, &f64) == -1, "index past the end is refused");

    const ml_gguf_string *strings;
    size_t count;
    expect_ok("string array", ml_gguf_get_string_array(g, "test.arr.str", &strings, &count));
    CHECK(count == 3 && strcmp(strings[0].text, "alpha") == 0 && strings[1].length == 0 &&
              strcmp(strings[2].text, "\xce\xb3") == 0, "string array values");
    int32_t *ints;
    expect_ok("int32 array", ml_gguf_get_int32_array(g, "test.arr.i32", &ints, &count));
    CHECK(count == 3 && ints && ints[0] == INT32_MIN && ints[2] == 7, "int32 array values");
    free(ints);
    expect_error("int32 array overflow", ml_gguf_get_int32_array(g, "test.arr.u32", &ints, &count), ML_ERR_CONFIG,
                 "test.arr.u32", "32-bit");
    expect_error("wrong type", ml_gguf_get_string(g, "test.u8", &text, NULL), ML_ERR_CONFIG, "test.u8", "UINT8");
    expect_error("missing key", ml_gguf_get_int(g, "test.absent", &unused), ML_ERR_CONFIG, "test.absent", "missing");
    expect_error("array as string array", ml_gguf_get_string_array(g, "test.arr.u8", &strings, &count), ML_ERR_CONFIG,
                 "ARRAY of 3 UINT8", NULL);

    /* Nested arrays: [[1,2,3],[4],[5,6]], [["a","bc"],["def"]], [[[1.5],[2.5,3.5]],[[4.5]]]. */
    const ml_gguf_value *nested = ml_gguf_find(g, "test.nested.int");
    CHECK(nested && nested->as.array.type == ML_GGUF_ARRAY && nested->as.array.count == 3, "nested int");
    if (nested && nested->as.array.arrays) {
        const ml_gguf_value *third = &nested->as.array.arrays[2];
        int64_t six = 0;
        CHECK(third->as.array.type == ML_GGUF_INT32 && third->as.array.count == 2 &&
                  ml_gguf_array_int(third, 1, &six) == 0 && six == 6, "nested[2][1] == 6");
    }
    nested = ml_gguf_find(g, "test.nested.str");
    CHECK(nested && nested->as.array.count == 2 && nested->as.array.arrays &&
              nested->as.array.arrays[0].as.array.type == ML_GGUF_STRING &&
              strcmp(nested->as.array.arrays[0].as.array.strings[1].text, "bc") == 0 &&
              strcmp(nested->as.array.arrays[1].as.array.strings[0].text, "def") == 0, "nested strings");
    nested = ml_gguf_find(g, "test.nested.deep");
    double value = 0;
    CHECK(nested && nested->as.array.count == 2 && nested->as.array.arrays &&
              nested->as.array.arrays[0].as.array.count == 2 &&
              ml_gguf_array_float(&nested->as.array.arrays[0].as.array.arrays[1], 1, &value) == 0 && value == 3.5,
          "deep[0][1][1] == 3.5");

    const ml_gguf_tensor *small = ml_gguf_find_tensor(g, "small.f32");
    CHECK(small && small->type == ML_GGML_F32 && small->n_dims == 2 && small->ne[0] == 3 && small->ne[1] == 2 &&
              small->offset % 64 == 0 && (g->data_offset % 64) == 0, "small.f32 info");
    if (small) {
        float out[6];
        expect_ok("small.f32", ml_gguf_tensor_to_f32(g, small, out));
        CHECK(out[0] == 0 && out[5] == 5, "small.f32 values");
    }
    const ml_gguf_tensor *half = ml_gguf_find_tensor(g, "small.f16");
    if (half) {
        float out[3];
        expect_ok("small.f16", ml_gguf_tensor_to_f32(g, half, out));
        CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f, "small.f16 values");
    }
    CHECK(half && half->offset % 64 == 0 && ml_gguf_find_tensor(g, "absent") == NULL, "small.f16 aligned");
}

static void test_metadata(void) {
    ml_gguf g;
    if (open_gguf_fixture("metadata.gguf", &g) != ML_OK) return;
    CHECK(g.version == 3 && g.n_tensors == 2, "version %u, %zu tensors", g.version, g.n_tensors);
    check_metadata_values(&g);

    /* The same bytes as version 2 (identical layout for little-endian files). */
    uint8_t *copy = malloc(g.image_size);
    memcpy(copy, g.image, g.image_size);
    copy[4] = 2;
    ml_gguf v2;
    expect_ok("version 2", ml_gguf_parse(copy, g.image_size, "v2.gguf", &v2));
    CHECK(v2.version == 2 && v2.n_kvs == g.n_kvs, "v2 parsed");
    if (v2.version == 2) check_metadata_values(&v2);
    ml_gguf_close(&v2);

    /* Every prefix that cuts into the tensor data or before is refused cleanly (ASan checks that no
     * byte past it is read); cutting only the trailing padding leaves a valid file. */
    size_t data_end = g.data_offset;
    for (size_t t = 0; t < g.n_tensors; t++)
        if (g.data_offset + g.tensors[t].offset + g.tensors[t].n_bytes > data_end)
            data_end = g.data_offset + g.tensors[t].offset + g.tensors[t].n_bytes;
    int prefix_ok = data_end < g.image_size;
    for (size_t size = 0; prefix_ok && size <= g.image_size; size++) {
        uint8_t *prefix = malloc(size ? size : 1);
        memcpy(prefix, g.image, size);
        ml_gguf t;
        int s = ml_gguf_parse(prefix, size, "prefix.gguf", &t);
        int ok = size < data_end ? s == ML_ERR_FORMAT && strstr(ml_last_error(), "prefix.gguf") != NULL : s == ML_OK;
        if (!ok) {
            prefix_ok = 0;
            fprintf(stderr, "prefix %zu: status %d: %s\n", size, s, ml_last_error());
        }
        ml_gguf_close(&t);
        free(prefix);
        if (!prefix_ok) break;
    }
    CHECK(prefix_ok, "every truncation of metadata.gguf gives ML_ERR_FORMAT naming the file");
    free(copy);
    ml_gguf_close(&g);
    ml_gguf_close(&g); /* closing twice is harmless */
    ml_gguf_close(NULL);
}

/* ---------- (b) block formats ---------- */

static void test_quants(void) {
    ml_gguf g;
    if (open_gguf_fixture("quants.gguf", &g) != ML_OK) return;
    static const char *const names[] = {"plain.f32",  "plain.f16",   "plain.bf16",  "quant.q8_0", "quant.q4_0",
                                        "quant.q4_1", "quant.q5_0",  "quant.q5_1",  "quant.iq4_nl", "quant.q2_k",
                                        "quant.q3_k", "quant.q4_k",  "quant.q5_k",  "quant.q6_k", "quant.q8_k"};
    static const uint32_t types[] = {ML_GGML_F32,  ML_GGML_F16,  ML_GGML_BF16, ML_GGML_Q8_0,   ML_GGML_Q4_0,
                                     ML_GGML_Q4_1, ML_GGML_Q5_0, ML_GGML_Q5_1, ML_GGML_IQ4_NL, ML_GGML_Q2_K,
                                     ML_GGML_Q3_K, ML_GGML_Q4_K, ML_GGML_Q5_K, ML_GGML_Q6_K,   ML_GGML_Q8_K};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        char expected_name[64];
        snprintf(expected_name, sizeof expected_name, "%s.expected", names[n]);
        const ml_gguf_tensor *t = ml_gguf_find_tensor(&g, names[n]);
        const ml_gguf_tensor *e = ml_gguf_find_tensor(&g, expected_name);
        CHECK(t && e && t->type == types[n] && e->type == ML_GGML_F32 && t->n_elements == e->n_elements,
              "%s and its expectation", names[n]);
        if (!t || !e || t->n_elements != e->n_elements) continue;
        float *got = malloc(t->n_elements * sizeof *got);
        float *want = malloc(e->n_elements * sizeof *want);
        expect_ok(names[n], ml_gguf_tensor_to_f32(&g, t, got));
        expect_ok(expected_name, ml_gguf_tensor_to_f32(&g, e, want));
        size_t mismatches = 0, nans = 0;
        for (size_t i = 0; i < t->n_elements; i++) {
            mismatches += !same_bits_or_nan(got[i], want[i]);
            nans += isnan(want[i]) != 0;
        }
        CHECK(mismatches == 0, "%s: %zu of %zu values differ from gguf-py's dequantize", names[n], mismatches,
              t->n_elements);
        CHECK(t->n_elements >= 96, "%s: %zu elements checked (%zu NaN)", names[n], t->n_elements, nans);
        free(got);
        free(want);
    }
    const ml_gguf_tensor *iq2 = ml_gguf_find_tensor(&g, "unsupported.iq2_xxs");
    CHECK(iq2 && iq2->type_known && iq2->n_elements == 512, "IQ2_XXS recorded with its geometry");
    float sink[512];
    if (iq2)
        expect_error("IQ2_XXS", ml_gguf_tensor_to_f32(&g, iq2, sink), ML_ERR_UNSUPPORTED, "unsupported.iq2_xxs",
                     "IQ2_XXS");
    ml_gguf_close(&g);

    /* Hand-made blocks: nibble order and formulas, independent of gguf-py. */
    uint8_t q4_0[18] = {0x00, 0x3c}; /* d = 1.0 */
    uint8_t q4_1[20] = {0x00, 0x38, 0x00, 0x3c}; /* d = 0.5, m = 1.0 */
    uint8_t q8_0[34] = {0x00, 0xc0}; /* d = -2.0 */
    for (int i = 0; i < 16; i++) q4_0[2 + i] = q4_1[4 + i] = (uint8_t)(i | ((15 - i) << 4));
    for (int i = 0; i < 32; i++) q8_0[2 + i] = (uint8_t)(int8_t)(i - 16);
    float x[32];
    int ok = 1;
    expect_ok("q4_0 block", ml_gguf_dequantize(ML_GGML_Q4_0, q4_0, 32, x));
    for (int i = 0; i < 16; i++) ok &= x[i] == (float)(i - 8) && x[16 + i] == (float)(15 - i - 8);
    expect_ok("q4_1 block", ml_gguf_dequantize(ML_GGML_Q4_1, q4_1, 32, x));
    for (int i = 0; i < 16; i++) ok &= x[i] == 0.5f * (float)i + 1.0f && x[16 + i] == 0.5f * (float)(15 - i) + 1.0f;
    expect_ok("q8_0 block", ml_gguf_dequantize(ML_GGML_Q8_0, q8_0, 32, x));
    for (int i = 0; i < 32; i++) ok &= x[i] == -2.0f * (float)(i - 16);
    CHECK(ok, "hand-made Q4_0/Q4_1/Q8_0 blocks: low nibbles are elements 0..15, high nibbles 16..31");
    expect_error("partial block", ml_gguf_dequantize(ML_GGML_Q8_0, q8_0, 31, x), ML_ERR_ARG, "blocks", NULL);
    expect_error("unknown type", ml_gguf_dequantize(77, q8_0, 1, x), ML_ERR_UNSUPPORTED, "77", NULL);
    CHECK(strcmp(ml_ggml_type_name(ML_GGML_Q4_1), "Q4_1") == 0 && strcmp(ml_ggml_type_name(4), "unknown") == 0 &&
              ml_ggml_traits(ML_GGML_BF16)->type_size == 2, "type names");
}

/* ---------- (c) the same weights through safetensors and GGUF ---------- */

static void compare_configs(const char *label, const ml_config *a, const ml_config *b) {
    CHECK(a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
              a->intermediate_size == b->intermediate_size && a->n_layers == b->n_layers && a->n_heads == b->n_heads &&
              a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim &&
              a->max_position_embeddings == b->max_position_embeddings,
          "%s: dimensions", label);
    CHECK(a->rms_norm_eps == b->rms_norm_eps && a->rope_theta == b->rope_theta, "%s: eps %g/%g theta %g/%g", label,
          (double)a->rms_norm_eps, (double)b->rms_norm_eps, (double)a->rope_theta, (double)b->rope_theta);
    CHECK(a->rope_type == b->rope_type && a->rope_factor == b->rope_factor &&
              a->rope_low_freq_factor == b->rope_low_freq_factor &&
              a->rope_high_freq_factor == b->rope_high_freq_factor &&
              (a->rope_type != ML_ROPE_LLAMA3 || a->rope_original_max_position == b->rope_original_max_position),
          "%s: RoPE type %d/%d factor %g/%g low %g/%g high %g/%g original %d/%d", label, a->rope_type, b->rope_type,
          (double)a->rope_factor, (double)b->rope_factor, (double)a->rope_low_freq_factor,
          (double)b->rope_low_freq_factor, (double)a->rope_high_freq_factor, (double)b->rope_high_freq_factor,
          a->rope_original_max_position, b->rope_original_max_position);
    int eos_same = a->n_eos == b->n_eos;
    for (int i = 0; eos_same && i < a->n_eos; i++) eos_same = a->eos_token_ids[i] == b->eos_token_ids[i];
    CHECK(a->tie_word_embeddings == b->tie_word_embeddings && a->bos_token_id == b->bos_token_id && eos_same,
          "%s: tie %d/%d bos %d/%d eos", label, a->tie_word_embeddings, b->tie_word_embeddings, a->bos_token_id,
          b->bos_token_id);
}

static int inside(const void *p, const ml_mapped_file *file) {
    const uint8_t *byte = p;
    return file->data && byte >= file->data && byte < file->data + file->size;
}

static uint32_t ggml_type_of(ml_dtype dtype) {
    return dtype == ML_DTYPE_Q8_0 ? ML_GGML_Q8_0 : dtype == ML_DTYPE_Q4_0 ? ML_GGML_Q4_0 : ML_GGML_Q4_1;
}

/* Element i (row-major) of a view; a quantised one through the dequantiser, block by block (a
 * row is whole blocks, so element i lies in block i / 32). */
static float element_as_f32(const ml_tensor_view *t, size_t i) {
    const uint8_t *p = t->data;
    uint16_t h;
    if (ml_dtype_is_quantized(t->dtype)) {
        float block[32];
        const uint8_t *at = p + ml_dtype_row_bytes(t->dtype, i / 32 * 32);
        if (ml_gguf_dequantize(ggml_type_of(t->dtype), at, 32, block) != ML_OK) return NAN;
        return block[i % 32];
    }
    switch (t->dtype) {
    case ML_DTYPE_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ML_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); return ml_bf16_to_f32(h);
    case ML_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return ml_f16_to_f32(h);
    default: return NAN;
    }
}

/* Q8_0 (d = amax / 127 rounded to f16, q = round(x / d)) is within 0.6 d of x per 32-column block. */
static int within_q8_0(const ml_tensor_view *hf, const ml_tensor_view *gguf) {
    int64_t cols = hf->n_dims == 2 ? hf->shape[1] : hf->shape[0];
    int64_t rows = hf->n_dims == 2 ? hf->shape[0] : 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t b = 0; b < cols; b += 32) {
            float amax = 0;
            for (int64_t c = b; c < b + 32 && c < cols; c++) amax = fmaxf(amax, fabsf(element_as_f32(hf, (size_t)(r * cols + c))));
            for (int64_t c = b; c < b + 32 && c < cols; c++) {
                size_t i = (size_t)(r * cols + c);
                if (!(fabsf(element_as_f32(hf, i) - element_as_f32(gguf, i)) <= 0.6f * amax / 127.0f + 1e-30f)) return 0;
            }
        }
    }
    return 1;
}

static void test_equivalence(const char *hf_dir_name, const char *gguf_name, int exact, ml_gguf_quant_mode mode) {
    char hf_dir[1024], path[1024];
    ml_test_fixture_path(hf_dir, sizeof hf_dir, hf_dir_name);
    gguf_fixture(path, sizeof path, gguf_name);
    ml_config hf_config, gguf_config;
    ml_weight_set hf, weights;
    ml_gguf g;
    expect_ok(hf_dir_name, ml_config_load(hf_dir, &hf_config));
    expect_ok(hf_dir_name, ml_safetensors_open_dir(hf_dir, &hf));
    int status = ml_gguf_open(path, &g);
    expect_ok(gguf_name, status);
    if (status == ML_OK) status = ml_gguf_llama_config(&g, &gguf_config);
    expect_ok("config", status);
    if (status != ML_OK) {
        ml_gguf_close(&g);
        ml_weight_set_close(&hf);
        return;
    }
    compare_configs(gguf_name, &gguf_config, &hf_config);
    status = ml_gguf_llama_weights_mode(&g, &gguf_config, mode, &weights);
    expect_ok("weights", status);
    ml_gguf_close(&g); /* the weight set must not depend on g */
    if (status != ML_OK) {
        ml_weight_set_close(&hf);
        return;
    }
    CHECK(weights.n_tensors == hf.n_tensors && weights.n_files == 1 && strcmp(weights.files[0].path, path) == 0,
          "%s: %d views (HF %d), file %s", gguf_name, weights.n_tensors, hf.n_tensors,
          weights.n_files ? weights.files[0].path : "-");
    int bad_names = 0, bad_values = 0, bad_dtype = 0, zero_copy = 0, owned = 0;
    for (int i = 0; i < hf.n_tensors; i++) {
        const ml_tensor_view *a = &hf.tensors[i];
        const ml_tensor_view *b = ml_weight_set_find(&weights, a->name);
        if (!b || b->n_dims != a->n_dims || b->shape[0] != a->shape[0] || (a->n_dims > 1 && b->shape[1] != a->shape[1]) ||
            b->file_index != 0) {
            bad_names++;
            fprintf(stderr, "%s: %s missing or shaped differently\n", gguf_name, a->name);
            continue;
        }
        zero_copy += inside(b->data, &weights.files[0]);
        owned += !inside(b->data, &weights.files[0]);
        int is_norm = a->n_dims == 1;
        if (exact || is_norm) {
            /* Norms are F32 in every GGUF variant (as llama.cpp writes them): compare values. */
            int same = 1;
            if (a->dtype == b->dtype)
                same = memcmp(a->data, b->data, a->n_bytes) == 0 && a->n_bytes == b->n_bytes;
            else
                for (size_t e = 0; same && e < a->n_bytes / ml_dtype_size(a->dtype); e++)
                    same = element_as_f32(a, e) == element_as_f32(b, e);
            bad_dtype += exact && a->dtype != b->dtype && !is_norm;
            if (!same) {
                bad_values++;
                fprintf(stderr, "%s: %s differs from the safetensors weights\n", gguf_name, a->name);
            }
        } else {
            ml_dtype want = mode == ML_GGUF_KEEP_QUANTIZED ? ML_DTYPE_Q8_0 : ML_DTYPE_F32;
            bad_dtype += b->dtype != want;
            if (!within_q8_0(a, b)) {
                bad_values++;
                fprintf(stderr, "%s: %s is not within Q8_0 rounding of the safetensors weights\n", gguf_name, a->name);
            }
        }
    }
    CHECK(bad_names == 0 && bad_values == 0 && bad_dtype == 0, "%s: %d names, %d values, %d dtypes wrong", gguf_name,
          bad_names, bad_values, bad_dtype);
    if (exact || mode == ML_GGUF_KEEP_QUANTIZED) {
        /* Only the un-permuted Q and K projections need copies (of whole rows of blocks). */
        CHECK(owned == 2 * hf_config.n_layers && weights.n_owned == owned, "%s: %d owned, %d zero-copy views", gguf_name,
              owned, zero_copy);
    } else {
        CHECK(zero_copy == 2 * hf_config.n_layers + 1, "%s: the F32 norms are zero-copy (%d)", gguf_name, zero_copy);
    }
    ml_weight_set_close(&weights);
    ml_weight_set_close(&weights); /* harmless twice */
    ml_weight_set_close(&hf);
}

/* The converter's divisors in the fixture equal ml_gguf_llama3_rope_factors of the HF config. */
static void test_fixture_rope_freqs(void) {
    char path[1024], hf_dir[1024];
    gguf_fixture(path, sizeof path, "h8kv2_headdim_untied_f32.gguf");
    ml_test_fixture_path(hf_dir, sizeof hf_dir, "h8kv2_headdim_untied_f32");
    ml_gguf g;
    ml_config c;
    if (ml_gguf_open(path, &g) != ML_OK || ml_config_load(hf_dir, &c) != ML_OK) {
        CHECK(0, "fixtures: %s", ml_last_error());
        ml_gguf_close(&g);
        return;
    }
    const ml_gguf_tensor *t = ml_gguf_find_tensor(&g, "rope_freqs.weight");
    float stored[64], computed[64];
    CHECK(t && t->n_elements == (size_t)c.head_dim / 2, "rope_freqs.weight present");
    if (t && t->n_elements <= 64) {
        expect_ok("rope_freqs", ml_gguf_tensor_to_f32(&g, t, stored));
        ml_gguf_llama3_rope_factors(&c, computed);
        double worst = 0;
        for (int i = 0; i < c.head_dim / 2; i++) worst = fmax(worst, fabs((double)computed[i] / stored[i] - 1.0));
        CHECK(worst <= 1e-6, "C divisors match the converter's torch ones (relative %.3g)", worst);
    }
    ml_gguf_close(&g);
}

/* Q/K un-permutation on a known pattern: every GGUF row holds its own index. */
static void fill_rows_with_index(uint8_t *data, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = (float)r;
            memcpy(data + 4 * (size_t)(r * cols + c), &v, 4);
        }
}

/* ---------- a GGUF writer for hand-made (and broken) files ---------- */

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} image;

static void put(image *im, const void *bytes, size_t n) {
    if (im->size + n > im->capacity) {
        im->capacity = (im->size + n) * 2 + 64;
        im->data = realloc(im->data, im->capacity);
    }
    if (n) memcpy(im->data + im->size, bytes, n);
    im->size += n;
}
static void put_zeros(image *im, size_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? n : sizeof zeros;
        put(im, zeros, chunk);
        n -= chunk;
    }
}
static void put_u32(image *im, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(im, b, 4);
}
static void put_u64(image *im, uint64_t v) {
    put_u32(im, (uint32_t)v);
    put_u32(im, (uint32_t)(v >> 32));
}
static void put_str(image *im, const char *s) {
    put_u64(im, strlen(s));
    put(im, s, strlen(s));
}
static void start(image *im, uint32_t version, uint64_t n_tensors, uint64_t n_kvs) {
    memset(im, 0, sizeof *im);
    put(im, "GGUF", 4);
    put_u32(im, version);
    put_u64(im, n_tensors);
    put_u64(im, n_kvs);
}
static void kv_u32(image *im, const char *key, uint32_t v) {
    put_str(im, key);
    put_u32(im, ML_GGUF_UINT32);
    put_u32(im, v);
}
static void kv_f32(image *im, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_str(im, key);
    put_u32(im, ML_GGUF_FLOAT32);
    put_u32(im, bits);
}
static void kv_str(image *im, const char *key, const char *v) {
    put_str(im, key);
    put_u32(im, ML_GGUF_STRING);
    put_str(im, v);
}
static void tensor_info(image *im, const char *name, int n_dims, const int64_t *ne, uint32_t type, uint64_t offset) {
    put_str(im, name);
    put_u32(im, (uint32_t)n_dims);
    for (int d = 0; d < n_dims; d++) put_u64(im, (uint64_t)ne[d]);
    put_u32(im, type);
    put_u64(im, offset);
}
static void pad(image *im, size_t alignment) {
    static const uint8_t zeros[64];
    while (im->size % alignment) put(im, zeros, 1);
}

static int parse_image(const image *im, ml_gguf *g) { return ml_gguf_parse(im->data, im->size, SRC, g); }

static void header_error(const char *label, image *im, int code, const char *needle) {
    ml_gguf g;
    expect_error(label, parse_image(im, &g), code, SRC, needle);
    CHECK(g.n_kvs == 0 && g.tensors == NULL, "%s: failure leaves *out empty", label);
    ml_gguf_close(&g);
    free(im->data);
}

/* A one-tensor file: F32 [4] "t" at offset 0, one kv; variations through the arguments. */
static void one_tensor(image *im, uint32_t version, const char *name, int n_dims, const int64_t *ne, uint32_t type,
                       uint64_t offset, size_t data_bytes) {
    start(im, version, 1, 1);
    kv_u32(im, "general.test", 1);
    tensor_info(im, name, n_dims, ne, type, offset);
    pad(im, 32);
    uint8_t data[256] = {0};
    put(im, data, data_bytes);
}

static void test_header_errors(void) {
    /* Through a real file: the message names the path. */
    char path[1024];
    snprintf(path, sizeof path, "%s/not_a_model.gguf", tmp_root);
    static const char text[] = "{\"this\": \"is JSON, not GGUF\"}";
    CHECK(ml_test_write_file(path, text, sizeof text - 1) == 0, "writing %s", path);
    ml_gguf from_file;
    expect_error("bad magic (file)", ml_gguf_open(path, &from_file), ML_ERR_FORMAT, path, "bad magic");
    CHECK(from_file.source == NULL && from_file.file.data == NULL, "failed open leaves nothing mapped");
    unlink(path);

    image im;
    memset(&im, 0, sizeof im);
    put(&im, "GGML", 4);
    put_u32(&im, 3);
    put_u64(&im, 0);
    put_u64(&im, 0);
    header_error("bad magic", &im, ML_ERR_FORMAT, "magic");
    static const uint32_t versions[] = {1, 4, 0x03000000u, 0};
    static const char *const needles[] = {"version 1", "version 4", "big-endian", "version 0"};
    for (int v = 0; v < 4; v++) {
        start(&im, versions[v], 0, 0);
        header_error(needles[v], &im, v == 3 ? ML_ERR_FORMAT : ML_ERR_UNSUPPORTED, needles[v]);
    }
    start(&im, 3, 0, 0);
    im.size = 20;
    header_error("truncated header", &im, ML_ERR_FORMAT, "truncated header");
    start(&im, 3, 1ull << 40, 0);
    header_error("tensor count beyond file", &im, ML_ERR_FORMAT, "1099511627776 tensors");
    start(&im, 3, 0, UINT64_MAX);
    header_error("kv count beyond file", &im, ML_ERR_FORMAT, "18446744073709551615 metadata entries");

    start(&im, 3, 0, 1);
    put_u64(&im, 1ull << 50);
    put(&im, "general.x", 9);
    put_u32(&im, 0);
    header_error("key length beyond file", &im, ML_ERR_FORMAT, "metadata entry 0");
    start(&im, 3, 0, 1);
    put_str(&im, "general.name");
    put_u32(&im, ML_GGUF_STRING);
    put_u64(&im, 1000);
    put(&im, "short", 5);
    header_error("string length beyond file", &im, ML_ERR_FORMAT, "key \"general.name\": string value: length 1000");
    start(&im, 3, 0, 1);
    put_str(&im, "general.odd");
    put_u32(&im, 13);
    put_u32(&im, 0);
    header_error("unknown value type", &im, ML_ERR_FORMAT, "unknown value type 13");
    start(&im, 3, 0, 1);
    put_str(&im, "general.list");
    put_u32(&im, ML_GGUF_ARRAY);
    put_u32(&im, ML_GGUF_UINT64);
    put_u64(&im, 1ull << 60);
    put_u64(&im, 0);
    header_error("array length beyond file", &im, ML_ERR_FORMAT, "array of 1152921504606846976 UINT64");
    start(&im, 3, 0, 1);
    put_str(&im, "general.list");
    put_u32(&im, ML_GGUF_ARRAY);
    put_u32(&im, 99);
    put_u64(&im, 0);
    header_error("unknown array element type", &im, ML_ERR_FORMAT, "unknown array element type 99");
    start(&im, 3, 0, 1);
    put_str(&im, "general.deep");
    put_u32(&im, ML_GGUF_ARRAY);
    for (int d = 0; d < 20; d++) {
        put_u32(&im, ML_GGUF_ARRAY);
        put_u64(&im, 1);
    }
    put_u32(&im, ML_GGUF_UINT8);
    put_u64(&im, 0);
    header_error("nesting too deep", &im, ML_ERR_FORMAT, "nested deeper");
    start(&im, 3, 0, 1);
    put_str(&im, "general.flag");
    put_u32(&im, ML_GGUF_BOOL);
    put(&im, "\x02", 1);
    header_error("bool 2", &im, ML_ERR_FORMAT, "BOOL value 2");
    start(&im, 3, 0, 1);
    put_str(&im, "general.flags");
    put_u32(&im, ML_GGUF_ARRAY);
    put_u32(&im, ML_GGUF_BOOL);
    put_u64(&im, 3);
    put(&im, "\x01\x00\x07", 3);
    header_error("bool array 7", &im, ML_ERR_FORMAT, "key \"general.flags\"[2]");
    start(&im, 3, 0, 1);
    put_u64(&im, 0);
    put_u32(&im, ML_GGUF_UINT16);
    put(&im, "\x00\x00", 2);
    header_error("empty key", &im, ML_ERR_FORMAT, "empty key");
    start(&im, 3, 0, 2);
    kv_u32(&im, "general.same", 1);
    kv_str(&im, "general.same", "again");
    header_error("duplicate key", &im, ML_ERR_FORMAT, "key \"general.same\" appears twice");
    start(&im, 3, 0, 1);
    kv_u32(&im, "general.alignment", 48);
    header_error("alignment 48", &im, ML_ERR_FORMAT, "power of two");
    start(&im, 3, 0, 1);
    kv_str(&im, "general.alignment", "32");
    header_error("alignment as a string", &im, ML_ERR_FORMAT, "UINT32");

    /* Tensor infos. */
    int64_t ne4[4] = {4, 1, 1, 1}, ne5[5] = {1, 1, 1, 1, 1}, huge[2] = {INT64_MAX, 4}, odd[2] = {33, 1};
    const struct {
        const char *label, *needle;
        int n_dims;
        const int64_t *ne;
        uint32_t type;
        uint64_t offset;
        size_t data_bytes;
    } tensor_cases[] = {
        {"n_dims 5", "tensor \"t\": n_dims is 5", 5, ne5, ML_GGML_F32, 0, 32},
        {"element count overflow", "overflows", 2, huge, ML_GGML_F32, 0, 32},
        {"partial block", "not a multiple of the Q8_0 block size 32", 2, odd, ML_GGML_Q8_0, 0, 64},
        {"misaligned offset", "misaligned", 1, ne4, ML_GGML_F32, 4, 32},
        {"offset out of range", "tensor \"t\": bytes [64, 80) are beyond", 1, ne4, ML_GGML_F32, 64, 32},
        {"data truncated", "out of range", 1, ne4, ML_GGML_F32, 0, 8},
    };
    for (size_t i = 0; i < sizeof tensor_cases / sizeof tensor_cases[0]; i++) {
        one_tensor(&im, 3, "t", tensor_cases[i].n_dims, tensor_cases[i].ne, tensor_cases[i].type,
                   tensor_cases[i].offset, tensor_cases[i].data_bytes);
        header_error(tensor_cases[i].label, &im, ML_ERR_FORMAT, tensor_cases[i].needle);
    }
    one_tensor(&im, 3, "t", 1, ne4, ML_GGML_F32, 0, 0);
    im.size -= 4; /* ends inside the padding: the data section starts past the end */
    header_error("data section past the end", &im, ML_ERR_FORMAT, "beyond the end of the file");
    char long_name[80];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    one_tensor(&im, 3, long_name, 1, ne4, ML_GGML_F32, 0, 32);
    header_error("tensor name too long", &im, ML_ERR_FORMAT, "exceeds the limit of 64");

    /* Two F32 [4] tensors "a" and second_name at offsets 0 and second_offset. */
    static const struct {
        const char *label, *second_name, *needle;
        uint64_t second_offset;
    } pair_cases[] = {
        {"overlapping tensors", "b", "overlaps", 0},
        {"duplicate tensor", "a", "tensor name \"a\" appears twice", 32},
    };
    for (size_t i = 0; i < sizeof pair_cases / sizeof pair_cases[0]; i++) {
        start(&im, 3, 2, 0);
        tensor_info(&im, "a", 1, ne4, ML_GGML_F32, 0);
        tensor_info(&im, pair_cases[i].second_name, 1, ne4, ML_GGML_F32, pair_cases[i].second_offset);
        pad(&im, 32);
        put_zeros(&im, pair_cases[i].second_offset + 32);
        header_error(pair_cases[i].label, &im, ML_ERR_FORMAT, pair_cases[i].needle);
    }

    /* Valid oddities: an unknown type id is recorded, not refused; zero tensors; no padding after
     * the infos when there are no tensors; general.alignment 8. */
    start(&im, 3, 2, 1);
    kv_u32(&im, "general.alignment", 8);
    tensor_info(&im, "mystery", 1, ne4, 77, 0);
    tensor_info(&im, "known", 1, ne4, ML_GGML_F32, 16);
    pad(&im, 8);
    put(&im, (uint8_t[32]){0}, 32);
    ml_gguf g;
    expect_ok("unknown type recorded", parse_image(&im, &g));
    const ml_gguf_tensor *mystery = ml_gguf_find_tensor(&g, "mystery");
    CHECK(mystery && !mystery->type_known && mystery->data == NULL && g.alignment == 8, "unknown type id kept");
    float sink[4];
    if (mystery) expect_error("convert unknown", ml_gguf_tensor_to_f32(&g, mystery, sink), ML_ERR_UNSUPPORTED, "mystery", "77");
    ml_gguf_close(&g);
    free(im.data);
    start(&im, 2, 0, 0);
    expect_ok("empty v2 file", parse_image(&im, &g));
    CHECK(g.n_tensors == 0 && g.n_kvs == 0 && g.version == 2, "empty file");
    ml_gguf_close(&g);
    free(im.data);
    expect_error("missing file", ml_gguf_open("/nonexistent/model.gguf", &g), ML_ERR_IO, "/nonexistent/model.gguf", NULL);
}

/* ---------- a tiny llama written by hand, for mapping errors ---------- */

typedef struct {
    const char *name;
    int64_t ne0, ne1; /* ne1 == 0: 1-D */
} tiny_tensor;

static const tiny_tensor tiny_tensors[] = {
    {"token_embd.weight", 32, 8},         {"output_norm.weight", 32, 0},       {"blk.0.attn_norm.weight", 32, 0},
    {"blk.0.ffn_norm.weight", 32, 0},     {"blk.0.attn_q.weight", 32, 32},     {"blk.0.attn_k.weight", 32, 16},
    {"blk.0.attn_v.weight", 32, 16},      {"blk.0.attn_output.weight", 32, 32}, {"blk.0.ffn_gate.weight", 32, 64},
    {"blk.0.ffn_up.weight", 32, 64},      {"blk.0.ffn_down.weight", 64, 32}};
#define N_TINY ((int)(sizeof tiny_tensors / sizeof tiny_tensors[0]))

typedef struct {
    const char *skip_key;
    const char *arch;
    const char *reshape;     /* this tensor gets one more row */
    const char *retype;      /* this tensor gets type id retype_id (its F32 bytes stay) */
    uint32_t retype_id;
    const char *drop;        /* this tensor is left out */
    const char *extra;       /* an extra F32 [32] tensor */
    uint32_t extra_type;
    uint32_t kv_heads;       /* 0: 1 */
} tiny_spec;

static void build_tiny(const tiny_spec *spec, image *im) {
    static const char *const keys[] = {"general.architecture", "llama.block_count", "llama.context_length",
                                       "llama.embedding_length", "llama.feed_forward_length",
                                       "llama.attention.head_count", "llama.attention.head_count_kv",
                                       "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size",
                                       "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    const uint32_t values[] = {0, 1, 64, 32, 64, 2, spec->kv_heads ? spec->kv_heads : 1, 0, 8, 1, 2};
    int n_keys = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) n_keys += !(spec->skip_key && strcmp(spec->skip_key, keys[k]) == 0);
    int n_tensors = N_TINY + (spec->extra ? 1 : 0);
    int n_written = n_tensors - (spec->drop ? 1 : 0);
    start(im, 3, (uint64_t)n_written, (uint64_t)n_keys);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        if (spec->skip_key && strcmp(spec->skip_key, keys[k]) == 0) continue;
        if (k == 0)
            kv_str(im, keys[k], spec->arch ? spec->arch : "llama");
        else if (k == 7)
            kv_f32(im, keys[k], 1e-5f);
        else
            kv_u32(im, keys[k], values[k]);
    }
    uint64_t offset = 0;
    size_t sizes[N_TINY + 1];
    for (int t = 0; t < n_tensors; t++) {
        const char *name = t < N_TINY ? tiny_tensors[t].name : spec->extra;
        sizes[t] = 0;
        if (spec->drop && strcmp(spec->drop, name) == 0) continue;
        int64_t ne[2] = {t < N_TINY ? tiny_tensors[t].ne0 : 32, t < N_TINY ? tiny_tensors[t].ne1 : 0};
        if (spec->reshape && strcmp(spec->reshape, name) == 0) ne[ne[1] ? 1 : 0]++;
        uint32_t type = t < N_TINY ? ML_GGML_F32 : spec->extra_type;
        if (spec->retype && strcmp(spec->retype, name) == 0) type = spec->retype_id;
        tensor_info(im, name, ne[1] ? 2 : 1, ne, type, offset);
        sizes[t] = (size_t)(ne[0] * (ne[1] ? ne[1] : 1)) * 4;
        offset += (sizes[t] + 31) / 32 * 32;
    }
    pad(im, 32);
    for (int t = 0; t < n_tensors; t++) {
        size_t begin = im->size;
        put_zeros(im, sizes[t]);
        int64_t cols = t < N_TINY ? tiny_tensors[t].ne0 : 32;
        fill_rows_with_index(im->data + begin, (int64_t)sizes[t] / 4 / cols, cols);
        pad(im, 32);
    }
}

static int tiny_config_and_weights(const tiny_spec *spec, ml_config *c, ml_weight_set *w, int *stage) {
    image im;
    build_tiny(spec, &im);
    ml_gguf g;
    *stage = 0;
    int status = parse_image(&im, &g);
    if (status == ML_OK) {
        *stage = 1;
        status = ml_gguf_llama_config(&g, c);
    }
    if (status == ML_OK) {
        *stage = 2;
        status = ml_gguf_llama_weights(&g, c, w);
    }
    ml_gguf_close(&g);
    free(im.data);
    return status;
}

static void tiny_error(const char *label, tiny_spec spec, int code, int want_stage, const char *needle) {
    ml_config c;
    ml_weight_set w;
    int stage;
    expect_error(label, tiny_config_and_weights(&spec, &c, &w, &stage), code, SRC, needle);
    CHECK(stage == want_stage, "%s: failed at stage %d, expected %d", label, stage, want_stage);
}

static void test_mapping(void) {
    ml_config c;
    ml_weight_set w;
    int stage;
    tiny_spec plain = {0};
    int status = tiny_config_and_weights(&plain, &c, &w, &stage);
    expect_ok("tiny llama", status);
    if (status == ML_OK) {
        CHECK(c.vocab_size == 8 && c.hidden_size == 32 && c.head_dim == 16 && c.n_kv_heads == 1 && c.tie_word_embeddings &&
                  c.rope_theta == 10000.0f && c.n_eos == 1 && c.eos_token_ids[0] == 2 && c.bos_token_id == 1,
              "tiny config");
        /* Views point into the caller's image (files[0] has only the path). */
        CHECK(w.n_files == 1 && w.files[0].data == NULL && strcmp(w.files[0].path, SRC) == 0, "path-only file entry");
        ml_weight_set_close(&w);
    }
    /* Un-permutation, checked on rows that hold their GGUF index. Needs the image alive. */
    image im;
    build_tiny(&plain, &im);
    ml_gguf g;
    if (parse_image(&im, &g) == ML_OK && ml_gguf_llama_config(&g, &c) == ML_OK &&
        ml_gguf_llama_weights(&g, &c, &w) == ML_OK) {
        const ml_tensor_view *q = ml_weight_set_find(&w, "model.layers.0.self_attn.q_proj.weight");
        const ml_tensor_view *k = ml_weight_set_find(&w, "model.layers.0.self_attn.k_proj.weight");
        const ml_tensor_view *down = ml_weight_set_find(&w, "model.layers.0.mlp.down_proj.weight");
        int ok = q && k && down && q->shape[0] == 32 && k->shape[0] == 16 && down->shape[0] == 32 && down->shape[1] == 64;
        for (int row = 0; ok && row < 32; row++) {
            /* HF row h*16 + j*8 + i came from GGUF row h*16 + 2*i + j. */
            int head = row / 16, j = (row % 16) / 8, i = row % 8;
            float want = (float)(head * 16 + 2 * i + j);
            ok = element_as_f32(q, (size_t)row * 32) == want && element_as_f32(q, (size_t)row * 32 + 31) == want &&
                 (row >= 16 || element_as_f32(k, (size_t)row * 32 + 5) == want);
        }
        CHECK(ok, "Q/K rows un-permuted to HF's rotate-half order; shapes reported as HF's");
        ml_weight_set_close(&w);
    } else {
        CHECK(0, "tiny llama: %s", ml_last_error());
    }
    ml_gguf_close(&g);
    free(im.data);

    static const char *const required[] = {"llama.block_count", "llama.context_length", "llama.embedding_length",
                                           "llama.feed_forward_length", "llama.attention.head_count",
                                           "llama.attention.layer_norm_rms_epsilon", "general.architecture"};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++) {
        tiny_spec spec = {.skip_key = required[k]};
        tiny_error(required[k], spec, ML_ERR_CONFIG, 1, required[k]);
    }
    tiny_error("no vocab size", (tiny_spec){.skip_key = "llama.vocab_size"}, ML_ERR_CONFIG, 1, "llama.vocab_size");
    tiny_error("architecture gpt2", (tiny_spec){.arch = "gpt2"}, ML_ERR_UNSUPPORTED, 1, "\"gpt2\"");
    /* a qwen2 file reads its keys under qwen2.*: this one has llama.* keys */
    tiny_error("architecture qwen2", (tiny_spec){.arch = "qwen2"}, ML_ERR_CONFIG, 1, "\"qwen2.embedding_length\"");
    tiny_error("kv heads 3", (tiny_spec){.kv_heads = 3}, ML_ERR_CONFIG, 1, "head_count_kv");
    tiny_error("q shape", (tiny_spec){.reshape = "blk.0.attn_q.weight"}, ML_ERR_TENSOR, 2,
               "tensor \"blk.0.attn_q.weight\" (model.layers.0.self_attn.q_proj.weight) has ne [32, 33]");
    tiny_error("norm shape", (tiny_spec){.reshape = "blk.0.ffn_norm.weight"}, ML_ERR_TENSOR, 2,
               "the config implies HF shape [32]");
    tiny_error("embedding shape", (tiny_spec){.reshape = "token_embd.weight"}, ML_ERR_TENSOR, 2, "token_embd.weight");
    tiny_error("unknown type used", (tiny_spec){.retype = "blk.0.ffn_up.weight", .retype_id = 77}, ML_ERR_UNSUPPORTED, 2,
               "tensor \"blk.0.ffn_up.weight\" (model.layers.0.mlp.up_proj.weight) has ggml type id 77");
    tiny_error("Q8_1 used", (tiny_spec){.retype = "blk.0.attn_v.weight", .retype_id = 9}, ML_ERR_UNSUPPORTED, 2, "Q8_1");
    tiny_error("Q4_K rows of 32", (tiny_spec){.retype = "blk.0.attn_v.weight", .retype_id = 12}, ML_ERR_FORMAT, 0,
               "ne[0] = 32 is not a multiple of the Q4_K block size 256");
    /* biases: layer 0's say which the file has; q/k ones are un-permuted element by element */
    tiny_error("q bias without k bias", (tiny_spec){.extra = "blk.0.attn_q.bias", .extra_type = ML_GGML_F32},
               ML_ERR_TENSOR, 2, "tensor \"blk.0.attn_k.bias\" (model.layers.0.self_attn.k_proj.bias) is missing");
    tiny_error("q bias Q8_0", (tiny_spec){.extra = "blk.0.attn_q.bias", .extra_type = 8}, ML_ERR_UNSUPPORTED, 2,
               "tensor \"blk.0.attn_q.bias\" (model.layers.0.self_attn.q_proj.bias) has ggml type Q8_0; a q/k bias");
    tiny_error("norm bias", (tiny_spec){.extra = "blk.0.attn_norm.bias", .extra_type = ML_GGML_F32}, ML_ERR_UNSUPPORTED,
               2, "tensor \"blk.0.attn_norm.bias\": this bias is not supported in llama GGUF files");
    tiny_spec o_bias = {.extra = "blk.0.attn_output.bias", .extra_type = ML_GGML_F32};
    status = tiny_config_and_weights(&o_bias, &c, &w, &stage);
    expect_ok("o bias", status);
    if (status == ML_OK) {
        CHECK(c.o_bias && !c.qkv_bias && !c.mlp_bias && ml_weight_set_find(&w, "model.layers.0.self_attn.o_proj.bias"),
              "o bias: flags %d %d %d", c.qkv_bias, c.o_bias, c.mlp_bias);
        ml_weight_set_close(&w);
    }
    tiny_error("layer beyond block_count", (tiny_spec){.extra = "blk.1.attn_norm.weight", .extra_type = ML_GGML_F32},
               ML_ERR_TENSOR, 2, "layer 1");
    tiny_error("missing tensor", (tiny_spec){.drop = "blk.0.ffn_down.weight"}, ML_ERR_TENSOR, 2,
               "tensor \"blk.0.ffn_down.weight\" (model.layers.0.mlp.down_proj.weight) is missing");
    tiny_error("bad rope_freqs", (tiny_spec){.extra = "rope_freqs.weight", .extra_type = ML_GGML_F16}, ML_ERR_TENSOR, 1,
               "rope_freqs.weight");
    /* An unknown type on a tensor the model never reads is fine. */
    tiny_spec unused = {.extra = "unused.weight", .extra_type = 77};
    status = tiny_config_and_weights(&unused, &c, &w, &stage);
    expect_ok("unknown type unused", status);
    if (status == ML_OK) ml_weight_set_close(&w);
    /* An untied model: output.weight present. */
    tiny_spec untied = {.extra = "output.weight", .extra_type = ML_GGML_F32};
    status = tiny_config_and_weights(&untied, &c, &w, &stage);
    CHECK(status == ML_ERR_TENSOR && strstr(ml_last_error(), "output.weight"), "1-D output.weight refused: %s",
          ml_last_error());
}

/* The default model's mix (Q4_1 projections, Q8_0 embedding, F32 norms) with llama3 rope_freqs:
 * every converted view equals gguf-py's dequantisation (stored as expected.* in the file). */
static void test_tiny_fixtures(void) {
    char path[1024];
    ml_gguf g;
    ml_config c;
    ml_weight_set w;
    gguf_fixture(path, sizeof path, "tiny_f32.gguf");
    int status = ml_gguf_open(path, &g);
    if (status == ML_OK) status = ml_gguf_llama_config(&g, &c);
    if (status == ML_OK) status = ml_gguf_llama_weights(&g, &c, &w);
    expect_ok("tiny_f32.gguf", status);
    if (status == ML_OK) {
        CHECK(c.head_dim == 2 && w.n_tensors == 11 && w.n_owned == 2, "tiny_f32: %d views, %d owned", w.n_tensors,
              w.n_owned);
        ml_weight_set_close(&w);
    }
    ml_gguf_close(&g);

    gguf_fixture(path, sizeof path, "tiny_q4_1_llama3.gguf");
    status = ml_gguf_open(path, &g);
    if (status == ML_OK) status = ml_gguf_llama_config(&g, &c);
    expect_ok("tiny_q4_1_llama3.gguf config", status);
    if (status != ML_OK) {
        ml_gguf_close(&g);
        return;
    }
    CHECK(c.rope_type == ML_ROPE_LLAMA3 && c.rope_factor == 16.0f && c.rope_low_freq_factor == 1.0f &&
              c.rope_high_freq_factor == 32.0f && c.rope_original_max_position == 8192,
          "tiny llama3 RoPE recovered: factor %g low %g high %g original %d", (double)c.rope_factor,
          (double)c.rope_low_freq_factor, (double)c.rope_high_freq_factor, c.rope_original_max_position);
    static const char *const pairs[3][2] = {{"expected.attn_q", "model.layers.0.self_attn.q_proj.weight"},
                                            {"expected.attn_k", "model.layers.0.self_attn.k_proj.weight"},
                                            {"expected.token_embd", "model.embed_tokens.weight"}};
    static const ml_dtype kept[3] = {ML_DTYPE_Q4_1, ML_DTYPE_Q4_1, ML_DTYPE_Q8_0};
    for (int mode = ML_GGUF_KEEP_QUANTIZED; mode <= ML_GGUF_DEQUANTIZE; mode++) {
        /* kept: blocks (Q/K rows un-permuted as whole rows of blocks, the only copies); else F32 */
        int keep = mode == ML_GGUF_KEEP_QUANTIZED;
        status = ml_gguf_llama_weights_mode(&g, &c, (ml_gguf_quant_mode)mode, &w);
        expect_ok("tiny_q4_1_llama3.gguf weights", status);
        for (int p = 0; status == ML_OK && p < 3; p++) {
            const ml_gguf_tensor *e = ml_gguf_find_tensor(&g, pairs[p][0]);
            const ml_tensor_view *v = ml_weight_set_find(&w, pairs[p][1]);
            int same = e && v && v->dtype == (keep ? kept[p] : ML_DTYPE_F32);
            for (size_t i = 0; same && i < e->n_elements; i++) {
                float want;
                memcpy(&want, e->data + 4 * i, 4);
                same = element_as_f32(v, i) == want;
            }
            CHECK(same, "%s (%s) equals gguf-py's dequantisation (HF row order)", pairs[p][1],
                  keep ? "kept quantised" : "dequantised");
        }
        const ml_tensor_view *down = NULL;
        if (status == ML_OK) down = ml_weight_set_find(&w, "model.layers.0.mlp.down_proj.weight");
        CHECK(status != ML_OK || (down && down->dtype == (keep ? ML_DTYPE_Q4_1 : ML_DTYPE_F32) &&
                                  w.n_owned == (keep ? 2 : 8)),
              "tiny Q4_1: projections %s, %d owned", keep ? "Q4_1" : "F32", w.n_owned);
        if (status == ML_OK) ml_weight_set_close(&w);
    }
    ml_gguf_close(&g);
}

/* A quantised tensor cut short by the end of the file: the reader refuses the file with a message
 * naming the tensor, whether it is opened on its own or as a model. */
static void test_truncated_quantised(void) {
    static const char *const fixtures[] = {"gqa_tied_q8_0.gguf", "tiny_q4_1_llama3.gguf"};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char path[1024], cut[1024];
        gguf_fixture(path, sizeof path, fixtures[f]);
        ml_gguf g;
        if (ml_gguf_open(path, &g) != ML_OK) {
            CHECK(0, "%s: %s", fixtures[f], ml_last_error());
            continue;
        }
        /* the quantised tensor whose data ends last */
        const ml_gguf_tensor *last = NULL;
        for (size_t i = 0; i < g.n_tensors; i++) {
            const ml_gguf_tensor *t = &g.tensors[i];
            int quantised = t->type == ML_GGML_Q8_0 || t->type == ML_GGML_Q4_0 || t->type == ML_GGML_Q4_1;
            if (quantised && (!last || t->offset > last->offset)) last = t;
        }
        CHECK(last != NULL, "%s has a quantised tensor", fixtures[f]);
        if (!last) {
            ml_gguf_close(&g);
            continue;
        }
        /* keep the file up to the middle of that tensor's last block; the reader names the first
         * tensor (in the file's order) that no longer fits: that one, or an earlier quantised one */
        size_t keep = g.data_offset + (size_t)last->offset + last->n_bytes - 10;
        const ml_gguf_tensor *named = NULL;
        for (size_t i = 0; i < g.n_tensors && !named; i++)
            if (g.data_offset + g.tensors[i].offset + g.tensors[i].n_bytes > keep) named = &g.tensors[i];
        CHECK(named && (named->type == ML_GGML_Q8_0 || named->type == ML_GGML_Q4_1), "%s: the cut tensor is quantised",
              fixtures[f]);
        char name[80];
        snprintf(name, sizeof name, "tensor \"%s\"", named ? named->name : last->name);
        snprintf(cut, sizeof cut, "%s/truncated_%s", tmp_root, fixtures[f]);
        CHECK(ml_test_write_file(cut, g.image, keep) == 0, "writing %s", cut);
        ml_gguf_close(&g);
        expect_error("truncated quantised tensor", ml_gguf_open(cut, &g), ML_ERR_FORMAT, cut, name);
        ml_gguf_close(&g);
        ml_model *model = NULL;
        ml_model_params params = ml_model_default_params();
        params.n_threads = 1;
        expect_error("truncated quantised tensor (model)", ml_model_open(cut, &params, &model), ML_ERR_FORMAT, cut,
                     name);
        CHECK(model == NULL, "no model handle on failure");
        unlink(cut);
    }
}

/* ---------- (e) llama3 RoPE from rope_freqs ---------- */

static void rope_roundtrip(const char *label, int head_dim, float theta, float factor, float low, float high,
                           int original) {
    ml_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = head_dim;
    c.rope_theta = theta;
    c.rope_type = ML_ROPE_LLAMA3;
    c.rope_factor = factor;
    c.rope_low_freq_factor = low;
    c.rope_high_freq_factor = high;
    c.rope_original_max_position = original;
    float factors[256];
    ml_gguf_llama3_rope_factors(&c, factors);
    ml_config back = c;
    back.rope_type = ML_ROPE_DEFAULT;
    back.rope_factor = 1;
    back.rope_low_freq_factor = back.rope_high_freq_factor = 0;
    back.rope_original_max_position = 0;
    expect_ok(label, ml_gguf_llama3_rope_from_factors(factors, head_dim / 2, "rope.gguf", &back));
    CHECK(back.rope_type == ML_ROPE_LLAMA3 && back.rope_factor == factor && back.rope_low_freq_factor == low &&
              back.rope_high_freq_factor == high && back.rope_original_max_position == original,
          "%s: recovered factor %g low %g high %g original %d", label, (double)back.rope_factor,
          (double)back.rope_low_freq_factor, (double)back.rope_high_freq_factor, back.rope_original_max_position);
}

static void test_rope(void) {
    rope_roundtrip("Llama 3.2 (factor 32)", 64, 500000.0f, 32.0f, 1.0f, 4.0f, 8192);
    rope_roundtrip("Llama 3.1 (factor 8)", 128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
    rope_roundtrip("no in-between band", 16, 500000.0f, 8.0f, 1.0f, 4.0f, 32);
    rope_roundtrip("high 2", 64, 10000.0f, 4.0f, 1.0f, 2.0f, 1024);
    ml_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = 8;
    c.rope_theta = 10000.0f;
    float ones[4] = {1, 1, 1, 1}, garbage[4] = {1, 7, 2, 5}, small[4] = {1, 0.5f, 1, 1};
    expect_ok("all ones", ml_gguf_llama3_rope_from_factors(ones, 4, "r.gguf", &c));
    CHECK(c.rope_type == ML_ROPE_DEFAULT, "all-ones divisors are plain RoPE");
    expect_error("garbage divisors", ml_gguf_llama3_rope_from_factors(garbage, 4, "r.gguf", &c), ML_ERR_UNSUPPORTED,
                 "r.gguf", "rope_freqs.weight");
    expect_error("divisor below 1", ml_gguf_llama3_rope_from_factors(small, 4, "r.gguf", &c), ML_ERR_UNSUPPORTED,
                 "rope_freqs.weight\"[1]", NULL);
    expect_error("wrong count", ml_gguf_llama3_rope_from_factors(ones, 3, "r.gguf", &c), ML_ERR_TENSOR, "4", NULL);
}

/* ---------- (f) the default model ---------- */

static void test_default_model(void) {
    char path[1200];
    if (ml_test_default_model(path, sizeof path) != 0) return;
    ml_gguf g;
    ml_config c;
    ml_weight_set w;
    int status = ml_gguf_open(path, &g);
    expect_ok("SmolLM2 open", status);
    if (status != ML_OK) return;
    CHECK(g.version == 3 && g.n_kvs == 33 && g.n_tensors == 272, "SmolLM2: v%u, %zu kvs, %zu tensors", g.version,
          g.n_kvs, g.n_tensors);
    status = ml_gguf_llama_config(&g, &c);
    expect_ok("SmolLM2 config", status);
    CHECK(status == ML_OK && c.vocab_size == 49152 && c.hidden_size == 576 && c.intermediate_size == 1536 &&
              c.n_layers == 30 && c.n_heads == 9 && c.n_kv_heads == 3 && c.head_dim == 64 &&
              c.max_position_embeddings == 8192 && c.rope_theta == 100000.0f && c.rope_type == ML_ROPE_DEFAULT &&
              c.rms_norm_eps == 1e-5f && c.tie_word_embeddings && c.bos_token_id == 1 && c.n_eos == 1 &&
              c.eos_token_ids[0] == 2,
          "SmolLM2 config values");
    const ml_gguf_string *tokens;
    size_t n_tokens;
    expect_ok("SmolLM2 tokens", ml_gguf_get_string_array(&g, "tokenizer.ggml.tokens", &tokens, &n_tokens));
    CHECK(n_tokens == 49152 && strcmp(tokens[0].text, "<|endoftext|>") == 0, "SmolLM2 token list");
    for (int mode = ML_GGUF_KEEP_QUANTIZED; status == ML_OK && mode <= ML_GGUF_DEQUANTIZE; mode++) {
        /* kept: Q8_0 embedding, Q4_1 projections, only Q/K copied (60); else everything F32 (211 copies) */
        int keep = mode == ML_GGUF_KEEP_QUANTIZED;
        int status_w = ml_gguf_llama_weights_mode(&g, &c, (ml_gguf_quant_mode)mode, &w);
        expect_ok("SmolLM2 weights", status_w);
        if (status_w == ML_OK) {
            const ml_tensor_view *embed = ml_weight_set_find(&w, "model.embed_tokens.weight");
            const ml_tensor_view *up = ml_weight_set_find(&w, "model.layers.29.mlp.up_proj.weight");
            CHECK(w.n_tensors == 272 && embed && embed->dtype == (keep ? ML_DTYPE_Q8_0 : ML_DTYPE_F32) &&
                      embed->shape[0] == 49152 && embed->shape[1] == 576 && up &&
                      up->dtype == (keep ? ML_DTYPE_Q4_1 : ML_DTYPE_F32) &&
                      up->n_bytes == (keep ? 1536u * 18 * 20 : 1536u * 576 * 4) && w.n_owned == (keep ? 60 : 211),
                  "SmolLM2 weight set (%s): %d views, %d owned", keep ? "kept" : "dequantised", w.n_tensors, w.n_owned);
            ml_weight_set_close(&w);
        }
    }
    ml_gguf_close(&g);
}

/* A GGUF fixture (tools/make_gguf_fixtures.py) with one tensor's header edited in memory: its
 * name (same length) or, for a 1-D tensor, ne[0] one smaller (its data still fits). */
static int edited_config_and_weights(const char *fixture, const char *name, const char *new_name, int shorten,
                                     ml_config *c, ml_weight_set *w) {
    char path[512];
    ml_test_fixture_path(path, sizeof path, fixture);
    size_t size = 0;
    uint8_t *data = ml_test_read_file(path, &size);
    if (!data) return ml_set_error(ML_ERR_IO, "cannot read %s", path);
    size_t length = strlen(name);
    for (size_t at = 8; at + length + 12 < size; at++) { /* a tensor info: u64 length, name, u32 n_dims, ne */
        uint64_t stored;
        memcpy(&stored, data + at - 8, 8);
        if (stored != length || memcmp(data + at, name, length) != 0) continue;
        if (new_name) memcpy(data + at, new_name, length);
        if (shorten) {
            uint64_t ne0;
            memcpy(&ne0, data + at + length + 4, 8);
            ne0 -= 1;
            memcpy(data + at + length + 4, &ne0, 8);
        }
        break;
    }
    ml_gguf g;
    int status = ml_gguf_parse(data, size, SRC, &g);
    if (status == ML_OK) {
        status = ml_gguf_llama_config(&g, c);
        if (status == ML_OK) status = ml_gguf_llama_weights(&g, c, w);
        if (status == ML_OK) ml_weight_set_close(w);
        ml_gguf_close(&g);
    }
    free(data);
    return status;
}

static int qwen2_config_and_weights(const char *name, const char *new_name, int shorten, ml_config *c,
                                    ml_weight_set *w) {
    return edited_config_and_weights("gguf/qwen2_bias_bf16.gguf", name, new_name, shorten, c, w);
}

static int llama_bias_config_and_weights(const char *name, const char *new_name, int shorten, ml_config *c,
                                         ml_weight_set *w) {
    return edited_config_and_weights("gguf/llama_bias_f32.gguf", name, new_name, shorten, c, w);
}

/* A llama GGUF with attention and MLP biases (llama_bias_f32: the converter permuted the q/k
 * biases like their rows; test_model_gguf has its logits): all seven per layer are read; one of
 * the wrong shape, or one that layer 0 lacks, is refused by name. */
static void test_llama_biases(void) {
    ml_config c;
    ml_weight_set w;
    expect_ok("llama biases", llama_bias_config_and_weights("blk.0.attn_q.bias", NULL, 0, &c, &w));
    CHECK(c.arch == ML_ARCH_LLAMA && c.qkv_bias && c.o_bias && c.mlp_bias, "llama biases: flags %d %d %d", c.qkv_bias,
          c.o_bias, c.mlp_bias);
    expect_error("llama short q bias", llama_bias_config_and_weights("blk.1.attn_q.bias", NULL, 1, &c, &w),
                 ML_ERR_TENSOR, "blk.1.attn_q.bias", "ne [47]");
    expect_error("llama o bias not in layer 0",
                 llama_bias_config_and_weights("blk.0.attn_output.bias", "blk.0.attn_output.biaz", 0, &c, &w),
                 ML_ERR_TENSOR, "blk.1.attn_output.bias", "layer 0 does not have");
    expect_error("llama missing up bias", llama_bias_config_and_weights("blk.1.ffn_up.bias", "blk.1.ffn_up.biaz", 0, &c, &w),
                 ML_ERR_TENSOR, "blk.1.ffn_up.bias", "missing");
}

/* qwen2: keys under qwen2.*, Q/K rows as stored, q/k/v biases; a bias of the wrong shape, a
 * missing one or one qwen2 does not have is refused by name. */
static void test_qwen2(void) {
    ml_config c;
    ml_weight_set w;
    expect_ok("qwen2 fixture", qwen2_config_and_weights("blk.0.attn_q.bias", NULL, 0, &c, &w));
    CHECK(c.arch == ML_ARCH_QWEN2 && c.qkv_bias && !c.o_bias && c.n_heads == 9 && c.n_kv_heads == 3 &&
              c.rope_theta == 1000000.0f && c.rms_norm_eps == 1e-6f,
          "qwen2 config");
    expect_error("qwen2 short bias", qwen2_config_and_weights("blk.1.attn_k.bias", NULL, 1, &c, &w), ML_ERR_TENSOR,
                 "blk.1.attn_k.bias", "ne [23]");
    expect_error("qwen2 missing bias", qwen2_config_and_weights("blk.0.attn_q.bias", "blk.0.attn_q.biaz", 0, &c, &w),
                 ML_ERR_TENSOR, "blk.0.attn_q.bias", "missing");
    expect_error("qwen2 o bias", qwen2_config_and_weights("blk.0.attn_q.bias", "blk.0.attn_o.bias", 0, &c, &w),
                 ML_ERR_UNSUPPORTED, "blk.0.attn_o.bias", "not supported in qwen2 GGUF files");
}

/* (g) Rows made on demand, for every run of whole heads (Q/K) and runs of other lengths, equal
 * the rows of the weight set that copies at open; views that need no change are the same bytes. */
static void test_made_rows(const char *name, ml_gguf_quant_mode mode) {
    char path[1024], label[256];
    gguf_fixture(path, sizeof path, name);
    snprintf(label, sizeof label, "%s (mode %d)", name, (int)mode);
    ml_gguf g;
    ml_config c;
    ml_weight_set copied, made;
    int status = ml_gguf_open(path, &g);
    if (status == ML_OK) status = ml_gguf_llama_config(&g, &c);
    if (status == ML_OK) status = ml_gguf_llama_weights_mode(&g, &c, mode, &copied);
    expect_ok(label, status);
    if (status != ML_OK) {
        ml_gguf_close(&g);
        return;
    }
    status = ml_gguf_llama_weights_borrowed(&g, &c, mode, &made);
    expect_ok(label, status);
    int n_made = 0, bad = 0, ranges = 0;
    for (int i = 0; status == ML_OK && i < made.n_tensors; i++) {
        const ml_tensor_view *m = &made.tensors[i], *e = ml_weight_set_find(&copied, m->name);
        if (!e || e->dtype != m->dtype || e->n_bytes != m->n_bytes || !e->data) {
            bad++;
            continue;
        }
        if (m->data) { /* in place: the file's bytes, or a copied 1-D tensor */
            bad += memcmp(m->data, e->data, e->n_bytes) != 0 || m->make_rows != NULL;
            continue;
        }
        n_made++;
        bad += m->n_dims != 2 || !m->make_rows;
        size_t row_bytes = ml_dtype_row_bytes(m->dtype, (size_t)m->shape[1]);
        uint8_t *rows = malloc(e->n_bytes ? e->n_bytes : 1);
        int64_t n_rows = m->shape[0], step = m->source_head_dim > 0 ? m->source_head_dim : 3;
        for (int64_t begin = 0; rows && begin < n_rows; begin += step) {
            for (int64_t end = begin + step; end <= n_rows + step - 1; end += step) {
                int64_t stop = end > n_rows ? n_rows : end;
                ranges++;
                if (ml_weight_set_rows(&made, m, begin, stop, rows) != ML_OK ||
                    memcmp(rows, (const uint8_t *)e->data + (size_t)begin * row_bytes, (size_t)(stop - begin) * row_bytes)) {
                    bad++;
                    fprintf(stderr, "%s: %s rows %lld..%lld differ\n", label, m->name, (long long)begin, (long long)stop);
                }
            }
        }
        free(rows);
    }
    /* kept blocks: only Q and K need changing; dequantised: every quantised matrix */
    int want_made = mode == ML_GGUF_KEEP_QUANTIZED ? 2 * c.n_layers : -1;
    CHECK(status == ML_OK && bad == 0 && made.n_owned == 0 && (want_made < 0 ? n_made >= 2 * c.n_layers : n_made == want_made) &&
              ranges > n_made,
          "%s: %d views wrong, %d made (want %d), %d owned, %d row runs", label, bad, n_made, want_made, made.n_owned,
          ranges);
    if (status == ML_OK) ml_weight_set_close(&made);
    ml_weight_set_close(&copied);
    ml_gguf_close(&g);
}

int main(void) {
    if (ml_test_make_tmpdir(tmp_root, sizeof tmp_root, "gguf") != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_metadata();
    test_quants();
    for (int mode = ML_GGUF_KEEP_QUANTIZED; mode <= ML_GGUF_DEQUANTIZE; mode++) {
        test_equivalence("gqa_tied_bf16", "gqa_tied_bf16.gguf", 1, (ml_gguf_quant_mode)mode);
        test_equivalence("gqa_tied_bf16", "gqa_tied_q8_0.gguf", 0, (ml_gguf_quant_mode)mode);
        test_equivalence("h8kv2_headdim_untied_f32", "h8kv2_headdim_untied_f32.gguf", 1, (ml_gguf_quant_mode)mode);
        test_equivalence("h8kv2_headdim_untied_f32", "h8kv2_headdim_untied_q8_0.gguf", 0, (ml_gguf_quant_mode)mode);
    }
    test_fixture_rope_freqs();
    test_tiny_fixtures();
    test_truncated_quantised();
    test_header_errors();
    test_mapping();
    test_qwen2();
    test_llama_biases();
    test_rope();
    test_default_model();
    for (int mode = ML_GGUF_KEEP_QUANTIZED; mode <= ML_GGUF_DEQUANTIZE; mode++) {
        test_made_rows("gqa_tied_q8_0.gguf", (ml_gguf_quant_mode)mode);
        test_made_rows("h8kv2_headdim_untied_f32.gguf", (ml_gguf_quant_mode)mode);
        test_made_rows("kquant_mix.gguf", (ml_gguf_quant_mode)mode);
    }
    rmdir(tmp_root);
    return ml_test_finish("gguf");
}
