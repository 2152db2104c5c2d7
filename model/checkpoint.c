#include "model/checkpoint.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

int ml_checkpoint_is_gguf(const char *path) {
    if (!ml_file_exists(path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

static int check_path(const char *path) {
    if (ml_is_directory(path) || ml_checkpoint_is_gguf(path)) return ML_OK;
    if (ml_file_exists(path))
        return ml_set_error(ML_ERR_FORMAT, "%s: not a GGUF file (no GGUF magic) and not a checkpoint directory", path);
    return ml_set_error(ML_ERR_IO, "%s: model directory or GGUF file does not exist", path);
}

int ml_checkpoint_load_config(const char *path, ml_config *out) {
    ML_TRY(check_path(path));
    if (ml_is_directory(path)) return ml_config_load(path, out);
    ml_gguf g;
    ML_TRY(ml_gguf_open(path, &g));
    int status = ml_gguf_llama_config(&g, out);
    ml_gguf_close(&g);
    return status;
}

int ml_checkpoint_open_weights(const char *path, const ml_config *config, ml_safetensors *out) {
    ML_TRY(check_path(path));
    if (ml_is_directory(path)) return ml_safetensors_open_dir(path, out);
    ml_gguf g;
    ML_TRY(ml_gguf_open(path, &g));
    int status = ml_gguf_llama_weights(&g, config, out);
    ml_gguf_close(&g);
    return status;
}
