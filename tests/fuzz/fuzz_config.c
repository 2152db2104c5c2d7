/* libFuzzer harness: the input is config.json text, and the same text as a
 * generation_config.json applied on top of the parsed config (or of a known-good one). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "fuzz_input.h"

static void check_config(const ml_config *c) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0) abort();
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0) abort();
    if (c->head_dim <= 0 || c->head_dim % 2 != 0) abort();
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0)) abort();
    if (c->n_eos < 0 || c->n_eos > ML_MAX_EOS) abort();
    for (int i = 0; i < c->n_eos; i++) {
        if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size) abort();
    }
    if (c->bos_token_id < -1 || c->bos_token_id >= c->vocab_size) abort();
    if (memchr(c->torch_dtype, '\0', sizeof c->torch_dtype) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_copy(data, size);
    if (!text) return 0;

    ml_config config;
    if (ml_config_parse(text, size, "fuzz/config.json", &config) == 0) {
        check_config(&config);
        if (ml_generation_config_apply(text, size, "fuzz/config.json", &config) == 0) check_config(&config);
    }

    static const char base[] = "{\"vocab_size\": 1000, \"hidden_size\": 64, \"intermediate_size\": 128,"
                               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"eos_token_id\": 2}";
    if (ml_config_parse(base, strlen(base), "base.json", &config) != 0) abort();
    if (ml_generation_config_apply(text, size, "fuzz/generation_config.json", &config) == 0) check_config(&config);
    free(text);
    return 0;
}
