/* Construction from plain arrays: the tokenizer as GGUF stores it (tokenizer.ggml.tokens,
 * token_type, merges, pre, bos/eos ids, add_bos_token, tokenizer.chat_template). The GGUF reader
 * calls this; tests call it with arrays taken from a tokenizer.json.
 *
 * Token types (llama.cpp's llama_token_type): normal (1) and byte (6) tokens are byte-level
 * text and take part in BPE; control (3) tokens are special added tokens, user-defined (4) ones
 * are added tokens matched in any text; unknown (2) and unused (5) only decode. The pre-tokenizer
 * name maps to the patterns in pretokenize.c; "llama-bpe" also turns on ignore_merges and, unless
 * the file says otherwise, BOS, as llama.cpp does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

enum { TYPE_NORMAL = 1, TYPE_UNKNOWN = 2, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4, TYPE_UNUSED = 5, TYPE_BYTE = 6 };

static size_t text_length(const char *const *texts, const size_t *lengths, int32_t i) {
    return lengths ? lengths[i] : strlen(texts[i]);
}

static int load_tokens(ml_tokenizer *tok, const ml_tokenizer_arrays *a, const char *source) {
    ml_byte_buf bytes = {0};
    int status = ML_OK;
    for (int32_t i = 0; i < a->n_tokens && status == ML_OK; i++) {
        if (!a->tokens[i]) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: token %d has no text", source, (int)i);
            break;
        }
        const char *text = a->tokens[i];
        size_t length = text_length(a->tokens, a->token_lengths, i);
        int32_t type = a->token_types ? a->token_types[i] : TYPE_NORMAL;
        if (tok->spm && (type == TYPE_NORMAL || type == TYPE_BYTE)) {
            int byte;
            status = ml_spm_token_bytes(text, length, &bytes, &byte);
            if (status == ML_OK && type == TYPE_BYTE && byte < 0) {
                status = ml_set_error(ML_ERR_FORMAT, "%s: token %d \"%.*s\" has type 6 (byte) but is not <0xXX>",
                                      source, (int)i, (int)(length > 40 ? 40 : length), text);
                break;
            }
            if (type == TYPE_NORMAL) byte = -1; /* "<0x41>" typed normal is text */
            if (status == ML_OK)
                status = ml_vocab_set(&tok->vocab, i, bytes.data, bytes.n, byte >= 0 ? 0 : ML_TOKF_MERGEABLE);
            if (status == ML_OK && byte >= 0 && tok->byte_fallback_id[byte] < 0) tok->byte_fallback_id[byte] = i;
            if (status != ML_OK && status != ML_ERR_FORMAT) status = ml_set_error(status, "%s: out of memory", source);
            continue;
        }
        switch (type) {
        case TYPE_NORMAL:
        case TYPE_BYTE: {
            bytes.n = 0;
            int decoded = ml_byte_level_decode(text, length, &bytes);
            if (decoded < 0) {
                status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
                break;
            }
            status = decoded ? ml_vocab_set(&tok->vocab, i, bytes.data, bytes.n, ML_TOKF_MERGEABLE)
                             : ml_vocab_set(&tok->vocab, i, text, length, 0);
            break;
        }
        case TYPE_CONTROL:
        case TYPE_USER_DEFINED: {
            int special = type == TYPE_CONTROL;
            status = ml_vocab_set(&tok->vocab, i, text, length, ML_TOKF_ADDED | (special ? ML_TOKF_SPECIAL : 0));
            if (status == ML_OK) status = ml_added_add(&tok->added, &tok->vocab, i, special, 0, 0, 0);
            break;
        }
        case TYPE_UNKNOWN:
        case TYPE_UNUSED: status = ml_vocab_set(&tok->vocab, i, text, length, 0); break;
        default:
            status = ml_set_error(ML_ERR_FORMAT, "%s: token_type[%d] is %d; GGUF token types are 1..6", source, (int)i,
                                  (int)type);
            break;
        }
        if (status != ML_OK && status != ML_ERR_FORMAT) status = ml_set_error(status, "%s: out of memory", source);
    }
    free(bytes.data);
    return status;
}

/* Looks up one side of a merge: byte-level (or '▁') text -> stored bytes -> mergeable token. */
static int32_t merge_side(const ml_tokenizer *tok, const char *text, size_t length, ml_byte_buf *scratch) {
    scratch->n = 0;
    if (tok->spm) {
        int byte;
        if (ml_spm_token_bytes(text, length, scratch, &byte) != ML_OK || byte >= 0) return -1;
    } else if (ml_byte_level_decode(text, length, scratch) != 1) {
        return -1;
    }
    return ml_vocab_find(&tok->vocab, scratch->data, scratch->n);
}

