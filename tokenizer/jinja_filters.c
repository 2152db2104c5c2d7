/* Jinja filters (jinja2/filters.py semantics, with HF's tojson) and the Python str/dict methods
 * chat templates call (.strip(), .startswith(), .split(), .items(), .get(), ...).
 * Case mapping (upper, lower, title, capitalize) is ASCII-only; other letters pass unchanged. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/jinja_internal.h"
#include "tokenizer/tokenizer_internal.h"

static int name_is(const char *name, size_t length, const char *s) { return length == strlen(s) && memcmp(name, s, length) == 0; }

/* Positional argument index, or keyword argument keyword, or NULL. */
static const jj_value *arg(const jj_args *args, size_t index, const char *keyword) {
    if (index < args->n_positional) return &args->positional[index];
    for (size_t i = 0; keyword && i < args->n_kw; i++) {
        if (name_is(args->kw_names[i], args->kw_lengths[i], keyword)) return &args->kw_values[i];
    }
    return NULL;
}

static int list_value(jj_list *list, jj_value *out) {
    *out = (jj_value){.kind = JJ_LIST, .as.list = list};
    return ML_OK;
}

static int need_string(jj_context *ctx, const jj_node *at, jj_value v, const char *what) {
    if (v.kind == JJ_STRING) return ML_OK;
    if (v.kind == JJ_UNDEFINED && v.as.string.data)
        return jj_fail(ctx, at, ML_ERR_ARG, "'%.*s' is undefined", (int)(v.as.string.length > 60 ? 60 : v.as.string.length),
                       v.as.string.data);
    return jj_fail(ctx, at, ML_ERR_ARG, "%s needs a string, got a %s", what, jj_kind_name(v.kind));
}

/* ---- string helpers ----------------------------------------------------------------------- */

/* Does code point cp belong to chars (NULL: Python whitespace)? */
static int in_strip_set(uint32_t cp, const jj_value *chars) {
    if (!chars || chars->kind != JJ_STRING) return ml_unicode_is_python_space(cp);
    const uint8_t *s = (const uint8_t *)chars->as.string.data;
    size_t n = chars->as.string.length;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t used = ml_utf8_decode(s + i, n - i, &c);
        if (!used) {
            c = s[i];
            used = 1;
        }
        if (c == cp) return 1;
        i += used;
    }
    return 0;
}

static jj_value strip(jj_value v, const jj_value *chars, int left, int right) {
    const uint8_t *s = (const uint8_t *)v.as.string.data;
    size_t start = 0, end = v.as.string.length;
    uint32_t cp;
    while (left && start < end) {
        size_t used = ml_utf8_decode(s + start, end - start, &cp);
        if (!used || !in_strip_set(cp, chars)) break;
        start += used;
    }
    while (right && end > start) {
        size_t lead = end - 1;
        while (lead > start && end - lead < 4 && (s[lead] & 0xC0) == 0x80) lead--;
        size_t used = ml_utf8_decode(s + lead, end - lead, &cp);
        if (used != end - lead || !in_strip_set(cp, chars)) break;
        end = lead;
    }
    return jj_string(v.as.string.data + start, end - start);
}

static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }
static int ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE_PYTHON, CASE_TITLE_JINJA };

static int change_case(jj_context *ctx, const jj_node *at, jj_value v, int mode, jj_value *out) {
    char *text = jj_alloc(&ctx->arena, v.as.string.length + 1);
    if (!text) return jj_fail_memory(ctx, at);
    int word_start = 1;
    for (size_t i = 0; i < v.as.string.length; i++) {
        char c = v.as.string.data[i];
        switch (mode) {
        case CASE_UPPER: c = ascii_upper(c); break;
        case CASE_LOWER: c = ascii_lower(c); break;
        case CASE_CAPITALIZE: c = i == 0 ? ascii_upper(c) : ascii_lower(c); break;
        case CASE_TITLE_PYTHON: /* str.title: a letter after a non-letter starts a word */
            c = word_start ? ascii_upper(c) : ascii_lower(c);
            word_start = !ascii_alpha(c) && ((unsigned char)c < 0x80);
            break;
        default: /* jinja's title filter: words start after whitespace, '-', '(', '{', '[', '<' */
            c = word_start ? ascii_upper(c) : ascii_lower(c);
            word_start = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '(' || c == '{' || c == '[' ||
                         c == '<';
            break;
        }
        text[i] = c;
    }
    *out = jj_string(text, v.as.string.length);
    return ML_OK;
}

