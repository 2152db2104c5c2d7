/* Jinja evaluation: runs the syntax tree against the context's variables, writing the output.
 * Scoping follows jinja2: a for loop's body gets a fresh scope each iteration (so `set` inside a
 * loop does not leak out, which is why templates use namespace()), `if` does not. Every step
 * counts against ml_jinja_limits, so no template can loop, recurse or grow without bound. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/jinja_internal.h"

struct jj_scope {
    jj_scope *parent;
    jj_dict *vars;
};

enum { FLOW_NORMAL = 0, FLOW_BREAK = 1, FLOW_CONTINUE = 2, FLOW_ERROR = -1 };

int jj_fail(jj_context *ctx, const jj_node *at, int status, const char *fmt, ...) {
    if (ctx->status != ML_OK) return ctx->status;
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (at) ml_set_error(status, "chat template line %d, column %d: %s", at->line, at->column, message);
    else ml_set_error(status, "chat template: %s", message);
    ctx->status = status;
    return status;
}

int jj_fail_memory(jj_context *ctx, const jj_node *at) {
    if (ctx->arena.over_limit)
        return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "rendering needs more than %zu bytes of memory (the limit)",
                       ctx->limits->max_memory_bytes);
    return jj_fail(ctx, at, ML_ERR_NOMEM, "out of memory");
}

int jj_make_string(jj_context *ctx, const jj_node *at, const char *data, size_t length, jj_value *out) {
    char *copy = jj_strndup(&ctx->arena, data, length);
    if (!copy) return jj_fail_memory(ctx, at);
    *out = jj_string(copy, length);
    return ML_OK;
}

static int step(jj_context *ctx, const jj_node *at) {
    if (ctx->status != ML_OK) return ctx->status;
    if (++ctx->steps > ctx->limits->max_steps)
        return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "the template ran more than %llu steps (the limit)",
                       (unsigned long long)ctx->limits->max_steps);
    return ML_OK;
}

/* ---- scopes ------------------------------------------------------------------------------- */

static jj_scope *scope_new(jj_context *ctx, jj_scope *parent, const jj_node *at) {
    jj_scope *scope = jj_alloc(&ctx->arena, sizeof *scope);
    if (!scope || !(scope->vars = jj_dict_new(&ctx->arena, 4))) {
        jj_fail_memory(ctx, at);
        return NULL;
    }
    scope->parent = parent;
    return scope;
}

static jj_value lookup(const jj_scope *scope, const char *name, size_t length) {
    jj_value key = jj_string(name, length);
    for (; scope; scope = scope->parent) {
        jj_value *v = jj_dict_get(scope->vars, key);
        if (v) return *v;
    }
    return jj_undefined(name, length);
}

static int assign(jj_context *ctx, jj_scope *scope, const char *name, size_t length, jj_value value,
                  const jj_node *at) {
    if (!jj_dict_set(&ctx->arena, scope->vars, jj_string(name, length), value)) return jj_fail_memory(ctx, at);
    return ML_OK;
}

/* ---- expressions -------------------------------------------------------------------------- */

static int eval(jj_context *ctx, jj_scope *scope, const jj_node *n, jj_value *out);
static int exec_body(jj_context *ctx, jj_scope *scope, const jj_node *body);

static int undefined_error(jj_context *ctx, const jj_node *at, jj_value v) {
    if (v.as.string.data)
        return jj_fail(ctx, at, ML_ERR_ARG, "'%.*s' is undefined", (int)(v.as.string.length > 60 ? 60 : v.as.string.length),
                       v.as.string.data);
    return jj_fail(ctx, at, ML_ERR_ARG, "a value is undefined");
}

static int eval_args(jj_context *ctx, jj_scope *scope, const jj_node *n, jj_args *args) {
    memset(args, 0, sizeof *args);
    if (n->n_list) {
        if (!(args->positional = jj_alloc(&ctx->arena, n->n_list * sizeof(jj_value)))) return jj_fail_memory(ctx, n);
        for (size_t i = 0; i < n->n_list; i++) ML_TRY(eval(ctx, scope, n->list[i], &args->positional[i]));
        args->n_positional = n->n_list;
    }
    if (n->n_kw) {
        if (!(args->kw_values = jj_alloc(&ctx->arena, n->n_kw * sizeof(jj_value)))) return jj_fail_memory(ctx, n);
        for (size_t i = 0; i < n->n_kw; i++) ML_TRY(eval(ctx, scope, n->kw_values[i], &args->kw_values[i]));
        args->kw_names = n->kw_names;
        args->kw_lengths = n->kw_lengths;
        args->n_kw = n->n_kw;
    }
    return ML_OK;
}

