#include "sampling_options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"

void ml_cli_sampling_init(ml_cli_sampling *s, int max_tokens) {
    memset(s, 0, sizeof *s);
    s->params = ml_sampling_default_params();
    s->params.max_tokens = max_tokens;
}

void ml_cli_sampling_free(ml_cli_sampling *s) {
    free(s->bias);
    free(s->stops);
    s->bias = NULL;
    s->stops = NULL;
}

/* "ID+BIAS" / "ID-BIAS" (llama.cpp's --logit-bias), BIAS a number or inf. */
static int parse_logit_bias(const char *text, ml_logit_bias *out) {
    char *end;
    errno = 0;
    long id = strtol(text, &end, 10);
    int ok = errno == 0 && end != text && id >= 0 && id <= INT32_MAX && (*end == '+' || *end == '-');
    double bias = 0.0;
    if (ok) {
        const char *number = end;
        bias = strtod(number, &end);
        ok = end != number && *end == '\0' && !isnan(bias) && bias != INFINITY;
    }
    if (!ok) {
        fprintf(stderr, "meshllama: --logit-bias '%s': expected TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1 or "
                        "15043-inf\n", text);
        return -1;
    }
    out->token = (int32_t)id;
    out->bias = (float)bias;
    return 0;
}

int ml_cli_sampling_option(ml_cli_sampling *s, int opt, const char *arg) {
    ml_sampling_params *p = &s->params;
    int bad = 0;
    switch (opt) {
    case ML_OPT_TEMP: bad = ml_cli_parse_float("--temp", arg, 0.0, 1e6, &p->temperature); break;
    case ML_OPT_TOP_K: bad = ml_cli_parse_int("--top-k", arg, 0, 1 << 30, &p->top_k); break;
    case ML_OPT_TOP_P: bad = ml_cli_parse_float("--top-p", arg, 1e-9, 1.0, &p->top_p); break;
    case ML_OPT_MIN_P: bad = ml_cli_parse_float("--min-p", arg, 0.0, 1.0, &p->min_p); break;
    case ML_OPT_TYPICAL: bad = ml_cli_parse_float("--typical", arg, 1e-9, 1.0, &p->typical_p); break;
    case 's': bad = ml_cli_parse_u64("--seed", arg, &p->seed); break;
    case ML_OPT_REPEAT_PENALTY: bad = ml_cli_parse_float("--repeat-penalty", arg, 1e-6, 1e6, &p->repeat_penalty); break;
    case ML_OPT_REPEAT_LAST_N: bad = ml_cli_parse_int("--repeat-last-n", arg, -1, 1 << 24, &p->repeat_last_n); break;
    case ML_OPT_PRESENCE_PENALTY:
        bad = ml_cli_parse_float("--presence-penalty", arg, -100.0, 100.0, &p->presence_penalty);
        break;
    case ML_OPT_FREQUENCY_PENALTY:
        bad = ml_cli_parse_float("--frequency-penalty", arg, -100.0, 100.0, &p->frequency_penalty);
        break;
    case ML_OPT_MIN_TOKENS: bad = ml_cli_parse_int("--min-tokens", arg, 0, 1 << 24, &p->min_tokens); break;
    case ML_OPT_LOGIT_BIAS: {
        ml_logit_bias entry;
        if (parse_logit_bias(arg, &entry) != 0) return -1;
        ml_logit_bias *grown = realloc(s->bias, ((size_t)p->n_logit_bias + 1) * sizeof *grown);
        if (!grown) return fprintf(stderr, "meshllama: --logit-bias: out of memory\n"), -1;
        s->bias = grown;
        s->bias[p->n_logit_bias++] = entry;
        p->logit_bias = s->bias;
        break;
    }
    case ML_OPT_STOP: {
        if (!arg[0]) return fprintf(stderr, "meshllama: --stop '': expected a non-empty text\n"), -1;
        const char **grown = realloc(s->stops, ((size_t)p->n_stop_strings + 1) * sizeof *grown);
        if (!grown) return fprintf(stderr, "meshllama: --stop: out of memory\n"), -1;
        s->stops = grown;
        s->stops[p->n_stop_strings++] = arg;
        p->stop_strings = s->stops;
        break;
    }
    default: return 0;
    }
    return bad ? -1 : 1;
}
