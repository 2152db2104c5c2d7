/* Jinja tokeniser. Text between tags becomes JT_TEXT after whitespace control, as jinja2's
 * lexer does it with trim_blocks=True and lstrip_blocks=True (HF's settings):
 *  - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}", "-}}", "-#}" after it;
 *  - lstrip_blocks: spaces and tabs from the start of a line up to "{%" or "{#" are removed
 *    ("{%+" keeps them);
 *  - trim_blocks: the first newline after "%}" or "#}" is removed ("+%}" keeps it).
 * Inside tags: names, strings ('..' and ".." with Python escapes), integers, floats, operators. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/jinja_internal.h"

typedef struct {
    const char *source;
    size_t length, pos;
    int line, column;
    jj_arena *arena;
    jj_tokens *out;
} lexer;

static int lex_error(const lexer *lx, const char *what) {
    return ml_set_error(ML_ERR_FORMAT, "chat template line %d, column %d: %s", lx->line, lx->column, what);
}

static void advance(lexer *lx, size_t n) {
    for (size_t i = 0; i < n && lx->pos < lx->length; i++, lx->pos++) {
        if (lx->source[lx->pos] == '\n') {
            lx->line++;
            lx->column = 1;
        } else {
            lx->column++;
        }
    }
}

static jj_token *push(lexer *lx, jj_token_kind kind, int line, int column) {
    jj_tokens *t = lx->out;
    if (t->n == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 256;
        jj_token *items = realloc(t->items, capacity * sizeof *items);
        if (!items) return NULL;
        t->items = items;
        t->capacity = capacity;
    }
    jj_token *token = &t->items[t->n++];
    memset(token, 0, sizeof *token);
    token->kind = kind;
    token->line = line;
    token->column = column;
    return token;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int starts(const lexer *lx, const char *s) {
    size_t n = strlen(s);
    return lx->length - lx->pos >= n && memcmp(lx->source + lx->pos, s, n) == 0;
}

/* Decodes a string literal at lx->pos (the quote) into the arena. */
static int lex_string(lexer *lx, jj_token *token) {
    char quote = lx->source[lx->pos];
    size_t start = lx->pos + 1, end = start;
    while (end < lx->length && lx->source[end] != quote) end += lx->source[end] == '\\' ? 2 : 1;
    if (end >= lx->length) return lex_error(lx, "unterminated string literal");
    char *text = jj_alloc(lx->arena, end - start + 1);
    if (!text) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    size_t n = 0;
    for (size_t i = start; i < end; i++) {
        char c = lx->source[i];
        if (c != '\\') {
            text[n++] = c;
            continue;
        }
        c = lx->source[++i];
        switch (c) {
        case 'n': text[n++] = '\n'; break;
        case 't': text[n++] = '\t'; break;
        case 'r': text[n++] = '\r'; break;
        case '0': text[n++] = '\0'; break;
        case '\\': case '\'': case '"': text[n++] = c; break;
        case '\n': break; /* line continuation */
        default: /* Python keeps unknown escapes as written */
            text[n++] = '\\';
            text[n++] = c;
            break;
        }
    }
    token->kind = JT_STRING;
    token->text = text;
    token->length = n;
    advance(lx, end + 1 - lx->pos);
    return ML_OK;
}

static int lex_number(lexer *lx, jj_token *token) {
    size_t end = lx->pos;
    int is_float = 0;
    char digits[64];
    size_t n = 0;
    while (end < lx->length && (isdigit((unsigned char)lx->source[end]) || lx->source[end] == '_')) {
        if (lx->source[end] != '_' && n < sizeof digits - 1) digits[n++] = lx->source[end];
        end++;
    }
    if (end + 1 < lx->length && lx->source[end] == '.' && isdigit((unsigned char)lx->source[end + 1])) {
        is_float = 1;
        if (n < sizeof digits - 1) digits[n++] = '.';
        end++;
        while (end < lx->length && isdigit((unsigned char)lx->source[end])) {
            if (n < sizeof digits - 1) digits[n++] = lx->source[end];
            end++;
        }
    }
    if (end < lx->length && (lx->source[end] == 'e' || lx->source[end] == 'E')) {
        size_t e = end + 1;
        if (e < lx->length && (lx->source[e] == '+' || lx->source[e] == '-')) e++;
        if (e < lx->length && isdigit((unsigned char)lx->source[e])) {
            is_float = 1;
            for (size_t i = end; i < e && n < sizeof digits - 1; i++) digits[n++] = lx->source[i];
            end = e;
            while (end < lx->length && isdigit((unsigned char)lx->source[end])) {
                if (n < sizeof digits - 1) digits[n++] = lx->source[end];
                end++;
            }
        }
    }
    digits[n] = '\0';
    if (n >= sizeof digits - 1) return lex_error(lx, "number literal too long");
    if (is_float) {
        token->kind = JT_FLOAT;
        token->number = strtod(digits, NULL);
    } else {
        token->kind = JT_INT;
        char *stop;
        unsigned long long v = strtoull(digits, &stop, 10);
        if (n > 18 && v > (unsigned long long)INT64_MAX) return lex_error(lx, "integer literal too large");
        token->integer = (int64_t)v;
    }
    advance(lx, end - lx->pos);
    return ML_OK;
}

