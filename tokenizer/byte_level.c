/* The GPT-2 byte-level alphabet, strict UTF-8 decoding, Unicode space sets, and the growable
 * buffers the tokenizer files share. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

int ml_id_vec_push(ml_id_vec *v, int32_t id) {
    if (v->n == v->capacity) {
        size_t capacity = v->capacity ? v->capacity * 2 : 64;
        int32_t *grown = realloc(v->data, capacity * sizeof *grown);
        if (!grown) return ML_ERR_NOMEM;
        v->data = grown;
        v->capacity = capacity;
    }
    v->data[v->n++] = id;
    return ML_OK;
}

int ml_id_vec_append(ml_id_vec *v, const int32_t *ids, size_t n) {
    if (v->n + n > v->capacity) {
        size_t capacity = v->capacity ? v->capacity : 64;
        while (capacity < v->n + n) capacity *= 2;
        int32_t *grown = realloc(v->data, capacity * sizeof *grown);
        if (!grown) return ML_ERR_NOMEM;
        v->data = grown;
        v->capacity = capacity;
    }
    if (n) memcpy(v->data + v->n, ids, n * sizeof *ids);
    v->n += n;
    return ML_OK;
}

int ml_byte_buf_append(ml_byte_buf *b, const void *bytes, size_t n) {
    if (b->n + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->n + n + 1) capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown) return ML_ERR_NOMEM;
        b->data = grown;
        b->capacity = capacity;
    }
    if (n) memcpy(b->data + b->n, bytes, n);
    b->n += n;
    b->data[b->n] = '\0';
    return ML_OK;
}

/* GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py): the printable bytes '!'..'~', 0xA1..0xAC
 * and 0xAE..0xFF stand for themselves; the other 68 bytes, in increasing order (0x00..0x20,
 * 0x7F..0xA0, 0xAD), become U+0100, U+0101, ... so that every byte is a visible character. */
uint32_t ml_byte_level_char(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 67u;
    return b;
}

/* The inverse: the byte a code point stands for, or -1. */
static int byte_level_byte(uint32_t cp) {
    if (cp < 256) return (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) ? -1 : (int)cp;
    uint32_t index = cp - 256;
    if (index < 33) return (int)index;
    if (index < 67) return (int)(0x7F + index - 33);
    if (index == 67) return 0xAD;
    return -1;
}

size_t ml_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t value, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        value = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        value = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        value = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        value = (value << 6) | (s[i] & 0x3F);
    }
    if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
    *cp = value;
    return len;
}

int ml_byte_level_decode(const char *text, size_t length, ml_byte_buf *out) {
    /* On failure out is left as it was. */
    size_t start = out->n;
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < length) {
        uint32_t cp;
        size_t used = ml_utf8_decode(s + i, length - i, &cp);
        int byte = used ? byte_level_byte(cp) : -1;
        if (byte < 0) {
            out->n = start;
            if (out->data) out->data[start] = '\0';
            return 0;
        }
        uint8_t b = (uint8_t)byte;
        if (ml_byte_buf_append(out, &b, 1) != ML_OK) {
            out->n = start;
            return -1;
        }
        i += used;
    }
    return 1;
}

int ml_unicode_is_white_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int ml_unicode_is_python_space(uint32_t cp) {
    /* str.isspace(): general category Zs or bidi class WS, B, S; that adds U+001C..U+001F. */
    return ml_unicode_is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}
