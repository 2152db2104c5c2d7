/* Jinja values: the arena they live in, Python's truthiness, ==, str(), repr() and HF's tojson
 * (json.dumps(x, ensure_ascii=False, ...)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

/* ---- arena -------------------------------------------------------------------------------- */

struct jj_block {
    jj_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void *jj_alloc(jj_arena *arena, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if (arena->limit_bytes && (size > arena->limit_bytes || arena->used_bytes > arena->limit_bytes - size)) {
        arena->over_limit = 1;
        return NULL;
    }
    jj_block *block = arena->blocks;
    if (!block || block->size - block->used < size) {
        size_t block_size = size > 65536 ? size : 65536;
        block = malloc(sizeof *block + block_size);
        if (!block) return NULL;
        block->size = block_size;
        block->used = 0;
        block->next = arena->blocks;
        arena->blocks = block;
    }
    void *p = block->data + block->used;
    block->used += size;
    arena->used_bytes += size;
    memset(p, 0, size);
    return p;
}

char *jj_strndup(jj_arena *arena, const char *text, size_t length) {
    char *copy = jj_alloc(arena, length + 1);
    if (copy && length) memcpy(copy, text, length);
    return copy;
}

void jj_arena_free(jj_arena *arena) {
    for (jj_block *b = arena->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    arena->blocks = NULL;
    arena->used_bytes = 0;
}

/* ---- constructors and containers ---------------------------------------------------------- */

jj_value jj_undefined(const char *name, size_t length) {
    jj_value v = {.kind = JJ_UNDEFINED};
    v.as.string.data = name;
    v.as.string.length = length;
    return v;
}
jj_value jj_none(void) { return (jj_value){.kind = JJ_NONE}; }
jj_value jj_bool(int b) { return (jj_value){.kind = JJ_BOOL, .as.boolean = b != 0}; }
jj_value jj_int(int64_t i) { return (jj_value){.kind = JJ_INT, .as.integer = i}; }
jj_value jj_float(double f) { return (jj_value){.kind = JJ_FLOAT, .as.number = f}; }
jj_value jj_string(const char *data, size_t length) {
    jj_value v = {.kind = JJ_STRING};
    v.as.string.data = data ? data : "";
    v.as.string.length = length;
    return v;
}

jj_list *jj_list_new(jj_arena *arena, size_t n) {
    if (n > ((size_t)1 << 40) / sizeof(jj_value)) return NULL;
    jj_list *list = jj_alloc(arena, sizeof *list);
    if (!list) return NULL;
    list->n = n;
    if (n && !(list->items = jj_alloc(arena, n * sizeof(jj_value)))) return NULL;
    return list;
}

jj_dict *jj_dict_new(jj_arena *arena, size_t capacity) {
    jj_dict *dict = jj_alloc(arena, sizeof *dict);
    if (!dict) return NULL;
    if (capacity < 4) capacity = 4;
    if (capacity > ((size_t)1 << 32)) return NULL;
    dict->keys = jj_alloc(arena, capacity * sizeof(jj_value));
    dict->values = jj_alloc(arena, capacity * sizeof(jj_value));
    if (!dict->keys || !dict->values) return NULL;
    dict->capacity = capacity;
    return dict;
}

jj_value *jj_dict_get(const jj_dict *dict, jj_value key) {
    for (size_t i = 0; i < dict->n; i++) {
        if (jj_equal(dict->keys[i], key)) return &dict->values[i];
    }
    return NULL;
}

jj_value *jj_dict_get_cstr(const jj_dict *dict, const char *key) {
    return jj_dict_get(dict, jj_string(key, strlen(key)));
}

int jj_dict_set(jj_arena *arena, jj_dict *dict, jj_value key, jj_value value) {
    jj_value *slot = jj_dict_get(dict, key);
    if (slot) {
        *slot = value;
        return 1;
    }
    if (dict->n == dict->capacity) {
        size_t capacity = dict->capacity * 2;
        jj_value *keys = jj_alloc(arena, capacity * sizeof(jj_value));
        jj_value *values = jj_alloc(arena, capacity * sizeof(jj_value));
        if (!keys || !values) return 0;
        memcpy(keys, dict->keys, dict->n * sizeof(jj_value));
        memcpy(values, dict->values, dict->n * sizeof(jj_value));
        dict->keys = keys;
        dict->values = values;
        dict->capacity = capacity;
    }
    dict->keys[dict->n] = key;
    dict->values[dict->n] = value;
    dict->n++;
    return 1;
}

/* ---- Python semantics --------------------------------------------------------------------- */

int jj_truthy(jj_value v) {
    switch (v.kind) {
    case JJ_UNDEFINED:
    case JJ_NONE: return 0;
    case JJ_BOOL: return v.as.boolean;
    case JJ_INT: return v.as.integer != 0;
    case JJ_FLOAT: return v.as.number != 0.0;
    case JJ_STRING: return v.as.string.length > 0;
    case JJ_LIST: return v.as.list->n > 0;
    case JJ_DICT: return v.as.dict->n > 0;
    default: return 1;
    }
}

static int is_number(jj_value v) { return v.kind == JJ_BOOL || v.kind == JJ_INT || v.kind == JJ_FLOAT; }
static double as_double(jj_value v) {
    return v.kind == JJ_FLOAT ? v.as.number : v.kind == JJ_INT ? (double)v.as.integer : (double)v.as.boolean;
}

int jj_equal(jj_value a, jj_value b) {
    if (is_number(a) && is_number(b)) {
        if (a.kind != JJ_FLOAT && b.kind != JJ_FLOAT) {
            int64_t x = a.kind == JJ_INT ? a.as.integer : a.as.boolean;
            int64_t y = b.kind == JJ_INT ? b.as.integer : b.as.boolean;
            return x == y;
        }
        return as_double(a) == as_double(b);
    }
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case JJ_UNDEFINED:
    case JJ_NONE: return 1;
    case JJ_STRING:
        return a.as.string.length == b.as.string.length &&
               memcmp(a.as.string.data, b.as.string.data, a.as.string.length) == 0;
    case JJ_LIST:
        if (a.as.list->n != b.as.list->n) return 0;
        for (size_t i = 0; i < a.as.list->n; i++) {
            if (!jj_equal(a.as.list->items[i], b.as.list->items[i])) return 0;
        }
        return 1;
    case JJ_DICT:
        if (a.as.dict->n != b.as.dict->n) return 0;
        for (size_t i = 0; i < a.as.dict->n; i++) {
            jj_value *other = jj_dict_get(b.as.dict, a.as.dict->keys[i]);
            if (!other || !jj_equal(a.as.dict->values[i], *other)) return 0;
        }
        return 1;
    case JJ_NAMESPACE: return a.as.dict == b.as.dict;
    case JJ_FUNCTION: return a.as.function == b.as.function;
    case JJ_MACRO: return a.as.macro == b.as.macro;
    default: return 0;
    }
}

const char *jj_kind_name(jj_kind kind) {
    static const char *const names[] = {"undefined", "none", "bool", "int", "float", "str",
                                        "list", "dict", "namespace", "function", "macro"};
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "?";
}

size_t jj_utf8_count(const char *text, size_t length) {
    size_t count = 0;
    for (size_t i = 0; i < length; i++) count += ((unsigned char)text[i] & 0xC0) != 0x80;
    return count;
}

size_t jj_utf8_offset(const char *text, size_t length, size_t cp) {
    size_t i = 0;
    while (i < length && cp > 0) {
        i++;
        while (i < length && ((unsigned char)text[i] & 0xC0) == 0x80) i++;
        cp--;
    }
    return i;
}

/* ---- text forms --------------------------------------------------------------------------- */

int jj_buf_put(jj_buf *buf, const char *text, size_t length) {
    if (buf->limit && (length > buf->limit || buf->n > buf->limit - length)) {
        buf->over_limit = 1;
        return 0;
    }
    if (buf->n + length + 1 > buf->capacity) {
        size_t capacity = buf->capacity ? buf->capacity : 256;
        while (capacity < buf->n + length + 1) capacity *= 2;
        char *data = realloc(buf->data, capacity);
        if (!data) return 0;
        buf->data = data;
        buf->capacity = capacity;
    }
    if (length) memcpy(buf->data + buf->n, text, length);
    buf->n += length;
    buf->data[buf->n] = '\0';
    return 1;
}

static int put_cstr(jj_buf *buf, const char *text) { return jj_buf_put(buf, text, strlen(text)); }

/* Python's float repr: the shortest digits that read back as the same double, in fixed notation
 * for exponents -4..15 and as d.ddde+XX otherwise. */
static int put_float(jj_buf *buf, double x) {
    if (isnan(x)) return put_cstr(buf, "nan");
    if (isinf(x)) return put_cstr(buf, x < 0 ? "-inf" : "inf");
    char digits[40];
    int precision = 1;
    for (; precision <= 17; precision++) {
        snprintf(digits, sizeof digits, "%.*e", precision - 1, x);
        if (strtod(digits, NULL) == x) break;
    }
    /* digits: [-]d[.ddd]e[+-]XX */
    const char *p = digits;
    char sign[2] = {0};
    if (*p == '-') sign[0] = *p++;
    char mantissa[24];
    size_t n = 0;
    for (; *p && *p != 'e'; p++) {
        if (*p != '.' && n < sizeof mantissa - 1) mantissa[n++] = *p;
    }
    mantissa[n] = '\0';
    int exponent = atoi(p + 1);
    char out[64];
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            snprintf(out, sizeof out, "%s0.%.*s%s", sign, -exponent - 1, "0000", mantissa);
        } else if ((size_t)exponent + 1 >= n) {
            snprintf(out, sizeof out, "%s%s%.*s.0", sign, mantissa, (int)(exponent + 1 - (int)n), "0000000000000000");
        } else {
            snprintf(out, sizeof out, "%s%.*s.%s", sign, exponent + 1, mantissa, mantissa + exponent + 1);
        }
    } else {
        snprintf(out, sizeof out, "%s%c%s%s%se%c%02d", sign, mantissa[0], n > 1 ? "." : "", n > 1 ? mantissa + 1 : "",
                 "", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    }
    return put_cstr(buf, out);
}

