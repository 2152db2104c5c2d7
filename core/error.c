#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ML_ERROR_CAPACITY 1024

static _Thread_local char last_error[ML_ERROR_CAPACITY];
static _Thread_local int last_error_shared; /* every rank holds the same message */

int ml_set_error(int code, const char *fmt, ...) {
    last_error_shared = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int ml_wrap_error(int code, const char *fmt, ...) {
    char prefix[ML_ERROR_CAPACITY / 2];
    char previous[ML_ERROR_CAPACITY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(previous, last_error, sizeof previous);
    size_t used = strlen(prefix);
    memcpy(last_error, prefix, used);
    last_error[used++] = ':';
    last_error[used++] = ' ';
    size_t room = sizeof last_error - used - 1;
    size_t rest = strnlen(previous, room);
    memcpy(last_error + used, previous, rest);
    last_error[used + rest] = '\0';
    return code;
}

void ml_clear_error(void) {
    last_error[0] = '\0';
    last_error_shared = 0;
}

void ml_mark_error_shared(void) { last_error_shared = 1; }

int ml_last_error_is_shared(void) { return last_error_shared; }

const char *ml_last_error(void) { return last_error; }

const char *ml_version(void) { return MESHLLAMA_VERSION; }

const char *ml_strerror(int status) {
    switch (status) {
    case ML_OK: return "ML_OK: success";
    case ML_ERR_IO: return "ML_ERR_IO: file missing or unreadable";
    case ML_ERR_FORMAT: return "ML_ERR_FORMAT: malformed file";
    case ML_ERR_CONFIG: return "ML_ERR_CONFIG: bad model configuration";
    case ML_ERR_TENSOR: return "ML_ERR_TENSOR: missing tensor or wrong dtype/shape";
    case ML_ERR_ARG: return "ML_ERR_ARG: invalid argument";
    case ML_ERR_NOMEM: return "ML_ERR_NOMEM: out of memory";
    case ML_ERR_UNSUPPORTED: return "ML_ERR_UNSUPPORTED: not supported by this build";
    case ML_ERR_INTERNAL: return "ML_ERR_INTERNAL: system or library failure";
    default: return "unknown status code";
    }
}