/* Item or attribute of a value (Jinja tries obj[key] first for subscripts, getattr for dots; for
 * the JSON-like values of a chat they agree). */
static int get_item(jj_context *ctx, const jj_node *at, jj_value target, jj_value key, jj_value *out) {
    switch (target.kind) {
    case JJ_UNDEFINED: return undefined_error(ctx, at, target);
    case JJ_DICT:
    case JJ_NAMESPACE: {
        jj_value *v = jj_dict_get(target.as.dict, key);
        *out = v ? *v : jj_undefined(key.kind == JJ_STRING ? key.as.string.data : NULL, key.as.string.length);
        return ML_OK;
    }
    case JJ_LIST:
    case JJ_STRING: {
        if (key.kind != JJ_INT && key.kind != JJ_BOOL) {
            *out = jj_undefined(NULL, 0);
            return ML_OK;
        }
        int64_t index = key.kind == JJ_INT ? key.as.integer : key.as.boolean;
        size_t n = target.kind == JJ_LIST ? target.as.list->n : jj_utf8_count(target.as.string.data, target.as.string.length);
        if (index < 0) index += (int64_t)n;
        if (index < 0 || (uint64_t)index >= n) {
            *out = jj_undefined(NULL, 0);
            return ML_OK;
        }
        if (target.kind == JJ_LIST) {
            *out = target.as.list->items[index];
        } else {
            size_t begin = jj_utf8_offset(target.as.string.data, target.as.string.length, (size_t)index);
            size_t end = jj_utf8_offset(target.as.string.data, target.as.string.length, (size_t)index + 1);
            *out = jj_string(target.as.string.data + begin, end - begin);
        }
        return ML_OK;
    }
    default: *out = jj_undefined(NULL, 0); return ML_OK;
    }
}

/* Python slice indices (slice.indices). */
static int slice_value(jj_context *ctx, const jj_node *at, jj_value target, jj_value parts[3], jj_value *out) {
    int64_t bounds[3];
    int given[3];
    for (int i = 0; i < 3; i++) {
        given[i] = parts[i].kind != JJ_UNDEFINED && parts[i].kind != JJ_NONE;
        if (given[i] && parts[i].kind != JJ_INT) return jj_fail(ctx, at, ML_ERR_ARG, "slice indices must be integers");
        bounds[i] = given[i] ? parts[i].as.integer : 0;
    }
    int64_t stride = given[2] ? bounds[2] : 1;
    if (stride == 0) return jj_fail(ctx, at, ML_ERR_ARG, "slice step cannot be zero");
    if (target.kind == JJ_UNDEFINED) return undefined_error(ctx, at, target);
    if (target.kind != JJ_LIST && target.kind != JJ_STRING)
        return jj_fail(ctx, at, ML_ERR_ARG, "cannot slice a %s", jj_kind_name(target.kind));
    int64_t n = target.kind == JJ_LIST ? (int64_t)target.as.list->n
                                       : (int64_t)jj_utf8_count(target.as.string.data, target.as.string.length);
    int64_t start, stop;
    for (int i = 0; i < 2; i++) {
        int64_t *slot = i == 0 ? &start : &stop;
        if (!given[i]) {
            *slot = stride > 0 ? (i == 0 ? 0 : n) : (i == 0 ? n - 1 : -1);
            continue;
        }
        int64_t v = bounds[i];
        if (v < 0) {
            v += n;
            if (v < 0) v = stride > 0 ? 0 : -1;
        } else if (v >= n) {
            v = stride > 0 ? n : n - 1;
        }
        *slot = v;
    }
    int64_t count = 0;
    if (stride > 0 && stop > start) count = (stop - start + stride - 1) / stride;
    if (stride < 0 && start > stop) count = (start - stop - stride - 1) / -stride;
    if (target.kind == JJ_LIST) {
        jj_list *list = jj_list_new(&ctx->arena, (size_t)count);
        if (!list) return jj_fail_memory(ctx, at);
        for (int64_t i = 0; i < count; i++) list->items[i] = target.as.list->items[start + i * stride];
        *out = (jj_value){.kind = JJ_LIST, .as.list = list};
        return ML_OK;
    }
    const char *s = target.as.string.data;
    size_t length = target.as.string.length;
    if (stride == 1) {
        size_t begin = jj_utf8_offset(s, length, (size_t)start), end = jj_utf8_offset(s, length, (size_t)(start + count));
        *out = jj_string(s + begin, end - begin);
        return ML_OK;
    }
    char *text = jj_alloc(&ctx->arena, length + 1);
    if (!text) return jj_fail_memory(ctx, at);
    size_t used = 0;
    for (int64_t i = 0; i < count; i++) {
        size_t begin = jj_utf8_offset(s, length, (size_t)(start + i * stride));
        size_t end = jj_utf8_offset(s + begin, length - begin, 1) + begin;
        memcpy(text + used, s + begin, end - begin);
        used += end - begin;
    }
    *out = jj_string(text, used);
    return ML_OK;
}

