#include "runtime/text_stream.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int append(char **buffer, size_t *length, size_t *capacity, const char *text, size_t n) {
    if (n == 0) return ML_OK;
    if (*length + n > *capacity) {
        size_t grown = *capacity ? *capacity : 64;
        while (grown < *length + n) grown *= 2;
        char *bigger = realloc(*buffer, grown);
        if (!bigger) return ml_set_error(ML_ERR_NOMEM, "text stream: out of memory for %zu bytes", grown);
        *buffer = bigger;
        *capacity = grown;
    }
    memcpy(*buffer + *length, text, n);
    *length += n;
    return ML_OK;
}

int ml_text_stream_init(ml_text_stream *s, const ml_tokenizer *tok, unsigned detokenize_flags,
                        const char *const *stops, int n_stops) {
    memset(s, 0, sizeof *s);
    if (n_stops < 0 || (n_stops > 0 && !stops))
        return ml_set_error(ML_ERR_ARG, "stop_strings: %d strings but no array", n_stops);
    for (int i = 0; i < n_stops; i++)
        if (!stops[i] || !stops[i][0])
            return ml_set_error(ML_ERR_ARG, "stop_strings[%d] is %s: expected a non-empty string", i,
                                stops[i] ? "empty" : "NULL");
    if (!tok) return ml_set_error(ML_ERR_ARG, "the generated text needs a tokenizer (NULL given)");
    s->stops = stops;
    s->n_stops = n_stops;
    return ml_stream_decoder_create(tok, detokenize_flags, &s->decoder);
}

void ml_text_stream_free(ml_text_stream *s) {
    ml_stream_decoder_free(s->decoder);
    free(s->pending);
    free(s->out);
    memset(s, 0, sizeof *s);
}

void ml_text_stream_begin(ml_text_stream *s) {
    s->n_out = 0;
}

/* Length of the longest end of the pending text that is the beginning of a stop string. */
static size_t held_length(const ml_text_stream *s) {
    size_t held = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t length = strlen(s->stops[i]);
        size_t longest = length - 1 < s->n_pending ? length - 1 : s->n_pending;
        for (size_t n = longest; n > held; n--)
            if (memcmp(s->pending + s->n_pending - n, s->stops[i], n) == 0) {
                held = n;
                break;
            }
    }
    return held;
}

static int release(ml_text_stream *s, size_t n) {
    if (s->n_pending == 0) return ML_OK;
    ML_TRY(append(&s->out, &s->n_out, &s->out_capacity, s->pending, n));
    memmove(s->pending, s->pending + n, s->n_pending - n);
    s->n_pending -= n;
    return ML_OK;
}

int ml_text_stream_push(ml_text_stream *s, int32_t token, int silent, int match_stops, int *matched) {
    *matched = -1;
    ml_text_stream_begin(s);
    if (!silent) {
        const char *text;
        size_t length;
        ML_TRY(ml_stream_decoder_push(s->decoder, token, &text, &length));
        ML_TRY(append(&s->pending, &s->n_pending, &s->pending_capacity, text, length));
    }
    if (match_stops) {
        /* the earliest stop string in the pending text; on a tie, the first in the list */
        size_t best_at = s->n_pending;
        for (int i = 0; i < s->n_stops; i++) {
            size_t length = strlen(s->stops[i]);
            if (length > s->n_pending) continue;
            const char *found = memmem(s->pending, s->n_pending, s->stops[i], length);
            if (found && (size_t)(found - s->pending) < best_at) {
                best_at = (size_t)(found - s->pending);
                *matched = i;
            }
        }
        if (*matched >= 0) {
            ML_TRY(release(s, best_at));
            s->n_pending = 0;
            return ML_OK;
        }
    }
    return release(s, s->n_pending - held_length(s));
}

int ml_text_stream_flush(ml_text_stream *s) {
    const char *text;
    size_t length;
    ML_TRY(ml_stream_decoder_finish(s->decoder, &text, &length));
    ML_TRY(append(&s->pending, &s->n_pending, &s->pending_capacity, text, length));
    return release(s, s->n_pending);
}
