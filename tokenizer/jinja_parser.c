/* Jinja parser: tokens to a syntax tree, by recursive descent with jinja2's precedence
 * (jinja2/parser.py): conditional < or < and < not < comparison < + - < ~ < * / // % < ** <
 * unary minus < postfix (. [] ()) and filters/tests (| and is).
 * Statements: if/elif/else, for (with a filter condition and else), set (to names, tuples,
 * namespace attributes, and block set), macro, break, continue, generation (HF's marker, which
 * renders its body). Nesting is bounded so that hostile input cannot exhaust the stack. */
#include <string.h>

#include "core/error.h"
#include "tokenizer/jinja_internal.h"

#define MAX_NESTING 200

typedef struct {
    const jj_tokens *tokens;
    size_t pos;
    jj_arena *arena;
    int depth;
    int failed;
} parser;

static const jj_token *peek(const parser *p) { return &p->tokens->items[p->pos]; }
static const jj_token *peek_at(const parser *p, size_t ahead) {
    size_t i = p->pos + ahead;
    return &p->tokens->items[i < p->tokens->n ? i : p->tokens->n - 1];
}
static const jj_token *next(parser *p) {
    const jj_token *t = peek(p);
    if (t->kind != JT_EOF) p->pos++;
    return t;
}

static int token_is_name(const jj_token *t, const char *name) {
    return t->kind == JT_NAME && t->length == strlen(name) && memcmp(t->text, name, t->length) == 0;
}
static int token_is_op(const jj_token *t, int op) { return t->kind == JT_OP && t->op == op; }

static const char *describe(const jj_token *t) {
    switch (t->kind) {
    case JT_TEXT: return "text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_NAME: return "a name";
    case JT_STRING: return "a string";
    case JT_INT:
    case JT_FLOAT: return "a number";
    case JT_OP: return "an operator";
    default: return "the end of the template";
    }
}

static void *fail_at(parser *p, const jj_token *t, const char *what) {
    if (!p->failed) {
        if (t->kind == JT_NAME)
            ml_set_error(ML_ERR_FORMAT, "chat template line %d, column %d: %s (found '%.*s')", t->line, t->column, what,
                         (int)(t->length > 40 ? 40 : t->length), t->text);
        else
            ml_set_error(ML_ERR_FORMAT, "chat template line %d, column %d: %s (found %s)", t->line, t->column, what,
                         describe(t));
        p->failed = ML_ERR_FORMAT;
    }
    return NULL;
}

static void *out_of_memory(parser *p) {
    if (!p->failed) p->failed = ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    return NULL;
}

static jj_node *node(parser *p, jj_node_kind kind, const jj_token *at) {
    jj_node *n = jj_alloc(p->arena, sizeof *n);
    if (!n) return out_of_memory(p);
    n->kind = kind;
    n->line = at->line;
    n->column = at->column;
    return n;
}

/* Growable node arrays while parsing, copied into the arena at the end. */
typedef struct {
    jj_node **items;
    size_t n, capacity;
} node_vec;

static int vec_push(parser *p, node_vec *v, jj_node *n) {
    if (v->n == v->capacity) {
        size_t capacity = v->capacity ? v->capacity * 2 : 8;
        jj_node **items = jj_alloc(p->arena, capacity * sizeof *items);
        if (!items) return out_of_memory(p), 0;
        if (v->n) memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->capacity = capacity;
    }
    v->items[v->n++] = n;
    return 1;
}

static int expect_op(parser *p, int op, const char *what) {
    if (!token_is_op(peek(p), op)) return fail_at(p, peek(p), what), 0;
    next(p);
    return 1;
}

static jj_node *parse_expression(parser *p);
static jj_node *parse_unary(parser *p, int with_filter);
static jj_node *parse_or(parser *p);