typedef struct {
    float score;
    int32_t id;
} scored_token;

static int by_score(const void *a, const void *b) {
    const scored_token *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* SentencePiece / llama.cpp without merges: every split of a normal token into two normal
 * tokens is a merge rule, ranked by the merged token's score (higher first; equal scores share
 * a rank, so the leftmost pair goes first, as llama.cpp's bigram queue does). */
static int load_score_merges(ml_tokenizer *tok, const ml_tokenizer_arrays *a, const char *source) {
    if (!a->scores)
        return ml_set_error(ML_ERR_FORMAT,
                            "%s: a \"llama\" tokenizer needs tokenizer.ggml.scores (or merges) to rank its merges",
                            source);
    const ml_vocab *v = &tok->vocab;
    scored_token *order = malloc((size_t)a->n_tokens * sizeof *order);
    if (!order) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
    size_t n = 0;
    for (int32_t i = 0; i < a->n_tokens; i++) {
        if (a->scores[i] != a->scores[i]) {
            free(order);
            return ml_set_error(ML_ERR_FORMAT, "%s: tokenizer.ggml.scores[%d] is NaN", source, (int)i);
        }
        if ((v->flags[i] & ML_TOKF_MERGEABLE) && v->length[i] > 1) order[n++] = (scored_token){a->scores[i], i};
    }
    qsort(order, n, sizeof *order, by_score);
    int status = ml_vocab_reserve_merges(&tok->vocab, n * 2);
    uint32_t rank = 0;
    for (size_t k = 0; k < n && status == ML_OK; k++) {
        if (k > 0 && order[k].score != order[k - 1].score) rank++;
        int32_t id = order[k].id;
        const char *text = v->bytes + v->offset[id];
        uint32_t length = v->length[id];
        for (uint32_t cut = 1; cut < length && status == ML_OK; cut++) {
            if (((uint8_t)text[cut] & 0xC0) == 0x80) continue; /* inside a character */
            int32_t left = ml_vocab_find(v, text, cut), right = ml_vocab_find(v, text + cut, length - cut);
            if (left >= 0 && right >= 0) status = ml_vocab_add_merge(&tok->vocab, left, right, rank, id);
        }
    }
    free(order);
    return status == ML_OK ? ML_OK : ml_set_error(status, "%s: out of memory", source);
}

static int load_merges(ml_tokenizer *tok, const ml_tokenizer_arrays *a, const char *source) {
    if (a->n_merges == 0) return ML_OK;
    int status = ml_vocab_reserve_merges(&tok->vocab, (size_t)a->n_merges);
    if (status != ML_OK) return ml_set_error(status, "%s: out of memory for %d merges", source, (int)a->n_merges);
    ml_byte_buf scratch = {0}, joined = {0};
    for (int32_t rank = 0; rank < a->n_merges && status == ML_OK; rank++) {
        const char *text = a->merges[rank];
        size_t length = text ? text_length(a->merges, a->merge_lengths, rank) : 0;
        const char *space = text ? memchr(text, ' ', length) : NULL;
        if (!space || memchr(space + 1, ' ', length - (size_t)(space - text) - 1)) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: merges[%d] \"%.*s\" is not \"left right\"", source, (int)rank,
                                  (int)(length > 60 ? 60 : length), text ? text : "");
            break;
        }
        size_t left_length = (size_t)(space - text), right_length = length - left_length - 1;
        int32_t left = merge_side(tok, text, left_length, &scratch);
        int32_t right = merge_side(tok, space + 1, right_length, &scratch);
        joined.n = 0;
        int32_t merged = -1;
        if (left >= 0 && right >= 0 && ml_byte_buf_append(&joined, tok->vocab.bytes + tok->vocab.offset[left],
                                                          tok->vocab.length[left]) == ML_OK &&
            ml_byte_buf_append(&joined, tok->vocab.bytes + tok->vocab.offset[right], tok->vocab.length[right]) == ML_OK)
            merged = ml_vocab_find(&tok->vocab, joined.data, joined.n);
        if (left < 0 || right < 0 || merged < 0) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: merges[%d] \"%.*s\": %s is not a token", source, (int)rank,
                                  (int)(length > 60 ? 60 : length), text,
                                  left < 0 ? "the left side" : right < 0 ? "the right side" : "the merged text");
            break;
        }
        status = ml_vocab_add_merge(&tok->vocab, left, right, (uint32_t)rank, merged);
        if (status != ML_OK) status = ml_set_error(status, "%s: out of memory", source);
    }
    free(scratch.data);
    free(joined.data);
    return status;
}

