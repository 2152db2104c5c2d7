/* Streaming detokenisation: text is released only up to the last whole UTF-8 character, so a
 * terminal never shows half of one. A trailing sequence that is a valid but incomplete start of
 * a character (at most 3 bytes) is held for the next token; anything that can never become
 * valid is released as it is, so nothing is lost or reordered. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

struct ml_stream_decoder {
    const ml_tokenizer *tok;
    unsigned flags;
    uint8_t held[4];
    size_t n_held;
    int started;      /* some token gave text (a leading space to strip comes only first) */
    char *out;        /* [capacity] the text returned by the last call */
    size_t capacity;
};

int ml_stream_decoder_create(const ml_tokenizer *tok, unsigned flags, ml_stream_decoder **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_stream_decoder_create: out is NULL");
    *out = NULL;
    if (!tok) return ml_set_error(ML_ERR_ARG, "ml_stream_decoder_create: tokenizer is NULL");
    ml_stream_decoder *dec = calloc(1, sizeof *dec);
    if (!dec) return ml_set_error(ML_ERR_NOMEM, "stream decoder: out of memory");
    dec->tok = tok;
    dec->flags = flags;
    *out = dec;
    return ML_OK;
}

void ml_stream_decoder_free(ml_stream_decoder *dec) {
    if (!dec) return;
    free(dec->out);
    free(dec);
}

/* Number of bytes a character starting with lead needs, or 0 if lead cannot start one. */
static size_t utf8_needed(uint8_t lead) {
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

/* Is s[0..n) (n < needed) the start of some valid character? RFC 3629 table 3-7 limits the
 * second byte after E0, ED, F0 and F4. */
static int valid_incomplete(const uint8_t *s, size_t n) {
    size_t needed = utf8_needed(s[0]);
    if (needed == 0 || n >= needed) return 0;
    for (size_t i = 1; i < n; i++) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (i == 1) {
            if (s[0] == 0xE0) lo = 0xA0;
            else if (s[0] == 0xED) hi = 0x9F;
            else if (s[0] == 0xF0) lo = 0x90;
            else if (s[0] == 0xF4) hi = 0x8F;
        }
        if (s[i] < lo || s[i] > hi) return 0;
    }
    return 1;
}

/* Length of the held-back tail of s[0..n): the incomplete character at the end, or 0. */
static size_t incomplete_tail(const uint8_t *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: keep looking for the lead */
        return valid_incomplete(s + n - back, back) ? back : 0;
    }
    return 0;
}

static int reserve(ml_stream_decoder *dec, size_t n) {
    if (n <= dec->capacity) return ML_OK;
    size_t capacity = dec->capacity ? dec->capacity : 64;
    while (capacity < n) capacity *= 2;
    char *grown = realloc(dec->out, capacity);
    if (!grown) return ml_set_error(ML_ERR_NOMEM, "stream decoder: out of memory");
    dec->out = grown;
    dec->capacity = capacity;
    return ML_OK;
}

int ml_stream_decoder_push(ml_stream_decoder *dec, int32_t id, const char **text, size_t *length) {
    if (!dec || !text || !length) return ml_set_error(ML_ERR_ARG, "ml_stream_decoder_push: NULL argument");
    *text = "";
    *length = 0;
    const char *bytes;
    size_t n;
    ML_TRY(ml_tokenizer_token_bytes(dec->tok, id, &bytes, &n));
    if ((dec->flags & ML_DETOKENIZE_SKIP_SPECIAL) && ml_tokenizer_is_special(dec->tok, id)) n = 0;
    if (n > 0 && !dec->started) { /* as ml_detokenize: the text's first space goes */
        dec->started = 1;
        if (dec->tok->spm_strip && bytes[0] == ' ') {
            bytes++;
            n--;
        }
    }
    ML_TRY(reserve(dec, dec->n_held + n + 1));
    memcpy(dec->out, dec->held, dec->n_held);
    memcpy(dec->out + dec->n_held, bytes, n);
    size_t total = dec->n_held + n;
    size_t tail = incomplete_tail((const uint8_t *)dec->out, total);
    memcpy(dec->held, dec->out + total - tail, tail);
    dec->n_held = tail;
    dec->out[total - tail] = '\0';
    *text = dec->out;
    *length = total - tail;
    return ML_OK;
}

int ml_stream_decoder_finish(ml_stream_decoder *dec, const char **text, size_t *length) {
    if (!dec || !text || !length) return ml_set_error(ML_ERR_ARG, "ml_stream_decoder_finish: NULL argument");
    ML_TRY(reserve(dec, dec->n_held + 1));
    memcpy(dec->out, dec->held, dec->n_held);
    dec->out[dec->n_held] = '\0';
    *text = dec->out;
    *length = dec->n_held;
    dec->n_held = 0;
    dec->started = 0; /* the next push begins a new text */
    return ML_OK;
}
