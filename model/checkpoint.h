/* A checkpoint on disk, whatever its format: a Hugging Face directory (config.json +
 * safetensors) or a GGUF file (llama architecture). Gives the engine's config and a weight
 * set named as Hugging Face names it. */
#ifndef ML_MODEL_CHECKPOINT_H
#define ML_MODEL_CHECKPOINT_H

#include "formats/hf_config.h"
#include "formats/safetensors.h"

/* Non-zero when path is a GGUF file (by its magic). */
int ml_checkpoint_is_gguf(const char *path);
int ml_checkpoint_load_config(const char *path, ml_config *out);
/* GGUF quantised matrices stay quantised unless MESHLLAMA_GGUF_DEQUANTIZE is set (checkpoint.c). */
int ml_checkpoint_open_weights(const char *path, const ml_config *config, ml_safetensors *out);

#endif
