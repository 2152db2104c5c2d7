/* GGUF reader: header, metadata and tensor infos (layout in formats/gguf.h, docs/GGUF.md).
 * The file is read through a cursor that never moves past the end of the image; every count is
 * compared with the bytes that remain (each element needs at least a known number of bytes)
 * before anything is allocated, so the memory used is bounded by a small multiple of the file
 * size whatever the header claims. */
#include "formats/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

/* Smallest encodings, used to bound counts by the bytes that remain:
 * a kv is a key (u64 length + at least 1 byte), a u32 type and a value of at least 1 byte;
 * a tensor info is a name (u64 + 1), u32 n_dims, at least one u64 ne, u32 type and u64 offset. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)
#define MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8)
#define MIN_STRING_BYTES 8
#define MIN_ARRAY_BYTES (4 + 8)
#define ARENA_BLOCK_BYTES (256 * 1024)

/* ---- arena: every string and nested array of one ml_gguf, freed at once ---- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used;
    size_t capacity;
    max_align_t data[];
} arena_block;

static void *arena_alloc(ml_gguf *g, size_t bytes) {
    const size_t align = _Alignof(max_align_t);
    if (bytes > SIZE_MAX / 2) return NULL;
    size_t rounded = bytes == 0 ? align : (bytes + align - 1) / align * align;
    arena_block *head = g->arena;
    if (head && head->capacity - head->used >= rounded) {
        void *p = (unsigned char *)head->data + head->used;
        head->used += rounded;
        return p;
    }
    size_t capacity = rounded > ARENA_BLOCK_BYTES ? rounded : ARENA_BLOCK_BYTES;
    arena_block *block = malloc(sizeof *block + capacity);
    if (!block) return NULL;
    block->used = rounded;
    block->capacity = capacity;
    if (head && rounded > ARENA_BLOCK_BYTES / 4) {
        /* A large allocation gets its own block behind the head, which stays the one in use. */
        block->next = head->next;
        head->next = block;
    } else {
        block->next = head;
        g->arena = block;
    }
    return block->data;
}

static void arena_free(void *arena) {
    arena_block *block = arena;
    while (block) {
        arena_block *next = block->next;
        free(block);
        block = next;
    }
}

