/* safetensors reader: an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
 * data region that the offsets are relative to. Every field is checked against the file before a
 * view is handed out; views point into the caller's bytes (the mapping), never copies. The weight
 * set itself (sort, find, close) is formats/weight_set.c. */
#include "formats/safetensors.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "formats/json_util.h"

/* The reference implementation (huggingface/safetensors) refuses headers above 100 MB. */
#define ML_SAFETENSORS_MAX_HEADER 100000000ull

/* A view plus its offsets in the data region, kept while the file's entries are cross-checked. */
typedef struct {
    ml_tensor_view view;
    uint64_t begin;   /* data_offsets[0] */
    uint64_t end;     /* data_offsets[1] */
} parsed_tensor;

/* safetensors dtypes this build has no element type for: valid files, not malformed ones. */
static int is_known_unsupported_dtype(const char *name) {
    static const char *const names[] = {"F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "E8M0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0) return 1;
    }
    return 0;
}

static int entry_type_error(const char *source, const char *name, const char *field, const char *expected,
                            const json_t *value) {
    char found[96];
    ml_json_describe(value, found, sizeof found);
    return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"%s\": expected %s, found %s", source, name, field,
                        expected, found);
}

static int parse_dtype(const char *source, const char *name, const json_t *entry, ml_dtype *out) {
    const json_t *dtype = json_object_get(entry, "dtype");
    if (!dtype) return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": missing \"dtype\"", source, name);
    if (!json_is_string(dtype)) return entry_type_error(source, name, "dtype", "a dtype string such as \"BF16\"", dtype);
    const char *text = json_string_value(dtype);
    if (ml_dtype_from_safetensors(text, out) == 0) return ML_OK;
    if (is_known_unsupported_dtype(text)) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype \"%s\" is not supported", source, name, text);
    }
    return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.40s\" (expected F32, F16, BF16, F64, I8..U64, BOOL, F8_E4M3 or F8_E5M2)",
                        source, name, text);
}

/* Fills n_dims/shape and returns the element count through *n_elements (overflow checked). */
static int parse_shape(const char *source, const char *name, const json_t *entry, ml_tensor_view *view,
                       size_t *n_elements) {
    const json_t *shape = json_object_get(entry, "shape");
    if (!shape) return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": missing \"shape\"", source, name);
    if (!json_is_array(shape)) return entry_type_error(source, name, "shape", "a list of non-negative integers", shape);
    size_t rank = json_array_size(shape);
    if (rank > ML_MAX_DIMS) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"shape\": expected at most %d dimensions, found %zu",
                            source, name, ML_MAX_DIMS, rank);
    }
    size_t count = 1;
    for (size_t i = 0; i < rank; i++) {
        const json_t *dim = json_array_get(shape, i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0) {
            char field[32];
            snprintf(field, sizeof field, "shape[%zu]", i);
            return entry_type_error(source, name, field, "a non-negative integer", dim);
        }
        json_int_t extent = json_integer_value(dim);
        view->shape[i] = (int64_t)extent;
        if (ml_mul_size(count, (size_t)extent, &count) != 0) {
            return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"shape\": the element count overflows (dimension %zu is %lld)",
                                source, name, i, (long long)extent);
        }
    }
    view->n_dims = (int)rank;
    *n_elements = count;
    return ML_OK;
}

static int parse_offsets(const char *source, const char *name, const json_t *entry, uint64_t region_size,
                         parsed_tensor *out) {
    const json_t *offsets = json_object_get(entry, "data_offsets");
    if (!offsets) return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": missing \"data_offsets\"", source, name);
    const json_t *begin = json_array_get(offsets, 0);
    const json_t *end = json_array_get(offsets, 1);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 || !json_is_integer(begin) ||
        !json_is_integer(end) || json_integer_value(begin) < 0 || json_integer_value(end) < 0) {
        return entry_type_error(source, name, "data_offsets", "two non-negative integers [begin, end]", offsets);
    }
    out->begin = (uint64_t)json_integer_value(begin);
    out->end = (uint64_t)json_integer_value(end);
    if (out->begin > out->end) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\": begin %llu is after end %llu", source,
                            name, (unsigned long long)out->begin, (unsigned long long)out->end);
    }
    if (out->end > region_size) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\": end %llu is beyond the data region of %llu bytes",
                            source, name, (unsigned long long)out->end, (unsigned long long)region_size);
    }
    return ML_OK;
}

