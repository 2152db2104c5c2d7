/* Jinja operators, tests and global functions with Python's semantics, and JSON input. The
 * globals are those HF's chat environment has: range (capped at 100000 items like jinja2's
 * sandbox), namespace, dict, raise_exception and strftime_now. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "tokenizer/jinja_internal.h"

#define MAX_RANGE 100000 /* jinja2.sandbox.MAX_RANGE */

static int is_int_like(jj_value v) { return v.kind == JJ_INT || v.kind == JJ_BOOL; }
static int64_t int_of(jj_value v) { return v.kind == JJ_INT ? v.as.integer : v.as.boolean; }
static int is_numeric(jj_value v) { return is_int_like(v) || v.kind == JJ_FLOAT; }
static double float_of(jj_value v) { return v.kind == JJ_FLOAT ? v.as.number : (double)int_of(v); }

static const char *op_name(int op) {
    static const char *const names[] = {"",  "+",  "-",  "*",  "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=",
                                        "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "in", "not in"};
    return op > 0 && (size_t)op < sizeof names / sizeof *names ? names[op] : "?";
}

static int type_error(jj_context *ctx, const jj_node *at, int op, jj_value a, jj_value b) {
    return jj_fail(ctx, at, ML_ERR_ARG, "unsupported operand types for %s: %s and %s", op_name(op), jj_kind_name(a.kind),
                   jj_kind_name(b.kind));
}

static int concat_strings(jj_context *ctx, const jj_node *at, const char *a, size_t na, const char *b, size_t nb,
                          jj_value *out) {
    if (ctx->limits->max_memory_bytes && na + nb > ctx->limits->max_memory_bytes) {
        ctx->arena.over_limit = 1;
        return jj_fail_memory(ctx, at);
    }
    char *text = jj_alloc(&ctx->arena, na + nb + 1);
    if (!text) return jj_fail_memory(ctx, at);
    memcpy(text, a, na);
    memcpy(text + na, b, nb);
    *out = jj_string(text, na + nb);
    return ML_OK;
}

static int repeat(jj_context *ctx, const jj_node *at, jj_value seq, int64_t times, jj_value *out) {
    if (times < 0) times = 0;
    size_t unit = seq.kind == JJ_STRING ? seq.as.string.length : seq.as.list->n * sizeof(jj_value);
    if (unit && (uint64_t)times > (ctx->limits->max_memory_bytes ? ctx->limits->max_memory_bytes : SIZE_MAX / 2) / unit) {
        ctx->arena.over_limit = 1;
        return jj_fail_memory(ctx, at);
    }
    if (seq.kind == JJ_STRING) {
        size_t n = seq.as.string.length * (size_t)times;
        char *text = jj_alloc(&ctx->arena, n + 1);
        if (!text) return jj_fail_memory(ctx, at);
        for (int64_t i = 0; i < times; i++) memcpy(text + i * seq.as.string.length, seq.as.string.data, seq.as.string.length);
        *out = jj_string(text, n);
        return ML_OK;
    }
    jj_list *list = jj_list_new(&ctx->arena, seq.as.list->n * (size_t)times);
    if (!list) return jj_fail_memory(ctx, at);
    for (int64_t i = 0; i < times; i++) memcpy(list->items + i * seq.as.list->n, seq.as.list->items, seq.as.list->n * sizeof(jj_value));
    *out = (jj_value){.kind = JJ_LIST, .as.list = list};
    return ML_OK;
}

static int compare(jj_context *ctx, const jj_node *at, int op, jj_value a, jj_value b, jj_value *out) {
    int c;
    if (is_numeric(a) && is_numeric(b)) {
        if (is_int_like(a) && is_int_like(b)) c = (int_of(a) > int_of(b)) - (int_of(a) < int_of(b));
        else c = (float_of(a) > float_of(b)) - (float_of(a) < float_of(b));
    } else if (a.kind == JJ_STRING && b.kind == JJ_STRING) {
        size_t n = a.as.string.length < b.as.string.length ? a.as.string.length : b.as.string.length;
        c = memcmp(a.as.string.data, b.as.string.data, n);
        if (c == 0) c = (a.as.string.length > b.as.string.length) - (a.as.string.length < b.as.string.length);
    } else {
        return jj_fail(ctx, at, ML_ERR_ARG, "'%s' not supported between a %s and a %s", op_name(op), jj_kind_name(a.kind),
                       jj_kind_name(b.kind));
    }
    *out = jj_bool(op == JO_LT ? c < 0 : op == JO_LE ? c <= 0 : op == JO_GT ? c > 0 : c >= 0);
    return ML_OK;
}

static int contains(jj_context *ctx, const jj_node *at, jj_value item, jj_value container, int *result) {
    *result = 0;
    switch (container.kind) {
    case JJ_UNDEFINED: return ML_OK;
    case JJ_STRING:
        if (item.kind != JJ_STRING)
            return jj_fail(ctx, at, ML_ERR_ARG, "'in <string>' requires a string on the left, not a %s", jj_kind_name(item.kind));
        if (item.as.string.length == 0) *result = 1;
        for (size_t i = 0; !*result && i + item.as.string.length <= container.as.string.length; i++)
            *result = memcmp(container.as.string.data + i, item.as.string.data, item.as.string.length) == 0;
        return ML_OK;
    case JJ_LIST:
        for (size_t i = 0; !*result && i < container.as.list->n; i++) *result = jj_equal(item, container.as.list->items[i]);
        return ML_OK;
    case JJ_DICT:
    case JJ_NAMESPACE: *result = jj_dict_get(container.as.dict, item) != NULL; return ML_OK;
    default: return jj_fail(ctx, at, ML_ERR_ARG, "a %s is not a container ('in')", jj_kind_name(container.kind));
    }
}

int jj_binary(jj_context *ctx, const jj_node *at, int op, jj_value a, jj_value b, jj_value *out) {
    switch (op) {
    case JO_EQ: *out = jj_bool(jj_equal(a, b)); return ML_OK;
    case JO_NE: *out = jj_bool(!jj_equal(a, b)); return ML_OK;
    case JO_LT:
    case JO_LE:
    case JO_GT:
    case JO_GE: return compare(ctx, at, op, a, b, out);
    case JO_IN:
    case JO_NOT_IN: {
        int found;
        ML_TRY(contains(ctx, at, a, b, &found));
        *out = jj_bool(op == JO_IN ? found : !found);
        return ML_OK;
    }
    case JO_TILDE: {
        jj_buf buf = {0};
        int ok = jj_str(&buf, a) && jj_str(&buf, b);
        int status = ok ? jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out) : jj_fail_memory(ctx, at);
        free(buf.data);
        return status;
    }
    default: break;
    }
    if (a.kind == JJ_UNDEFINED || b.kind == JJ_UNDEFINED) {
        jj_value u = a.kind == JJ_UNDEFINED ? a : b;
        if (u.as.string.data)
            return jj_fail(ctx, at, ML_ERR_ARG, "'%.*s' is undefined", (int)(u.as.string.length > 60 ? 60 : u.as.string.length),
                           u.as.string.data);
        return jj_fail(ctx, at, ML_ERR_ARG, "undefined value used with '%s'", op_name(op));
    }
    if (is_int_like(a) && is_int_like(b) && op != JO_DIV) {
        int64_t x = int_of(a), y = int_of(b), r;
        int overflow = 0;
        switch (op) {
        case JO_ADD: overflow = __builtin_add_overflow(x, y, &r); break;
        case JO_SUB: overflow = __builtin_sub_overflow(x, y, &r); break;
        case JO_MUL: overflow = __builtin_mul_overflow(x, y, &r); break;
        case JO_FLOORDIV:
        case JO_MOD:
            if (y == 0) return jj_fail(ctx, at, ML_ERR_ARG, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) {
                overflow = 1;
                break;
            }
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--; /* floor */
            if (op == JO_MOD) r = x - r * y;
            break;
        case JO_POW:
            if (y < 0) {
                *out = jj_float(pow((double)x, (double)y));
                return ML_OK;
            }
            if (x == 0 || x == 1) r = y == 0 ? 1 : x;
            else if (x == -1) r = y % 2 ? -1 : 1;
            else {
                r = 1; /* |x| >= 2 overflows within 63 factors */
                for (int64_t i = 0; i < y && !overflow; i++) overflow = __builtin_mul_overflow(r, x, &r);
            }
            break;
        default: return type_error(ctx, at, op, a, b);
        }
        if (overflow) return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "integer overflow in '%s'", op_name(op));
        *out = jj_int(r);
        return ML_OK;
    }
    if (is_numeric(a) && is_numeric(b)) {
        double x = float_of(a), y = float_of(b);
        switch (op) {
        case JO_ADD: *out = jj_float(x + y); return ML_OK;
        case JO_SUB: *out = jj_float(x - y); return ML_OK;
        case JO_MUL: *out = jj_float(x * y); return ML_OK;
        case JO_DIV:
        case JO_FLOORDIV:
        case JO_MOD:
            if (y == 0) return jj_fail(ctx, at, ML_ERR_ARG, "division by zero");
            if (op == JO_DIV) *out = jj_float(x / y);
            else if (op == JO_FLOORDIV) *out = jj_float(floor(x / y));
            else {
                double m = fmod(x, y);
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                *out = jj_float(m);
            }
            return ML_OK;
        case JO_POW: *out = jj_float(pow(x, y)); return ML_OK;
        default: return type_error(ctx, at, op, a, b);
        }
    }
    if (op == JO_ADD && a.kind == JJ_STRING && b.kind == JJ_STRING)
        return concat_strings(ctx, at, a.as.string.data, a.as.string.length, b.as.string.data, b.as.string.length, out);
    if (op == JO_ADD && a.kind == JJ_LIST && b.kind == JJ_LIST) {
        jj_list *list = jj_list_new(&ctx->arena, a.as.list->n + b.as.list->n);
        if (!list) return jj_fail_memory(ctx, at);
        memcpy(list->items, a.as.list->items, a.as.list->n * sizeof(jj_value));
        memcpy(list->items + a.as.list->n, b.as.list->items, b.as.list->n * sizeof(jj_value));
        *out = (jj_value){.kind = JJ_LIST, .as.list = list};
        return ML_OK;
    }
    if (op == JO_MUL && (a.kind == JJ_STRING || a.kind == JJ_LIST) && is_int_like(b)) return repeat(ctx, at, a, int_of(b), out);
    if (op == JO_MUL && (b.kind == JJ_STRING || b.kind == JJ_LIST) && is_int_like(a)) return repeat(ctx, at, b, int_of(a), out);
    return type_error(ctx, at, op, a, b);
}

