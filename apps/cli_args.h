/* Strict parsing of command-line values: every failure names the flag and what was expected. */
#ifndef ML_APPS_CLI_ARGS_H
#define ML_APPS_CLI_ARGS_H

#include <stdint.h>

#include "meshllama.h"

/* Exit status for usage errors (bad flags), as opposed to 1 for runtime failures. */
#define ML_EXIT_USAGE 2

int ml_cli_parse_int(const char *flag, const char *text, long min, long max, int *out);
int ml_cli_parse_float(const char *flag, const char *text, double min, double max, float *out);
int ml_cli_parse_u64(const char *flag, const char *text, uint64_t *out);
/* 0 when argv has no operand from index first on (what getopt_long leaves in optind); otherwise
 * "meshllama COMMAND: unexpected argument 'X'" on stderr and -1. */
int ml_cli_no_operands(const char *command, int argc, char **argv, int first);
/* "RxC" -> rows, cols (each >= 1). */
int ml_cli_parse_mesh(const char *flag, const char *text, int *rows, int *cols);
/* "1,2,3" -> malloc'd ids; at least one id, each >= 0. */
int ml_cli_parse_ids(const char *flag, const char *text, int32_t **ids, int *n);
/* "a:b[:s]" -> the values a, a+s, ... <= b (s defaults to 1); malloc'd list. */
int ml_cli_parse_range(const char *flag, const char *text, long min, long max, int **values, int *n);
/* "accurate" / "fast" */
int ml_cli_parse_act(const char *flag, const char *text, ml_act_mode *out);
/* "f32" / "bf16" */
int ml_cli_parse_kv(const char *flag, const char *text, ml_kv_dtype *out);

#endif