/* Call arguments after "(": positional and name=value; fills n->list and n->kw_*. */
static int parse_call_args(parser *p, jj_node *n) {
    node_vec positional = {0}, kw_values = {0};
    const char *names[64];
    size_t lengths[64];
    while (!token_is_op(peek(p), JO_RPAREN)) {
        if (positional.n + kw_values.n && !expect_op(p, JO_COMMA, "expected ',' or ')' in an argument list")) return 0;
        if (token_is_op(peek(p), JO_RPAREN)) break;
        if (peek(p)->kind == JT_NAME && token_is_op(peek_at(p, 1), JO_ASSIGN)) {
            const jj_token *name = next(p);
            next(p);
            if (kw_values.n == 64) return fail_at(p, name, "too many keyword arguments"), 0;
            names[kw_values.n] = name->text;
            lengths[kw_values.n] = name->length;
            jj_node *value = parse_expression(p);
            if (!value || !vec_push(p, &kw_values, value)) return 0;
        } else {
            jj_node *value = parse_expression(p);
            if (!value || !vec_push(p, &positional, value)) return 0;
        }
    }
    next(p);
    n->list = positional.items;
    n->n_list = positional.n;
    n->kw_values = kw_values.items;
    n->n_kw = kw_values.n;
    if (kw_values.n) {
        n->kw_names = jj_alloc(p->arena, kw_values.n * sizeof *n->kw_names);
        n->kw_lengths = jj_alloc(p->arena, kw_values.n * sizeof *n->kw_lengths);
        if (!n->kw_names || !n->kw_lengths) return out_of_memory(p), 0;
        memcpy(n->kw_names, names, kw_values.n * sizeof *names);
        memcpy(n->kw_lengths, lengths, kw_values.n * sizeof *lengths);
    }
    return 1;
}

static jj_node *parse_primary(parser *p) {
    const jj_token *t = peek(p);
    jj_node *n;
    if (t->kind == JT_NAME) {
        next(p);
        n = node(p, JN_CONST, t);
        if (!n) return NULL;
        if (token_is_name(t, "true") || token_is_name(t, "True")) n->value = jj_bool(1);
        else if (token_is_name(t, "false") || token_is_name(t, "False")) n->value = jj_bool(0);
        else if (token_is_name(t, "none") || token_is_name(t, "None")) n->value = jj_none();
        else {
            n->kind = JN_NAME;
            n->name = t->text;
            n->name_length = t->length;
        }
        return n;
    }
    if (t->kind == JT_STRING) {
        next(p);
        n = node(p, JN_CONST, t);
        if (!n) return NULL;
        const char *text = t->text;
        size_t length = t->length;
        if (peek(p)->kind == JT_STRING) { /* adjacent literals concatenate */
            size_t total = length;
            for (size_t i = p->pos; p->tokens->items[i].kind == JT_STRING; i++) total += p->tokens->items[i].length;
            char *joined = jj_alloc(p->arena, total + 1);
            if (!joined) return out_of_memory(p);
            memcpy(joined, text, length);
            while (peek(p)->kind == JT_STRING) {
                const jj_token *more = next(p);
                memcpy(joined + length, more->text, more->length);
                length += more->length;
            }
            text = joined;
        }
        n->value = jj_string(text, length);
        return n;
    }
    if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        next(p);
        n = node(p, JN_CONST, t);
        if (n) n->value = t->kind == JT_INT ? jj_int(t->integer) : jj_float(t->number);
        return n;
    }
    if (token_is_op(t, JO_LPAREN)) {
        next(p);
        if (token_is_op(peek(p), JO_RPAREN)) {
            next(p);
            return node(p, JN_TUPLE, t);
        }
        jj_node *first = parse_expression(p);
        if (!first) return NULL;
        if (!token_is_op(peek(p), JO_COMMA)) return expect_op(p, JO_RPAREN, "expected ')'") ? first : NULL;
        node_vec items = {0};
        if (!vec_push(p, &items, first)) return NULL;
        while (token_is_op(peek(p), JO_COMMA)) {
            next(p);
            if (token_is_op(peek(p), JO_RPAREN)) break;
            jj_node *item = parse_expression(p);
            if (!item || !vec_push(p, &items, item)) return NULL;
        }
        if (!expect_op(p, JO_RPAREN, "expected ')' after a tuple")) return NULL;
        n = node(p, JN_TUPLE, t);
        if (!n) return NULL;
        n->list = items.items;
        n->n_list = items.n;
        return n;
    }
    if (token_is_op(t, JO_LBRACKET) || token_is_op(t, JO_LBRACE)) {
        int is_dict = token_is_op(t, JO_LBRACE);
        int close = is_dict ? JO_RBRACE : JO_RBRACKET;
        next(p);
        node_vec items = {0};
        while (!token_is_op(peek(p), close)) {
            if (items.n && !expect_op(p, JO_COMMA, is_dict ? "expected ',' or '}' in a dict" : "expected ',' or ']' in a list"))
                return NULL;
            if (token_is_op(peek(p), close)) break;
            jj_node *item = parse_expression(p);
            if (!item || !vec_push(p, &items, item)) return NULL;
            if (is_dict) {
                if (!expect_op(p, JO_COLON, "expected ':' after a dict key")) return NULL;
                item = parse_expression(p);
                if (!item || !vec_push(p, &items, item)) return NULL;
            }
        }
        next(p);
        n = node(p, is_dict ? JN_DICT : JN_LIST, t);
        if (!n) return NULL;
        n->list = items.items;
        n->n_list = items.n;
        return n;
    }
    return fail_at(p, t, "expected an expression");
}