static int replace(jj_context *ctx, const jj_node *at, jj_value v, jj_value old, jj_value new_text, int64_t count,
                   jj_value *out) {
    if (old.kind != JJ_STRING || new_text.kind != JJ_STRING)
        return jj_fail(ctx, at, ML_ERR_ARG, "replace() needs string arguments");
    jj_buf buf = {.limit = ctx->limits->max_memory_bytes};
    const char *s = v.as.string.data;
    size_t n = v.as.string.length, i = 0, done = 0, on = old.as.string.length;
    int ok = 1;
    while (ok && i <= n) {
        if ((count < 0 || (int64_t)done < count) && i + on <= n && memcmp(s + i, old.as.string.data, on) == 0) {
            ok = jj_buf_put(&buf, new_text.as.string.data, new_text.as.string.length);
            done++;
            if (on == 0) { /* Python inserts between every character */
                if (i < n) ok = ok && jj_buf_put(&buf, s + i, 1);
                i++;
            } else {
                i += on;
            }
        } else {
            if (i < n) ok = jj_buf_put(&buf, s + i, 1);
            i++;
        }
    }
    int status = ok ? jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out) : jj_fail_memory(ctx, at);
    free(buf.data);
    return status;
}

/* str.split(sep=None, maxsplit=-1). */
static int split(jj_context *ctx, const jj_node *at, jj_value v, const jj_value *sep, int64_t maxsplit, jj_value *out) {
    const char *s = v.as.string.data;
    size_t n = v.as.string.length;
    jj_list *list = jj_list_new(&ctx->arena, n + 1);
    if (!list) return jj_fail_memory(ctx, at);
    list->n = 0;
    if (sep && sep->kind == JJ_STRING) {
        size_t sn = sep->as.string.length, begin = 0;
        if (sn == 0) return jj_fail(ctx, at, ML_ERR_ARG, "split(): empty separator");
        for (size_t i = 0; i + sn <= n;) {
            if ((maxsplit < 0 || (int64_t)list->n < maxsplit) && memcmp(s + i, sep->as.string.data, sn) == 0) {
                list->items[list->n++] = jj_string(s + begin, i - begin);
                i += sn;
                begin = i;
            } else {
                i++;
            }
        }
        list->items[list->n++] = jj_string(s + begin, n - begin);
        return list_value(list, out);
    }
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) i++;
        if (i >= n) break;
        if (maxsplit >= 0 && (int64_t)list->n >= maxsplit) {
            size_t end = n;
            while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\n' || s[end - 1] == '\r')) end--;
            list->items[list->n++] = jj_string(s + i, end - i);
            break;
        }
        size_t begin = i;
        while (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) i++;
        list->items[list->n++] = jj_string(s + begin, i - begin);
    }
    return list_value(list, out);
}

static int starts_or_ends(jj_value v, jj_value affix, int at_end) {
    if (affix.kind == JJ_LIST) {
        for (size_t i = 0; i < affix.as.list->n; i++) {
            if (starts_or_ends(v, affix.as.list->items[i], at_end)) return 1;
        }
        return 0;
    }
    if (affix.kind != JJ_STRING || affix.as.string.length > v.as.string.length) return 0;
    size_t offset = at_end ? v.as.string.length - affix.as.string.length : 0;
    return memcmp(v.as.string.data + offset, affix.as.string.data, affix.as.string.length) == 0;
}

static int join(jj_context *ctx, const jj_node *at, jj_value iterable, jj_value separator, const jj_value *attribute,
                jj_value *out);

/* ---- methods ------------------------------------------------------------------------------ */