static int put_int(jj_buf *buf, int64_t i) {
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)i);
    return put_cstr(buf, text);
}

static int put_repr_string(jj_buf *buf, const char *s, size_t n) {
    int has_single = memchr(s, '\'', n) != NULL, has_double = memchr(s, '"', n) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    if (!jj_buf_put(buf, &quote, 1)) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char escape[8];
        const char *e = NULL;
        if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == (unsigned char)quote) e = quote == '\'' ? "\\'" : "\\\"";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(escape, sizeof escape, "\\x%02x", c);
            e = escape;
        }
        if (e ? !put_cstr(buf, e) : !jj_buf_put(buf, (const char *)&s[i], 1)) return 0;
    }
    return jj_buf_put(buf, &quote, 1);
}

int jj_repr(jj_buf *buf, jj_value v) {
    switch (v.kind) {
    case JJ_STRING: return put_repr_string(buf, v.as.string.data, v.as.string.length);
    case JJ_LIST:
        if (!put_cstr(buf, "[")) return 0;
        for (size_t i = 0; i < v.as.list->n; i++) {
            if ((i && !put_cstr(buf, ", ")) || !jj_repr(buf, v.as.list->items[i])) return 0;
        }
        return put_cstr(buf, "]");
    case JJ_DICT:
        if (!put_cstr(buf, "{")) return 0;
        for (size_t i = 0; i < v.as.dict->n; i++) {
            if ((i && !put_cstr(buf, ", ")) || !jj_repr(buf, v.as.dict->keys[i]) || !put_cstr(buf, ": ") ||
                !jj_repr(buf, v.as.dict->values[i]))
                return 0;
        }
        return put_cstr(buf, "}");
    default: return jj_str(buf, v);
    }
}

