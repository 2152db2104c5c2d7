/* libFuzzer harness: the input is a whole GGUF image. A parse that succeeds must describe only
 * bytes inside the image; the getters, the block converters and the llama mapping must then
 * either succeed or fail with a message, never read out of bounds. Anything else is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "fuzz_input.h"

static volatile uint8_t sink;

static void touch(const void *bytes, size_t n) {
    if (n == 0) return;
    const uint8_t *p = bytes;
    sink ^= p[0] ^ p[n - 1];
}

static void walk_value(const ml_gguf_value *v, int depth) {
    if (depth > ML_GGUF_MAX_NESTING + 1) abort();
    if (v->type == ML_GGUF_STRING) {
        if (v->as.str.text[v->as.str.length] != '\0') abort();
        touch(v->as.str.text, v->as.str.length);
        return;
    }
    if (v->type != ML_GGUF_ARRAY) return;
    for (size_t i = 0; i < v->as.array.count; i++) {
        int64_t integer;
        double number;
        if (v->as.array.type == ML_GGUF_STRING) {
            const ml_gguf_string *s = &v->as.array.strings[i];
            if (s->text[s->length] != '\0') abort();
            touch(s->text, s->length);
        } else if (v->as.array.type == ML_GGUF_ARRAY) {
            walk_value(&v->as.array.arrays[i], depth + 1);
        } else {
            (void)ml_gguf_array_int(v, i, &integer);
            (void)ml_gguf_array_float(v, i, &number);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_copy(data, size);
    if (!image) return 0;

    ml_gguf g;
    if (ml_gguf_parse(image, size, "fuzz.gguf", &g) != 0) {
        if (g.kvs || g.tensors || g.arena || g.source) abort(); /* failures leave nothing behind */
        free(image);
        return 0;
    }
    for (size_t i = 0; i < g.n_kvs; i++) {
        const ml_gguf_kv *kv = &g.kvs[i];
        if (ml_gguf_find(&g, kv->key) != &kv->value) abort();
        walk_value(&kv->value, 0);
        int64_t integer;
        double number;
        int flag;
        const char *text;
        const ml_gguf_string *strings;
        size_t count;
        int32_t *ints;
        (void)ml_gguf_get_int(&g, kv->key, &integer);
        (void)ml_gguf_get_float(&g, kv->key, &number);
        (void)ml_gguf_get_bool(&g, kv->key, &flag);
        (void)ml_gguf_get_string(&g, kv->key, &text, &count);
        (void)ml_gguf_get_string_array(&g, kv->key, &strings, &count);
        if (ml_gguf_get_int32_array(&g, kv->key, &ints, &count) == 0) free(ints);
    }
    if (g.data_offset % g.alignment != 0) abort();
    for (size_t i = 0; i < g.n_tensors; i++) {
        const ml_gguf_tensor *t = &g.tensors[i];
        if (ml_gguf_find_tensor(&g, t->name) != t) abort();
        if (t->n_dims < 1 || t->n_dims > ML_GGUF_MAX_DIMS || t->offset % g.alignment != 0) abort();
        if (!t->data) continue;
        const uint8_t *begin = t->data;
        if (begin < image + g.data_offset || t->n_bytes > size || begin > image + size - t->n_bytes) abort();
        touch(begin, t->n_bytes);
        if (t->n_elements <= (1u << 16)) {
            float *values = malloc(t->n_elements * sizeof *values + 1);
            if (values) (void)ml_gguf_tensor_to_f32(&g, t, values);
            free(values);
        }
    }
    ml_config config;
    if (ml_gguf_llama_config(&g, &config) == 0) {
        /* quantised matrices kept as blocks (views into the image), then dequantised */
        for (int mode = ML_GGUF_KEEP_QUANTIZED; mode <= ML_GGUF_DEQUANTIZE; mode++) {
            ml_weight_set weights;
            if (ml_gguf_llama_weights_mode(&g, &config, (ml_gguf_quant_mode)mode, &weights) == 0) {
                for (int i = 0; i < weights.n_tensors; i++) touch(weights.tensors[i].data, weights.tensors[i].n_bytes);
                ml_weight_set_close(&weights);
            }
        }
    }
    ml_gguf_close(&g);
    free(image);
    return 0;
}