static const struct {
    const char *spelling;
    int op;
} operators[] = {
    {"//", JO_FLOORDIV}, {"**", JO_POW}, {"==", JO_EQ}, {"!=", JO_NE}, {"<=", JO_LE}, {">=", JO_GE},
    {"+", JO_ADD},       {"-", JO_SUB},  {"*", JO_MUL}, {"/", JO_DIV}, {"%", JO_MOD}, {"~", JO_TILDE},
    {"<", JO_LT},        {">", JO_GT},   {"=", JO_ASSIGN}, {"(", JO_LPAREN}, {")", JO_RPAREN},
    {"[", JO_LBRACKET},  {"]", JO_RBRACKET}, {"{", JO_LBRACE}, {"}", JO_RBRACE}, {",", JO_COMMA},
    {".", JO_DOT},       {":", JO_COLON}, {"|", JO_PIPE},
};

/* Tokens of one {{ ... }} or {% ... %}; stops after the closing marker. Sets *strip_after to 1
 * for "-}}"/"-%}", *keep_newline for "+%}". */
static int lex_tag(lexer *lx, int is_block, int *strip_after, int *keep_newline) {
    const char *close = is_block ? "%}" : "}}";
    int depth = 0; /* brackets: "}}" inside {{ {'a': {}} }} closes a dict, not the tag */
    for (;;) {
        while (lx->pos < lx->length && is_space(lx->source[lx->pos])) advance(lx, 1);
        if (lx->pos >= lx->length) return lex_error(lx, is_block ? "missing %} at the end of a block tag" : "missing }} at the end of an expression");
        int line = lx->line, column = lx->column;
        char c = lx->source[lx->pos];
        if (depth == 0 && (c == '-' || c == '+') && lx->length - lx->pos >= 3 &&
            memcmp(lx->source + lx->pos + 1, close, 2) == 0) {
            *strip_after = c == '-';
            *keep_newline = c == '+';
            advance(lx, 3);
            return push(lx, is_block ? JT_BLOCK_END : JT_VAR_END, line, column) ? ML_OK
                                                                                : ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
        }
        if (depth == 0 && starts(lx, close)) {
            advance(lx, 2);
            return push(lx, is_block ? JT_BLOCK_END : JT_VAR_END, line, column) ? ML_OK
                                                                                : ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
        }
        jj_token *token = push(lx, JT_OP, line, column);
        if (!token) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
        if (c == '\'' || c == '"') {
            ML_TRY(lex_string(lx, token));
        } else if (isdigit((unsigned char)c)) {
            ML_TRY(lex_number(lx, token));
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t end = lx->pos;
            while (end < lx->length && (isalnum((unsigned char)lx->source[end]) || lx->source[end] == '_')) end++;
            token->kind = JT_NAME;
            token->text = lx->source + lx->pos;
            token->length = end - lx->pos;
            advance(lx, end - lx->pos);
        } else {
            size_t i = 0;
            for (; i < sizeof operators / sizeof *operators; i++) {
                if (starts(lx, operators[i].spelling)) break;
            }
            if (i == sizeof operators / sizeof *operators) return lex_error(lx, "unexpected character in a tag");
            token->op = operators[i].op;
            if (token->op == JO_LPAREN || token->op == JO_LBRACKET || token->op == JO_LBRACE) depth++;
            if ((token->op == JO_RPAREN || token->op == JO_RBRACKET || token->op == JO_RBRACE) && depth > 0) depth--;
            advance(lx, strlen(operators[i].spelling));
        }
    }
}

/* Emits text [start, end) after whitespace control. */
static int emit_text(lexer *lx, size_t start, size_t end, int line, int column) {
    if (end <= start) return ML_OK;
    jj_token *token = push(lx, JT_TEXT, line, column);
    if (!token) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    token->text = lx->source + start;
    token->length = end - start;
    return ML_OK;
}