static int parse_entry(const char *source, const char *name, const json_t *entry, const uint8_t *region,
                       uint64_t region_size, int file_index, parsed_tensor *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(entry)) {
        char found[96];
        ml_json_describe(entry, found, sizeof found);
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": expected an object with dtype, shape and data_offsets, found %s",
                            source, name, found);
    }
    ml_tensor_view *view = &out->view;
    size_t n_elements = 0, n_bytes = 0;
    ML_TRY(parse_dtype(source, name, entry, &view->dtype));
    ML_TRY(parse_shape(source, name, entry, view, &n_elements));
    if (ml_mul_size(n_elements, ml_dtype_size(view->dtype), &n_bytes) != 0) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": byte size of %zu elements overflows", source, name,
                            n_elements);
    }
    ML_TRY(parse_offsets(source, name, entry, region_size, out));
    if (out->end - out->begin != (uint64_t)n_bytes) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" [%llu, %llu] span %llu bytes, but shape and dtype %s need %zu",
                            source, name, (unsigned long long)out->begin, (unsigned long long)out->end,
                            (unsigned long long)(out->end - out->begin), ml_dtype_name(view->dtype), n_bytes);
    }
    view->n_bytes = n_bytes;
    view->data = n_bytes ? region + out->begin : NULL;
    view->file_index = file_index;
    view->name = strdup(name);
    if (!view->name) return ml_set_error(ML_ERR_NOMEM, "%s: tensor \"%s\": out of memory", source, name);
    return ML_OK;
}

static int parse_metadata(const char *source, const json_t *metadata) {
    if (!json_is_object(metadata)) {
        char found[96];
        ml_json_describe(metadata, found, sizeof found);
        return ml_set_error(ML_ERR_FORMAT, "%s: \"__metadata__\": expected an object of strings, found %s", source, found);
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)metadata, key, value) {
        if (!json_is_string(value)) {
            char found[96];
            ml_json_describe(value, found, sizeof found);
            return ml_set_error(ML_ERR_FORMAT, "%s: \"__metadata__\": key \"%s\": expected a string, found %s", source,
                                key, found);
        }
    }
    return ML_OK;
}

static int compare_by_offsets(const void *a, const void *b) {
    const parsed_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->view.name, y->view.name);
}

/* Sorting by begin, every non-empty tensor must start at or after the furthest end seen so far.
 * Zero-size tensors occupy no bytes and may share any offset. */
static int check_overlaps(const char *source, parsed_tensor *parsed, size_t count) {
    if (count < 2) return ML_OK;
    qsort(parsed, count, sizeof *parsed, compare_by_offsets);
    const parsed_tensor *furthest = NULL;
    for (size_t i = 0; i < count; i++) {
        const parsed_tensor *tensor = &parsed[i];
        if (tensor->begin == tensor->end) continue;
        if (furthest && tensor->begin < furthest->end) {
            return ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\" (bytes [%llu, %llu)) overlaps tensor \"%s\" (bytes [%llu, %llu))",
                                source, tensor->view.name, (unsigned long long)tensor->begin,
                                (unsigned long long)tensor->end, furthest->view.name,
                                (unsigned long long)furthest->begin, (unsigned long long)furthest->end);
        }
        if (!furthest || tensor->end > furthest->end) furthest = tensor;
    }
    return ML_OK;
}