int jj_call_method(jj_context *ctx, const jj_node *at, jj_value self, const char *name, size_t length, const jj_args *args,
                   jj_value *out) {
#define METHOD(s) name_is(name, length, s)
    const jj_value *a0 = arg(args, 0, NULL), *a1 = arg(args, 1, NULL);
    if (self.kind == JJ_STRING) {
        if (METHOD("strip") || METHOD("lstrip") || METHOD("rstrip")) {
            const jj_value *chars = a0 && a0->kind == JJ_STRING ? a0 : NULL;
            *out = strip(self, chars, !METHOD("rstrip"), !METHOD("lstrip"));
            return ML_OK;
        }
        if (METHOD("upper")) return change_case(ctx, at, self, CASE_UPPER, out);
        if (METHOD("lower")) return change_case(ctx, at, self, CASE_LOWER, out);
        if (METHOD("capitalize")) return change_case(ctx, at, self, CASE_CAPITALIZE, out);
        if (METHOD("title")) return change_case(ctx, at, self, CASE_TITLE_PYTHON, out);
        if (METHOD("startswith") || METHOD("endswith")) {
            if (!a0) return jj_fail(ctx, at, ML_ERR_ARG, "%.*s() takes one argument", (int)length, name);
            *out = jj_bool(starts_or_ends(self, *a0, METHOD("endswith")));
            return ML_OK;
        }
        if (METHOD("split")) {
            const jj_value *sep = arg(args, 0, "sep"), *max = arg(args, 1, "maxsplit");
            return split(ctx, at, self, sep, max && max->kind == JJ_INT ? max->as.integer : -1, out);
        }
        if (METHOD("splitlines")) {
            jj_value sep = jj_string("\n", 1);
            ML_TRY(split(ctx, at, self, &sep, -1, out));
            if (out->as.list->n && out->as.list->items[out->as.list->n - 1].as.string.length == 0) out->as.list->n--;
            return ML_OK;
        }
        if (METHOD("replace")) {
            if (!a0 || !a1) return jj_fail(ctx, at, ML_ERR_ARG, "replace() takes two arguments");
            const jj_value *count = arg(args, 2, "count");
            return replace(ctx, at, self, *a0, *a1, count && count->kind == JJ_INT ? count->as.integer : -1, out);
        }
        if (METHOD("find") || METHOD("count") || METHOD("rfind")) {
            if (!a0 || a0->kind != JJ_STRING) return jj_fail(ctx, at, ML_ERR_ARG, "%.*s() needs a string", (int)length, name);
            int64_t found = -1, count = 0;
            size_t sn = a0->as.string.length;
            for (size_t i = 0; i + sn <= self.as.string.length;) {
                if (memcmp(self.as.string.data + i, a0->as.string.data, sn) == 0) {
                    if (found < 0 || METHOD("rfind")) found = (int64_t)jj_utf8_count(self.as.string.data, i);
                    count++;
                    i += sn ? sn : 1;
                } else {
                    i++;
                }
            }
            *out = jj_int(METHOD("count") ? count : found);
            return ML_OK;
        }
        if (METHOD("join")) {
            if (!a0) return jj_fail(ctx, at, ML_ERR_ARG, "join() takes one argument");
            return join(ctx, at, *a0, self, NULL, out);
        }
        if (METHOD("isdigit") || METHOD("isspace") || METHOD("isalpha")) {
            int all = self.as.string.length > 0;
            for (size_t i = 0; i < self.as.string.length; i++) {
                char c = self.as.string.data[i];
                if (METHOD("isdigit") ? !(c >= '0' && c <= '9')
                                      : METHOD("isalpha") ? !ascii_alpha(c) : !(c == ' ' || (c >= '\t' && c <= '\r')))
                    all = 0;
            }
            *out = jj_bool(all);
            return ML_OK;
        }
    } else if (self.kind == JJ_DICT || self.kind == JJ_NAMESPACE) {
        const jj_dict *dict = self.as.dict;
        if (METHOD("get")) {
            if (!a0) return jj_fail(ctx, at, ML_ERR_ARG, "get() takes a key");
            jj_value *v = jj_dict_get(dict, *a0);
            *out = v ? *v : (a1 ? *a1 : jj_none());
            return ML_OK;
        }
        if (METHOD("items") || METHOD("keys") || METHOD("values")) {
            jj_list *list = jj_list_new(&ctx->arena, dict->n);
            if (!list) return jj_fail_memory(ctx, at);
            for (size_t i = 0; i < dict->n; i++) {
                if (METHOD("keys")) list->items[i] = dict->keys[i];
                else if (METHOD("values")) list->items[i] = dict->values[i];
                else {
                    jj_list *pair = jj_list_new(&ctx->arena, 2);
                    if (!pair) return jj_fail_memory(ctx, at);
                    pair->items[0] = dict->keys[i];
                    pair->items[1] = dict->values[i];
                    list->items[i] = (jj_value){.kind = JJ_LIST, .as.list = pair};
                }
            }
            return list_value(list, out);
        }
    } else if (self.kind == JJ_UNDEFINED) {
        return need_string(ctx, at, self, "a method call");
    }
#undef METHOD
    return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "a %s has no method '%.*s'", jj_kind_name(self.kind), (int)(length > 60 ? 60 : length),
                   name);
}