int jj_lex(const char *source, size_t length, jj_arena *arena, jj_tokens *out) {
    lexer lx = {source, length, 0, 1, 1, arena, out};
    int strip_next = 0, trim_newline = 0; /* set by the previous tag's end */
    while (lx.pos < length) {
        /* text up to the next tag */
        size_t start = lx.pos, tag = lx.pos;
        while (tag + 1 < length && !(source[tag] == '{' && (source[tag + 1] == '{' || source[tag + 1] == '%' ||
                                                             source[tag + 1] == '#')))
            tag++;
        if (tag + 1 >= length) tag = length;
        int text_line = lx.line, text_column = lx.column;
        if (strip_next) {
            while (start < tag && is_space(source[start])) start++;
        } else if (trim_newline) {
            if (start < tag && source[start] == '\n') start++;
            else if (start + 1 < tag && source[start] == '\r' && source[start + 1] == '\n') start += 2;
        }
        size_t end = tag;
        if (tag < length) {
            char kind = source[tag + 1];
            char modifier = tag + 2 < length ? source[tag + 2] : '\0';
            if (modifier == '-') {
                while (end > start && is_space(source[end - 1])) end--;
            } else if ((kind == '%' || kind == '#') && modifier != '+') {
                size_t line_start = end;
                while (line_start > lx.pos && (source[line_start - 1] == ' ' || source[line_start - 1] == '\t'))
                    line_start--;
                if (line_start == 0 || source[line_start - 1] == '\n') {
                    if (line_start >= start) end = line_start;
                }
            }
        }
        ML_TRY(emit_text(&lx, start, end, text_line, text_column));
        advance(&lx, tag - lx.pos);
        if (tag >= length) break;

        char kind = source[tag + 1];
        int line = lx.line, column = lx.column;
        advance(&lx, 2);
        if (lx.pos < length && (source[lx.pos] == '-' || source[lx.pos] == '+')) advance(&lx, 1);
        strip_next = trim_newline = 0;
        if (kind == '#') {
            size_t close = lx.pos;
            while (close + 1 < length && !(source[close] == '#' && source[close + 1] == '}')) close++;
            if (close + 1 >= length) {
                lx.line = line;
                lx.column = column;
                return lex_error(&lx, "unterminated comment {# ... #}");
            }
            strip_next = close > lx.pos && source[close - 1] == '-';
            trim_newline = !(close > lx.pos && source[close - 1] == '+');
            advance(&lx, close + 2 - lx.pos);
            continue;
        }
        int is_block = kind == '%';
        /* {% raw %} ... {% endraw %}: the text between is output as it is */
        if (is_block) {
            size_t p = lx.pos;
            while (p < length && is_space(source[p])) p++;
            if (length - p >= 3 && memcmp(source + p, "raw", 3) == 0 && (p + 3 >= length || !isalnum((unsigned char)source[p + 3]))) {
                const char *close = strstr(source + p, "%}");
                const char *endraw = close ? strstr(close, "endraw") : NULL;
                if (!close || !endraw) return lex_error(&lx, "unterminated {% raw %}");
                const char *open = endraw;
                while (open > close && !(open[0] == '{' && open[1] == '%')) open--;
                const char *end_close = strstr(endraw, "%}");
                if (open <= close || !end_close) return lex_error(&lx, "unterminated {% raw %}");
                int raw_strip = close[-1] == '-';
                size_t body = (size_t)(close + 2 - source), body_end = (size_t)(open - source);
                if (raw_strip) while (body < body_end && is_space(source[body])) body++;
                else if (body < body_end && source[body] == '\n') body++;
                if (open[2] == '-') while (body_end > body && is_space(source[body_end - 1])) body_end--;
                ML_TRY(emit_text(&lx, body, body_end, line, column));
                strip_next = end_close[-1] == '-';
                trim_newline = !strip_next;
                advance(&lx, (size_t)(end_close + 2 - source) - lx.pos);
                continue;
            }
        }
        if (!push(&lx, is_block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, line, column))
            return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
        int strip_after = 0, keep_newline = 0;
        ML_TRY(lex_tag(&lx, is_block, &strip_after, &keep_newline));
        strip_next = strip_after;
        trim_newline = is_block && !keep_newline;
    }
    if (!push(&lx, JT_EOF, lx.line, lx.column)) return ml_set_error(ML_ERR_NOMEM, "chat template: out of memory");
    return ML_OK;
}
