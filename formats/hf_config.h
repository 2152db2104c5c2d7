/* Hugging Face config.json (and generation_config.json) for the Llama family (Llama, Mistral,
 * Qwen2), read into the engine's ml_config (formats/model_config.h). */
#ifndef ML_FORMATS_HF_CONFIG_H
#define ML_FORMATS_HF_CONFIG_H

#include <stddef.h>

#include "formats/model_config.h"

/* Parses config.json text. source names the file in error messages. */
int ml_config_parse(const char *json_text, size_t length, const char *source, ml_config *out);
/* Applies generation_config.json text (eos_token_id, bos_token_id) on top of a parsed config. */
int ml_generation_config_apply(const char *json_text, size_t length, const char *source, ml_config *config);
/* Reads model_dir/config.json and, when present, model_dir/generation_config.json. */
int ml_config_load(const char *model_dir, ml_config *out);

#endif
