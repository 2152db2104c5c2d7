/* Shared types of the Jinja module: arena, values, tokens and syntax tree. */
#ifndef ML_TOKENIZER_JINJA_INTERNAL_H
#define ML_TOKENIZER_JINJA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/jinja.h"

/* ---- arena (jinja_value.c) ---------------------------------------------------------------- */

typedef struct jj_block jj_block;
typedef struct {
    jj_block *blocks;
    size_t used_bytes, limit_bytes; /* limit 0: unlimited */
    int over_limit;                 /* an allocation was refused for the limit */
} jj_arena;

/* Zeroed memory that lives until jj_arena_free; NULL when out of memory or over the limit. */
void *jj_alloc(jj_arena *arena, size_t size);
char *jj_strndup(jj_arena *arena, const char *text, size_t length);
void jj_arena_free(jj_arena *arena);

/* ---- values ------------------------------------------------------------------------------- */

typedef enum {
    JJ_UNDEFINED,
    JJ_NONE,
    JJ_BOOL,
    JJ_INT,
    JJ_FLOAT,
    JJ_STRING,
    JJ_LIST, /* also tuples */
    JJ_DICT,
    JJ_NAMESPACE, /* a dict whose attributes `set ns.x = ...` changes in place */
    JJ_FUNCTION,  /* a global: range, namespace, raise_exception, strftime_now, dict */
    JJ_MACRO,
} jj_kind;

typedef struct jj_list jj_list;
typedef struct jj_dict jj_dict;
struct jj_node;

typedef struct {
    jj_kind kind;
    union {
        int boolean;
        int64_t integer;
        double number;
        struct {
            const char *data; /* UTF-8, not NUL-terminated; for JJ_UNDEFINED the missing name or NULL */
            size_t length;
        } string;
        jj_list *list;
        jj_dict *dict;
        int function;
        const struct jj_node *macro;
    } as;
} jj_value;

struct jj_list {
    jj_value *items;
    size_t n;
};

struct jj_dict { /* insertion-ordered, as Python's dict */
    jj_value *keys, *values;
    size_t n, capacity;
};

enum { JJ_FN_RANGE, JJ_FN_NAMESPACE, JJ_FN_RAISE, JJ_FN_STRFTIME, JJ_FN_DICT, JJ_FN_LOOP_CYCLE };

jj_value jj_undefined(const char *name, size_t length);
jj_value jj_none(void);
jj_value jj_bool(int b);
jj_value jj_int(int64_t i);
jj_value jj_float(double f);
jj_value jj_string(const char *data, size_t length);
/* NULL list/dict when out of memory (callers check). */
jj_list *jj_list_new(jj_arena *arena, size_t n);
jj_dict *jj_dict_new(jj_arena *arena, size_t capacity);
/* Sets key to value (replacing an equal key); 0 when out of memory. */
int jj_dict_set(jj_arena *arena, jj_dict *dict, jj_value key, jj_value value);
/* Value of key, or NULL. */
jj_value *jj_dict_get(const jj_dict *dict, jj_value key);
jj_value *jj_dict_get_cstr(const jj_dict *dict, const char *key);

int jj_truthy(jj_value v);
/* Python ==. */
int jj_equal(jj_value a, jj_value b);
/* Python str(v) / repr(v) appended to buf; 0 when out of memory. */
typedef struct {
    char *data;
    size_t n, capacity, limit; /* limit 0: unlimited */
    int over_limit;
} jj_buf;
int jj_buf_put(jj_buf *buf, const char *text, size_t length);
int jj_str(jj_buf *buf, jj_value v);
int jj_repr(jj_buf *buf, jj_value v);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None), separators default or given,
 * sort_keys). 0 on out of memory, -1 when v holds something JSON cannot (a macro). */
int jj_json(jj_buf *buf, jj_value v, int indent, const char *item_sep, const char *key_sep, int sort_keys,
            int depth);
const char *jj_kind_name(jj_kind kind);
/* Number of code points in UTF-8 text (invalid bytes count one each). */
size_t jj_utf8_count(const char *text, size_t length);
/* Byte offset of code point index cp (clamped to length). */
size_t jj_utf8_offset(const char *text, size_t length, size_t cp);

/* ---- tokens (jinja_lexer.c) --------------------------------------------------------------- */

typedef enum {
    JT_TEXT,
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP,
    JT_EOF,
} jj_token_kind;

/* Operators, by their spelling. */
enum {
    JO_ADD = 1, JO_SUB, JO_MUL, JO_DIV, JO_FLOORDIV, JO_MOD, JO_POW, JO_TILDE,
    JO_EQ, JO_NE, JO_LT, JO_LE, JO_GT, JO_GE, JO_ASSIGN,
    JO_LPAREN, JO_RPAREN, JO_LBRACKET, JO_RBRACKET, JO_LBRACE, JO_RBRACE,
    JO_COMMA, JO_DOT, JO_COLON, JO_PIPE,
    /* not lexed: */
    JO_IN, JO_NOT_IN,
};

