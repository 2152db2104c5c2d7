/* Opening a checkpoint by what the path holds: a Hugging Face directory or a GGUF file, parsed
 * once for the config, the weight set and the tokenizer. */
#include "model/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "tokenizer/tokenizer_gguf.h"

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

/* MESHLLAMA_GGUF_DEQUANTIZE=1 (any value but empty or "0") dequantises every Q8_0/Q4_0/Q4_1
 * tensor to float32 at load, as before the native quantised kernels: a reference path for
 * tests and comparisons (docs/GGUF.md). */
static ml_gguf_quant_mode gguf_mode(void) {
    const char *value = getenv("MESHLLAMA_GGUF_DEQUANTIZE");
    return value && value[0] && strcmp(value, "0") != 0 ? ML_GGUF_DEQUANTIZE : ML_GGUF_KEEP_QUANTIZED;
}

static int open_parts(const char *path, ml_checkpoint *ck) {
    ML_TRY(check_path(path));
    ck->path = strdup(path);
    if (!ck->path) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", path);
    if (ml_is_directory(path)) {
        ML_TRY(ml_config_load(path, &ck->config));
        return ml_safetensors_open_dir(path, &ck->weights);
    }
    ck->is_gguf = 1;
    ML_TRY(ml_gguf_open(path, &ck->gguf));
    ML_TRY(ml_gguf_llama_config(&ck->gguf, &ck->config));
    return ml_gguf_llama_weights_borrowed(&ck->gguf, &ck->config, gguf_mode(), &ck->weights);
}

int ml_checkpoint_open(const char *path, ml_checkpoint *out) {
    memset(out, 0, sizeof *out);
    if (!path) return ml_set_error(ML_ERR_ARG, "ml_checkpoint_open: path is NULL");
    int status = open_parts(path, out);
    if (status != ML_OK) ml_checkpoint_close(out);
    return status;
}

int ml_checkpoint_open_tokenizer(const ml_checkpoint *ck, ml_tokenizer **out) {
    if (ck->is_gguf) return ml_tokenizer_from_gguf(&ck->gguf, out);
    return ml_tokenizer_open(ck->path, out);
}

static long gcd_long(long a, long b) {
    while (b) {
        long r = a % b;
        a = b;
        b = r;
    }
    return a;
}

int ml_checkpoint_ffn_block(const ml_checkpoint *ck) {
    if (!ck->is_gguf) return 1;
    long block = 1;
    char name[64];
    for (int layer = 0; layer < ck->config.n_layers; layer++) {
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", layer);
        const ml_gguf_tensor *t = ml_gguf_find_tensor(&ck->gguf, name);
        const ml_ggml_type_traits *traits = t ? ml_ggml_traits(t->type) : NULL;
        if (!traits || traits->block_size <= 1) continue;
        block = block / gcd_long(block, (long)traits->block_size) * (long)traits->block_size;
        if (block > ck->config.intermediate_size) return 1; /* no whole-block split exists */
    }
    return (int)block;
}

int ml_checkpoint_files(const ml_checkpoint *ck, const ml_mapped_file **out_files) {
    if (ck->is_gguf) {
        *out_files = &ck->gguf.file;
        return ck->gguf.file.data || ck->gguf.file.path ? 1 : 0;
    }
    *out_files = ck->weights.files;
    return ck->weights.n_files;
}

void ml_checkpoint_close(ml_checkpoint *ck) {
    if (!ck) return;
    ml_weight_set_close(&ck->weights); /* before the mapping its views borrow */
    ml_gguf_close(&ck->gguf);
    free(ck->path);
    memset(ck, 0, sizeof *ck);
}