static int read_header(const uint8_t *data, size_t size, const char *source, json_t **out_root,
                       uint64_t *out_header_length) {
    *out_root = NULL;
    if (size < 8) {
        return ml_set_error(ML_ERR_FORMAT, "%s: file is %zu bytes; expected at least 8 (the header length)", source, size);
    }
    uint64_t header_length = 0;
    for (int i = 0; i < 8; i++) header_length |= (uint64_t)data[i] << (8 * i);
    if (header_length > (uint64_t)(size - 8)) {
        return ml_set_error(ML_ERR_FORMAT, "%s: header length %llu is beyond the file (only %zu bytes follow the length field)",
                            source, (unsigned long long)header_length, size - 8);
    }
    if (header_length > ML_SAFETENSORS_MAX_HEADER) {
        return ml_set_error(ML_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", source,
                            (unsigned long long)header_length, ML_SAFETENSORS_MAX_HEADER);
    }
    json_t *root;
    ML_TRY(ml_json_load((const char *)data + 8, (size_t)header_length, source, "safetensors header",
                        ML_ERR_FORMAT, &root));
    if (!json_is_object(root)) {
        char found[96];
        ml_json_describe(root, found, sizeof found);
        json_decref(root);
        return ml_set_error(ML_ERR_FORMAT, "%s: safetensors header: expected a JSON object, found %s", source, found);
    }
    *out_root = root;
    *out_header_length = header_length;
    return ML_OK;
}

int ml_safetensors_parse(const uint8_t *data, size_t size, const char *source, int file_index,
                         ml_tensor_view **tensors, int *n_tensors) {
    if (!source) source = "safetensors";
    if (!tensors || !n_tensors || *n_tensors < 0 || (size && !data)) {
        return ml_set_error(ML_ERR_ARG, "%s: ml_safetensors_parse: invalid arguments", source);
    }
    json_t *root;
    uint64_t header_length = 0;
    ML_TRY(read_header(data, size, source, &root, &header_length));
    const uint8_t *region = data + 8 + header_length;
    uint64_t region_size = (uint64_t)size - 8 - header_length;

    size_t capacity = json_object_size(root);
    parsed_tensor *parsed = calloc(capacity ? capacity : 1, sizeof *parsed);
    size_t count = 0;
    int status = parsed ? ML_OK : ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %zu tensors", source, capacity);
    const char *name;
    json_t *entry;
    json_object_foreach(root, name, entry) {
        if (status != ML_OK) break;
        if (strcmp(name, "__metadata__") == 0) {
            status = parse_metadata(source, entry);
            continue;
        }
        status = parse_entry(source, name, entry, region, region_size, file_index, &parsed[count]);
        if (status == ML_OK) count++;
    }
    if (status == ML_OK) status = check_overlaps(source, parsed, count);
    if (status == ML_OK && count > (size_t)(INT_MAX - *n_tensors)) {
        status = ml_set_error(ML_ERR_FORMAT, "%s: too many tensors (%zu)", source, count);
    }
    if (status == ML_OK && count > 0) {
        size_t total = (size_t)*n_tensors + count;
        ml_tensor_view *grown = realloc(*tensors, total * sizeof *grown);
        if (!grown) {
            status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory for %zu tensor views", source, total);
        } else {
            for (size_t i = 0; i < count; i++) grown[*n_tensors + (int)i] = parsed[i].view;
            *tensors = grown;
            *n_tensors = (int)total;
            count = 0; /* the names now belong to *tensors */
        }
    }
    for (size_t i = 0; i < count; i++) free(parsed[i].view.name);
    free(parsed);
    json_decref(root);
    return status;
}

int ml_safetensors_open_file(const char *path, ml_weight_set *out) {
    memset(out, 0, sizeof *out);
    if (!path) return ml_set_error(ML_ERR_ARG, "ml_safetensors_open_file: path is NULL");
    out->files = calloc(1, sizeof *out->files);
    if (!out->files) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    int status = ml_mapped_file_open(path, &out->files[0]);
    if (status == ML_OK) {
        out->n_files = 1;
        status = ml_safetensors_parse(out->files[0].data, out->files[0].size, path, 0, &out->tensors,
                                      &out->n_tensors);
    }
    if (status != ML_OK) {
        ml_weight_set_close(out);
        return status;
    }
    ml_weight_set_sort(out);
    return ML_OK;
}