/* ---- tests -------------------------------------------------------------------------------- */

static int name_is(const char *name, size_t length, const char *s) { return length == strlen(s) && memcmp(name, s, length) == 0; }

int jj_apply_test(jj_context *ctx, const jj_node *at, const char *name, size_t length, jj_value v, const jj_args *args,
                  int *result) {
    jj_value arg = args->n_positional ? args->positional[0] : jj_undefined(NULL, 0);
#define TEST(s) name_is(name, length, s)
    if (TEST("defined")) *result = v.kind != JJ_UNDEFINED;
    else if (TEST("undefined")) *result = v.kind == JJ_UNDEFINED;
    else if (TEST("none")) *result = v.kind == JJ_NONE;
    else if (TEST("boolean")) *result = v.kind == JJ_BOOL;
    else if (TEST("true")) *result = v.kind == JJ_BOOL && v.as.boolean;
    else if (TEST("false")) *result = v.kind == JJ_BOOL && !v.as.boolean;
    else if (TEST("integer")) *result = v.kind == JJ_INT;
    else if (TEST("float")) *result = v.kind == JJ_FLOAT;
    else if (TEST("number")) *result = is_numeric(v);
    else if (TEST("string")) *result = v.kind == JJ_STRING;
    else if (TEST("mapping")) *result = v.kind == JJ_DICT;
    else if (TEST("iterable")) *result = v.kind == JJ_STRING || v.kind == JJ_LIST || v.kind == JJ_DICT || v.kind == JJ_UNDEFINED;
    else if (TEST("sequence")) *result = v.kind == JJ_STRING || v.kind == JJ_LIST || v.kind == JJ_DICT;
    else if (TEST("callable")) *result = v.kind == JJ_FUNCTION || v.kind == JJ_MACRO;
    else if (TEST("equalto") || TEST("eq") || TEST("==")) *result = jj_equal(v, arg);
    else if (TEST("ne") || TEST("!=")) *result = !jj_equal(v, arg);
    else if (TEST("sameas"))
        *result = v.kind == arg.kind && (v.kind == JJ_NONE || v.kind == JJ_UNDEFINED || (v.kind == JJ_BOOL && jj_equal(v, arg)));
    else if (TEST("lt") || TEST("le") || TEST("gt") || TEST("ge") || TEST("lessthan") || TEST("greaterthan")) {
        int op = TEST("lt") || TEST("lessthan") ? JO_LT : TEST("le") ? JO_LE : TEST("ge") ? JO_GE : JO_GT;
        jj_value r;
        ML_TRY(compare(ctx, at, op, v, arg, &r));
        *result = r.as.boolean;
    } else if (TEST("in")) {
        ML_TRY(contains(ctx, at, v, arg, result));
    } else if (TEST("odd") || TEST("even") || TEST("divisibleby")) {
        if (!is_int_like(v)) return jj_fail(ctx, at, ML_ERR_ARG, "test '%.*s' needs an integer", (int)length, name);
        int64_t divisor = TEST("divisibleby") ? (is_int_like(arg) ? int_of(arg) : 0) : 2;
        if (divisor == 0) return jj_fail(ctx, at, ML_ERR_ARG, "divisibleby needs a non-zero integer");
        int64_t m = divisor == -1 ? 0 : int_of(v) % divisor;
        *result = TEST("odd") ? m != 0 : m == 0;
    } else if (TEST("lower") || TEST("upper")) {
        if (v.kind != JJ_STRING) return jj_fail(ctx, at, ML_ERR_ARG, "test '%.*s' needs a string", (int)length, name);
        int cased = 0, ok = 1;
        for (size_t i = 0; i < v.as.string.length; i++) {
            char c = v.as.string.data[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                cased = 1;
                if (TEST("lower") ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) ok = 0;
            }
        }
        *result = cased && ok;
    } else {
        return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "unknown test '%.*s'", (int)(length > 60 ? 60 : length), name);
    }
