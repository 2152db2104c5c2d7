/* A Jinja subset for chat templates: the constructs that real tokenizer_config.json
 * "chat_template" and GGUF tokenizer.chat_template strings use, rendered as transformers'
 * apply_chat_template renders them (jinja2 ImmutableSandboxedEnvironment with trim_blocks=True,
 * lstrip_blocks=True, the loopcontrols extension, and HF's tojson, raise_exception,
 * strftime_now and namespace globals). docs/TOKENIZER.md lists what is supported.
 *
 * The module is self-contained (jinja_lexer.c, jinja_parser.c, jinja_eval.c, jinja_builtins.c,
 * jinja_value.c) so that tests/fuzz/fuzz_jinja.c can drive it with any bytes: errors come back
 * as ML_ERR_* codes with a message naming the template line and column; loops, recursion,
 * memory and output are bounded by ml_jinja_limits. */
#ifndef ML_TOKENIZER_JINJA_H
#define ML_TOKENIZER_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ml_jinja_template ml_jinja_template;

typedef struct {
    size_t max_output_bytes; /* rendered text longer than this is an error */
    size_t max_memory_bytes; /* values made while rendering (strings, lists, loop state) */
    uint64_t max_steps;      /* statements and expressions evaluated */
    int max_call_depth;      /* nested macro calls */
} ml_jinja_limits;

/* 64 MiB output, 512 MiB of values, 50 million steps, 64 nested macro calls. */
void ml_jinja_default_limits(ml_jinja_limits *limits);

/* Parses source[0..length). ML_ERR_FORMAT with "line L, column C: ..." on a syntax error,
 * ML_ERR_NOMEM when out of memory. */
int ml_jinja_parse(const char *source, size_t length, ml_jinja_template **out);

/* Renders with the variables of context (a JSON object: messages, add_generation_prompt,
 * bos_token, tools, ...). *out_text is malloc'd and NUL-terminated. Errors (the message names
 * the template line and column): ML_ERR_ARG for raise_exception() and for values the template
 * cannot use (undefined, wrong type); ML_ERR_UNSUPPORTED for a filter, test or method the engine
 * lacks and when a limit is reached; ML_ERR_NOMEM. limits may be NULL (defaults). */
int ml_jinja_render(const ml_jinja_template *tmpl, const json_t *context, const ml_jinja_limits *limits,
                    char **out_text, size_t *out_length);

void ml_jinja_free(ml_jinja_template *tmpl);

#endif