static jj_node *parse_subscript(parser *p, jj_node *target, const jj_token *at) {
    jj_node *parts[3] = {NULL, NULL, NULL};
    int is_slice = 0;
    for (int i = 0; i < 3; i++) {
        if (!token_is_op(peek(p), JO_COLON) && !token_is_op(peek(p), JO_RBRACKET)) {
            parts[i] = parse_expression(p);
            if (!parts[i]) return NULL;
        }
        if (i < 2 && token_is_op(peek(p), JO_COLON)) {
            next(p);
            is_slice = 1;
        } else {
            break;
        }
    }
    if (!expect_op(p, JO_RBRACKET, "expected ']'")) return NULL;
    if (!is_slice && !parts[0]) return fail_at(p, at, "expected an index inside []");
    jj_node *n = node(p, is_slice ? JN_SLICE : JN_GETITEM, at);
    if (!n) return NULL;
    n->a = target;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jj_node *parse_postfix(parser *p, jj_node *n) {
    for (;;) {
        const jj_token *t = peek(p);
        if (token_is_op(t, JO_DOT)) {
            next(p);
            const jj_token *name = next(p);
            jj_node *get;
            if (name->kind == JT_INT) { /* x.0 is x[0] */
                get = node(p, JN_GETITEM, t);
                if (!get || !(get->b = node(p, JN_CONST, name))) return NULL;
                get->b->value = jj_int(name->integer);
            } else {
                if (name->kind != JT_NAME) return fail_at(p, name, "expected an attribute name after '.'");
                get = node(p, JN_GETATTR, t);
                if (!get) return NULL;
                get->name = name->text;
                get->name_length = name->length;
            }
            get->a = n;
            n = get;
        } else if (token_is_op(t, JO_LBRACKET)) {
            next(p);
            if (!(n = parse_subscript(p, n, t))) return NULL;
        } else if (token_is_op(t, JO_LPAREN)) {
            next(p);
            jj_node *call = node(p, JN_CALL, t);
            if (!call || !parse_call_args(p, call)) return NULL;
            call->a = n;
            call->line = n->line; /* errors point at the callee, e.g. raise_exception */
            call->column = n->column;
            n = call;
        } else {
            return n;
        }
    }
}

/* "| name(args)" filters and "is [not] name args" tests. */
static jj_node *parse_filters_and_tests(parser *p, jj_node *n) {
    for (;;) {
        const jj_token *t = peek(p);
        if (token_is_op(t, JO_PIPE)) {
            next(p);
            const jj_token *name = next(p);
            if (name->kind != JT_NAME) return fail_at(p, name, "expected a filter name after '|'");
            jj_node *f = node(p, JN_FILTER, name);
            if (!f) return NULL;
            f->name = name->text;
            f->name_length = name->length;
            /* dotted filter names do not occur in chat templates */
            if (token_is_op(peek(p), JO_LPAREN)) {
                next(p);
                if (!parse_call_args(p, f)) return NULL;
            }
            f->a = n;
            n = f;
        } else if (token_is_name(t, "is")) {
            next(p);
            jj_node *test = node(p, JN_TEST, t);
            if (!test) return NULL;
            if (token_is_name(peek(p), "not")) {
                next(p);
                test->op = 1;
            }
            const jj_token *name = next(p);
            if (name->kind != JT_NAME) {
                /* "is none", "is true", ... are names; anything else is an error */
                return fail_at(p, name, "expected a test name after 'is'");
            }
            test->name = name->text;
            test->name_length = name->length;
            const jj_token *arg = peek(p);
            if (token_is_op(arg, JO_LPAREN)) {
                next(p);
                if (!parse_call_args(p, test)) return NULL;
            } else if ((arg->kind == JT_STRING || arg->kind == JT_INT || arg->kind == JT_FLOAT ||
                        (arg->kind == JT_NAME && !token_is_name(arg, "else") && !token_is_name(arg, "or") &&
                         !token_is_name(arg, "and") && !token_is_name(arg, "if") && !token_is_name(arg, "is") &&
                         !token_is_name(arg, "in") && !token_is_name(arg, "not")) ||
                        token_is_op(arg, JO_LBRACKET) || token_is_op(arg, JO_LBRACE))) {
                jj_node *value = parse_primary(p);
                if (!value || !(value = parse_postfix(p, value))) return NULL;
                test->list = jj_alloc(p->arena, sizeof *test->list);
                if (!test->list) return out_of_memory(p);
                test->list[0] = value;
                test->n_list = 1;
            }
            test->a = n;
            n = test;
        } else {
            return n;
        }
    }
}

static jj_node *parse_unary(parser *p, int with_filter) {
    if (++p->depth > MAX_NESTING) return fail_at(p, peek(p), "expression nested too deeply");
    const jj_token *t = peek(p);
    jj_node *n;
    if (token_is_op(t, JO_SUB) || token_is_op(t, JO_ADD)) {
        next(p);
        jj_node *operand = parse_unary(p, 0);
        if (!operand) return NULL;
        if (token_is_op(t, JO_ADD)) {
            n = operand;
        } else {
            if (!(n = node(p, JN_NEG, t))) return NULL;
            n->a = operand;
        }
    } else {
        n = parse_primary(p);
        if (n) n = parse_postfix(p, n);
    }
    if (n && with_filter) n = parse_filters_and_tests(p, n);
    p->depth--;
    return n;
}

static jj_node *binary(parser *p, jj_node_kind kind, int op, const jj_token *at, jj_node *a, jj_node *b) {
    if (!a || !b) return NULL;
    jj_node *n = node(p, kind, at);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jj_node *parse_pow(parser *p) {
    jj_node *left = parse_unary(p, 1);
    while (left && token_is_op(peek(p), JO_POW)) {
        const jj_token *t = next(p);
        left = binary(p, JN_BINARY, JO_POW, t, left, parse_unary(p, 1));
    }
    return left;
}

static jj_node *parse_math2(parser *p) {
    jj_node *left = parse_pow(p);
    while (left) {
        const jj_token *t = peek(p);
        if (!(token_is_op(t, JO_MUL) || token_is_op(t, JO_DIV) || token_is_op(t, JO_FLOORDIV) || token_is_op(t, JO_MOD)))
            break;
        next(p);
        left = binary(p, JN_BINARY, t->op, t, left, parse_pow(p));
    }
    return left;
}

static jj_node *parse_concat(parser *p) {
    jj_node *left = parse_math2(p);
    while (left && token_is_op(peek(p), JO_TILDE)) {
        const jj_token *t = next(p);
        left = binary(p, JN_BINARY, JO_TILDE, t, left, parse_math2(p));
    }
    return left;
}

static jj_node *parse_math1(parser *p) {
    jj_node *left = parse_concat(p);
    while (left && (token_is_op(peek(p), JO_ADD) || token_is_op(peek(p), JO_SUB))) {
        const jj_token *t = next(p);
        left = binary(p, JN_BINARY, t->op, t, left, parse_concat(p));
    }
    return left;
}

static jj_node *parse_compare(parser *p) {
    jj_node *left = parse_math1(p);
    while (left) {
        const jj_token *t = peek(p);
        int op = 0;
        if (t->kind == JT_OP && t->op >= JO_EQ && t->op <= JO_GE) {
            op = t->op;
            next(p);
        } else if (token_is_name(t, "in")) {
            op = JO_IN;
            next(p);
        } else if (token_is_name(t, "not") && token_is_name(peek_at(p, 1), "in")) {
            op = JO_NOT_IN;
            next(p);
            next(p);
        } else {
            break;
        }
        /* a < b < c is (a < b) and (b < c) in Jinja; chat templates do not chain, so this is
         * left-associative. */
        left = binary(p, JN_BINARY, op, t, left, parse_math1(p));
    }
    return left;
}

static jj_node *parse_not(parser *p) {
    const jj_token *t = peek(p);
    if (token_is_name(t, "not")) {
        next(p);
        if (++p->depth > MAX_NESTING) return fail_at(p, t, "expression nested too deeply");
        jj_node *operand = parse_not(p);
        p->depth--;
        if (!operand) return NULL;
        jj_node *n = node(p, JN_NOT, t);
        if (n) n->a = operand;
        return n;
    }
    return parse_compare(p);
}

static jj_node *parse_and(parser *p) {
    jj_node *left = parse_not(p);
    while (left && token_is_name(peek(p), "and")) {
        const jj_token *t = next(p);
        left = binary(p, JN_AND, 0, t, left, parse_not(p));
    }
    return left;
}

static jj_node *parse_or(parser *p) {
    jj_node *left = parse_and(p);
    while (left && token_is_name(peek(p), "or")) {
        const jj_token *t = next(p);
        left = binary(p, JN_OR, 0, t, left, parse_and(p));
    }
    return left;
}

static jj_node *parse_expression(parser *p) {
    if (++p->depth > MAX_NESTING) return fail_at(p, peek(p), "expression nested too deeply");
    jj_node *n = parse_or(p);
    while (n && token_is_name(peek(p), "if")) {
        const jj_token *t = next(p);
        jj_node *cond = node(p, JN_COND, t);
        if (!cond) return NULL;
        cond->b = n;
        if (!(cond->a = parse_or(p))) return NULL;
        if (token_is_name(peek(p), "else")) {
            next(p);
            if (!(cond->c = parse_expression(p))) return NULL;
        }
        n = cond;
    }
    p->depth--;
    return n;
}

/* ---- statements --------------------------------------------------------------------------- */

static int expect_block_end(parser *p) {
    if (peek(p)->kind != JT_BLOCK_END) return fail_at(p, peek(p), "expected '%}'"), 0;
    next(p);
    return 1;
}

/* Statements until a block tag whose first name is one of ends (NULL-terminated); on return
 * p->pos is after that name and *which is its index. */
static jj_node *parse_body(parser *p, const char *const *ends, int *which, const jj_token *opened_at);

/* Assignment or loop target: a name, "a, b", or (set only) "ns.attr". */
static jj_node *parse_target(parser *p, int allow_attribute) {
    const jj_token *t = peek(p);
    node_vec names = {0};
    for (;;) {
        const jj_token *name = next(p);
        if (name->kind != JT_NAME) return fail_at(p, name, "expected a variable name");
        jj_node *n = node(p, JN_NAME, name);
        if (!n) return NULL;
        n->name = name->text;
        n->name_length = name->length;
        if (allow_attribute && token_is_op(peek(p), JO_DOT)) {
            next(p);
            const jj_token *attribute = next(p);
            if (attribute->kind != JT_NAME) return fail_at(p, attribute, "expected an attribute name after '.'");
            jj_node *get = node(p, JN_GETATTR, attribute);
            if (!get) return NULL;
            get->a = n;
            get->name = attribute->text;
            get->name_length = attribute->length;
            return get;
        }
        if (!vec_push(p, &names, n)) return NULL;
        if (!token_is_op(peek(p), JO_COMMA)) break;
        next(p);
    }
    if (names.n == 1) return names.items[0];
    jj_node *tuple = node(p, JN_TUPLE, t);
    if (!tuple) return NULL;
    tuple->list = names.items;
    tuple->n_list = names.n;
    return tuple;
}

static jj_node *parse_if(parser *p, const jj_token *at) {
    jj_node *n = node(p, JN_IF, at);
    if (!n || !(n->a = parse_expression(p)) || !expect_block_end(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    int which;
    if (!(n->b = parse_body(p, ends, &which, at))) return NULL;
    if (which == 0) {
        const jj_token *elif = &p->tokens->items[p->pos - 1];
        jj_node *body = node(p, JN_BODY, elif);
        if (!body || !(body->list = jj_alloc(p->arena, sizeof *body->list))) return out_of_memory(p);
        if (++p->depth > MAX_NESTING) return fail_at(p, elif, "elif chain too long");
        if (!(body->list[0] = parse_if(p, elif))) return NULL;
        p->depth--;
        body->n_list = 1;
        n->c = body;
        return n;
    }
    if (which == 1) {
        static const char *const end_if[] = {"endif", NULL};
        if (!expect_block_end(p) || !(n->c = parse_body(p, end_if, &which, at))) return NULL;
    }
    return expect_block_end(p) ? n : NULL;
}

static jj_node *parse_for(parser *p, const jj_token *at) {
    jj_node *n = node(p, JN_FOR, at);
    if (!n || !(n->a = parse_target(p, 0))) return NULL;
    if (!token_is_name(peek(p), "in")) return fail_at(p, peek(p), "expected 'in' in a for loop");
    next(p);
    /* the iterable stops before "if" (the loop filter) and "recursive" */
    if (!(n->b = parse_or(p))) return NULL;
    if (token_is_name(peek(p), "if")) {
        next(p);
        if (!(n->e = parse_expression(p))) return NULL;
    }
    if (token_is_name(peek(p), "recursive")) return fail_at(p, peek(p), "recursive loops are not supported");
    if (!expect_block_end(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    int which;
    if (!(n->c = parse_body(p, ends, &which, at))) return NULL;
    if (which == 0) {
        static const char *const end_for[] = {"endfor", NULL};
        if (!expect_block_end(p) || !(n->d = parse_body(p, end_for, &which, at))) return NULL;
    }
    return expect_block_end(p) ? n : NULL;
}

static jj_node *parse_set(parser *p, const jj_token *at) {
    jj_node *n = node(p, JN_SET, at);
    if (!n || !(n->a = parse_target(p, 1))) return NULL;
    if (token_is_op(peek(p), JO_ASSIGN)) {
        next(p);
        jj_node *value = parse_expression(p);
        if (!value) return NULL;
        if (token_is_op(peek(p), JO_COMMA)) { /* set a = 1, 2 */
            node_vec items = {0};
            if (!vec_push(p, &items, value)) return NULL;
            while (token_is_op(peek(p), JO_COMMA)) {
                next(p);
                jj_node *item = parse_expression(p);
                if (!item || !vec_push(p, &items, item)) return NULL;
            }
            if (!(value = node(p, JN_TUPLE, at))) return NULL;
            value->list = items.items;
            value->n_list = items.n;
        }
        n->b = value;
        return expect_block_end(p) ? n : NULL;
    }
    if (n->a->kind != JN_NAME) return fail_at(p, peek(p), "expected '=' in set");
    n->kind = JN_SET_BLOCK;
    static const char *const ends[] = {"endset", NULL};
    int which;
    if (!expect_block_end(p) || !(n->b = parse_body(p, ends, &which, at))) return NULL;
    return expect_block_end(p) ? n : NULL;
}

static jj_node *parse_macro(parser *p, const jj_token *at) {
    const jj_token *name = next(p);
    if (name->kind != JT_NAME) return fail_at(p, name, "expected a macro name");
    jj_node *n = node(p, JN_MACRO, at);
    if (!n) return NULL;
    n->name = name->text;
    n->name_length = name->length;
    if (!expect_op(p, JO_LPAREN, "expected '(' after the macro name")) return NULL;
    node_vec params = {0};
    while (!token_is_op(peek(p), JO_RPAREN)) {
        if (params.n && !expect_op(p, JO_COMMA, "expected ',' or ')' in macro parameters")) return NULL;
        const jj_token *param = next(p);
        if (param->kind != JT_NAME) return fail_at(p, param, "expected a parameter name");
        jj_node *pn = node(p, JN_NAME, param);
        if (!pn) return NULL;
        pn->name = param->text;
        pn->name_length = param->length;
        if (token_is_op(peek(p), JO_ASSIGN)) {
            next(p);
            if (!(pn->a = parse_expression(p))) return NULL;
        }
        if (!vec_push(p, &params, pn)) return NULL;
    }
    next(p);
    n->list = params.items;
    n->n_list = params.n;
    static const char *const ends[] = {"endmacro", NULL};
    int which;
    if (!expect_block_end(p) || !(n->b = parse_body(p, ends, &which, at))) return NULL;
    if (peek(p)->kind == JT_NAME) next(p); /* {% endmacro name %} */
    return expect_block_end(p) ? n : NULL;
}

static jj_node *parse_statement(parser *p) {
    const jj_token *at = next(p); /* the keyword */
    if (at->kind != JT_NAME) return fail_at(p, at, "expected a statement keyword after '{%'");
    if (token_is_name(at, "if")) return parse_if(p, at);
    if (token_is_name(at, "for")) return parse_for(p, at);
    if (token_is_name(at, "set")) return parse_set(p, at);
    if (token_is_name(at, "macro")) return parse_macro(p, at);
    if (token_is_name(at, "break") || token_is_name(at, "continue")) {
        jj_node *n = node(p, token_is_name(at, "break") ? JN_BREAK : JN_CONTINUE, at);
        return n && expect_block_end(p) ? n : NULL;
    }
    if (token_is_name(at, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        int which;
        if (!expect_block_end(p)) return NULL;
        jj_node *body = parse_body(p, ends, &which, at);
        return body && expect_block_end(p) ? body : NULL;
    }
    return fail_at(p, at, "unknown or unsupported statement");
}

static jj_node *parse_body(parser *p, const char *const *ends, int *which, const jj_token *opened_at) {
    if (++p->depth > MAX_NESTING) return fail_at(p, peek(p), "blocks nested too deeply");
    jj_node *body = node(p, JN_BODY, peek(p));
    if (!body) return NULL;
    node_vec statements = {0};
    for (;;) {
        const jj_token *t = peek(p);
        jj_node *n = NULL;
        if (t->kind == JT_EOF) {
            if (!ends) break;
            const char *last_end = ends[0];
            for (int i = 1; ends[i]; i++) last_end = ends[i];
            if (!p->failed)
                p->failed = ml_set_error(ML_ERR_FORMAT,
                                         "chat template line %d, column %d: '{%% %.*s' is never closed with '{%% %s %%}'",
                                         opened_at->line, opened_at->column, (int)opened_at->length, opened_at->text,
                                         last_end);
            return NULL;
        }
        if (t->kind == JT_TEXT) {
            next(p);
            if (!(n = node(p, JN_TEXT, t))) return NULL;
            n->value = jj_string(t->text, t->length);
        } else if (t->kind == JT_VAR_BEGIN) {
            next(p);
            if (!(n = node(p, JN_OUTPUT, t)) || !(n->a = parse_expression(p))) return NULL;
            if (peek(p)->kind != JT_VAR_END) return fail_at(p, peek(p), "expected '}}'");
            next(p);
        } else if (t->kind == JT_BLOCK_BEGIN) {
            const jj_token *keyword = peek_at(p, 1);
            int matched = -1;
            for (int i = 0; ends && ends[i]; i++) {
                if (token_is_name(keyword, ends[i])) matched = i;
            }
            if (matched >= 0) {
                next(p);
                next(p);
                *which = matched;
                break;
            }
            if (keyword->kind == JT_NAME && keyword->length >= 3 &&
                (memcmp(keyword->text, "end", 3) == 0 || token_is_name(keyword, "else") || token_is_name(keyword, "elif")))
                return fail_at(p, keyword, ends ? "unexpected end of block" : "block end without a matching start");
            next(p);
            if (!(n = parse_statement(p))) return NULL;
        } else {
            return fail_at(p, t, "unexpected token");
        }
        if (!vec_push(p, &statements, n)) return NULL;
    }
    body->list = statements.items;
    body->n_list = statements.n;
    p->depth--;
    return body;
}

int jj_parse(const jj_tokens *tokens, jj_arena *arena, jj_node **root) {
    parser p = {tokens, 0, arena, 0, 0};
    int which;
    *root = parse_body(&p, NULL, &which, peek(&p));
    if (!*root) return p.failed ? p.failed : ml_set_error(ML_ERR_FORMAT, "chat template: syntax error");
    return ML_OK;
}