int jj_str(jj_buf *buf, jj_value v) {
    switch (v.kind) {
    case JJ_UNDEFINED: return 1;
    case JJ_NONE: return put_cstr(buf, "None");
    case JJ_BOOL: return put_cstr(buf, v.as.boolean ? "True" : "False");
    case JJ_INT: return put_int(buf, v.as.integer);
    case JJ_FLOAT: return put_float(buf, v.as.number);
    case JJ_STRING: return jj_buf_put(buf, v.as.string.data, v.as.string.length);
    case JJ_LIST:
    case JJ_DICT: return jj_repr(buf, v);
    case JJ_NAMESPACE: return put_cstr(buf, "<Namespace>");
    case JJ_FUNCTION: return put_cstr(buf, "<function>");
    case JJ_MACRO: return put_cstr(buf, "<Macro>");
    }
    return 1;
}

static int put_json_string(jj_buf *buf, const char *s, size_t n) {
    if (!put_cstr(buf, "\"")) return 0;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (!jj_buf_put(buf, s + run, i - run)) return 0;
        run = i + 1;
        char escape[8];
        switch (c) {
        case '"': strcpy(escape, "\\\""); break;
        case '\\': strcpy(escape, "\\\\"); break;
        case '\n': strcpy(escape, "\\n"); break;
        case '\r': strcpy(escape, "\\r"); break;
        case '\t': strcpy(escape, "\\t"); break;
        case '\b': strcpy(escape, "\\b"); break;
        case '\f': strcpy(escape, "\\f"); break;
        default: snprintf(escape, sizeof escape, "\\u%04x", c); break;
        }
        if (!put_cstr(buf, escape)) return 0;
    }
    return jj_buf_put(buf, s + run, n - run) && put_cstr(buf, "\"");
}