/* Renders a body into a string (macro calls, block set). */
static int capture(jj_context *ctx, jj_scope *scope, const jj_node *body, jj_value *out) {
    jj_buf saved = ctx->out;
    ctx->out = (jj_buf){.limit = saved.limit};
    int flow = exec_body(ctx, scope, body);
    jj_buf captured = ctx->out;
    ctx->out = saved;
    int status = ctx->status;
    if (status == ML_OK && flow != FLOW_NORMAL)
        status = jj_fail(ctx, body, ML_ERR_ARG, "break or continue outside a loop");
    if (status == ML_OK && captured.over_limit)
        status = jj_fail(ctx, body, ML_ERR_UNSUPPORTED, "output longer than %zu bytes (the limit)", saved.limit);
    if (status == ML_OK) status = jj_make_string(ctx, body, captured.data ? captured.data : "", captured.n, out);
    free(captured.data);
    return status;
}

static int call_macro(jj_context *ctx, const jj_node *at, const jj_node *macro, const jj_args *args, jj_value *out) {
    if (ctx->call_depth >= ctx->limits->max_call_depth)
        return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "macro calls nested deeper than %d (the limit)", ctx->limits->max_call_depth);
    jj_scope *scope = scope_new(ctx, ctx->template_scope, at);
    if (!scope) return ctx->status;
    if (args->n_positional > macro->n_list)
        return jj_fail(ctx, at, ML_ERR_ARG, "macro '%.*s' takes %zu arguments, %zu given", (int)macro->name_length,
                       macro->name, macro->n_list, args->n_positional);
    for (size_t i = 0; i < macro->n_list; i++) {
        const jj_node *param = macro->list[i];
        jj_value value = jj_undefined(param->name, param->name_length);
        if (i < args->n_positional) value = args->positional[i];
        else if (param->a) ML_TRY(eval(ctx, scope, param->a, &value));
        for (size_t k = 0; k < args->n_kw; k++) {
            if (args->kw_lengths[k] == param->name_length && memcmp(args->kw_names[k], param->name, param->name_length) == 0)
                value = args->kw_values[k];
        }
        ML_TRY(assign(ctx, scope, param->name, param->name_length, value, at));
    }
    ctx->call_depth++;
    int status = capture(ctx, scope, macro->b, out);
    ctx->call_depth--;
    return status;
}

static int eval_call(jj_context *ctx, jj_scope *scope, const jj_node *n, jj_value *out) {
    jj_args args;
    const jj_node *callee = n->a;
    jj_value function;
    if (callee->kind == JN_GETATTR) {
        jj_value self;
        ML_TRY(eval(ctx, scope, callee->a, &self));
        if (self.kind == JJ_UNDEFINED) return undefined_error(ctx, callee, self);
        jj_value *member = NULL;
        if (self.kind == JJ_DICT || self.kind == JJ_NAMESPACE)
            member = jj_dict_get(self.as.dict, jj_string(callee->name, callee->name_length));
        if (!member || (member->kind != JJ_MACRO && member->kind != JJ_FUNCTION)) {
            ML_TRY(eval_args(ctx, scope, n, &args));
            return jj_call_method(ctx, n, self, callee->name, callee->name_length, &args, out);
        }
        function = *member;
    } else {
        ML_TRY(eval(ctx, scope, callee, &function));
    }
    ML_TRY(eval_args(ctx, scope, n, &args));
    if (function.kind == JJ_MACRO) return call_macro(ctx, n, function.as.macro, &args, out);
    if (function.kind == JJ_FUNCTION) return jj_call_function(ctx, n, function.as.function, &args, out);
    if (function.kind == JJ_UNDEFINED) return undefined_error(ctx, callee, function);
    return jj_fail(ctx, n, ML_ERR_ARG, "a %s is not callable", jj_kind_name(function.kind));
}