#undef TEST
    return ML_OK;
}

/* ---- global functions --------------------------------------------------------------------- */

static int kwargs_dict(jj_context *ctx, const jj_node *at, const jj_args *args, jj_kind kind, jj_value *out) {
    jj_dict *dict = jj_dict_new(&ctx->arena, args->n_kw);
    if (!dict) return jj_fail_memory(ctx, at);
    if (args->n_positional == 1 && (args->positional[0].kind == JJ_DICT || args->positional[0].kind == JJ_NAMESPACE)) {
        const jj_dict *from = args->positional[0].as.dict;
        for (size_t i = 0; i < from->n; i++) {
            if (!jj_dict_set(&ctx->arena, dict, from->keys[i], from->values[i])) return jj_fail_memory(ctx, at);
        }
    } else if (args->n_positional) {
        return jj_fail(ctx, at, ML_ERR_ARG, "%s() takes keyword arguments or one dict", kind == JJ_NAMESPACE ? "namespace" : "dict");
    }
    for (size_t i = 0; i < args->n_kw; i++) {
        if (!jj_dict_set(&ctx->arena, dict, jj_string(args->kw_names[i], args->kw_lengths[i]), args->kw_values[i]))
            return jj_fail_memory(ctx, at);
    }
    *out = (jj_value){.kind = kind, .as.dict = dict};
    return ML_OK;
}

