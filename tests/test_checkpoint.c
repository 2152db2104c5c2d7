/* One checkpoint open (model/checkpoint.c): a GGUF file gives config, weights and tokenizer from
 * one parse; ml_model_open_tokenizer gives the tokenizer ml_tokenizer_open would; a directory's
 * weights borrow nothing; bad handles are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "model/checkpoint.h"
#include "test_util.h"

/* The tokenizer through the opened model equals the standalone one: same facts, same token
 * bytes, and (when text is given: a real vocabulary) the same ids for text. */
static void check_model_tokenizer(const char *path, const char *text) {
    ml_model_params p = ml_model_default_params();
    p.n_threads = 1;
    ml_model *m = NULL;
    CHECK(ml_model_open(path, &p, &m) == ML_OK, "%s: %s", path, ml_last_error());
    if (!m) return;
    ml_tokenizer *via_model = NULL, *alone = NULL;
    int status_model = ml_model_open_tokenizer(m, &via_model);
    int status_alone = ml_tokenizer_open(path, &alone);
    CHECK(status_model == status_alone, "%s: ml_model_open_tokenizer %d, ml_tokenizer_open %d", path, status_model,
          status_alone);
    if (via_model && alone) {
        ml_tokenizer_info a, b;
        ml_tokenizer_get_info(via_model, &a);
        ml_tokenizer_get_info(alone, &b);
        CHECK(a.vocab_size == b.vocab_size && a.n_merges == b.n_merges && a.bos_id == b.bos_id &&
                  a.eos_id == b.eos_id && strcmp(a.pre_tokenizer, b.pre_tokenizer) == 0,
              "%s: tokenizer facts differ", path);
        int same_tokens = 1;
        for (int32_t id = 0; id < a.vocab_size && same_tokens; id++) {
            const char *bytes_a, *bytes_b;
            size_t length_a, length_b;
            int status_a = ml_tokenizer_token_bytes(via_model, id, &bytes_a, &length_a);
            int status_b = ml_tokenizer_token_bytes(alone, id, &bytes_b, &length_b);
            same_tokens = status_a == status_b &&
                          (status_a != ML_OK || (length_a == length_b && memcmp(bytes_a, bytes_b, length_a) == 0));
        }
        CHECK(same_tokens, "%s: token bytes differ", path);
        if (text) {
            int32_t *ids_a = NULL, *ids_b = NULL;
            size_t n_a = 0, n_b = 0;
            CHECK(ml_tokenize(via_model, text, strlen(text), ML_TOKENIZE_ADD_SPECIAL, &ids_a, &n_a) == ML_OK &&
                      ml_tokenize(alone, text, strlen(text), ML_TOKENIZE_ADD_SPECIAL, &ids_b, &n_b) == ML_OK,
                  "%s: tokenize: %s", path, ml_last_error());
            CHECK(n_a == n_b && n_a > 1 && memcmp(ids_a, ids_b, n_a * sizeof *ids_a) == 0, "%s: ids differ", path);
            free(ids_a);
            free(ids_b);
        }
    }
    ml_tokenizer_close(via_model);
    ml_tokenizer_close(alone);
    ml_model_close(m);
}

/* A GGUF checkpoint's weight set borrows the parsed file's mapping (no second mapping). */
static void check_gguf_checkpoint(const char *path) {
    ml_checkpoint ck;
    CHECK(ml_checkpoint_open(path, &ck) == ML_OK, "%s: %s", path, ml_last_error());
    CHECK(ck.is_gguf && ck.gguf.image != NULL && ck.weights.n_tensors > 0, "%s: not opened as GGUF", path);
    CHECK(ck.weights.n_files == 1 && ck.weights.files[0].data == NULL, "%s: the weight set mapped the file again",
          path);
    const ml_tensor_view *embed = ml_weight_set_find(&ck.weights, "model.embed_tokens.weight");
    CHECK(embed && (const uint8_t *)embed->data >= ck.gguf.image &&
              (const uint8_t *)embed->data < ck.gguf.image + ck.gguf.image_size,
          "%s: the embedding does not point into the parsed file", path);
    CHECK(ck.config.vocab_size > 0 && strcmp(ck.path, path) == 0, "%s: config or path", path);
    ml_checkpoint_close(&ck);
    ml_checkpoint_close(&ck); /* closed twice: harmless */
}

static void check_errors(void) {
    ml_checkpoint ck;
    CHECK(ml_checkpoint_open("/nonexistent/meshllama-checkpoint", &ck) == ML_ERR_IO &&
              strstr(ml_last_error(), "/nonexistent/meshllama-checkpoint"),
          "missing path: %s", ml_last_error());
    CHECK(ck.path == NULL && ck.weights.n_tensors == 0, "failed open left state behind");
    CHECK(ml_checkpoint_open(NULL, &ck) == ML_ERR_ARG, "NULL path accepted");
    ml_tokenizer *tok = (ml_tokenizer *)&ck;
    CHECK(ml_model_open_tokenizer(NULL, &tok) == ML_ERR_ARG && tok == NULL, "NULL model accepted");
    CHECK(ml_model_open_tokenizer(NULL, NULL) == ML_ERR_ARG, "NULL out accepted");
}

int main(void) {
    char path[1024];
    ml_test_fixture_path(path, sizeof path, "gguf/gqa_tied_q8_0.gguf");
    check_gguf_checkpoint(path);
    check_model_tokenizer(path, NULL); /* tokens "<tN>": no text maps onto them */
    ml_test_fixture_path(path, sizeof path, "gguf/tiny_q4_1_llama3.gguf");
    check_gguf_checkpoint(path);
    check_model_tokenizer(path, NULL);
    ml_test_fixture_path(path, sizeof path, "gqa_tied_bf16"); /* a directory without tokenizer files */
    check_model_tokenizer(path, NULL);
    /* the default model, when fetched: a real vocabulary */
    char fixtures[512], model[700];
    ml_test_fixture_path(fixtures, sizeof fixtures, "");
    snprintf(model, sizeof model, "%s/../../models/SmolLM2-135M-Instruct.Q4_1.gguf", fixtures);
    FILE *f = fopen(model, "rb");
    if (f) {
        fclose(f);
        check_gguf_checkpoint(model);
        check_model_tokenizer(model, "The quick brown fox jumps over the lazy dog. 12345 h\xc3\xa9llo <|im_end|>");
    } else {
        printf("SKIP default model: %s is absent\n", model);
    }
    check_errors();
    return ml_test_finish("checkpoint");
}