static int eval_sequence(jj_context *ctx, jj_scope *scope, const jj_node *n, jj_value *out) {
    if (n->kind == JN_DICT) {
        jj_dict *dict = jj_dict_new(&ctx->arena, n->n_list / 2);
        if (!dict) return jj_fail_memory(ctx, n);
        for (size_t i = 0; i + 1 < n->n_list; i += 2) {
            jj_value key, value;
            ML_TRY(eval(ctx, scope, n->list[i], &key));
            ML_TRY(eval(ctx, scope, n->list[i + 1], &value));
            if (!jj_dict_set(&ctx->arena, dict, key, value)) return jj_fail_memory(ctx, n);
        }
        *out = (jj_value){.kind = JJ_DICT, .as.dict = dict};
        return ML_OK;
    }
    jj_list *list = jj_list_new(&ctx->arena, n->n_list);
    if (!list) return jj_fail_memory(ctx, n);
    for (size_t i = 0; i < n->n_list; i++) ML_TRY(eval(ctx, scope, n->list[i], &list->items[i]));
    *out = (jj_value){.kind = JJ_LIST, .as.list = list};
    return ML_OK;
}

static int eval(jj_context *ctx, jj_scope *scope, const jj_node *n, jj_value *out) {
    ML_TRY(step(ctx, n));
    jj_value a, b;
    jj_args args;
    switch (n->kind) {
    case JN_CONST: *out = n->value; return ML_OK;
    case JN_NAME: *out = lookup(scope, n->name, n->name_length); return ML_OK;
    case JN_GETATTR:
        ML_TRY(eval(ctx, scope, n->a, &a));
        if (a.kind != JJ_DICT && a.kind != JJ_NAMESPACE && a.kind != JJ_UNDEFINED) {
            *out = jj_undefined(n->name, n->name_length);
            return ML_OK;
        }
        return get_item(ctx, n, a, jj_string(n->name, n->name_length), out);
    case JN_GETITEM:
        ML_TRY(eval(ctx, scope, n->a, &a));
        ML_TRY(eval(ctx, scope, n->b, &b));
        return get_item(ctx, n, a, b, out);
    case JN_SLICE: {
        jj_value parts[3] = {jj_none(), jj_none(), jj_none()};
        ML_TRY(eval(ctx, scope, n->a, &a));
        const jj_node *bounds[3] = {n->b, n->c, n->d};
        for (int i = 0; i < 3; i++) {
            if (bounds[i]) ML_TRY(eval(ctx, scope, bounds[i], &parts[i]));
        }
        return slice_value(ctx, n, a, parts, out);
    }
    case JN_CALL: return eval_call(ctx, scope, n, out);
    case JN_FILTER:
        ML_TRY(eval(ctx, scope, n->a, &a));
        ML_TRY(eval_args(ctx, scope, n, &args));
        return jj_apply_filter(ctx, n, n->name, n->name_length, a, &args, out);
    case JN_TEST: {
        int result;
        ML_TRY(eval(ctx, scope, n->a, &a));
        ML_TRY(eval_args(ctx, scope, n, &args));
        ML_TRY(jj_apply_test(ctx, n, n->name, n->name_length, a, &args, &result));
        *out = jj_bool(n->op ? !result : result);
        return ML_OK;
    }
    case JN_BINARY:
        ML_TRY(eval(ctx, scope, n->a, &a));
        ML_TRY(eval(ctx, scope, n->b, &b));
        return jj_binary(ctx, n, n->op, a, b, out);
    case JN_NOT:
        ML_TRY(eval(ctx, scope, n->a, &a));
        *out = jj_bool(!jj_truthy(a));
        return ML_OK;
    case JN_NEG:
        ML_TRY(eval(ctx, scope, n->a, &a));
        return jj_binary(ctx, n, JO_SUB, jj_int(0), a, out);
    case JN_AND:
    case JN_OR:
        ML_TRY(eval(ctx, scope, n->a, &a));
        if (jj_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return ML_OK;
        }
        return eval(ctx, scope, n->b, out);
    case JN_COND:
        ML_TRY(eval(ctx, scope, n->a, &a));
        if (jj_truthy(a)) return eval(ctx, scope, n->b, out);
        if (n->c) return eval(ctx, scope, n->c, out);
        *out = jj_undefined(NULL, 0);
        return ML_OK;
    case JN_LIST:
    case JN_TUPLE:
    case JN_DICT: return eval_sequence(ctx, scope, n, out);
    default: return jj_fail(ctx, n, ML_ERR_INTERNAL, "statement used as an expression");
    }
}