/* ---- little-endian decoding ---- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static const char *const type_names[ML_GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

/* Bytes of a scalar value type; 0 for STRING and ARRAY. */
static size_t scalar_size(ml_gguf_type type) {
    switch (type) {
    case ML_GGUF_UINT8: case ML_GGUF_INT8: case ML_GGUF_BOOL: return 1;
    case ML_GGUF_UINT16: case ML_GGUF_INT16: return 2;
    case ML_GGUF_UINT32: case ML_GGUF_INT32: case ML_GGUF_FLOAT32: return 4;
    case ML_GGUF_UINT64: case ML_GGUF_INT64: case ML_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *ml_gguf_type_name(uint32_t type) { return type < ML_GGUF_TYPE_COUNT ? type_names[type] : "unknown"; }

/* ---- the parser: a cursor plus what it is reading, for messages ---- */

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
    const char *source;
    ml_gguf *g;
    char subject[160];                        /* "metadata entry 3", "tensor \"blk.0.attn_q.weight\"" */
    const char *key;                          /* the key whose value is being read, or NULL */
    size_t index[ML_GGUF_MAX_NESTING + 1];    /* element indices of the arrays being read */
    int depth;
} parser;

/* Records "source: subject[i][j]: message". */
static int fail(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, int code, const char *fmt, ...) {
    char where[320];
    size_t used;
    if (p->key)
        used = (size_t)snprintf(where, sizeof where, "key \"%.200s\"", p->key);
    else
        used = (size_t)snprintf(where, sizeof where, "%s", p->subject);
    for (int d = 0; d < p->depth && used < sizeof where; d++)
        used += (size_t)snprintf(where + used, sizeof where - used, "[%zu]", p->index[d]);
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return ml_set_error(code, "%s: %s: %s", p->source, where, message);
}

static size_t left(const parser *p) { return p->size - p->pos; }

static int take(parser *p, size_t n, const char *field, const uint8_t **out) {
    if (n > left(p)) {
        return fail(p, ML_ERR_FORMAT, "%s: the file ends at offset %zu, %zu bytes short (needs %zu bytes at offset %zu)",
                    field, p->size, n - left(p), n, p->pos);
    }
    *out = p->data + p->pos;
    p->pos += n;
    return ML_OK;
}

static int read_u32(parser *p, const char *field, uint32_t *out) {
    const uint8_t *bytes = NULL;
    ML_TRY(take(p, 4, field, &bytes));
    *out = le32(bytes);
    return ML_OK;
}

static int read_u64(parser *p, const char *field, uint64_t *out) {
    const uint8_t *bytes = NULL;
    ML_TRY(take(p, 8, field, &bytes));
    *out = le64(bytes);
    return ML_OK;
}

/* A string: u64 length (at most max_length when non-zero) and its bytes, copied NUL-terminated. */
static int read_string(parser *p, const char *field, uint64_t max_length, ml_gguf_string *out) {
    uint64_t length = 0;
    ML_TRY(read_u64(p, field, &length));
    if (length > left(p)) {
        return fail(p, ML_ERR_FORMAT, "%s: length %llu is beyond the end of the file (%zu bytes left at offset %zu)",
                    field, (unsigned long long)length, left(p), p->pos);
    }
    if (max_length && length > max_length) {
        return fail(p, ML_ERR_FORMAT, "%s: length %llu exceeds the limit of %llu bytes", field,
                    (unsigned long long)length, (unsigned long long)max_length);
    }
    const uint8_t *bytes = NULL;
    ML_TRY(take(p, (size_t)length, field, &bytes));
    char *text = arena_alloc(p->g, (size_t)length + 1);
    if (!text) return fail(p, ML_ERR_NOMEM, "%s: out of memory for %llu bytes", field, (unsigned long long)length);
    if (length) memcpy(text, bytes, (size_t)length);
    text[length] = '\0';
    out->text = text;
    out->length = (size_t)length;
    return ML_OK;
}

static int read_value(parser *p, ml_gguf_type type, ml_gguf_value *out);

static int read_value_type(parser *p, const char *field, ml_gguf_type *out) {
    uint32_t type = 0;
    ML_TRY(read_u32(p, field, &type));
    if (type >= ML_GGUF_TYPE_COUNT)
        return fail(p, ML_ERR_FORMAT, "unknown %s %u (expected 0..12: UINT8 .. FLOAT64)", field, type);
    *out = (ml_gguf_type)type;
    return ML_OK;
}

static int read_array(parser *p, ml_gguf_value *out) {
    ml_gguf_type element_type = ML_GGUF_UINT8;
    uint64_t count = 0;
    ML_TRY(read_value_type(p, "array element type", &element_type));
    ML_TRY(read_u64(p, "array length", &count));
    size_t element_min = element_type == ML_GGUF_STRING  ? MIN_STRING_BYTES
                         : element_type == ML_GGUF_ARRAY ? MIN_ARRAY_BYTES
                                                         : scalar_size(element_type);
    if (count > left(p) / element_min) {
        return fail(p, ML_ERR_FORMAT, "array of %llu %s elements needs at least %llu bytes, but only %zu remain",
                    (unsigned long long)count, type_names[element_type],
                    count > UINT64_MAX / element_min ? UINT64_MAX : (unsigned long long)(count * element_min), left(p));
    }
    out->as.array.type = element_type;
    out->as.array.count = (size_t)count;
    out->as.array.raw = NULL;
    out->as.array.strings = NULL;
    out->as.array.arrays = NULL;
    if (element_type != ML_GGUF_STRING && element_type != ML_GGUF_ARRAY) {
        const uint8_t *raw = NULL;
        ML_TRY(take(p, (size_t)count * element_min, "array elements", &raw));
        if (element_type == ML_GGUF_BOOL) {
            for (size_t i = 0; i < count; i++) {
                if (raw[i] > 1) {
                    p->index[p->depth++] = i;
                    return fail(p, ML_ERR_FORMAT, "BOOL value %u; expected 0 or 1", raw[i]);
                }
            }
        }
        out->as.array.raw = count ? raw : NULL;
        return ML_OK;
    }
    if (element_type == ML_GGUF_ARRAY && p->depth >= ML_GGUF_MAX_NESTING)
        return fail(p, ML_ERR_FORMAT, "arrays nested deeper than %d levels", ML_GGUF_MAX_NESTING);
    if (count == 0) return ML_OK;
    size_t element_bytes = element_type == ML_GGUF_STRING ? sizeof(ml_gguf_string) : sizeof(ml_gguf_value);
    void *elements = arena_alloc(p->g, (size_t)count * element_bytes); /* count <= size / 8 */
    if (!elements) return fail(p, ML_ERR_NOMEM, "out of memory for %llu array elements", (unsigned long long)count);
    int slot = p->depth++;
    for (size_t i = 0; i < count; i++) {
        p->index[slot] = i;
        if (element_type == ML_GGUF_STRING)
            ML_TRY(read_string(p, "string", 0, &((ml_gguf_string *)elements)[i]));
        else
            ML_TRY(read_value(p, ML_GGUF_ARRAY, &((ml_gguf_value *)elements)[i]));
    }
    p->depth--;
    if (element_type == ML_GGUF_STRING)
        out->as.array.strings = elements;
    else
        out->as.array.arrays = elements;
    return ML_OK;
}

static int read_value(parser *p, ml_gguf_type type, ml_gguf_value *out) {
    memset(out, 0, sizeof *out);
    out->type = type;
    if (type == ML_GGUF_STRING) return read_string(p, "string value", 0, &out->as.str);
    if (type == ML_GGUF_ARRAY) return read_array(p, out);
    const uint8_t *b = NULL;
    ML_TRY(take(p, scalar_size(type), type_names[type], &b));
    switch (type) {
    case ML_GGUF_UINT8: out->as.u64 = b[0]; break;
    case ML_GGUF_INT8: out->as.i64 = (int8_t)b[0]; break;
    case ML_GGUF_UINT16: out->as.u64 = le16(b); break;
    case ML_GGUF_INT16: out->as.i64 = (int16_t)le16(b); break;
    case ML_GGUF_UINT32: out->as.u64 = le32(b); break;
    case ML_GGUF_INT32: out->as.i64 = (int32_t)le32(b); break;
    case ML_GGUF_UINT64: out->as.u64 = le64(b); break;
    case ML_GGUF_INT64: out->as.i64 = (int64_t)le64(b); break;
    case ML_GGUF_FLOAT32: {
        uint32_t bits = le32(b);
        float f;
        memcpy(&f, &bits, sizeof f);
        out->as.f64 = f;
        break;
    }
    case ML_GGUF_FLOAT64: {
        uint64_t bits = le64(b);
        memcpy(&out->as.f64, &bits, sizeof out->as.f64);
        break;
    }
    case ML_GGUF_BOOL:
        if (b[0] > 1) return fail(p, ML_ERR_FORMAT, "BOOL value %u; expected 0 or 1", b[0]);
        out->as.u64 = b[0];
        break;
    default: break;
    }
    return ML_OK;
}

/* ---- header ---- */

static int read_header(parser *p, uint64_t *n_tensors, uint64_t *n_kvs) {
    const char *source = p->source;
    if (p->size < 4)
        return ml_set_error(ML_ERR_FORMAT, "%s: file is %zu bytes, too short to be a GGUF file (no magic)", source, p->size);
    const uint8_t *m = p->data;
    if (memcmp(m, "GGUF", 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = (m[i] >= 0x20 && m[i] < 0x7f) ? (char)m[i] : '.';
        shown[4] = '\0';
        return ml_set_error(ML_ERR_FORMAT, "%s: bad magic %02x %02x %02x %02x (\"%s\"); expected \"GGUF\": not a GGUF file",
                            source, m[0], m[1], m[2], m[3], shown);
    }
    if (p->size < 24) {
        return ml_set_error(ML_ERR_FORMAT, "%s: truncated header: the file is %zu bytes, a GGUF header needs 24 "
                            "(magic, version, tensor count, kv count)", source, p->size);
    }
    uint32_t version = le32(m + 4);
    uint32_t swapped = __builtin_bswap32(version);
    if (version == 1) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (it used 32-bit counts); "
                            "expected version 2 or 3: convert the model again with a current llama.cpp", source);
    }
    if (version != 2 && version != 3) {
        if (swapped >= 1 && swapped <= 3) {
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: big-endian GGUF (version field reads %u, byte-swapped %u) is not "
                                "supported; expected a little-endian file of version 2 or 3", source, version, swapped);
        }
        return ml_set_error(version == 0 ? ML_ERR_FORMAT : ML_ERR_UNSUPPORTED,
                            "%s: unsupported GGUF version %u; expected 2 or 3", source, version);
    }
    p->g->version = version;
    *n_tensors = le64(m + 8);
    *n_kvs = le64(m + 16);
    p->pos = 24;
    size_t rest = left(p);
    if (*n_tensors > rest / MIN_TENSOR_INFO_BYTES || *n_kvs > rest / MIN_KV_BYTES ||
        *n_tensors * MIN_TENSOR_INFO_BYTES + *n_kvs * MIN_KV_BYTES > rest) {
        return ml_set_error(ML_ERR_FORMAT, "%s: header claims %llu tensors and %llu metadata entries, which need at least "
                            "%d and %d bytes each, but only %zu bytes follow the header",
                            source, (unsigned long long)*n_tensors, (unsigned long long)*n_kvs,
                            MIN_TENSOR_INFO_BYTES, MIN_KV_BYTES, rest);
    }
    return ML_OK;
}

