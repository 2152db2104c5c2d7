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

#endif