/* ---- statements --------------------------------------------------------------------------- */

static int emit(jj_context *ctx, const jj_node *at, jj_value v) {
    if (!jj_str(&ctx->out, v)) {
        if (ctx->out.over_limit)
            return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "output longer than %zu bytes (the limit)", ctx->out.limit);
        return jj_fail(ctx, at, ML_ERR_NOMEM, "out of memory");
    }
    return ML_OK;
}

static int bind_target(jj_context *ctx, jj_scope *scope, const jj_node *target, jj_value value) {
    if (target->kind == JN_NAME) return assign(ctx, scope, target->name, target->name_length, value, target);
    if (target->kind == JN_GETATTR) {
        jj_value object = lookup(scope, target->a->name, target->a->name_length);
        if (object.kind != JJ_NAMESPACE)
            return jj_fail(ctx, target, ML_ERR_ARG, "cannot assign attribute '%.*s' on a %s (only on a namespace())",
                           (int)target->name_length, target->name, jj_kind_name(object.kind));
        if (!jj_dict_set(&ctx->arena, object.as.dict, jj_string(target->name, target->name_length), value))
            return jj_fail_memory(ctx, target);
        return ML_OK;
    }
    /* tuple unpacking */
    if (value.kind != JJ_LIST || value.as.list->n != target->n_list)
        return jj_fail(ctx, target, ML_ERR_ARG, "cannot unpack a %s into %zu names", jj_kind_name(value.kind), target->n_list);
    for (size_t i = 0; i < target->n_list; i++) ML_TRY(bind_target(ctx, scope, target->list[i], value.as.list->items[i]));
    return ML_OK;
}

/* The items a for loop walks: a list's items, a dict's keys, a string's characters. */
static int iterable_items(jj_context *ctx, const jj_node *at, jj_value v, jj_list **items) {
    switch (v.kind) {
    case JJ_UNDEFINED: *items = jj_list_new(&ctx->arena, 0); break;
    case JJ_LIST: *items = v.as.list; return ML_OK;
    case JJ_DICT:
    case JJ_NAMESPACE:
        if ((*items = jj_list_new(&ctx->arena, v.as.dict->n)))
            memcpy((*items)->items, v.as.dict->keys, v.as.dict->n * sizeof(jj_value));
        break;
    case JJ_STRING: {
        size_t n = jj_utf8_count(v.as.string.data, v.as.string.length);
        if ((*items = jj_list_new(&ctx->arena, n))) {
            size_t offset = 0;
            for (size_t i = 0; i < n; i++) {
                size_t next = offset + jj_utf8_offset(v.as.string.data + offset, v.as.string.length - offset, 1);
                (*items)->items[i] = jj_string(v.as.string.data + offset, next - offset);
                offset = next;
            }
        }
        break;
    }
    default: return jj_fail(ctx, at, ML_ERR_ARG, "a %s is not iterable", jj_kind_name(v.kind));
    }
    return *items ? ML_OK : jj_fail_memory(ctx, at);
}

static int set_loop_key(jj_context *ctx, jj_dict *loop, const char *key, jj_value value, const jj_node *at) {
    if (!jj_dict_set(&ctx->arena, loop, jj_string(key, strlen(key)), value)) return jj_fail_memory(ctx, at);
    return ML_OK;
}