/* ---- metadata ---- */

typedef struct {
    const char *name;
    size_t index;
} named_index;

static int compare_named(const void *a, const void *b) {
    const named_index *x = a, *y = b;
    int order = strcmp(x->name, y->name);
    if (order) return order;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Sorts indices by name into *out; reports the first duplicate through *duplicate (or -1s). */
static int sort_names(named_index *scratch, size_t count, size_t **out, size_t dup[2]) {
    dup[0] = dup[1] = (size_t)-1;
    *out = malloc((count ? count : 1) * sizeof **out);
    if (!*out) return -1;
    qsort(scratch, count, sizeof *scratch, compare_named);
    for (size_t i = 0; i < count; i++) {
        (*out)[i] = scratch[i].index;
        if (i > 0 && dup[0] == (size_t)-1 && strcmp(scratch[i - 1].name, scratch[i].name) == 0) {
            dup[0] = scratch[i - 1].index;
            dup[1] = scratch[i].index;
        }
    }
    return 0;
}

static int read_metadata(parser *p) {
    ml_gguf *g = p->g;
    for (size_t i = 0; i < g->n_kvs; i++) {
        ml_gguf_kv *kv = &g->kvs[i];
        snprintf(p->subject, sizeof p->subject, "metadata entry %zu", i);
        p->key = NULL;
        ml_gguf_string key = {NULL, 0};
        ML_TRY(read_string(p, "key", ML_GGUF_MAX_KEY, &key));
        if (key.length == 0) return fail(p, ML_ERR_FORMAT, "empty key");
        if (memchr(key.text, '\0', key.length)) return fail(p, ML_ERR_FORMAT, "key \"%s\" holds a NUL byte", key.text);
        kv->key = key.text;
        p->key = key.text;
        ml_gguf_type type = ML_GGUF_UINT8;
        ML_TRY(read_value_type(p, "value type", &type));
        ML_TRY(read_value(p, type, &kv->value));
    }
    p->key = NULL;
    named_index *scratch = malloc((g->n_kvs ? g->n_kvs : 1) * sizeof *scratch);
    if (!scratch) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", p->source);
    for (size_t i = 0; i < g->n_kvs; i++) scratch[i] = (named_index){g->kvs[i].key, i};
    size_t dup[2];
    int sorted = sort_names(scratch, g->n_kvs, &g->kv_order, dup);
    free(scratch);
    if (sorted != 0) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", p->source);
    if (dup[0] != (size_t)-1) {
        return ml_set_error(ML_ERR_FORMAT, "%s: key \"%s\" appears twice (metadata entries %zu and %zu)", p->source,
                            g->kvs[dup[0]].key, dup[0], dup[1]);
    }
    g->alignment = ML_GGUF_DEFAULT_ALIGNMENT;
    const ml_gguf_value *alignment = ml_gguf_find(g, "general.alignment");
    if (alignment) {
        if (alignment->type != ML_GGUF_UINT32) {
            return ml_set_error(ML_ERR_FORMAT, "%s: key \"general.alignment\": expected a UINT32, found %s", p->source,
                                type_names[alignment->type]);
        }
        uint64_t value = alignment->as.u64;
        if (value == 0 || (value & (value - 1)) != 0) {
            return ml_set_error(ML_ERR_FORMAT, "%s: key \"general.alignment\": expected a power of two, found %llu",
                                p->source, (unsigned long long)value);
        }
        g->alignment = (uint32_t)value;
    }
    return ML_OK;
}

/* ---- tensor infos ---- */

static int read_tensor_info(parser *p, size_t i, ml_gguf_tensor *t) {
    snprintf(p->subject, sizeof p->subject, "tensor %zu", i);
    ml_gguf_string name = {NULL, 0};
    ML_TRY(read_string(p, "name", ML_GGUF_MAX_TENSOR_NAME, &name));
    if (name.length == 0) return fail(p, ML_ERR_FORMAT, "empty tensor name");
    if (memchr(name.text, '\0', name.length)) return fail(p, ML_ERR_FORMAT, "tensor name holds a NUL byte");
    t->name = name.text;
    snprintf(p->subject, sizeof p->subject, "tensor \"%s\"", name.text);

    uint32_t n_dims = 0;
    ML_TRY(read_u32(p, "n_dims", &n_dims));
    if (n_dims < 1 || n_dims > ML_GGUF_MAX_DIMS)
        return fail(p, ML_ERR_FORMAT, "n_dims is %u; expected 1 to %d", n_dims, ML_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t elements = 1;
    int overflow = 0;
    for (int d = 0; d < ML_GGUF_MAX_DIMS; d++) {
        uint64_t extent = 1;
        if (d < t->n_dims) {
            char field[16];
            snprintf(field, sizeof field, "ne[%d]", d);
            ML_TRY(read_u64(p, field, &extent));
            if (extent > (uint64_t)INT64_MAX)
                return fail(p, ML_ERR_FORMAT, "ne[%d] = %llu exceeds INT64_MAX", d, (unsigned long long)extent);
        }
        t->ne[d] = (int64_t)extent;
        if (extent != 0 && elements > (uint64_t)INT64_MAX / extent) overflow = 1;
        elements *= extent; /* only used when no overflow was seen */
    }
    if (overflow || elements > SIZE_MAX) {
        return fail(p, ML_ERR_FORMAT, "shape [%lld, %lld, %lld, %lld]: the element count overflows", (long long)t->ne[0],
                    (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    }
    t->n_elements = (size_t)elements;
    ML_TRY(read_u32(p, "type", &t->type));
    ML_TRY(read_u64(p, "offset", &t->offset));
    const ml_ggml_type_traits *traits = ml_ggml_traits(t->type);
    t->type_known = traits != NULL;
    if (traits) {
        if ((uint64_t)t->ne[0] % traits->block_size != 0) {
            return fail(p, ML_ERR_FORMAT, "ne[0] = %lld is not a multiple of the %s block size %u", (long long)t->ne[0],
                        traits->name, traits->block_size);
        }
        if (ml_mul_size(t->n_elements / traits->block_size, traits->type_size, &t->n_bytes) != 0)
            return fail(p, ML_ERR_FORMAT, "the byte size of %zu %s elements overflows", t->n_elements, traits->name);
    }
    if (t->offset % p->g->alignment != 0) {
        return fail(p, ML_ERR_FORMAT, "offset %llu is not a multiple of the alignment %u (misaligned)",
                    (unsigned long long)t->offset, p->g->alignment);
    }
    return ML_OK;
}

typedef struct {
    uint64_t begin, end;
    size_t index;
} extent;

static int compare_extents(const void *a, const void *b) {
    const extent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Every tensor inside the data section, and no two sharing a byte. */
static int check_tensor_ranges(parser *p) {
    ml_gguf *g = p->g;
    uint64_t data_size = g->data_offset <= g->image_size ? g->image_size - g->data_offset : 0;
    if (g->n_tensors > 0 && g->data_offset > g->image_size) {
        return ml_set_error(ML_ERR_FORMAT, "%s: the data section would start at offset %zu, beyond the end of the file "
                            "(%zu bytes): the file is truncated", p->source, g->data_offset, g->image_size);
    }
    extent *extents = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *extents);
    if (!extents) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", p->source);
    size_t n_extents = 0;
    int status = ML_OK;
    for (size_t i = 0; i < g->n_tensors && status == ML_OK; i++) {
        ml_gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->n_bytes > data_size - t->offset) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\": bytes [%llu, %llu) are beyond the end of the data "
                                  "section (%llu bytes from file offset %zu): offset out of range",
                                  p->source, t->name, (unsigned long long)t->offset,
                                  (unsigned long long)(t->offset > UINT64_MAX - t->n_bytes ? UINT64_MAX
                                                                                            : t->offset + t->n_bytes),
                                  (unsigned long long)data_size, g->data_offset);
            break;
        }
        if (t->type_known && t->n_bytes > 0) {
            t->data = g->image + g->data_offset + t->offset;
            extents[n_extents++] = (extent){t->offset, t->offset + t->n_bytes, i};
        }
    }
    if (status == ML_OK && n_extents > 1) {
        qsort(extents, n_extents, sizeof *extents, compare_extents);
        const extent *furthest = &extents[0];
        for (size_t i = 1; i < n_extents; i++) {
            if (extents[i].begin < furthest->end) {
                const ml_gguf_tensor *a = &g->tensors[furthest->index], *b = &g->tensors[extents[i].index];
                status = ml_set_error(ML_ERR_FORMAT, "%s: tensor \"%s\" (bytes [%llu, %llu)) overlaps tensor \"%s\" "
                                      "(bytes [%llu, %llu)) in the data section", p->source, b->name,
                                      (unsigned long long)extents[i].begin, (unsigned long long)extents[i].end,
                                      a->name, (unsigned long long)furthest->begin, (unsigned long long)furthest->end);
                break;
            }
            if (extents[i].end > furthest->end) furthest = &extents[i];
        }
    }
    free(extents);
    return status;
}

static int read_tensor_infos(parser *p) {
    ml_gguf *g = p->g;
    for (size_t i = 0; i < g->n_tensors; i++) ML_TRY(read_tensor_info(p, i, &g->tensors[i]));
    named_index *scratch = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *scratch);
    if (!scratch) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", p->source);
    for (size_t i = 0; i < g->n_tensors; i++) scratch[i] = (named_index){g->tensors[i].name, i};
    size_t dup[2];
    int sorted = sort_names(scratch, g->n_tensors, &g->tensor_order, dup);
    free(scratch);
    if (sorted != 0) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", p->source);
    if (dup[0] != (size_t)-1) {
        return ml_set_error(ML_ERR_FORMAT, "%s: tensor name \"%s\" appears twice (tensors %zu and %zu)", p->source,
                            g->tensors[dup[0]].name, dup[0], dup[1]);
    }
    /* The data section starts at the next multiple of the alignment after the infos. */
    size_t pad = (g->alignment - p->pos % g->alignment) % g->alignment;
    g->data_offset = p->pos + pad; /* pos <= size, alignment <= 2^31: no overflow */
    return check_tensor_ranges(p);
}

