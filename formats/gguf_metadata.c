/* Lookups and typed getters over a parsed GGUF (formats/gguf.h). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/gguf.h"

const ml_gguf_value *ml_gguf_find(const ml_gguf *g, const char *key) {
    if (!g || !key || !g->kv_order) return NULL;
    size_t lo = 0, hi = g->n_kvs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ml_gguf_kv *kv = &g->kvs[g->kv_order[mid]];
        int order = strcmp(kv->key, key);
        if (order == 0) return &kv->value;
        if (order < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const ml_gguf_tensor *ml_gguf_find_tensor(const ml_gguf *g, const char *name) {
    if (!g || !name || !g->tensor_order) return NULL;
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ml_gguf_tensor *t = &g->tensors[g->tensor_order[mid]];
        int order = strcmp(t->name, name);
        if (order == 0) return t;
        if (order < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_integer_type(ml_gguf_type type) {
    switch (type) {
    case ML_GGUF_UINT8: case ML_GGUF_INT8: case ML_GGUF_UINT16: case ML_GGUF_INT16:
    case ML_GGUF_UINT32: case ML_GGUF_INT32: case ML_GGUF_UINT64: case ML_GGUF_INT64: return 1;
    default: return 0;
    }
}

static int is_signed_type(ml_gguf_type type) {
    return type == ML_GGUF_INT8 || type == ML_GGUF_INT16 || type == ML_GGUF_INT32 || type == ML_GGUF_INT64;
}

static const char *describe_type(const ml_gguf_value *v, char *buf, size_t size) {
    if (v->type == ML_GGUF_ARRAY)
        snprintf(buf, size, "an ARRAY of %zu %s", v->as.array.count, ml_gguf_type_name(v->as.array.type));
    else
        snprintf(buf, size, "a %s", ml_gguf_type_name(v->type));
    return buf;
}

/* The value of key, or ML_ERR_CONFIG naming what was expected. */
static int lookup(const ml_gguf *g, const char *key, const char *expected, const ml_gguf_value **out) {
    const char *source = g && g->source ? g->source : "GGUF";
    if (!key) return ml_set_error(ML_ERR_ARG, "%s: key is NULL", source);
    *out = ml_gguf_find(g, key);
    if (!*out) return ml_set_error(ML_ERR_CONFIG, "%s: missing key \"%s\" (expected %s)", source, key, expected);
    return ML_OK;
}

static int wrong_type(const ml_gguf *g, const char *key, const char *expected, const ml_gguf_value *v) {
    char found[96];
    return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected %s, found %s", g->source, key, expected,
                        describe_type(v, found, sizeof found));
}

int ml_gguf_get_int(const ml_gguf *g, const char *key, int64_t *out) {
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "an integer", &v));
    if (!is_integer_type(v->type)) return wrong_type(g, key, "an integer", v);
    if (is_signed_type(v->type)) {
        *out = v->as.i64;
    } else {
        if (v->as.u64 > (uint64_t)INT64_MAX)
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": value %llu is out of range", g->source, key,
                                (unsigned long long)v->as.u64);
        *out = (int64_t)v->as.u64;
    }
    return ML_OK;
}

int ml_gguf_get_float(const ml_gguf *g, const char *key, double *out) {
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "a number", &v));
    if (v->type == ML_GGUF_FLOAT32 || v->type == ML_GGUF_FLOAT64) {
        *out = v->as.f64;
    } else if (is_integer_type(v->type)) {
        *out = is_signed_type(v->type) ? (double)v->as.i64 : (double)v->as.u64;
    } else {
        return wrong_type(g, key, "a number", v);
    }
    return ML_OK;
}

int ml_gguf_get_bool(const ml_gguf *g, const char *key, int *out) {
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "a BOOL", &v));
    if (v->type != ML_GGUF_BOOL) return wrong_type(g, key, "a BOOL", v);
    *out = (int)v->as.u64;
    return ML_OK;
}