static int put_newline_indent(jj_buf *buf, int indent, int depth) {
    if (!put_cstr(buf, "\n")) return 0;
    for (int i = 0; i < indent * depth; i++) {
        if (!put_cstr(buf, " ")) return 0;
    }
    return 1;
}

static int compare_keys(const void *a, const void *b) {
    const jj_value *x = *(const jj_value *const *)a, *y = *(const jj_value *const *)b;
    size_t n = x->as.string.length < y->as.string.length ? x->as.string.length : y->as.string.length;
    int c = memcmp(x->as.string.data, y->as.string.data, n);
    if (c) return c;
    return (x->as.string.length > y->as.string.length) - (x->as.string.length < y->as.string.length);
}

int jj_json(jj_buf *buf, jj_value v, int indent, const char *item_sep, const char *key_sep, int sort_keys,
            int depth) {
    if (depth > 256) return -1;
    switch (v.kind) {
    case JJ_NONE: return put_cstr(buf, "null");
    case JJ_BOOL: return put_cstr(buf, v.as.boolean ? "true" : "false");
    case JJ_INT: return put_int(buf, v.as.integer);
    case JJ_FLOAT:
        if (isnan(v.as.number)) return put_cstr(buf, "NaN");
        if (isinf(v.as.number)) return put_cstr(buf, v.as.number < 0 ? "-Infinity" : "Infinity");
        return put_float(buf, v.as.number);
    case JJ_STRING: return put_json_string(buf, v.as.string.data, v.as.string.length);
    case JJ_LIST: {
        if (v.as.list->n == 0) return put_cstr(buf, "[]");
        if (!put_cstr(buf, "[")) return 0;
        for (size_t i = 0; i < v.as.list->n; i++) {
            if (i && !put_cstr(buf, item_sep)) return 0;
            if (indent >= 0 && !put_newline_indent(buf, indent, depth + 1)) return 0;
            int status = jj_json(buf, v.as.list->items[i], indent, item_sep, key_sep, sort_keys, depth + 1);
            if (status != 1) return status;
        }
        if (indent >= 0 && !put_newline_indent(buf, indent, depth)) return 0;
        return put_cstr(buf, "]");
    }
    case JJ_DICT:
    case JJ_NAMESPACE: {
        const jj_dict *dict = v.as.dict;
        if (dict->n == 0) return put_cstr(buf, "{}");
        const jj_value **order = malloc(dict->n * sizeof *order);
        if (!order) return 0;
        int status = 1;
        for (size_t i = 0; i < dict->n; i++) {
            order[i] = &dict->keys[i];
            if (dict->keys[i].kind != JJ_STRING) status = -1; /* keys from JSON and templates are strings */
        }
        if (sort_keys && status == 1) qsort(order, dict->n, sizeof *order, compare_keys);
        if (status == 1) status = put_cstr(buf, "{");
        for (size_t i = 0; i < dict->n && status == 1; i++) {
            size_t index = (size_t)(order[i] - dict->keys);
            if (i && !put_cstr(buf, item_sep)) status = 0;
            else if (indent >= 0 && !put_newline_indent(buf, indent, depth + 1)) status = 0;
            else if (!put_json_string(buf, order[i]->as.string.data, order[i]->as.string.length) ||
                     !put_cstr(buf, key_sep))
                status = 0;
            else status = jj_json(buf, dict->values[index], indent, item_sep, key_sep, sort_keys, depth + 1);
        }
        free(order);
        if (status != 1) return status;
        if (indent >= 0 && !put_newline_indent(buf, indent, depth)) return 0;
        return put_cstr(buf, "}");
    }
    default: return -1;
    }
}