int jj_call_function(jj_context *ctx, const jj_node *at, int function, const jj_args *args, jj_value *out) {
    const jj_value *p = args->positional;
    size_t n = args->n_positional;
    switch (function) {
    case JJ_FN_RANGE: {
        int64_t start = 0, stop, stride = 1;
        for (size_t i = 0; i < n; i++) {
            if (!is_int_like(p[i])) return jj_fail(ctx, at, ML_ERR_ARG, "range() needs integers, got a %s", jj_kind_name(p[i].kind));
        }
        if (n == 1) stop = int_of(p[0]);
        else if (n == 2 || n == 3) {
            start = int_of(p[0]);
            stop = int_of(p[1]);
            if (n == 3) stride = int_of(p[2]);
        } else return jj_fail(ctx, at, ML_ERR_ARG, "range() takes 1 to 3 arguments, %zu given", n);
        if (stride == 0) return jj_fail(ctx, at, ML_ERR_ARG, "range() step must not be zero");
        double count = ceil(((double)stop - (double)start) / (double)stride);
        if (count < 0) count = 0;
        if (count > MAX_RANGE)
            return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "range() of more than %d items (the sandbox's limit)", MAX_RANGE);
        jj_list *list = jj_list_new(&ctx->arena, (size_t)count);
        if (!list) return jj_fail_memory(ctx, at);
        for (size_t i = 0; i < list->n; i++) list->items[i] = jj_int(start + (int64_t)i * stride);
        *out = (jj_value){.kind = JJ_LIST, .as.list = list};
        return ML_OK;
    }
    case JJ_FN_NAMESPACE: return kwargs_dict(ctx, at, args, JJ_NAMESPACE, out);
    case JJ_FN_DICT: return kwargs_dict(ctx, at, args, JJ_DICT, out);
    case JJ_FN_RAISE: {
        jj_buf message = {0};
        if (n && !jj_str(&message, p[0])) return jj_fail_memory(ctx, at);
        int status = jj_fail(ctx, at, ML_ERR_ARG, "raise_exception: %s", message.data ? message.data : "");
        free(message.data);
        return status;
    }
    case JJ_FN_STRFTIME: {
        if (n != 1 || p[0].kind != JJ_STRING) return jj_fail(ctx, at, ML_ERR_ARG, "strftime_now() takes one format string");
        char format[256], text[512];
        if (p[0].as.string.length >= sizeof format) return jj_fail(ctx, at, ML_ERR_ARG, "strftime_now() format too long");
        memcpy(format, p[0].as.string.data, p[0].as.string.length);
        format[p[0].as.string.length] = '\0';
        time_t now = time(NULL);
        struct tm local;
        size_t length = localtime_r(&now, &local) ? strftime(text, sizeof text, format, &local) : 0;
        return jj_make_string(ctx, at, text, length, out);
    }
    default: return jj_fail(ctx, at, ML_ERR_INTERNAL, "unknown function");
    }
}