int ml_gguf_get_string(const ml_gguf *g, const char *key, const char **out, size_t *out_length) {
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "a STRING", &v));
    if (v->type != ML_GGUF_STRING) return wrong_type(g, key, "a STRING", v);
    *out = v->as.str.text;
    if (out_length) *out_length = v->as.str.length;
    return ML_OK;
}

int ml_gguf_get_string_array(const ml_gguf *g, const char *key, const ml_gguf_string **out, size_t *out_count) {
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "an ARRAY of STRING", &v));
    if (v->type != ML_GGUF_ARRAY || v->as.array.type != ML_GGUF_STRING) return wrong_type(g, key, "an ARRAY of STRING", v);
    *out = v->as.array.strings;
    *out_count = v->as.array.count;
    return ML_OK;
}

int ml_gguf_array_int(const ml_gguf_value *array, size_t index, int64_t *out) {
    if (!array || array->type != ML_GGUF_ARRAY || index >= array->as.array.count) return -1;
    const uint8_t *p = array->as.array.raw;
    uint64_t u;
    switch (array->as.array.type) {
    case ML_GGUF_UINT8: *out = p[index]; return 0;
    case ML_GGUF_INT8: *out = (int8_t)p[index]; return 0;
    case ML_GGUF_UINT16: *out = (uint16_t)(p[2 * index] | (p[2 * index + 1] << 8)); return 0;
    case ML_GGUF_INT16: *out = (int16_t)(uint16_t)(p[2 * index] | (p[2 * index + 1] << 8)); return 0;
    case ML_GGUF_UINT32: case ML_GGUF_INT32: {
        const uint8_t *b = p + 4 * index;
        uint32_t w = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        *out = array->as.array.type == ML_GGUF_INT32 ? (int64_t)(int32_t)w : (int64_t)w;
        return 0;
    }
    case ML_GGUF_UINT64: case ML_GGUF_INT64: {
        const uint8_t *b = p + 8 * index;
        u = 0;
        for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
        if (array->as.array.type == ML_GGUF_UINT64 && u > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)u;
        return 0;
    }
    default: return -1;
    }
}

int ml_gguf_array_float(const ml_gguf_value *array, size_t index, double *out) {
    if (!array || array->type != ML_GGUF_ARRAY || index >= array->as.array.count) return -1;
    const uint8_t *p = array->as.array.raw;
    if (array->as.array.type == ML_GGUF_FLOAT32) {
        const uint8_t *b = p + 4 * index;
        uint32_t w = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        float f;
        memcpy(&f, &w, sizeof f);
        *out = f;
        return 0;
    }
    if (array->as.array.type == ML_GGUF_FLOAT64) {
        const uint8_t *b = p + 8 * index;
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
        memcpy(out, &u, sizeof *out);
        return 0;
    }
    if (array->as.array.type == ML_GGUF_UINT64) {
        const uint8_t *b = p + 8 * index;
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
        *out = (double)u;
        return 0;
    }
    int64_t integer;
    if (ml_gguf_array_int(array, index, &integer) != 0) return -1;
    *out = (double)integer;
    return 0;
}

int ml_gguf_get_int32_array(const ml_gguf *g, const char *key, int32_t **out, size_t *out_count) {
    *out = NULL;
    *out_count = 0;
    const ml_gguf_value *v;
    ML_TRY(lookup(g, key, "an ARRAY of integers", &v));
    if (v->type != ML_GGUF_ARRAY || !is_integer_type(v->as.array.type))
        return wrong_type(g, key, "an ARRAY of integers", v);
    size_t count = v->as.array.count;
    if (count == 0) return ML_OK;
    int32_t *values = malloc(count * sizeof *values); /* count <= file size */
    if (!values) return ml_set_error(ML_ERR_NOMEM, "%s: key \"%s\": out of memory for %zu values", g->source, key, count);
    for (size_t i = 0; i < count; i++) {
        int64_t value = 0;
        if (ml_gguf_array_int(v, i, &value) != 0 || value < INT32_MIN || value > INT32_MAX) {
            free(values);
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\"[%zu]: value does not fit a 32-bit integer", g->source,
                                key, i);
        }
        values[i] = (int32_t)value;
    }
    *out = values;
    *out_count = count;
    return ML_OK;
}