/* ---- filters ------------------------------------------------------------------------------ */

/* obj.a.b for map(attribute=...), selectattr, join(attribute=...). */
static jj_value attribute_of(jj_value v, jj_value path) {
    if (path.kind == JJ_INT && v.kind == JJ_LIST) {
        int64_t i = path.as.integer < 0 ? path.as.integer + (int64_t)v.as.list->n : path.as.integer;
        return i >= 0 && (uint64_t)i < v.as.list->n ? v.as.list->items[i] : jj_undefined(NULL, 0);
    }
    if (path.kind != JJ_STRING) return jj_undefined(NULL, 0);
    const char *p = path.as.string.data, *end = p + path.as.string.length;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        if (v.kind != JJ_DICT && v.kind != JJ_NAMESPACE) return jj_undefined(NULL, 0);
        jj_value *next = jj_dict_get(v.as.dict, jj_string(p, (size_t)(dot - p)));
        if (!next) return jj_undefined(p, (size_t)(dot - p));
        v = *next;
        p = dot + 1;
    }
    return v;
}

static int join(jj_context *ctx, const jj_node *at, jj_value iterable, jj_value separator, const jj_value *attribute,
                jj_value *out) {
    if (iterable.kind == JJ_STRING || iterable.kind == JJ_UNDEFINED) {
        if (iterable.kind == JJ_UNDEFINED) iterable = jj_string("", 0);
        if (separator.as.string.length == 0) {
            *out = iterable;
            return ML_OK;
        }
    }
    jj_buf buf = {.limit = ctx->limits->max_memory_bytes};
    int ok = 1;
    size_t n = iterable.kind == JJ_LIST ? iterable.as.list->n : iterable.kind == JJ_DICT ? iterable.as.dict->n : 0;
    if (iterable.kind != JJ_LIST && iterable.kind != JJ_DICT)
        return jj_fail(ctx, at, ML_ERR_ARG, "join needs a list, got a %s", jj_kind_name(iterable.kind));
    for (size_t i = 0; ok && i < n; i++) {
        jj_value item = iterable.kind == JJ_LIST ? iterable.as.list->items[i] : iterable.as.dict->keys[i];
        if (attribute) item = attribute_of(item, *attribute);
        if (i) ok = jj_str(&buf, separator);
        ok = ok && jj_str(&buf, item);
    }
    int status = ok ? jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out) : jj_fail_memory(ctx, at);
    free(buf.data);
    return status;
}

static int to_list(jj_context *ctx, const jj_node *at, jj_value v, jj_list **out) {
    if (v.kind == JJ_LIST) {
        *out = v.as.list;
        return ML_OK;
    }
    if (v.kind == JJ_UNDEFINED) return (*out = jj_list_new(&ctx->arena, 0)) ? ML_OK : jj_fail_memory(ctx, at);
    if (v.kind == JJ_DICT) {
        if (!(*out = jj_list_new(&ctx->arena, v.as.dict->n))) return jj_fail_memory(ctx, at);
        memcpy((*out)->items, v.as.dict->keys, v.as.dict->n * sizeof(jj_value));
        return ML_OK;
    }
    if (v.kind == JJ_STRING) {
        size_t n = jj_utf8_count(v.as.string.data, v.as.string.length), offset = 0;
        if (!(*out = jj_list_new(&ctx->arena, n))) return jj_fail_memory(ctx, at);
        for (size_t i = 0; i < n; i++) {
            size_t next = offset + jj_utf8_offset(v.as.string.data + offset, v.as.string.length - offset, 1);
            (*out)->items[i] = jj_string(v.as.string.data + offset, next - offset);
            offset = next;
        }
        return ML_OK;
    }
    return jj_fail(ctx, at, ML_ERR_ARG, "a %s is not iterable", jj_kind_name(v.kind));
}

