/* Error recording: a thread-local message behind ml_last_error(). */
#ifndef ML_CORE_ERROR_H
#define ML_CORE_ERROR_H

#include "meshllama.h"

/* Records code and a printf-style message for ml_last_error(); returns code. */
int ml_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with a context string ("loading layer 3: ..."); returns code. */
int ml_wrap_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ml_clear_error(void);
/* Marks the current message as held by every rank of the job (the ranks agreed on it). */
void ml_mark_error_shared(void);

#define ML_TRY(expr)                                                                               \
    do {                                                                                           \
        int ml_try_status_ = (expr);                                                               \
        if (ml_try_status_ != ML_OK) return ml_try_status_;                                        \
    } while (0)

#endif
