/* Printing the command's JSON outputs with jansson (escaped strings, valid UTF-8: see
 * ml_json_string_lossy in formats/json_util.h). */
#ifndef ML_APPS_JSON_OUT_H
#define ML_APPS_JSON_OUT_H

#include <stdio.h>

#include <jansson.h>

/* x rounded to a number of decimals, so the printed value stays short (jansson writes reals
 * with up to 10 significant digits here). */
double ml_json_round(double x, int decimals);
/* Writes prefix (may be NULL), the value and a newline, and releases the value. compact: no
 * spaces; else ", " and ": " between items on one line (Python's json.dumps). Returns 0, or
 * -1 with a message when the value is NULL (out of memory) or the write fails. */
int ml_json_print(FILE *out, const char *prefix, json_t *value, int compact);

#endif
