/* Generated text as it may be shown: whole UTF-8 characters only, stop strings matched across
 * token boundaries and never released, and text that could still become a stop string held
 * back until the next token decides. */
#ifndef ML_RUNTIME_TEXT_STREAM_H
#define ML_RUNTIME_TEXT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "meshllama.h"

typedef struct {
    ml_stream_decoder *decoder;
    const char *const *stops;
    int n_stops;
    char *pending;      /* decoded, not yet released (a possible start of a stop string) */
    size_t n_pending, pending_capacity;
    char *out;          /* what the last push/flush released */
    size_t n_out, out_capacity;
} ml_text_stream;

/* stops (may be NULL when n_stops is 0) are borrowed; an empty stop string is ML_ERR_ARG. */
int ml_text_stream_init(ml_text_stream *s, const ml_tokenizer *tok, unsigned detokenize_flags,
                        const char *const *stops, int n_stops);
void ml_text_stream_free(ml_text_stream *s);

/* Starts a new release: forgets what the previous calls released. */
void ml_text_stream_begin(ml_text_stream *s);
/* Adds token's text (none when silent: an end-of-generation token). When match_stops is set
 * and a stop string is complete, the text before it is released, *matched gets its index and
 * the rest is dropped; otherwise *matched is -1 and everything that cannot start a stop string
 * is released. The release is s->out[0..s->n_out). */
int ml_text_stream_push(ml_text_stream *s, int32_t token, int silent, int match_stops, int *matched);
/* Releases everything still held (the generation ended without a stop string). */
int ml_text_stream_flush(ml_text_stream *s);

#endif
