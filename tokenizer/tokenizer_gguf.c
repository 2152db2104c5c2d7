/* The tokenizer of a GGUF file: reads tokenizer.ggml.* and tokenizer.chat_template with the
 * formats/gguf reader and builds it through ml_tokenizer_from_arrays. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer_gguf.h"
#include "tokenizer/tokenizer_internal.h"

static int optional_int(const ml_gguf *g, const char *key, int32_t *out) {
    *out = -1;
    if (!ml_gguf_find(g, key)) return ML_OK;
    int64_t value;
    ML_TRY(ml_gguf_get_int(g, key, &value));
    if (value < -1 || value > INT32_MAX)
        return ml_set_error(ML_ERR_FORMAT, "%s: %s = %lld is not a token id", g->source, key, (long long)value);
    *out = (int32_t)value;
    return ML_OK;
}

static int optional_bool(const ml_gguf *g, const char *key, int *out) {
    *out = -1;
    if (!ml_gguf_find(g, key)) return ML_OK;
    return ml_gguf_get_bool(g, key, out);
}

int ml_tokenizer_from_gguf(const ml_gguf *g, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_from_gguf: out is NULL");
    *out = NULL;
    if (!g) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_from_gguf: no GGUF");
    ml_tokenizer_arrays a;
    memset(&a, 0, sizeof a);
    a.source = g->source;
    size_t length;
    if (!ml_gguf_find(g, "tokenizer.ggml.model"))
        return ml_set_error(ML_ERR_FORMAT, "%s: no tokenizer.ggml.model: the file carries no tokenizer", g->source);
    ML_TRY(ml_gguf_get_string(g, "tokenizer.ggml.model", &a.model, &length));
    if (ml_gguf_find(g, "tokenizer.ggml.pre")) ML_TRY(ml_gguf_get_string(g, "tokenizer.ggml.pre", &a.pre, &length));
    if (ml_gguf_find(g, "tokenizer.chat_template"))
        ML_TRY(ml_gguf_get_string(g, "tokenizer.chat_template", &a.chat_template, &length));
    ML_TRY(optional_int(g, "tokenizer.ggml.bos_token_id", &a.bos_id));
    ML_TRY(optional_int(g, "tokenizer.ggml.eos_token_id", &a.eos_id));
    ML_TRY(optional_int(g, "tokenizer.ggml.unknown_token_id", &a.unk_id));
    ML_TRY(optional_bool(g, "tokenizer.ggml.add_bos_token", &a.add_bos));
    ML_TRY(optional_bool(g, "tokenizer.ggml.add_eos_token", &a.add_eos));
    ML_TRY(optional_bool(g, "tokenizer.ggml.add_space_prefix", &a.add_space_prefix));

    const ml_gguf_string *tokens = NULL, *merges = NULL;
    size_t n_tokens = 0, n_merges = 0, n_types = 0;
    int32_t *types = NULL;
    ML_TRY(ml_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, &n_tokens));
    if (ml_gguf_find(g, "tokenizer.ggml.merges"))
        ML_TRY(ml_gguf_get_string_array(g, "tokenizer.ggml.merges", &merges, &n_merges));
    if (ml_gguf_find(g, "tokenizer.ggml.token_type"))
        ML_TRY(ml_gguf_get_int32_array(g, "tokenizer.ggml.token_type", &types, &n_types));
    float *scores = NULL;
    const ml_gguf_value *score_array = ml_gguf_find(g, "tokenizer.ggml.scores");
    if (score_array && n_tokens > 0 && n_tokens <= INT32_MAX) {
        scores = malloc(n_tokens * sizeof *scores);
        if (!scores) {
            free(types);
            return ml_set_error(ML_ERR_NOMEM, "%s: out of memory reading tokenizer.ggml.scores", g->source);
        }
        for (size_t i = 0; i < n_tokens; i++) {
            double score;
            if (ml_gguf_array_float(score_array, i, &score) != 0) {
                free(types);
                free(scores);
                return ml_set_error(ML_ERR_FORMAT, "%s: tokenizer.ggml.scores must be %zu numbers (one per token)",
                                    g->source, n_tokens);
            }
            scores[i] = (float)score;
        }
    }
    a.scores = scores;
    if (n_tokens == 0 || n_tokens > INT32_MAX || n_merges > INT32_MAX || (types && n_types != n_tokens)) {
        free(types);
        free(scores);
        return ml_set_error(ML_ERR_FORMAT, "%s: %zu tokens, %zu token types, %zu merges do not fit together",
                            g->source, n_tokens, n_types, n_merges);
    }
    const char **token_text = malloc(n_tokens * sizeof *token_text);
    size_t *token_length = malloc(n_tokens * sizeof *token_length);
    const char **merge_text = malloc((n_merges + 1) * sizeof *merge_text);
    size_t *merge_length = malloc((n_merges + 1) * sizeof *merge_length);
    int status = ML_OK;
    if (!token_text || !token_length || !merge_text || !merge_length) {
        status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory reading the tokenizer", g->source);
    } else {
        for (size_t i = 0; i < n_tokens; i++) {
            token_text[i] = tokens[i].text;
            token_length[i] = tokens[i].length;
        }
        for (size_t i = 0; i < n_merges; i++) {
            merge_text[i] = merges[i].text;
            merge_length[i] = merges[i].length;
        }
        a.n_tokens = (int32_t)n_tokens;
        a.tokens = token_text;
        a.token_lengths = token_length;
        a.token_types = types;
        a.n_merges = (int32_t)n_merges;
        a.merges = merge_text;
        a.merge_lengths = merge_length;
        status = ml_tokenizer_from_arrays(&a, out);
    }
    free(token_text);
    free(token_length);
    free(merge_text);
    free(merge_length);
    free(types);
    free(scores);
    return status;
}

int ml_tokenizer_open_gguf(const char *path, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_open_gguf: out is NULL");
    *out = NULL;
    ml_gguf g;
    ML_TRY(ml_gguf_open(path, &g));
    int status = ml_tokenizer_from_gguf(&g, out);
    ml_gguf_close(&g);
    return status;
}