/* select/reject/selectattr/rejectattr: keeps items where the test (or truthiness) holds. */
static int select_items(jj_context *ctx, const jj_node *at, jj_value input, const jj_args *args, int by_attribute,
                        int keep_when, jj_value *out) {
    jj_list *items, *kept;
    ML_TRY(to_list(ctx, at, input, &items));
    if (!(kept = jj_list_new(&ctx->arena, items->n))) return jj_fail_memory(ctx, at);
    kept->n = 0;
    size_t first = by_attribute ? 1 : 0;
    if (by_attribute && args->n_positional < 1) return jj_fail(ctx, at, ML_ERR_ARG, "selectattr/rejectattr need an attribute");
    const jj_value *test = arg(args, first, NULL);
    if (test && test->kind != JJ_STRING) return jj_fail(ctx, at, ML_ERR_ARG, "the test name must be a string");
    jj_args test_args = {0};
    if (args->n_positional > first + 1) {
        test_args.positional = args->positional + first + 1;
        test_args.n_positional = args->n_positional - first - 1;
    }
    for (size_t i = 0; i < items->n; i++) {
        jj_value item = by_attribute ? attribute_of(items->items[i], args->positional[0]) : items->items[i];
        int result;
        if (test) ML_TRY(jj_apply_test(ctx, at, test->as.string.data, test->as.string.length, item, &test_args, &result));
        else result = jj_truthy(item);
        if (result == keep_when) kept->items[kept->n++] = items->items[i];
    }
    return list_value(kept, out);
}

static int map_items(jj_context *ctx, const jj_node *at, jj_value input, const jj_args *args, jj_value *out) {
    jj_list *items, *mapped;
    ML_TRY(to_list(ctx, at, input, &items));
    if (!(mapped = jj_list_new(&ctx->arena, items->n))) return jj_fail_memory(ctx, at);
    const jj_value *attribute = arg(args, SIZE_MAX, "attribute");
    const jj_value *fallback = arg(args, SIZE_MAX, "default");
    const jj_value *filter = args->n_positional ? &args->positional[0] : NULL;
    if (!attribute && (!filter || filter->kind != JJ_STRING))
        return jj_fail(ctx, at, ML_ERR_ARG, "map needs attribute= or a filter name");
    jj_args filter_args = {0};
    if (filter && args->n_positional > 1) {
        filter_args.positional = args->positional + 1;
        filter_args.n_positional = args->n_positional - 1;
    }
    for (size_t i = 0; i < items->n; i++) {
        if (attribute) {
            mapped->items[i] = attribute_of(items->items[i], *attribute);
            if (mapped->items[i].kind == JJ_UNDEFINED && fallback) mapped->items[i] = *fallback;
        } else {
            ML_TRY(jj_apply_filter(ctx, at, filter->as.string.data, filter->as.string.length, items->items[i], &filter_args,
                                   &mapped->items[i]));
        }
    }
    return list_value(mapped, out);
}

static int tojson(jj_context *ctx, const jj_node *at, jj_value input, const jj_args *args, jj_value *out) {
    const jj_value *indent = arg(args, 1, "indent"), *separators = arg(args, 2, "separators"),
                   *sort_keys = arg(args, 3, "sort_keys");
    if (args->n_positional) indent = &args->positional[0]; /* tojson(4) */
    int width = indent && indent->kind == JJ_INT ? (int)(indent->as.integer < 0 ? 0 : indent->as.integer > 64 ? 64 : indent->as.integer) : -1;
    const char *item_sep = width >= 0 ? "," : ", ", *key_sep = ": ";
    char item_buf[32], key_buf[32];
    if (separators && separators->kind == JJ_LIST && separators->as.list->n == 2 &&
        separators->as.list->items[0].kind == JJ_STRING && separators->as.list->items[1].kind == JJ_STRING) {
        jj_value i = separators->as.list->items[0], k = separators->as.list->items[1];
        if (i.as.string.length >= sizeof item_buf || k.as.string.length >= sizeof key_buf)
            return jj_fail(ctx, at, ML_ERR_ARG, "tojson separators too long");
        memcpy(item_buf, i.as.string.data, i.as.string.length);
        item_buf[i.as.string.length] = '\0';
        memcpy(key_buf, k.as.string.data, k.as.string.length);
        key_buf[k.as.string.length] = '\0';
        item_sep = item_buf;
        key_sep = key_buf;
    }
    jj_buf buf = {.limit = ctx->limits->max_memory_bytes};
    int status = jj_json(&buf, input, width, item_sep, key_sep, sort_keys && jj_truthy(*sort_keys), 0);
    if (status == 1) status = jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out);
    else if (status == 0) status = jj_fail_memory(ctx, at);
    else status = jj_fail(ctx, at, ML_ERR_ARG, "tojson: a %s (or something inside it) is not JSON serializable", jj_kind_name(input.kind));
    free(buf.data);
    return status;
}