/* ---- JSON input --------------------------------------------------------------------------- */

static int from_json(jj_context *ctx, const json_t *json, jj_value *out, int depth) {
    if (depth > 200) return jj_fail(ctx, NULL, ML_ERR_ARG, "context JSON nested more than 200 deep");
    switch (json_typeof(json)) {
    case JSON_OBJECT: {
        jj_dict *dict = jj_dict_new(&ctx->arena, json_object_size(json));
        if (!dict) return jj_fail_memory(ctx, NULL);
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)json, key, value) {
            jj_value v, k;
            ML_TRY(from_json(ctx, value, &v, depth + 1));
            ML_TRY(jj_make_string(ctx, NULL, key, strlen(key), &k));
            if (!jj_dict_set(&ctx->arena, dict, k, v)) return jj_fail_memory(ctx, NULL);
        }
        *out = (jj_value){.kind = JJ_DICT, .as.dict = dict};
        return ML_OK;
    }
    case JSON_ARRAY: {
        jj_list *list = jj_list_new(&ctx->arena, json_array_size(json));
        if (!list) return jj_fail_memory(ctx, NULL);
        for (size_t i = 0; i < list->n; i++) ML_TRY(from_json(ctx, json_array_get(json, i), &list->items[i], depth + 1));
        *out = (jj_value){.kind = JJ_LIST, .as.list = list};
        return ML_OK;
    }
    case JSON_STRING: return jj_make_string(ctx, NULL, json_string_value(json), json_string_length(json), out);
    case JSON_INTEGER: *out = jj_int(json_integer_value(json)); return ML_OK;
    case JSON_REAL: *out = jj_float(json_real_value(json)); return ML_OK;
    case JSON_TRUE: *out = jj_bool(1); return ML_OK;
    case JSON_FALSE: *out = jj_bool(0); return ML_OK;
    default: *out = jj_none(); return ML_OK;
    }
}

int jj_from_json(jj_context *ctx, const json_t *json, jj_value *out) { return from_json(ctx, json, out, 0); }
