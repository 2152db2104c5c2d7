/* Shared jansson helpers for the formats/ readers: loading with duplicate keys rejected and
 * errors that name the file, and short descriptions of JSON values for "found ..." messages. */
#ifndef ML_FORMATS_JSON_UTIL_H
#define ML_FORMATS_JSON_UTIL_H

#include <stddef.h>

#include <jansson.h>

/* Parses length bytes of JSON text (need not be NUL-terminated) with duplicate object keys
 * rejected. On failure records "<source>: <what> is not valid JSON: ... (line L, column C)"
 * (naming the duplicated key when that is the problem) and returns error_code. */
int ml_json_load(const char *text, size_t length, const char *source, const char *what,
                 int error_code, json_t **out);

/* Writes a short description of a JSON value for error messages: `string "64"`, `integer -3`,
 * `real 1.5`, `null`, `true`, short containers as compact JSON (`[0,"8"]`), long ones as
 * `an object of 3 keys` / `an array of 3 elements`. */
void ml_json_describe(const json_t *value, char *buffer, size_t size);

/* A JSON string of length bytes that are meant as UTF-8 text (a token, a path, generated text):
 * valid UTF-8 is kept as is, and each invalid byte sequence becomes U+FFFD (one per maximal
 * invalid subpart, as Python's errors="replace"), so the result is always valid JSON. NULL
 * only when out of memory. */
json_t *ml_json_string_lossy(const char *bytes, size_t length);

/* Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 when s[0..] does not start
 * one; *invalid_length receives the bytes to replace by one U+FFFD in that case (>= 1). */
size_t ml_utf8_sequence(const unsigned char *s, size_t available, size_t *invalid_length);

#endif