/* jinja2's indent(width=4, first=False, blank=False). */
static int indent(jj_context *ctx, const jj_node *at, jj_value input, const jj_args *args, jj_value *out) {
    const jj_value *width = arg(args, 0, "width"), *first = arg(args, 1, "first"), *blank = arg(args, 2, "blank");
    jj_buf pad = {0};
    int ok = 1;
    if (width && width->kind == JJ_STRING) ok = jj_str(&pad, *width);
    else for (int64_t i = 0; ok && i < (width && width->kind == JJ_INT ? (width->as.integer > 256 ? 256 : width->as.integer) : 4); i++) ok = jj_buf_put(&pad, " ", 1);
    jj_buf buf = {.limit = ctx->limits->max_memory_bytes};
    if (ok && first && jj_truthy(*first)) ok = jj_str(&buf, jj_string(pad.data, pad.n));
    const char *s = input.as.string.data;
    size_t n = input.as.string.length;
    for (size_t i = 0; ok && i < n;) {
        size_t end = i;
        while (end < n && s[end] != '\n' && s[end] != '\r') end++;
        size_t after = end < n && s[end] == '\r' && end + 1 < n && s[end + 1] == '\n' ? end + 2 : end + 1;
        if (i > 0 && (end > i || (blank && jj_truthy(*blank)))) ok = jj_buf_put(&buf, pad.data ? pad.data : "", pad.n);
        ok = ok && jj_buf_put(&buf, s + i, end - i);
        if (after <= n && end < n) ok = ok && jj_buf_put(&buf, "\n", 1);
        i = after;
    }
    free(pad.data);
    int status = ok ? jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out) : jj_fail_memory(ctx, at);
    free(buf.data);
    return status;
}

/* int, float, abs: numbers from numbers, bools and numeric strings; a failed conversion gives the
 * default argument (jinja2's filters.do_int/do_float). */
static int number_filter(jj_context *ctx, const jj_node *at, const char *name, size_t length, jj_value v,
                         const jj_args *args, jj_value *out) {
#define FILTER(s) name_is(name, length, s)
    const jj_value *a0 = arg(args, 0, NULL);
    if (FILTER("abs")) {
        if (v.kind == JJ_INT) *out = jj_int(v.as.integer < 0 && v.as.integer != INT64_MIN ? -v.as.integer : v.as.integer);
        else if (v.kind == JJ_FLOAT) *out = jj_float(v.as.number < 0 ? -v.as.number : v.as.number);
        else return jj_fail(ctx, at, ML_ERR_ARG, "abs needs a number");
        return ML_OK;
    }
    double x = 0;
    int ok = 1;
    if (v.kind == JJ_INT || v.kind == JJ_BOOL) x = (double)(v.kind == JJ_INT ? v.as.integer : v.as.boolean);
    else if (v.kind == JJ_FLOAT) x = v.as.number;
    else if (v.kind == JJ_STRING) {
        char text[64];
        size_t n = v.as.string.length < sizeof text - 1 ? v.as.string.length : sizeof text - 1;
        memcpy(text, v.as.string.data, n);
        text[n] = '\0';
        char *end;
        x = strtod(text, &end);
        ok = end != text;
    } else ok = 0;
    if (!ok) {
        *out = a0 ? *a0 : FILTER("int") ? jj_int(0) : jj_float(0.0);
        return ML_OK;
    }
    if (FILTER("int")) {
        if (v.kind == JJ_INT) *out = v;
        else *out = jj_int(x >= 9.2e18 || x <= -9.2e18 ? 0 : (int64_t)x);
    } else {
        *out = jj_float(x);
    }
    return ML_OK;
#undef FILTER
}