static int exec_for(jj_context *ctx, jj_scope *scope, const jj_node *n) {
    jj_value iterable;
    jj_list *items;
    if (eval(ctx, scope, n->b, &iterable) != ML_OK || iterable_items(ctx, n->b, iterable, &items) != ML_OK)
        return FLOW_ERROR;
    if (n->e) { /* {% for x in xs if cond %}: filtered before the loop, so loop.length counts the kept ones */
        jj_list *kept = jj_list_new(&ctx->arena, items->n);
        jj_scope *probe = scope_new(ctx, scope, n);
        if (!kept || !probe) return jj_fail_memory(ctx, n), FLOW_ERROR;
        kept->n = 0;
        for (size_t i = 0; i < items->n; i++) {
            jj_value keep;
            if (bind_target(ctx, probe, n->a, items->items[i]) != ML_OK || eval(ctx, probe, n->e, &keep) != ML_OK)
                return FLOW_ERROR;
            if (jj_truthy(keep)) kept->items[kept->n++] = items->items[i];
        }
        items = kept;
    }
    if (items->n == 0) return n->d ? exec_body(ctx, scope, n->d) : FLOW_NORMAL;
    /* One scope and loop object, emptied each iteration: a long loop does not grow memory. */
    jj_scope *inner = scope_new(ctx, scope, n);
    jj_dict *loop = inner ? jj_dict_new(&ctx->arena, 12) : NULL;
    if (!loop) return jj_fail_memory(ctx, n), FLOW_ERROR;
    for (size_t i = 0; i < items->n; i++) {
        if (step(ctx, n) != ML_OK) return FLOW_ERROR;
        inner->vars->n = 0;
        loop->n = 0;
        int64_t count = (int64_t)items->n, index = (int64_t)i;
        if (set_loop_key(ctx, loop, "index", jj_int(index + 1), n) || set_loop_key(ctx, loop, "index0", jj_int(index), n) ||
            set_loop_key(ctx, loop, "revindex", jj_int(count - index), n) ||
            set_loop_key(ctx, loop, "revindex0", jj_int(count - index - 1), n) ||
            set_loop_key(ctx, loop, "first", jj_bool(i == 0), n) ||
            set_loop_key(ctx, loop, "last", jj_bool(i + 1 == items->n), n) ||
            set_loop_key(ctx, loop, "length", jj_int(count), n) ||
            set_loop_key(ctx, loop, "depth", jj_int(1), n) || set_loop_key(ctx, loop, "depth0", jj_int(0), n) ||
            set_loop_key(ctx, loop, "previtem", i ? items->items[i - 1] : jj_undefined("previtem", 8), n) ||
            set_loop_key(ctx, loop, "nextitem", i + 1 < items->n ? items->items[i + 1] : jj_undefined("nextitem", 8), n) ||
            assign(ctx, inner, "loop", 4, (jj_value){.kind = JJ_DICT, .as.dict = loop}, n) ||
            bind_target(ctx, inner, n->a, items->items[i]))
            return FLOW_ERROR;
        int flow = exec_body(ctx, inner, n->c);
        if (flow == FLOW_ERROR) return FLOW_ERROR;
        if (flow == FLOW_BREAK) break;
    }
    return FLOW_NORMAL;
}

static int exec_statement(jj_context *ctx, jj_scope *scope, const jj_node *n) {
    if (step(ctx, n) != ML_OK) return FLOW_ERROR;
    jj_value v;
    switch (n->kind) {
    case JN_TEXT: return emit(ctx, n, n->value) == ML_OK ? FLOW_NORMAL : FLOW_ERROR;
    case JN_OUTPUT: return eval(ctx, scope, n->a, &v) == ML_OK && emit(ctx, n, v) == ML_OK ? FLOW_NORMAL : FLOW_ERROR;
    case JN_IF:
        if (eval(ctx, scope, n->a, &v) != ML_OK) return FLOW_ERROR;
        if (jj_truthy(v)) return exec_body(ctx, scope, n->b);
        return n->c ? exec_body(ctx, scope, n->c) : FLOW_NORMAL;
    case JN_FOR: return exec_for(ctx, scope, n);
    case JN_SET:
        return eval(ctx, scope, n->b, &v) == ML_OK && bind_target(ctx, scope, n->a, v) == ML_OK ? FLOW_NORMAL : FLOW_ERROR;
    case JN_SET_BLOCK:
        return capture(ctx, scope, n->b, &v) == ML_OK && bind_target(ctx, scope, n->a, v) == ML_OK ? FLOW_NORMAL
                                                                                                   : FLOW_ERROR;
    case JN_MACRO:
        v = (jj_value){.kind = JJ_MACRO, .as.macro = n};
        return assign(ctx, scope, n->name, n->name_length, v, n) == ML_OK ? FLOW_NORMAL : FLOW_ERROR;
    case JN_BREAK: return FLOW_BREAK;
    case JN_CONTINUE: return FLOW_CONTINUE;
    case JN_BODY: return exec_body(ctx, scope, n);
    default: return jj_fail(ctx, n, ML_ERR_INTERNAL, "expression used as a statement"), FLOW_ERROR;
    }
}

