/* The Jinja module against Hugging Face: every case of tests/fixtures/chat_templates/cases.json
 * (real chat templates rendered by transformers' apply_chat_template, written by
 * tools/make_chat_template_fixtures.py) must render byte for byte the same, or fail where HF
 * fails (raise_exception with the same message). Then the semantics the fixtures do not reach
 * (whitespace control, slicing, filters, scoping) and the error cases: syntax errors with line
 * and column, unknown filters and tests, undefined values, and the limits on steps, output,
 * memory and nesting, none of which may crash or hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "test_util.h"
#include "meshllama.h"
#include "tokenizer/jinja.h"

static void print_difference(const char *name, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    fprintf(stderr, "  %s: first difference at byte %zu\n    ours: %.80s\n    want: %.80s\n", name, i, got + i, want + i);
}

static void test_hf_fixtures(void) {
    char dir[1024], path[1200];
    ml_test_fixture_path(dir, sizeof dir, "chat_templates");
    snprintf(path, sizeof path, "%s/cases.json", dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    CHECK(root != NULL, "%s: %s", path, error.text);
    if (!root) return;
    size_t i;
    json_t *c;
    int matched = 0, total = 0;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(c, "template")));
        char *source = (char *)ml_test_read_file(path, NULL);
        CHECK(source != NULL, "%s: cannot read %s", name, path);
        if (!source) continue;
        ml_jinja_template *tmpl = NULL;
        int status = ml_jinja_parse(source, strlen(source), &tmpl);
        CHECK(status == ML_OK, "%s: parse: %s", name, ml_last_error());
        char *text = NULL;
        size_t length = 0;
        if (status == ML_OK) status = ml_jinja_render(tmpl, json_object_get(c, "context"), NULL, &text, &length);
        const char *want = json_string_value(json_object_get(c, "expected"));
        json_t *want_error = json_object_get(c, "error");
        total++;
        if (want) {
            CHECK(status == ML_OK, "%s: render: %s", name, ml_last_error());
            if (status == ML_OK) {
                int same = length == strlen(want) && memcmp(text, want, length) == 0;
                CHECK(same, "%s: differs from transformers", name);
                if (!same) print_difference(name, text, want);
                matched += same;
            }
        } else {
            const char *type = json_string_value(json_object_get(want_error, "type"));
            const char *message = json_string_value(json_object_get(want_error, "message"));
            CHECK(status != ML_OK, "%s: rendered, but transformers fails (%s)", name, message);
            if (status != ML_OK && type && strcmp(type, "TemplateError") == 0)
                CHECK(strstr(ml_last_error(), message) != NULL, "%s: error \"%s\" does not say \"%s\"", name, ml_last_error(), message);
            matched += status != ML_OK;
        }
        free(text);
        ml_jinja_free(tmpl);
        free(source);
    }
    printf("  %d of %d transformers cases reproduced\n", matched, total);
    CHECK(total >= 100, "only %d fixture cases", total);
    json_decref(root);
}

/* The same cases through the public API: ml_chat_template_create_with_tokens with the case's
 * bos/eos, then ml_chat_template_apply_json with its messages, tools and date_string. */
