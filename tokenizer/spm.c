/* SentencePiece-style BPE (Llama 2, TinyLlama, Mistral: HF tokenizer.json with model.byte_fallback
 * and a Metaspace pre-tokenizer or a Prepend + Replace normalizer; GGUF tokenizer.ggml.model
 * "llama").
 *
 * Semantics (HF tokenizers' BPE with byte_fallback, which these files were converted to match):
 * each segment of text between added tokens is normalised (spaces become '▁', and a '▁' goes in
 * front as ml_tokenizer.spm_prepend says), optionally split before every '▁' (Metaspace split),
 * and each piece starts as one symbol per character: the character's token, or else the
 * <0xXX> tokens of its UTF-8 bytes (byte_fallback, when all exist), or else unk (consecutive
 * ones fused when fuse_unk). The lowest-ranked adjacent pair is merged, leftmost on ties, until
 * none has a rule (bpe.c). An invalid UTF-8 byte is a character of its own with no token, so it
 * becomes its byte token.
 *
 * The vocabulary stores '▁' as ' ' (the text is normalised the same way, so lookups agree and
 * decoding is a concatenation) and <0xXX> as the byte itself, outside the text -> id map. */
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

static const char meta_space[] = "\xE2\x96\x81"; /* U+2581 */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ml_spm_token_bytes(const char *text, size_t length, ml_byte_buf *out, int *byte) {
    out->n = 0;
    *byte = -1;
    if (length == 6 && memcmp(text, "<0x", 3) == 0 && text[5] == '>' && hex_digit(text[3]) >= 0 &&
        hex_digit(text[4]) >= 0) {
        uint8_t b = (uint8_t)(hex_digit(text[3]) * 16 + hex_digit(text[4]));
        *byte = b;
        return ml_byte_buf_append(out, &b, 1);
    }
    if (ml_byte_buf_append(out, "", 0) != ML_OK) return ML_ERR_NOMEM; /* out->data is never NULL */
    size_t start = 0;
    for (size_t i = 0; i + 3 <= length; i++) {
        if (memcmp(text + i, meta_space, 3) != 0) continue;
        if (ml_byte_buf_append(out, text + start, i - start) != ML_OK || ml_byte_buf_append(out, " ", 1) != ML_OK)
            return ML_ERR_NOMEM;
        start = i + 3;
        i += 2;
    }
    return ml_byte_buf_append(out, text + start, length - start);
}

/* One piece of normalised text: characters -> symbols -> merges -> ids. */
static int encode_piece(ml_encode_ctx *ctx, const uint8_t *s, size_t n) {
    const ml_tokenizer *tok = ctx->tok;
    const ml_vocab *v = &tok->vocab;
    if (n == 0) return ML_OK;
    int status = ml_bpe_reserve(ctx, n); /* at most one symbol per byte */
    if (status != ML_OK) return status;
    int32_t *ids = ctx->sym_id;
    size_t count = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t used = ml_utf8_decode(s + i, n - i, &cp);
        if (used) {
            int32_t id = ml_vocab_find(v, s + i, used);
            if (id >= 0) {
                ids[count++] = id;
                last_unk = 0;
                i += used;
                continue;
            }
        } else {
            used = 1; /* an invalid byte: a character with no token */
        }
        int fallback = tok->byte_fallback;
        for (size_t k = 0; k < used && fallback; k++) fallback = tok->byte_fallback_id[s[i + k]] >= 0;
        if (fallback) {
            for (size_t k = 0; k < used; k++) ids[count++] = tok->byte_fallback_id[s[i + k]];
            last_unk = 0;
        } else if (tok->unk_id >= 0) {
            if (!(tok->fuse_unk && last_unk)) ids[count++] = tok->unk_id;
            last_unk = 1;
        }
        i += used;
    }
    int n_out = ml_bpe_merge_ids(ctx, count);
    return ml_id_vec_append(ctx->out, ctx->sym_id, (size_t)n_out);
}

int ml_spm_encode(ml_encode_ctx *ctx, const uint8_t *text, size_t length) {
    const ml_tokenizer *tok = ctx->tok;
    ml_byte_buf *norm = &ctx->norm;
    norm->n = 0;
    if (length == 0) return ML_OK;
    int starts_with_space = text[0] == ' ' || (length >= 3 && memcmp(text, meta_space, 3) == 0);
    int prepend = tok->spm_prepend == ML_SPM_PREPEND_NORMALIZER ||
                  (!starts_with_space && (tok->spm_prepend == ML_SPM_PREPEND_ALWAYS ||
                                          (tok->spm_prepend == ML_SPM_PREPEND_FIRST && ctx->at_text_start)));
    if (prepend && ml_byte_buf_append(norm, " ", 1) != ML_OK) return ML_ERR_NOMEM;
    /* A '▁' in the text is a space too (HF: both are '▁' after normalisation). */
    size_t start = 0;
    for (size_t i = 0; i + 3 <= length; i++) {
        if (text[i] != 0xE2 || memcmp(text + i, meta_space, 3) != 0) continue;
        if (ml_byte_buf_append(norm, text + start, i - start) != ML_OK || ml_byte_buf_append(norm, " ", 1) != ML_OK)
            return ML_ERR_NOMEM;
        start = i + 3;
        i += 2;
    }
    if (ml_byte_buf_append(norm, text + start, length - start) != ML_OK) return ML_ERR_NOMEM;
    const uint8_t *s = (const uint8_t *)norm->data;
    size_t n = norm->n;
    if (!tok->spm_split) return encode_piece(ctx, s, n);
    size_t piece = 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i] != ' ') continue;
        ML_TRY(encode_piece(ctx, s + piece, i - piece));
        piece = i;
    }
    return encode_piece(ctx, s + piece, n - piece);
}

int ml_spm_check(const ml_tokenizer *tok, const char *source) {
    if (tok->unk_id >= 0) return ML_OK;
    if (!tok->byte_fallback)
        return ml_set_error(ML_ERR_FORMAT,
                            "%s: SentencePiece-style BPE with neither byte_fallback nor an unk token in the "
                            "vocabulary: characters outside the vocabulary would be lost",
                            source);
    for (int b = 0; b < 256; b++) {
        if (tok->byte_fallback_id[b] < 0)
            return ml_set_error(ML_ERR_FORMAT,
                                "%s: byte_fallback is on but the vocabulary has no <0x%02X> token and no unk token",
                                source, b);
    }
    return ML_OK;
}
