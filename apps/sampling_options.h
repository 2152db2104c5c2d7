/* The sampling flags `run` and `chat` share (llama.cpp's names where they overlap):
 * --temp, --top-k, --top-p, --min-p, --typical, -s, --repeat-penalty, --repeat-last-n,
 * --presence-penalty, --frequency-penalty, --logit-bias, --min-tokens, --stop. */
#ifndef ML_APPS_SAMPLING_OPTIONS_H
#define ML_APPS_SAMPLING_OPTIONS_H

#include <getopt.h>

#include "meshllama.h"

enum {
    ML_OPT_TEMP = 1500, /* after every command's own options */
    ML_OPT_TOP_K,
    ML_OPT_TOP_P,
    ML_OPT_MIN_P,
    ML_OPT_TYPICAL,
    ML_OPT_REPEAT_PENALTY,
    ML_OPT_REPEAT_LAST_N,
    ML_OPT_PRESENCE_PENALTY,
    ML_OPT_FREQUENCY_PENALTY,
    ML_OPT_LOGIT_BIAS,
    ML_OPT_MIN_TOKENS,
    ML_OPT_STOP,
};

typedef struct {
    ml_sampling_params params; /* its logit_bias and stop_strings point into the arrays below */
    ml_logit_bias *bias;
    const char **stops;        /* argv strings */
} ml_cli_sampling;

#define ML_SAMPLING_LONG_OPTIONS                                                                   \
    {"temp", required_argument, NULL, ML_OPT_TEMP}, {"top-k", required_argument, NULL, ML_OPT_TOP_K}, \
        {"top-p", required_argument, NULL, ML_OPT_TOP_P}, {"min-p", required_argument, NULL, ML_OPT_MIN_P}, \
        {"typical", required_argument, NULL, ML_OPT_TYPICAL}, {"seed", required_argument, NULL, 's'},      \
        {"repeat-penalty", required_argument, NULL, ML_OPT_REPEAT_PENALTY},                                \
        {"repeat-last-n", required_argument, NULL, ML_OPT_REPEAT_LAST_N},                                  \
        {"presence-penalty", required_argument, NULL, ML_OPT_PRESENCE_PENALTY},                            \
        {"frequency-penalty", required_argument, NULL, ML_OPT_FREQUENCY_PENALTY},                          \
        {"logit-bias", required_argument, NULL, ML_OPT_LOGIT_BIAS},                                        \
        {"min-tokens", required_argument, NULL, ML_OPT_MIN_TOKENS}, {"stop", required_argument, NULL, ML_OPT_STOP}

#define ML_SAMPLING_SHORT_OPTIONS "s:"

#define ML_SAMPLING_OPTIONS_HELP                                                                   \
    "      --temp T          temperature; 0 = greedy (default 0)\n"                                 \
    "      --top-k K         keep the K most likely tokens (0 = off)\n"                             \
    "      --top-p P         nucleus: the most likely tokens up to probability P, (0, 1] (default 1 = off)\n" \
    "      --min-p P         drop tokens less likely than P times the most likely one (0 = off)\n"  \
    "      --typical P       locally typical sampling with mass P, (0, 1] (1 = off)\n"            \
    "  -s, --seed S          random seed for sampling (default 42)\n"                               \
    "      --repeat-penalty F   divide (multiply when negative) the logits of recent tokens by F\n" \
    "                           (Hugging Face repetition_penalty; 1 = off)\n"                      \
    "      --repeat-last-n N    the penalties' window: last N tokens, prompt included\n"           \
    "                           (default 64; -1 = all, 0 = penalties off)\n"                       \
    "      --presence-penalty F   subtract F from tokens generated in the window (OpenAI)\n"       \
    "      --frequency-penalty F  subtract F times their count (OpenAI)\n"                         \
    "      --logit-bias ID+B    add B to token ID's logit, e.g. 15043+1, 15043-0.5, 15043-inf (ban);\n" \
    "                           repeatable\n"                                                      \
    "      --min-tokens N    generate at least N tokens before an end-of-generation token or a stop\n" \
    "                        string may end the answer\n"                                          \
    "      --stop TEXT       stop when TEXT appears in the output (not printed); repeatable\n"

void ml_cli_sampling_init(ml_cli_sampling *s, int max_tokens);
/* Handles opt if it is a sampling option: 1 handled, 0 not one, -1 bad value (printed). */
int ml_cli_sampling_option(ml_cli_sampling *s, int opt, const char *arg);
void ml_cli_sampling_free(ml_cli_sampling *s);

#endif
