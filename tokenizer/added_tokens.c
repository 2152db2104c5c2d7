/* Added tokens (HF added_tokens, tiktoken special tokens, GGUF control/user-defined tokens):
 * found in the text before pre-tokenization, leftmost-longest as HF's AddedVocabulary does.
 *
 * The tokens are sorted by content; at each candidate position (filtered by a first-byte
 * table) the range of tokens sharing the text's prefix is narrowed one byte at a time by
 * binary search, which finds the longest match in O(length * log n). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

enum { FIRST_SPECIAL = 1, FIRST_PLAIN = 2 };

int ml_added_add(ml_added_tokens *a, const ml_vocab *v, int32_t id, int special, int lstrip, int rstrip,
                 int single_word) {
    if (!ml_vocab_has(v, id)) return ML_ERR_ARG;
    if (v->length[id] == 0) return ML_OK; /* an empty token can never be matched */
    if (a->n == a->capacity) {
        int32_t capacity = a->capacity ? a->capacity * 2 : 64;
        ml_added_token *grown = realloc(a->tokens, (size_t)capacity * sizeof *grown);
        if (!grown) return ML_ERR_NOMEM;
        a->tokens = grown;
        a->capacity = capacity;
    }
    ml_added_token *t = &a->tokens[a->n++];
    t->id = id;
    t->offset = v->offset[id];
    t->length = v->length[id];
    t->special = (uint8_t)(special != 0);
    t->lstrip = (uint8_t)(lstrip != 0);
    t->rstrip = (uint8_t)(rstrip != 0);
    t->single_word = (uint8_t)(single_word != 0);
    return ML_OK;
}

static int compare_content(const void *pa, const void *pb) {
    const ml_added_token *a = pa, *b = pb;
    uint32_t common = a->length < b->length ? a->length : b->length;
    int c = memcmp(a->content, b->content, common);
    if (c) return c;
    if (a->length != b->length) return a->length < b->length ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void ml_added_finalize(ml_added_tokens *a, const ml_vocab *v) {
    memset(a->first_byte, 0, sizeof a->first_byte);
    a->has_plain = 0;
    a->max_length = 0;
    /* The vocabulary is complete now, so pointers into its bytes stay valid. */
    for (int32_t i = 0; i < a->n; i++) a->tokens[i].content = v->bytes + a->tokens[i].offset;
    if (a->n > 1) qsort(a->tokens, (size_t)a->n, sizeof *a->tokens, compare_content);
    for (int32_t i = 0; i < a->n; i++) {
        const ml_added_token *t = &a->tokens[i];
        uint8_t first = (uint8_t)t->content[0];
        a->first_byte[first] |= t->special ? FIRST_SPECIAL : FIRST_PLAIN;
        if (!t->special) a->has_plain = 1;
        if (t->length > a->max_length) a->max_length = t->length;
    }
}

void ml_added_free(ml_added_tokens *a) {
    if (!a) return;
    free(a->tokens);
    memset(a, 0, sizeof *a);
}

/* Start of the character that ends just before position i (i > 0). */
static size_t previous_char_start(const uint8_t *text, size_t i) {
    size_t j = i - 1;
    while (j > 0 && i - j < 4 && (text[j] & 0xC0) == 0x80) j--;
    return j;
}

static int white_space_at(const uint8_t *text, size_t n, size_t i, size_t *length) {
    uint32_t cp;
    size_t used = ml_utf8_decode(text + i, n - i, &cp);
    if (used == 0 || !ml_unicode_is_white_space(cp)) return 0;
    *length = used;
    return 1;
}

/* Word characters for single_word tokens: ASCII letters, digits and '_', and any non-space
 * non-ASCII character (an approximation of Unicode alphanumerics). */
static int word_char_at(const uint8_t *text, size_t n, size_t i) {
    uint8_t c = text[i];
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    size_t length;
    return !white_space_at(text, n, i, &length);
}

static size_t lower_bound(const ml_added_tokens *a, size_t lo, size_t hi, size_t k, uint8_t c) {
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint8_t)a->tokens[mid].content[k] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static size_t upper_bound(const ml_added_tokens *a, size_t lo, size_t hi, size_t k, uint8_t c) {
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint8_t)a->tokens[mid].content[k] <= c) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int ml_added_find(const ml_added_tokens *a, const uint8_t *text, size_t n, size_t from,
                  int parse_special, size_t *start, size_t *end, int32_t *id) {
    uint8_t eligible = (uint8_t)(FIRST_PLAIN | (parse_special ? FIRST_SPECIAL : 0));
    for (size_t i = from; i < n; i++) {
        if (!(a->first_byte[text[i]] & eligible)) continue;
        size_t lo = 0, hi = (size_t)a->n;
        int32_t best = -1;
        for (size_t k = 0;; k++) {
            /* Tokens in [lo, hi) all start with text[i .. i+k); those of length k sort first. */
            while (lo < hi && a->tokens[lo].length == k) {
                const ml_added_token *t = &a->tokens[lo];
                int ok = parse_special || !t->special;
                if (ok && t->single_word)
                    ok = (i == 0 || !word_char_at(text, n, previous_char_start(text, i))) &&
                         (i + k == n || !word_char_at(text, n, i + k));
                if (ok) best = (int32_t)lo;
                lo++;
            }
            if (lo >= hi || i + k >= n) break;
            uint8_t c = text[i + k];
            lo = lower_bound(a, lo, hi, k, c);
            hi = upper_bound(a, lo, hi, k, c);
        }
        if (best < 0) continue;
        const ml_added_token *t = &a->tokens[best];
        size_t s = i, e = i + t->length, length;
        if (t->lstrip) {
            while (s > from) {
                size_t p = previous_char_start(text, s);
                if (p < from || !white_space_at(text, n, p, &length) || p + length != s) break;
                s = p;
            }
        }
        if (t->rstrip) {
            while (e < n && white_space_at(text, n, e, &length)) e += length;
        }
        *start = s;
        *end = e;
        *id = t->id;
        return 1;
    }
    return 0;
}