static void test_public_api(void) {
    char dir[1024], path[1200];
    ml_test_fixture_path(dir, sizeof dir, "chat_templates");
    snprintf(path, sizeof path, "%s/cases.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    if (!root) return; /* reported by test_hf_fixtures */
    size_t i;
    json_t *c;
    int matched = 0, total = 0;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *context = json_object_get(c, "context");
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(c, "template")));
        char *source = (char *)ml_test_read_file(path, NULL);
        ml_chat_template *tmpl = NULL;
        int status = source ? ml_chat_template_create_with_tokens(source, NULL,
                                                                  json_string_value(json_object_get(context, "bos_token")),
                                                                  json_string_value(json_object_get(context, "eos_token")), &tmpl)
                            : ML_ERR_IO;
        CHECK(status == ML_OK && strcmp(ml_chat_template_name(tmpl), "jinja") == 0, "%s: create: %s", name, ml_last_error());
        char *messages = json_dumps(json_object_get(context, "messages"), 0);
        json_t *tools_value = json_object_get(context, "tools");
        char *tools = json_is_null(tools_value) ? NULL : json_dumps(tools_value, 0);
        ml_chat_params params = {json_is_true(json_object_get(context, "add_generation_prompt")),
                                 json_string_value(json_object_get(context, "date_string"))};
        char *text = NULL;
        size_t length = 0;
        if (status == ML_OK) status = ml_chat_template_apply_json(tmpl, messages, tools, &params, &text, &length);
        const char *want = json_string_value(json_object_get(c, "expected"));
        total++;
        if (want) {
            int same = status == ML_OK && length == strlen(want) && memcmp(text, want, length) == 0;
            CHECK(same, "%s: public API rendering differs: %s", name, status == ML_OK ? "text" : ml_last_error());
            matched += same;
        } else {
            CHECK(status != ML_OK && !text, "%s: public API rendered what transformers rejects", name);
            matched += status != ML_OK;
        }
        free(text);
        free(messages);
        free(tools);
        ml_chat_template_free(tmpl);
        free(source);
    }
    printf("  %d of %d cases through ml_chat_template_apply_json\n", matched, total);
    /* malformed JSON and content a built-in format cannot render */
    ml_chat_template *tmpl = NULL;
    char *text = NULL;
    CHECK(ml_chat_template_create(NULL, "chatml", NULL, &tmpl) == ML_OK, "forced chatml");
    CHECK(ml_chat_template_apply_json(tmpl, "[{\"role\": \"user\", \"content\": }]", NULL, NULL, &text, NULL) == ML_ERR_ARG &&
              strstr(ml_last_error(), "column"),
          "bad messages JSON: %s", ml_last_error());
    CHECK(ml_chat_template_apply_json(tmpl, "[]", NULL, NULL, &text, NULL) == ML_ERR_ARG, "empty messages accepted");
    CHECK(ml_chat_template_apply_json(tmpl, "[{\"role\": \"user\", \"content\": \"hi\"}]", "{}", NULL, &text, NULL) == ML_ERR_ARG,
          "tools that are not an array accepted");
    CHECK(ml_chat_template_apply_json(tmpl, "[{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]", NULL, NULL, &text,
                                      NULL) == ML_ERR_UNSUPPORTED,
          "built-in chatml with list content: %s", ml_last_error());
    CHECK(ml_chat_template_apply_json(tmpl, "[{\"role\": \"user\", \"content\": \"hi\"}]", NULL, NULL, &text, NULL) == ML_OK &&
              strcmp(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n") == 0,
          "built-in chatml from JSON: %s", text ? text : ml_last_error());
    free(text);
    ml_chat_template_free(tmpl);
    json_decref(root);
}

/* Renders source with the JSON context; returns the text (malloc'd) or NULL with the error. */
static char *render_with(const char *source, const char *context_json, const ml_jinja_limits *limits, int *status_out) {
    ml_jinja_template *tmpl = NULL;
    int status = ml_jinja_parse(source, strlen(source), &tmpl);
    char *text = NULL;
    if (status == ML_OK) {
        json_t *context = json_loads(context_json ? context_json : "{}", 0, NULL);
        status = ml_jinja_render(tmpl, context, limits, &text, NULL);
        json_decref(context);
    }
    ml_jinja_free(tmpl);
    if (status_out) *status_out = status;
    return text;
}

static void expect(const char *source, const char *context, const char *want) {
    int status;
    char *text = render_with(source, context, NULL, &status);
    CHECK(status == ML_OK && text && strcmp(text, want) == 0, "%s\n    got: %s\n    want: %s", source,
          text ? text : ml_last_error(), want);
    free(text);
}

static void expect_error(const char *source, const char *context, int code, const char *message_part) {
    int status;
    char *text = render_with(source, context, NULL, &status);
    CHECK(status == code && strstr(ml_last_error(), message_part), "%s\n    status %d, error: %s (want %d, \"%s\")", source,
          status, ml_last_error(), code, message_part);
    free(text);
}

