/* libFuzzer harness for the Jinja module (tokenizer/jinja_*.c): the input is a chat template.
 * It is parsed and, when it parses, rendered against a fixed chat context with tight limits
 * (so that no input can loop, recurse or allocate its way into a timeout). Any crash,
 * sanitizer report or leak is a bug; so is a render that reports success without text, or an
 * error without a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "fuzz_input.h"

static json_t *context(void) {
    static const char text[] =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"user\", \"content\": \"  Hi \\u00e9 {{x}} \"},"
        " {\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": [{\"type\": \"function\","
        " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5, \"b\": [true, null]}}}]},"
        " {\"role\": \"tool\", \"content\": \"{\\\"ok\\\": 1}\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
        " \"documents\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";
    return json_loads(text, 0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *ctx;
    if (!ctx && !(ctx = context())) abort();
    char *source = fuzz_copy(data, size);
    if (!source) return 0;
    ml_jinja_template *tmpl = NULL;
    int status = ml_jinja_parse(source, size, &tmpl);
    if (status == ML_OK) {
        if (!tmpl) abort();
        ml_jinja_limits limits;
        ml_jinja_default_limits(&limits);
        limits.max_output_bytes = 1 << 20;
        limits.max_memory_bytes = 16 << 20;
        limits.max_steps = 200000;
        limits.max_call_depth = 16;
        char *text = NULL;
        size_t length = 0;
        status = ml_jinja_render(tmpl, ctx, &limits, &text, &length);
        if (status == ML_OK && (!text || strlen(text) > length)) abort();
        if (status != ML_OK && (text || !ml_last_error()[0])) abort();
        free(text);
        ml_jinja_free(tmpl);
    } else if (tmpl || !ml_last_error()[0]) {
        abort();
    }
    free(source);
    return 0;
}