static int exec_body(jj_context *ctx, jj_scope *scope, const jj_node *body) {
    for (size_t i = 0; i < body->n_list; i++) {
        int flow = exec_statement(ctx, scope, body->list[i]);
        if (flow != FLOW_NORMAL) return flow;
    }
    return FLOW_NORMAL;
}

/* ---- entry points ------------------------------------------------------------------------- */

void ml_jinja_default_limits(ml_jinja_limits *limits) {
    limits->max_output_bytes = (size_t)64 << 20;
    limits->max_memory_bytes = (size_t)512 << 20;
    limits->max_steps = 50000000;
    limits->max_call_depth = 64;
}

int ml_jinja_parse(const char *source, size_t length, ml_jinja_template **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_jinja_parse: out is NULL");
    *out = NULL;
    if (!source && length) return ml_set_error(ML_ERR_ARG, "ml_jinja_parse: source is NULL");
    ml_jinja_template *tmpl = calloc(1, sizeof *tmpl);
    if (!tmpl) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    jj_tokens tokens = {0};
    char *copy = jj_strndup(&tmpl->arena, source ? source : "", length); /* NUL-terminated for the lexer */
    int status = copy ? jj_lex(copy, length, &tmpl->arena, &tokens) : ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    if (status == ML_OK) status = jj_parse(&tokens, &tmpl->arena, &tmpl->root);
    free(tokens.items);
    if (status != ML_OK) {
        ml_jinja_free(tmpl);
        return status;
    }
    *out = tmpl;
    return ML_OK;
}

void ml_jinja_free(ml_jinja_template *tmpl) {
    if (!tmpl) return;
    jj_arena_free(&tmpl->arena);
    free(tmpl);
}

int ml_jinja_render(const ml_jinja_template *tmpl, const json_t *context, const ml_jinja_limits *limits,
                    char **out_text, size_t *out_length) {
    if (!out_text) return ml_set_error(ML_ERR_ARG, "ml_jinja_render: out_text is NULL");
    *out_text = NULL;
    if (out_length) *out_length = 0;
    if (!tmpl) return ml_set_error(ML_ERR_ARG, "ml_jinja_render: template is NULL");
    if (context && !json_is_object(context)) return ml_set_error(ML_ERR_ARG, "ml_jinja_render: context is not a JSON object");
    ml_jinja_limits defaults;
    ml_jinja_default_limits(&defaults);
    jj_context ctx = {.limits = limits ? limits : &defaults};
    ctx.arena.limit_bytes = ctx.limits->max_memory_bytes;
    ctx.out.limit = ctx.limits->max_output_bytes;
    static const struct {
        const char *name;
        int function;
    } functions[] = {{"range", JJ_FN_RANGE},          {"namespace", JJ_FN_NAMESPACE}, {"raise_exception", JJ_FN_RAISE},
                     {"strftime_now", JJ_FN_STRFTIME}, {"dict", JJ_FN_DICT}};
    if ((ctx.globals = scope_new(&ctx, NULL, NULL))) {
        for (size_t i = 0; i < sizeof functions / sizeof *functions && ctx.status == ML_OK; i++)
            assign(&ctx, ctx.globals, functions[i].name, strlen(functions[i].name),
                   (jj_value){.kind = JJ_FUNCTION, .as.function = functions[i].function}, NULL);
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)context, key, value) {
            jj_value v;
            if (ctx.status != ML_OK || jj_from_json(&ctx, value, &v) != ML_OK) break;
            assign(&ctx, ctx.globals, key, strlen(key), v, NULL);
        }
        ctx.template_scope = ctx.status == ML_OK ? scope_new(&ctx, ctx.globals, NULL) : NULL;
    }
    if (ctx.template_scope) {
        int flow = exec_body(&ctx, ctx.template_scope, tmpl->root);
        if (flow != FLOW_NORMAL && ctx.status == ML_OK) jj_fail(&ctx, NULL, ML_ERR_ARG, "break or continue outside a loop");
    }
    int status = ctx.status;
    if (status == ML_OK && !ctx.out.data && !jj_buf_put(&ctx.out, "", 0)) status = jj_fail_memory(&ctx, NULL);
    jj_arena_free(&ctx.arena);
    if (status != ML_OK) {
        free(ctx.out.data);
        return status;
    }
    *out_text = ctx.out.data;
    if (out_length) *out_length = ctx.out.n;
    return ML_OK;
}