static void test_semantics(void) {
    static const struct {
        const char *source, *context, *want;
    } cases[] = {
        /* whitespace control, trim_blocks and lstrip_blocks */
        {"a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc"},
        {"a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc"},
        {"{{ 'x' }}\n{{ 'y' }}", NULL, "x\ny"},
        {"  {{- 'x' -}}  \n", NULL, "x"},
        {"{# comment #}\nz", NULL, "z"},
        {"{%+ if true %}k{% endif +%}\n", NULL, "k\n"},
        {"{% raw %}{{ not evaluated }}{% endraw %}", NULL, "{{ not evaluated }}"},
        /* expressions */
        {"{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}", NULL,
            "7 3 -4 1 2 1024 3.5"},
        {"{{ 'a' ~ 1 ~ none ~ true }} {{ 'a' + 'b' }} {{ [1] + [2] }}", NULL, "a1NoneTrue ab [1, 2]"},
        {"{{ 'abcdef'[1:3] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[-2:] }} {{ [1,2,3][:-1] }} {{ 'héé'[1] }}", NULL,
            "bc fedcba ef [1, 2] é"},
        {"{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}", NULL, "True False True"},
        {"{{ x if x else 'none' }} {{ 'y' if false }}|", "{\"x\": 0}", "none |"},
        {"{{ (1, 2) }} {{ {'a': [1, 'b'], \"c\": none} }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e100 is number }}", NULL,
            "[1, 2] {'a': [1, 'b'], 'c': None} 1.0 0.30000000000000004 True"},
        /* filters and methods */
        {"{{ '  a b  ' | trim }}|{{ 'Hello' | upper }}|{{ 'Hello' | lower }}|{{ 'hello world' | title }}", NULL,
            "a b|HELLO|hello|Hello World"},
        {"{{ [1, 2, 3] | length }} {{ 'héllo' | length }} {{ [3, 1] | first }} {{ [3, 1] | last }}", NULL, "3 5 3 1"},
        {"{{ 'aXbXc' | replace('X', '-') }} {{ ['a', 'b'] | join(', ') }} {{ x | default('d') }}", NULL, "a-b-c a, b d"},
        {"{{ {'b': 1, 'a': [1, 2.5, 'é\"\\n']} | tojson }}", NULL, "{\"b\": 1, \"a\": [1, 2.5, \"é\\\"\\n\"]}"},
        {"{{ {'b': 1, 'a': {}} | tojson(indent=2) }}", NULL, "{\n  \"b\": 1,\n  \"a\": {}\n}"},
        {"{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}", NULL, "{\"a\": 2, \"b\": 1}"},
        {"{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(',') }}",
            "{\"ms\": [{\"role\": \"user\", \"c\": \"1\"}, {\"role\": \"bot\", \"c\": \"2\"}, {\"role\": \"user\", \"c\": \"3\"}]}",
            "1,3"},
        {"{{ '  x '.strip() }}|{{ 'abc'.startswith('ab') }}|{{ 'a,b'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'x'.upper() }}",
            NULL, "x|True|['a', 'b']|['a', 'b', 'c']|X"},
        {"{{ d.get('k') }} {{ d.get('z', 5) }}{% for k, v in d.items() %} {{ k }}={{ v }}{% endfor %}", "{\"d\": {\"k\": 1}}",
            "1 5 k=1"},
        {"{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}", NULL, "a\n  b|  a\n  b"},
        /* tests */
        {"{{ x is defined }} {{ y is none }} {{ 'a' is string }} {{ 3 is divisibleby 3 }} {{ 4 is odd }}", "{\"y\": null}",
            "False True True True False"},
        /* loops and scoping */
        {"{% for x in xs %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}", "{\"xs\": [5, 6]}",
            "1TrueFalse2 2FalseTrue2 "},
        {"{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}", "{\"xs\": [1, 2, 3]}", "23"},
        {"{% for x in [] %}{{ x }}{% else %}none{% endfor %}", NULL, "none"},
        {"{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
            NULL, "02"},
        {"{% set a = 1 %}{% for x in [1] %}{% set a = 2 %}{% endfor %}{{ a }}", NULL, "1"},
        {"{% set ns = namespace(a=1) %}{% for x in [1] %}{% set ns.a = 2 %}{% endfor %}{{ ns.a }}", NULL, "2"},
        {"{% if true %}{% set a = 3 %}{% endif %}{{ a }}", NULL, "3"},
        {"{% set a, b = 1, 2 %}{{ a }}{{ b }}", NULL, "12"},
        {"{% set t %}in{{ 1 }}{% endset %}[{{ t }}]", NULL, "[in1]"},
        {"{% macro m(a, b='x') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(2, b='y') }}", NULL, "1x2y"},
        {"{% generation %}g{% endgeneration %}", NULL, "g"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect(cases[i].source, cases[i].context, cases[i].want);
}

static void test_errors(void) {
    static const struct {
        const char *source, *context;
        int code;
        const char *message_part;
    } cases[] = {
        {"{% if x %}", NULL, ML_ERR_FORMAT, "line 1, column 4: '{% if' is never closed"},
        {"ok\n{{ 1 + }}", NULL, ML_ERR_FORMAT, "line 2, column 8"},
        {"{{ 'abc }}", NULL, ML_ERR_FORMAT, "unterminated string"},
        {"{% endfor %}", NULL, ML_ERR_FORMAT, "block end without a matching start"},
        {"{% frobnicate %}", NULL, ML_ERR_FORMAT, "unknown or unsupported statement"},
        {"{# open", NULL, ML_ERR_FORMAT, "unterminated comment"},
        {"{{ x", NULL, ML_ERR_FORMAT, "missing }}"},
        {"a\n  {{ x | nosuchfilter }}", NULL, ML_ERR_UNSUPPORTED, "line 2, column 10: unknown filter 'nosuchfilter'"},
        {"{{ x is nosuchtest }}", NULL, ML_ERR_UNSUPPORTED, "unknown test 'nosuchtest'"},
        {"{{ raise_exception('Roles must alternate') }}", NULL, ML_ERR_ARG, "line 1, column 4: raise_exception: Roles must alternate"},
        {"{{ x.y }}", NULL, ML_ERR_ARG, "'x' is undefined"},
        {"{{ 1 + 'a' }}", NULL, ML_ERR_ARG, "unsupported operand types for +: int and str"},
        {"{{ 1 // 0 }}", NULL, ML_ERR_ARG, "division or modulo by zero"},
        {"{% for x in 5 %}{% endfor %}", NULL, ML_ERR_ARG, "not iterable"},
        {"{{ range(1000000) }}", NULL, ML_ERR_UNSUPPORTED, "range()"},
        {"{% set x = 1 %}{% set x.a = 2 %}", NULL, ML_ERR_ARG, "only on a namespace"},
        {"{{ 'abc'.nosuchmethod() }}", NULL, ML_ERR_UNSUPPORTED, "has no method 'nosuchmethod'"},
        /* bounded work: loops, recursion, output and memory */
        {"{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, ML_ERR_UNSUPPORTED, "nested deeper"},
        {"{% for a in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 100 }}{% endfor %}",
         NULL, ML_ERR_UNSUPPORTED, "output longer"},
        {"{{ 'x' * 100000000000 }}", NULL, ML_ERR_UNSUPPORTED, "memory"},
        /* 63 digits fill the literal's buffer before the '.' (fuzz_jinja found the overrun) */
        {"{{ 123456789012345678901234567890123456789012345678901234567890123.5 }}", NULL, ML_ERR_FORMAT,
         "number literal too long"},
        {"{{ 1234567890123456789012345678901234567890123456789012345678901234567890 }}", NULL, ML_ERR_FORMAT,
         "number literal too long"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].source, cases[i].context, cases[i].code, cases[i].message_part);
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    n += (size_t)snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, NULL, ML_ERR_FORMAT, "nested too deeply");
    n = 0;
    for (int i = 0; i < 300 && n + 20 < sizeof deep; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{%% if 1 %%}");
    expect_error(deep, NULL, ML_ERR_FORMAT, "nested too deeply");
    /* a tight limit applies */
    ml_jinja_limits limits;
    ml_jinja_default_limits(&limits);
    limits.max_output_bytes = 10;
    int status;
    char *text = render_with("{{ 'hello world, too long' }}", NULL, &limits, &status);
    CHECK(status == ML_ERR_UNSUPPORTED && !text, "output limit of 10 bytes: status %d", status);
    ml_jinja_default_limits(&limits);
    limits.max_steps = 100000;
    text = render_with("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", NULL, &limits, &status);
    CHECK(status == ML_ERR_UNSUPPORTED && strstr(ml_last_error(), "steps"), "step limit: %s", ml_last_error());
    ml_jinja_default_limits(&limits);
    limits.max_memory_bytes = 1 << 20;
    text = render_with("{% set ns = namespace(s='x') %}{% for a in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", NULL,
                       &limits, &status);
    CHECK(status == ML_ERR_UNSUPPORTED && strstr(ml_last_error(), "memory"), "memory limit: %s", ml_last_error());
    /* API misuse */
    ml_jinja_template *tmpl = NULL;
    CHECK(ml_jinja_parse("x", 1, NULL) == ML_ERR_ARG, "NULL out");
    CHECK(ml_jinja_render(NULL, NULL, NULL, &text, NULL) == ML_ERR_ARG, "NULL template");
    CHECK(ml_jinja_parse("", 0, &tmpl) == ML_OK, "empty template: %s", ml_last_error());
    CHECK(ml_jinja_render(tmpl, NULL, NULL, &text, NULL) == ML_OK && text && text[0] == '\0', "empty render");
    free(text);
    ml_jinja_free(tmpl);
    ml_jinja_free(NULL);
}

int main(void) {
    test_hf_fixtures();
    test_public_api();
    test_semantics();
    test_errors();
    return ml_test_finish("test_jinja");
}
