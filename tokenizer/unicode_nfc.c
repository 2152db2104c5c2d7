/* NFC as UAX #15 defines it: full canonical decomposition (the table's mappings applied
 * recursively, Hangul syllables by formula), canonical ordering (each run of non-starters
 * stably sorted by combining class), then canonical composition (each character joins the last
 * starter when a primary composite exists and nothing between blocks it). Tables:
 * tokenizer/unicode_nfc_tables.h (tools/make_unicode_nfc_tables.py). */
#include "tokenizer/unicode_nfc.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_nfc_tables.h"

/* A decoded unit: a code point, or RAW_BYTE | b for a byte of invalid UTF-8. */
#define RAW_BYTE 0x80000000u

/* Hangul (UAX #15, "Hangul"): syllables S = SBASE + (L * VCOUNT + V) * TCOUNT + T */
enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

typedef struct {
    uint32_t *data;
    size_t n, capacity;
} unit_vec;

static int push(unit_vec *v, uint32_t unit) {
    if (v->n == v->capacity) {
        size_t capacity = v->capacity ? 2 * v->capacity : 64;
        uint32_t *grown = realloc(v->data, capacity * sizeof *grown);
        if (!grown) return ML_ERR_NOMEM;
        v->data = grown;
        v->capacity = capacity;
    }
    v->data[v->n++] = unit;
    return ML_OK;
}

static int ccc_of(uint32_t unit) {
    if (unit & RAW_BYTE || unit < 0x300) return 0;
    size_t lo = 0, hi = sizeof ml_nfc_ccc / sizeof ml_nfc_ccc[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ml_nfc_ccc[mid][0] == unit) return (int)ml_nfc_ccc[mid][1];
        if (ml_nfc_ccc[mid][0] < unit) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* Appends the full canonical decomposition of cp (at most a few levels deep). */
static int decompose(uint32_t cp, unit_vec *out, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t index = cp - SBASE;
        ML_TRY(push(out, LBASE + index / NCOUNT));
        ML_TRY(push(out, VBASE + (index % NCOUNT) / TCOUNT));
        return index % TCOUNT ? push(out, TBASE + index % TCOUNT) : ML_OK;
    }
    if (cp >= 0xC0 && depth < 8) {
        size_t lo = 0, hi = sizeof ml_nfc_decompositions / sizeof ml_nfc_decompositions[0];
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ml_nfc_decompositions[mid][0] == cp) {
                ML_TRY(decompose(ml_nfc_decompositions[mid][1], out, depth + 1));
                return ml_nfc_decompositions[mid][2] ? decompose(ml_nfc_decompositions[mid][2], out, depth + 1) : ML_OK;
            }
            if (ml_nfc_decompositions[mid][0] < cp) lo = mid + 1;
            else hi = mid;
        }
    }
    return push(out, cp);
}

/* The primary composite of first + second, or 0. */
static uint32_t compose(uint32_t first, uint32_t second) {
    if ((first | second) & RAW_BYTE) return 0;
    if (first >= LBASE && first < LBASE + LCOUNT && second >= VBASE && second < VBASE + VCOUNT)
        return SBASE + ((first - LBASE) * VCOUNT + (second - VBASE)) * TCOUNT;
    if (first >= SBASE && first < SBASE + SCOUNT && (first - SBASE) % TCOUNT == 0 && second > TBASE &&
        second < TBASE + TCOUNT)
        return first + (second - TBASE);
    size_t lo = 0, hi = sizeof ml_nfc_compositions / sizeof ml_nfc_compositions[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *entry = ml_nfc_compositions[mid];
        if (entry[0] == first && entry[1] == second) return entry[2];
        if (entry[0] < first || (entry[0] == first && entry[1] < second)) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* Canonical ordering: each run of non-starters stably sorted by class (insertion sort: the
 * runs are short). */
static void reorder(unit_vec *v) {
    for (size_t i = 1; i < v->n; i++) {
        int klass = ccc_of(v->data[i]);
        if (klass == 0) continue;
        size_t j = i;
        uint32_t unit = v->data[i];
        while (j > 0) {
            int before = ccc_of(v->data[j - 1]);
            if (before <= klass) break; /* a starter (0) or an equal class stops it */
            v->data[j] = v->data[j - 1];
            j--;
        }
        v->data[j] = unit;
    }
}

/* Canonical composition in place. */
static void compose_all(unit_vec *v) {
    if (v->n == 0) return;
    size_t starter = 0, used = 1;
    int have_starter = ccc_of(v->data[0]) == 0, last_class = have_starter ? 0 : 256;
    for (size_t i = 1; i < v->n; i++) {
        uint32_t unit = v->data[i];
        int klass = ccc_of(unit);
        uint32_t composite = have_starter ? compose(v->data[starter], unit) : 0;
        /* not blocked: nothing between, or everything between of a lower class */
        if (composite && (last_class < klass || last_class == 0)) {
            v->data[starter] = composite;
            continue;
        }
        if (klass == 0) {
            starter = used;
            have_starter = 1;
        }
        last_class = klass;
        v->data[used++] = unit;
    }
    v->n = used;
}

static size_t encode_utf8(uint32_t unit, uint8_t *out) {
    if (unit & RAW_BYTE) {
        out[0] = (uint8_t)unit;
        return 1;
    }
    if (unit < 0x80) {
        out[0] = (uint8_t)unit;
        return 1;
    }
    if (unit < 0x800) {
        out[0] = (uint8_t)(0xC0 | unit >> 6);
        out[1] = (uint8_t)(0x80 | (unit & 0x3F));
        return 2;
    }
    if (unit < 0x10000) {
        out[0] = (uint8_t)(0xE0 | unit >> 12);
        out[1] = (uint8_t)(0x80 | ((unit >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (unit & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | unit >> 18);
    out[1] = (uint8_t)(0x80 | ((unit >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((unit >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (unit & 0x3F));
    return 4;
}

int ml_nfc(const uint8_t *text, size_t length, uint8_t **out, size_t *out_length) {
    *out = NULL;
    *out_length = length;
    size_t first = 0;
    while (first < length && text[first] < 0x80) first++;
    if (first == length) return ML_OK;
    unit_vec units = {0};
    int status = ML_OK;
    for (size_t at = 0; at < length && status == ML_OK;) {
        uint32_t cp;
        size_t used = ml_utf8_decode(text + at, length - at, &cp);
        if (used == 0) {
            status = push(&units, RAW_BYTE | text[at]);
            at++;
        } else {
            status = decompose(cp, &units, 0);
            at += used;
        }
    }
    uint8_t *buffer = NULL;
    if (status == ML_OK) {
        reorder(&units);
        compose_all(&units);
        buffer = malloc(units.n * 4 + 1);
        if (!buffer) status = ML_ERR_NOMEM;
    }
    if (status != ML_OK) {
        free(units.data);
        return ml_set_error(ML_ERR_NOMEM, "NFC of %zu bytes: out of memory", length);
    }
    size_t n = 0;
    for (size_t i = 0; i < units.n; i++) n += encode_utf8(units.data[i], buffer + n);
    free(units.data);
    *out = buffer;
    *out_length = n;
    return ML_OK;
}