/* min, max, sum over a list (sum with an attribute and a start value). */
static int aggregate_filter(jj_context *ctx, const jj_node *at, const char *name, size_t length, jj_value v,
                            const jj_args *args, jj_value *out) {
#define FILTER(s) name_is(name, length, s)
    jj_list *list;
    ML_TRY(to_list(ctx, at, v, &list));
    if (FILTER("sum")) {
        const jj_value *attribute = arg(args, 0, "attribute"), *start = arg(args, 1, "start");
        jj_value total = start ? *start : jj_int(0);
        for (size_t i = 0; i < list->n; i++)
            ML_TRY(jj_binary(ctx, at, JO_ADD, total, attribute ? attribute_of(list->items[i], *attribute) : list->items[i], &total));
        *out = total;
        return ML_OK;
    }
    if (list->n == 0) {
        *out = jj_undefined(NULL, 0);
        return ML_OK;
    }
    jj_value best = list->items[0], less;
    for (size_t i = 1; i < list->n; i++) {
        ML_TRY(jj_binary(ctx, at, FILTER("min") ? JO_LT : JO_GT, list->items[i], best, &less));
        if (less.as.boolean) best = list->items[i];
    }
    *out = best;
    return ML_OK;
#undef FILTER
}

/* unique: the first of each run of equal items, in order. */
static int unique_filter(jj_context *ctx, const jj_node *at, jj_value v, jj_value *out) {
    jj_list *list, *unique;
    ML_TRY(to_list(ctx, at, v, &list));
    if (!(unique = jj_list_new(&ctx->arena, list->n))) return jj_fail_memory(ctx, at);
    unique->n = 0;
    for (size_t i = 0; i < list->n; i++) {
        int seen = 0;
        for (size_t j = 0; j < unique->n && !seen; j++) seen = jj_equal(unique->items[j], list->items[i]);
        if (!seen) unique->items[unique->n++] = list->items[i];
    }
    return list_value(unique, out);
}

