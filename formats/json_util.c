#include "formats/json_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* jansson reports a duplicate key only as "duplicate object key" (with the key text appended
 * only when it is short). At that point its lexer has just consumed the key's closing quote,
 * so the key is the JSON string that ends at error->position; decode it from there. */
static int duplicate_key_name(const char *text, size_t length, const json_error_t *error, char *out,
                              size_t out_size) {
    if (error->position <= 0 || (size_t)error->position > length) return -1;
    size_t closing = (size_t)error->position - 1;
    if (text[closing] != '"') return -1;
    /* The opening quote is the nearest quote to the left that is not escaped, i.e. that is
     * preceded by an even number of backslashes (a string never holds a bare quote). */
    size_t opening = closing;
    while (opening > 0) {
        opening--;
        if (text[opening] != '"') continue;
        size_t backslashes = 0;
        while (backslashes < opening && text[opening - 1 - backslashes] == '\\') backslashes++;
        if (backslashes % 2 == 0) break;
    }
    if (text[opening] != '"' || opening == closing) return -1;
    json_error_t ignored;
    json_t *key = json_loadb(text + opening, closing - opening + 1, JSON_DECODE_ANY, &ignored);
    if (!key) return -1;
    int status = -1;
    if (json_is_string(key)) {
        snprintf(out, out_size, "%s", json_string_value(key));
        status = 0;
    }
    json_decref(key);
    return status;
}

int ml_json_load(const char *text, size_t length, const char *source, const char *what,
                 int error_code, json_t **out) {
    *out = NULL;
    json_error_t error;
    json_t *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &error);
    if (root) {
        *out = root;
        return ML_OK;
    }
    char key[128];
    if (json_error_code(&error) == json_error_duplicate_key &&
        duplicate_key_name(text, length, &error, key, sizeof key) == 0) {
        return ml_set_error(error_code, "%s: %s has the key \"%s\" twice (line %d, column %d)", source,
                            what, key, error.line, error.column);
    }
    return ml_set_error(error_code, "%s: %s is not valid JSON: %s (line %d, column %d)", source, what,
                        error.text, error.line, error.column);
}

void ml_json_describe(const json_t *value, char *buffer, size_t size) {
    if (json_is_object(value) || json_is_array(value)) {
        /* Short containers are clearer shown as they are: [0,"8"], {"factor":2}. */
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text && strlen(text) <= 60) {
            snprintf(buffer, size, "%s", text);
        } else if (json_is_object(value)) {
            snprintf(buffer, size, "an object of %zu keys", json_object_size(value));
        } else {
            snprintf(buffer, size, "an array of %zu elements", json_array_size(value));
        }
        free(text);
        return;
    }
    switch (json_typeof(value)) {
    case JSON_STRING: {
        const char *text = json_string_value(value);
        size_t text_length = strlen(text);
        if (text_length > 40) {
            snprintf(buffer, size, "string \"%.40s...\"", text);
        } else {
            snprintf(buffer, size, "string \"%s\"", text);
        }
        break;
    }
    case JSON_INTEGER: snprintf(buffer, size, "integer %lld", (long long)json_integer_value(value)); break;
    case JSON_REAL: snprintf(buffer, size, "real %.17g", json_real_value(value)); break;
    case JSON_TRUE: snprintf(buffer, size, "true"); break;
    case JSON_FALSE: snprintf(buffer, size, "false"); break;
    case JSON_NULL: snprintf(buffer, size, "null"); break;
    default: snprintf(buffer, size, "an unknown JSON value"); break;
    }
}

size_t ml_utf8_sequence(const unsigned char *s, size_t available, size_t *invalid_length) {
    unsigned char c = s[0];
    size_t need;
    unsigned char low = 0x80, high = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) low = 0xA0;         /* no overlong forms */
        if (c == 0xED) high = 0x9F;        /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) low = 0x90;
        if (c == 0xF4) high = 0x8F;        /* nothing above U+10FFFF */
    } else {
        *invalid_length = 1;
        return 0;
    }
    /* the maximal subpart: the lead byte and the continuation bytes that were still valid */
    size_t i = 1;
    for (; i < need && i < available; i++) {
        unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
        if (s[i] < lo || s[i] > hi) break;
    }
    if (i == need) return need;
    *invalid_length = i;
    return 0;
}

json_t *ml_json_string_lossy(const char *bytes, size_t length) {
    const unsigned char *s = (const unsigned char *)bytes;
    size_t bad = 0;
    for (size_t i = 0; i < length;) {
        size_t invalid = 0, n = ml_utf8_sequence(s + i, length - i, &invalid);
        if (n == 0) {
            bad++;
            n = invalid;
        }
        i += n;
    }
    if (bad == 0) return json_stringn(bytes ? bytes : "", length);
    /* each replaced run (>= 1 byte) becomes the 3 bytes EF BF BD */
    char *clean = malloc(length + 2 * bad + 1);
    if (!clean) return NULL;
    size_t out = 0;
    for (size_t i = 0; i < length;) {
        size_t invalid = 0, n = ml_utf8_sequence(s + i, length - i, &invalid);
        if (n == 0) {
            memcpy(clean + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i += invalid;
        } else {
            memcpy(clean + out, s + i, n);
            out += n;
            i += n;
        }
    }
    json_t *value = json_stringn(clean, out);
    free(clean);
    return value;
}
