/* Opening a checkpoint by what the path holds: a Hugging Face directory or a GGUF file. */
#include "model/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* A directory, or a file starting with the GGUF magic. A file that cannot be opened or read is
 * the OS's reason (ML_ERR_IO), not "not a GGUF file". */
static int check_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return ml_set_error(ML_ERR_IO, "%s: model directory or GGUF file does not exist", path);
        return ml_set_error(ML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return ML_OK;
    FILE *f = fopen(path, "rb");
    if (!f) return ml_set_error(ML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (read_errno) return ml_set_error(ML_ERR_IO, "%s: cannot read: %s", path, strerror(read_errno));
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return ML_OK;
    return ml_set_error(ML_ERR_FORMAT, "%s: not a GGUF file (no GGUF magic) and not a checkpoint directory", path);
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

/* MESHLLAMA_GGUF_DEQUANTIZE=1 (any value but empty or "0") dequantises every Q8_0/Q4_0/Q4_1
 * tensor to float32 at load, as before the native quantised kernels: a reference path for
 * tests and comparisons (docs/GGUF.md). */
static ml_gguf_quant_mode gguf_mode(void) {
    const char *value = getenv("MESHLLAMA_GGUF_DEQUANTIZE");
    return value && value[0] && strcmp(value, "0") != 0 ? ML_GGUF_DEQUANTIZE : ML_GGUF_KEEP_QUANTIZED;
}

int ml_checkpoint_open_weights(const char *path, const ml_config *config, ml_safetensors *out) {
    ML_TRY(check_path(path));
    if (ml_is_directory(path)) return ml_safetensors_open_dir(path, out);
    ml_gguf g;
    ML_TRY(ml_gguf_open(path, &g));
    int status = ml_gguf_llama_weights_mode(&g, config, gguf_mode(), out);
    ml_gguf_close(&g);
    return status;
}