int jj_apply_filter(jj_context *ctx, const jj_node *at, const char *name, size_t length, jj_value v, const jj_args *args,
                    jj_value *out) {
#define FILTER(s) name_is(name, length, s)
    if (FILTER("default") || FILTER("d")) {
        const jj_value *fallback = arg(args, 0, "default_value"), *boolean = arg(args, 1, "boolean");
        int use_fallback = v.kind == JJ_UNDEFINED || (boolean && jj_truthy(*boolean) && !jj_truthy(v));
        *out = use_fallback ? (fallback ? *fallback : jj_string("", 0)) : v;
        return ML_OK;
    }
    if (FILTER("safe")) {
        *out = v;
        return ML_OK;
    }
    if (FILTER("tojson")) return tojson(ctx, at, v, args, out);
    if (FILTER("string")) {
        jj_buf buf = {0};
        int ok = jj_str(&buf, v);
        int status = ok ? jj_make_string(ctx, at, buf.data ? buf.data : "", buf.n, out) : jj_fail_memory(ctx, at);
        free(buf.data);
        return status;
    }
    if (FILTER("length") || FILTER("count")) {
        switch (v.kind) {
        case JJ_STRING: *out = jj_int((int64_t)jj_utf8_count(v.as.string.data, v.as.string.length)); return ML_OK;
        case JJ_LIST: *out = jj_int((int64_t)v.as.list->n); return ML_OK;
        case JJ_DICT:
        case JJ_NAMESPACE: *out = jj_int((int64_t)v.as.dict->n); return ML_OK;
        case JJ_UNDEFINED: *out = jj_int(0); return ML_OK;
        default: return jj_fail(ctx, at, ML_ERR_ARG, "a %s has no length", jj_kind_name(v.kind));
        }
    }
    if (FILTER("list")) {
        jj_list *list;
        ML_TRY(to_list(ctx, at, v, &list));
        return list_value(list, out);
    }
    if (FILTER("first") || FILTER("last")) {
        jj_list *list;
        ML_TRY(to_list(ctx, at, v, &list));
        *out = list->n ? list->items[FILTER("first") ? 0 : list->n - 1] : jj_undefined(NULL, 0);
        return ML_OK;
    }
    if (FILTER("reverse")) {
        jj_list *list, *reversed;
        ML_TRY(to_list(ctx, at, v, &list));
        if (!(reversed = jj_list_new(&ctx->arena, list->n))) return jj_fail_memory(ctx, at);
        for (size_t i = 0; i < list->n; i++) reversed->items[i] = list->items[list->n - 1 - i];
        if (v.kind != JJ_STRING) return list_value(reversed, out);
        jj_value empty = jj_string("", 0);
        return join(ctx, at, (jj_value){.kind = JJ_LIST, .as.list = reversed}, empty, NULL, out);
    }
    if (FILTER("join")) {
        const jj_value *separator = arg(args, 0, "d"), *attribute = arg(args, 1, "attribute");
        jj_value sep = separator ? *separator : jj_string("", 0);
        if (sep.kind != JJ_STRING) return jj_fail(ctx, at, ML_ERR_ARG, "join separator must be a string");
        return join(ctx, at, v, sep, attribute, out);
    }
    if (FILTER("map")) return map_items(ctx, at, v, args, out);
    if (FILTER("select") || FILTER("reject")) return select_items(ctx, at, v, args, 0, FILTER("select"), out);
    if (FILTER("selectattr") || FILTER("rejectattr")) return select_items(ctx, at, v, args, 1, FILTER("selectattr"), out);
    if (FILTER("items")) {
        if (v.kind == JJ_UNDEFINED) {
            jj_list *empty = jj_list_new(&ctx->arena, 0);
            return empty ? list_value(empty, out) : jj_fail_memory(ctx, at);
        }
        if (v.kind != JJ_DICT) return jj_fail(ctx, at, ML_ERR_ARG, "items needs a dict, got a %s", jj_kind_name(v.kind));
        return jj_call_method(ctx, at, v, "items", 5, args, out);
    }
    if (FILTER("int") || FILTER("float") || FILTER("abs")) return number_filter(ctx, at, name, length, v, args, out);
    if (v.kind == JJ_UNDEFINED && (FILTER("trim") || FILTER("upper") || FILTER("lower") || FILTER("capitalize") ||
                                   FILTER("title") || FILTER("replace") || FILTER("indent")))
        v = jj_string("", 0); /* jinja filters call str() on an undefined value */
    if (FILTER("trim")) {
        ML_TRY(need_string(ctx, at, v, "trim"));
        const jj_value *chars = arg(args, 0, "chars");
        *out = strip(v, chars && chars->kind == JJ_STRING ? chars : NULL, 1, 1);
        return ML_OK;
    }
    if (FILTER("upper") || FILTER("lower") || FILTER("capitalize") || FILTER("title")) {
        ML_TRY(need_string(ctx, at, v, "a case filter"));
        int mode = FILTER("upper") ? CASE_UPPER : FILTER("lower") ? CASE_LOWER : FILTER("capitalize") ? CASE_CAPITALIZE : CASE_TITLE_JINJA;
        return change_case(ctx, at, v, mode, out);
    }
    if (FILTER("replace")) {
        ML_TRY(need_string(ctx, at, v, "replace"));
        const jj_value *old = arg(args, 0, "old"), *new_text = arg(args, 1, "new"), *count = arg(args, 2, "count");
        if (!old || !new_text) return jj_fail(ctx, at, ML_ERR_ARG, "replace takes two arguments");
        return replace(ctx, at, v, *old, *new_text, count && count->kind == JJ_INT ? count->as.integer : -1, out);
    }
    if (FILTER("indent")) {
        ML_TRY(need_string(ctx, at, v, "indent"));
        return indent(ctx, at, v, args, out);
    }
    if (FILTER("min") || FILTER("max") || FILTER("sum")) return aggregate_filter(ctx, at, name, length, v, args, out);
    if (FILTER("unique")) return unique_filter(ctx, at, v, out);
#undef FILTER
    return jj_fail(ctx, at, ML_ERR_UNSUPPORTED, "unknown filter '%.*s'", (int)(length > 60 ? 60 : length), name);
}