typedef struct {
    jj_token_kind kind;
    int op;
    const char *text; /* TEXT, NAME: into the source; STRING: decoded, in the arena */
    size_t length;
    int64_t integer;
    double number;
    int line, column;
} jj_token;

typedef struct {
    jj_token *items;
    size_t n, capacity;
} jj_tokens;

/* Tokenises source with trim_blocks and lstrip_blocks. ML_OK or ML_ERR_FORMAT/NOMEM. */
int jj_lex(const char *source, size_t length, jj_arena *arena, jj_tokens *out);

/* ---- syntax tree (jinja_parser.c) --------------------------------------------------------- */

typedef enum {
    /* statements */
    JN_TEXT,     /* value: the text */
    JN_OUTPUT,   /* a: expression */
    JN_IF,       /* a: condition, b: body, c: else body (or NULL) */
    JN_FOR,      /* a: target, b: iterable, c: body, d: else body, e: filter condition */
    JN_SET,      /* a: target, b: value */
    JN_SET_BLOCK,/* a: target, b: body */
    JN_MACRO,    /* name, params in list (JN_NAME, default in their a), body in b */
    JN_BREAK,
    JN_CONTINUE,
    JN_BODY,     /* list of statements */
    /* expressions */
    JN_CONST,    /* value */
    JN_NAME,     /* name */
    JN_GETATTR,  /* a.name */
    JN_GETITEM,  /* a[b] */
    JN_SLICE,    /* a[b:c:d], each of b c d may be NULL */
    JN_CALL,     /* a(list, kw) */
    JN_FILTER,   /* a | name(list, kw) */
    JN_TEST,     /* a is [not: op] name(list) */
    JN_BINARY,   /* a op b */
    JN_NOT,      /* not a */
    JN_NEG,      /* -a */
    JN_AND,
    JN_OR,
    JN_COND,     /* b if a else c */
    JN_LIST,
    JN_TUPLE,
    JN_DICT,     /* list: key, value, key, value... */
} jj_node_kind;

typedef struct jj_node {
    jj_node_kind kind;
    int op;
    int line, column;
    jj_value value;
    const char *name;
    size_t name_length;
    struct jj_node *a, *b, *c, *d, *e;
    struct jj_node **list;
    size_t n_list;
    struct jj_node **kw_values; /* keyword arguments */
    const char **kw_names;
    size_t *kw_lengths;
    size_t n_kw;
} jj_node;

struct ml_jinja_template {
    jj_arena arena; /* tokens and tree */
    jj_node *root;  /* JN_BODY */
};

/* Parses the token list into a JN_BODY. ML_OK or ML_ERR_FORMAT/NOMEM. */
int jj_parse(const jj_tokens *tokens, jj_arena *arena, jj_node **root);

/* ---- evaluation (jinja_eval.c, jinja_builtins.c) ------------------------------------------ */

typedef struct jj_scope jj_scope;

typedef struct {
    jj_arena arena;
    jj_buf out;
    const ml_jinja_limits *limits;
    uint64_t steps;
    int call_depth;
    int status;     /* first error: ML_OK until something fails */
    jj_scope *globals;
    jj_scope *template_scope; /* top-level sets; macros see them */
} jj_context;

/* Records an error at node (first one wins); returns the status it records. */
int jj_fail(jj_context *ctx, const jj_node *at, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An out-of-memory error, or the memory limit. */
int jj_fail_memory(jj_context *ctx, const jj_node *at);

typedef struct {
    jj_value *positional;
    size_t n_positional;
    const char **kw_names;
    size_t *kw_lengths;
    jj_value *kw_values;
    size_t n_kw;
} jj_args;

/* Filters, tests, string/list/dict methods and global functions. Return ML_OK and set *result,
 * or record an error through jj_fail. */
int jj_apply_filter(jj_context *ctx, const jj_node *at, const char *name, size_t name_length, jj_value input,
                    const jj_args *args, jj_value *result);
int jj_apply_test(jj_context *ctx, const jj_node *at, const char *name, size_t name_length, jj_value input,
                  const jj_args *args, int *result);
int jj_call_method(jj_context *ctx, const jj_node *at, jj_value self, const char *name, size_t name_length,
                   const jj_args *args, jj_value *result);
int jj_call_function(jj_context *ctx, const jj_node *at, int function, const jj_args *args, jj_value *result);
/* Converts jansson JSON into values. */
int jj_from_json(jj_context *ctx, const json_t *json, jj_value *out);
/* a op b for + - * / // % ** ~ and comparisons; in and not in. */
int jj_binary(jj_context *ctx, const jj_node *at, int op, jj_value a, jj_value b, jj_value *result);
/* A string value made from buf's content in the arena. */
int jj_make_string(jj_context *ctx, const jj_node *at, const char *data, size_t length, jj_value *out);

#endif
