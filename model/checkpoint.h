/* A checkpoint, whatever its format, opened once: a Hugging Face directory (config.json +
 * safetensors) or a GGUF file (llama architecture). One open gives the engine's config, a
 * weight set named as Hugging Face names it, and the source of the tokenizer; ml_model_open,
 * ml_inspect and ml_model_open_tokenizer all go through it, so a GGUF file is parsed once. */
#ifndef ML_MODEL_CHECKPOINT_H
#define ML_MODEL_CHECKPOINT_H

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/weight_set.h"
#include "meshllama.h"

typedef struct {
    char *path;             /* owned: the directory or file as given */
    ml_config config;
    ml_weight_set weights;  /* for a GGUF file, its zero-copy views point into gguf's mapping */
    int is_gguf;
    ml_gguf gguf;           /* the parsed GGUF file (config, weights and tokenizer metadata all
                             * come from it); all zero for a directory */
} ml_checkpoint;

/* Opens path: reads the config, then the weight set. GGUF quantised matrices stay quantised
 * unless MESHLLAMA_GGUF_DEQUANTIZE is set (checkpoint.c). On failure *out is left closed. */
int ml_checkpoint_open(const char *path, ml_checkpoint *out);
/* The checkpoint's tokenizer: built from the already parsed GGUF metadata, or, for a directory,
 * ml_tokenizer_open on it (tokenizer.json or tokenizer.model). */
int ml_checkpoint_open_tokenizer(const ml_checkpoint *ck, ml_tokenizer **out);
/* The files the checkpoint maps, for the changed-file checks and the MPI fingerprint
 * (model/model.c): a directory's safetensors files, or the GGUF file. Returns their count. */
int ml_checkpoint_files(const ml_checkpoint *ck, const ml_mapped_file **out_files);
/* The block the shard plan splits the FFN range in (ml_shard_plan_build's ffn_block): the
 * columns per block of the file's down_proj matrices where any layer's is block-quantised (the
 * least common multiple over the layers: 32, or 256 for the K-quants), else 1. Taken from the
 * types as stored, so MESHLLAMA_GGUF_DEQUANTIZE and every MPI rank get the same plan. */
int ml_checkpoint_ffn_block(const ml_checkpoint *ck);
/* Frees everything; a zeroed or closed checkpoint is harmless. */
void ml_checkpoint_close(ml_checkpoint *ck);

#endif