static int check_id(int32_t id, int32_t n_tokens, const char *what, const char *source) {
    if (id < -1 || id >= n_tokens)
        return ml_set_error(ML_ERR_FORMAT, "%s: %s %d is outside the vocabulary (0..%d)", source, what, (int)id,
                            (int)n_tokens - 1);
    return ML_OK;
}

int ml_tokenizer_from_arrays(const ml_tokenizer_arrays *a, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_from_arrays: out is NULL");
    *out = NULL;
    if (!a) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_from_arrays: arrays is NULL");
    const char *source = a->source ? a->source : "tokenizer arrays";
    int spm = a->model && strcmp(a->model, "llama") == 0;
    if (!a->model || (strcmp(a->model, "gpt2") != 0 && !spm))
        return ml_set_error(ML_ERR_UNSUPPORTED,
                            "%s: tokenizer model \"%s\" is not supported (\"gpt2\", byte-level BPE, or \"llama\", "
                            "SentencePiece-style BPE)",
                            source, a->model ? a->model : "(none)");
    if (a->n_tokens <= 0 || !a->tokens) return ml_set_error(ML_ERR_FORMAT, "%s: no tokens", source);
    if (a->n_merges < 0 || (a->n_merges > 0 && !a->merges))
        return ml_set_error(ML_ERR_FORMAT, "%s: merges missing", source);
    ML_TRY(check_id(a->bos_id, a->n_tokens, "bos_token_id", source));
    ML_TRY(check_id(a->eos_id, a->n_tokens, "eos_token_id", source));
    ML_TRY(check_id(a->unk_id, a->n_tokens, "unknown_token_id", source));

    ml_tokenizer *tok = NULL;
    ML_TRY(ml_tokenizer_alloc(source, "arrays", &tok));
    const char *pre = a->pre ? a->pre : "default";
    if (spm) {
        tok->spm = tok->byte_fallback = tok->fuse_unk = 1;
        tok->spm_prepend = a->add_space_prefix != 0 ? ML_SPM_PREPEND_NORMALIZER : ML_SPM_PREPEND_NEVER;
        tok->spm_strip = a->add_space_prefix != 0;
    }
    int status = load_tokens(tok, a, source);
    if (status == ML_OK) {
        status = ml_vocab_build_map(&tok->vocab, 1, NULL, NULL);
        if (status != ML_OK) status = ml_set_error(status, "%s: out of memory", source);
    }
    if (status == ML_OK) status = spm && a->n_merges == 0 ? load_score_merges(tok, a, source) : load_merges(tok, a, source);
    if (status == ML_OK && spm) {
        snprintf(tok->pre.name, sizeof tok->pre.name, "%s", "metaspace");
        tok->bos_id = a->bos_id;
        tok->eos_id = a->eos_id;
        tok->unk_id = a->unk_id; /* SentencePiece: characters with no token and no byte token */
        if (a->add_bos != 0 && a->bos_id >= 0) tok->prefix[tok->n_prefix++] = a->bos_id; /* default on */
        if (a->add_eos > 0 && a->eos_id >= 0) tok->suffix[tok->n_suffix++] = a->eos_id;
        if (a->chat_template) {
            tok->chat_template = strdup(a->chat_template);
            if (!tok->chat_template) status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
        }
    } else if (status == ML_OK) status = ml_pretok_named(&tok->pre, pre, source);
    if (status == ML_OK && !spm) {
        int llama3 = strcmp(pre, "llama3") == 0 || strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama-v3") == 0;
        tok->pre.byte_level = 1;
        tok->ignore_merges = llama3;
        /* Qwen2's tokenizer.json normalises to NFC before its pre-tokenizer; HF's ids are the
         * reference, so a GGUF of it does too (llama.cpp does not: docs/TOKENIZER.md) */
        tok->nfc = strcmp(pre, "qwen2") == 0;
        tok->bos_id = a->bos_id;
        tok->eos_id = a->eos_id;
        /* unknown_token_id is not BPE's unk: bytes missing from the vocabulary are dropped, as
         * llama.cpp's BPE session and HF (model.unk_token null in these vocabularies) do. */
        tok->unk_id = -1;
        int add_bos = a->add_bos >= 0 ? a->add_bos : llama3;
        if (add_bos && a->bos_id >= 0) tok->prefix[tok->n_prefix++] = a->bos_id;
        if (a->add_eos > 0 && a->eos_id >= 0) tok->suffix[tok->n_suffix++] = a->eos_id;
        if (a->chat_template) {
            tok->chat_template = strdup(a->chat_template);
            if (!tok->chat_template) status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
        }
    }
    if (status == ML_OK) status = ml_tokenizer_finish(tok);
    if (status != ML_OK) {
        ml_tokenizer_close(tok);
        return status;
    }
    *out = tok;
    return ML_OK;
}