int ml_gguf_parse(const uint8_t *data, size_t size, const char *source, ml_gguf *out) {
    if (!source) source = "GGUF";
    if (!out) return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_parse: out is NULL", source);
    memset(out, 0, sizeof *out);
    if (!data && size) return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_parse: data is NULL", source);
    ml_gguf g;
    memset(&g, 0, sizeof g);
    g.source = strdup(source);
    if (!g.source) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
    g.image = data;
    g.image_size = size;
    parser p;
    memset(&p, 0, sizeof p);
    p.data = data;
    p.size = size;
    p.source = g.source;
    p.g = &g;
    uint64_t n_tensors = 0, n_kvs = 0;
    int status = read_header(&p, &n_tensors, &n_kvs);
    if (status == ML_OK) {
        /* Bounded by the header check: at most size / 14 entries of each. */
        g.n_kvs = (size_t)n_kvs;
        g.n_tensors = (size_t)n_tensors;
        g.kvs = calloc(g.n_kvs ? g.n_kvs : 1, sizeof *g.kvs);
        g.tensors = calloc(g.n_tensors ? g.n_tensors : 1, sizeof *g.tensors);
        if (!g.kvs || !g.tensors) status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory for the header", source);
    }
    if (status == ML_OK) status = read_metadata(&p);
    if (status == ML_OK) status = read_tensor_infos(&p);
    if (status != ML_OK) {
        ml_gguf_close(&g);
        return status;
    }
    *out = g;
    return ML_OK;
}

int ml_gguf_open(const char *path, ml_gguf *out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_gguf_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return ml_set_error(ML_ERR_ARG, "ml_gguf_open: path is NULL");
    ml_mapped_file file;
    ML_TRY(ml_mapped_file_open(path, &file));
    int status = ml_gguf_parse(file.data, file.size, path, out);
    if (status != ML_OK) {
        ml_mapped_file_close(&file);
        return status;
    }
    out->file = file;
    return ML_OK;
}

void ml_gguf_close(ml_gguf *g) {
    if (!g) return;
    arena_free(g->arena);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_order);
    free(g->tensor_order);
    free(g->source);
    ml_mapped_file_close(&g->file);
    memset(g, 0, sizeof *g);
}
