/* Meta's Llama 3 tokenizer.model: the tiktoken format, one "base64(token bytes) rank" per line
 * (tiktoken.load.load_tiktoken_bpe), plus the 256 special tokens Meta's tokenizer.py appends
 * after the ranks (<|begin_of_text|> = 128000, ..., <|eot_id|> = 128009, reserved ones after),
 * and its pattern (ml_pattern_llama3).
 *
 * tiktoken merges any adjacent pair whose concatenation is a token, lowest rank first; that is
 * BPE with one merge rule (left, right) -> rank(left + right) for every split of every token
 * into two tokens, which is what we build here. A piece that is itself a token is not merged
 * (tiktoken looks it up first: ignore_merges). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

/* Names of Llama 3's special tokens, in id order from the first id after the ranks. */
static const char *const llama3_named_specials[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
};
#define LLAMA3_N_SPECIALS 256
#define LLAMA3_N_NAMED ((int)(sizeof llama3_named_specials / sizeof llama3_named_specials[0]))

static int base64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 with padding; returns the decoded length or -1. out holds n/4*3. */
static long base64_decode(const uint8_t *in, size_t n, uint8_t *out) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t used = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int padding = 0;
        for (int j = 0; j < 4; j++) {
            if (in[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                padding++;
            } else {
                if (padding) return -1; /* "=" then a letter */
                v[j] = base64_value(in[i + j]);
                if (v[j] < 0) return -1;
            }
        }
        uint32_t triple = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        out[used++] = (uint8_t)(triple >> 16);
        if (padding < 2) out[used++] = (uint8_t)(triple >> 8);
        if (padding < 1) out[used++] = (uint8_t)triple;
    }
    return (long)used;
}

static int looks_binary(const char *text, size_t length) {
    size_t n = length < 1024 ? length : 1024;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t')) return 1;
    }
    return 0;
}

/* Non-empty lines: the number of ranks. */
static size_t count_lines(const uint8_t *s, size_t length) {
    size_t lines = 0, start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i == length || s[i] == '\n') {
            size_t end = i;
            if (end > start && s[end - 1] == '\r') end--;
            lines += end > start;
            start = i + 1;
        }
    }
    return lines;
}

/* Parses every line into the vocabulary; ids are the ranks, which must be 0..N-1 for N lines
 * (Meta's special tokens take ids N, N+1, ...; this also bounds memory by the file's size). */
static int load_ranks(ml_tokenizer *tok, const char *text, size_t length, const char *source, int32_t *n_base) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n_lines = count_lines(s, length);
    uint8_t decoded[1024];
    size_t line_start = 0;
    int32_t count = 0;
    /* rank -> line, to name both lines of a duplicate rank */
    int32_t *line_of = NULL;
    size_t line_of_capacity = 0;
    int status = ML_OK;
    for (size_t line = 1; line_start < length && status == ML_OK; line++) {
        size_t line_end = line_start;
        while (line_end < length && s[line_end] != '\n') line_end++;
        size_t a = line_start, e = line_end;
        line_start = line_end + 1;
        if (e > a && s[e - 1] == '\r') e--;
        if (e == a) continue; /* load_tiktoken_bpe skips empty lines */
        size_t token_end = a;
        while (token_end < e && s[token_end] != ' ') token_end++;
        size_t rank_start = token_end + 1;
        if (token_end == e || rank_start >= e) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: line %zu: expected \"<base64 token> <rank>\", found \"%.*s\"",
                                  source, line, (int)(e - a > 60 ? 60 : e - a), (const char *)(s + a));
            break;
        }
        if (token_end - a > 4 * (sizeof decoded / 3)) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: line %zu: token longer than %zu bytes", source, line,
                                  sizeof decoded);
            break;
        }
        long n = base64_decode(s + a, token_end - a, decoded);
        if (n <= 0) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: line %zu: \"%.*s\" is not valid base64", source, line,
                                  (int)(token_end - a > 60 ? 60 : token_end - a), (const char *)(s + a));
            break;
        }
        uint64_t rank = 0;
        size_t i = rank_start;
        for (; i < e && s[i] >= '0' && s[i] <= '9' && rank < (1u << 30); i++) rank = rank * 10 + (s[i] - '0');
        if (i == rank_start || i != e || rank >= (1u << 30)) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: line %zu: rank \"%.*s\" is not an integer in 0..2^30-1", source,
                                  line, (int)(e - rank_start > 30 ? 30 : e - rank_start), (const char *)(s + rank_start));
            break;
        }
        if (rank >= n_lines) {
            status = ml_set_error(ML_ERR_FORMAT,
                                  "%s: line %zu: rank %llu is not below the number of tokens, %zu (ranks must be "
                                  "0..%zu without gaps)",
                                  source, line, (unsigned long long)rank, n_lines, n_lines - 1);
            break;
        }
        if (rank >= line_of_capacity) {
            size_t capacity = line_of_capacity ? line_of_capacity : 1024;
            while (capacity <= rank) capacity *= 2;
            int32_t *grown = realloc(line_of, capacity * sizeof *grown);
            if (!grown) {
                status = ml_set_error(ML_ERR_NOMEM, "%s: out of memory", source);
                break;
            }
            memset(grown + line_of_capacity, 0, (capacity - line_of_capacity) * sizeof *grown);
            line_of = grown;
            line_of_capacity = capacity;
        }
        if (line_of[rank]) {
            status = ml_set_error(ML_ERR_FORMAT, "%s: line %zu: rank %llu is already used on line %d", source, line,
                                  (unsigned long long)rank, (int)line_of[rank]);
            break;
        }
        line_of[rank] = line > INT32_MAX ? INT32_MAX : (int32_t)line;
        status = ml_vocab_set(&tok->vocab, (int32_t)rank, decoded, (size_t)n, ML_TOKF_MERGEABLE);
        if (status != ML_OK) status = ml_set_error(status, "%s: out of memory", source);
        count++;
    }
    free(line_of);
    *n_base = count;
    return status;
}

static int derive_merges(ml_tokenizer *tok, const char *source) {
    ml_vocab *v = &tok->vocab;
    int status = ml_vocab_reserve_merges(v, (size_t)v->n_ids * 2);
    for (int32_t id = 0; id < v->n_ids && status == ML_OK; id++) {
        if (!(v->flags[id] & ML_TOKF_MERGEABLE) || v->length[id] < 2) continue;
        const char *bytes = v->bytes + v->offset[id];
        uint32_t length = v->length[id];
        for (uint32_t split = 1; split < length && status == ML_OK; split++) {
            int32_t left = ml_vocab_find(v, bytes, split);
            if (left < 0) continue;
            int32_t right = ml_vocab_find(v, bytes + split, length - split);
            if (right < 0) continue;
            status = ml_vocab_add_merge(v, left, right, (uint32_t)id, id);
        }
    }
    if (status != ML_OK) return ml_set_error(status, "%s: out of memory deriving merges", source);
    return ML_OK;
}

int ml_tokenizer_load_tiktoken_files(const char *text, size_t length, const char *source, const char *config_json,
                                     size_t config_length, const char *config_source, ml_tokenizer **out) {
    *out = NULL;
    if (looks_binary(text, length))
        return ml_set_error(ML_ERR_UNSUPPORTED,
                            "%s: binary file, not a tiktoken vocabulary (a SentencePiece tokenizer.model, as Llama 2 "
                            "and TinyLlama use, is not supported: byte-level BPE only)",
                            source);
    ml_tokenizer *tok = NULL;
    ML_TRY(ml_tokenizer_alloc(source, "tiktoken", &tok));
    int32_t n_base = 0;
    int status = load_ranks(tok, text, length, source, &n_base);
    if (status == ML_OK && n_base == 0) status = ml_set_error(ML_ERR_FORMAT, "%s: no tokens (empty file?)", source);
    int32_t first = -1, second = -1;
    if (status == ML_OK) {
        status = ml_vocab_build_map(&tok->vocab, 0, &first, &second);
        if (status == ML_ERR_FORMAT)
            status = ml_set_error(ML_ERR_FORMAT, "%s: ranks %d and %d have the same token bytes", source, (int)first,
                                  (int)second);
        else if (status != ML_OK)
            status = ml_set_error(status, "%s: out of memory", source);
    }
    for (int b = 0; b < 256 && status == ML_OK; b++) {
        if (tok->vocab.byte_token[b] < 0)
            status = ml_set_error(ML_ERR_FORMAT, "%s: byte 0x%02X has no token (tiktoken needs all 256 bytes)", source, b);
    }
    if (status == ML_OK) status = derive_merges(tok, source);
    /* Meta's tokenizer.py: special ids follow the ranks, num_base_tokens + i. */
    char name[64];
    for (int i = 0; i < LLAMA3_N_SPECIALS && status == ML_OK; i++) {
        if (i < LLAMA3_N_NAMED) snprintf(name, sizeof name, "%s", llama3_named_specials[i]);
        else snprintf(name, sizeof name, "<|reserved_special_token_%d|>", 2 + i - LLAMA3_N_NAMED);
        int32_t id = n_base + i;
        status = ml_vocab_set(&tok->vocab, id, name, strlen(name), ML_TOKF_ADDED | ML_TOKF_SPECIAL);
        if (status == ML_ERR_ARG)
            status = ml_set_error(ML_ERR_FORMAT,
                                  "%s: special token %s would take id %d, which a rank already uses (ranks must be "
                                  "0..%d without gaps)",
                                  source, name, (int)id, (int)n_base - 1);
        else if (status == ML_OK)
            status = ml_added_add(&tok->added, &tok->vocab, id, 1, 0, 0, 0);
    }
    if (status == ML_OK) {
        tok->ignore_merges = 1;
        status = ml_pretok_named(&tok->pre, "llama3", source);
        tok->pre.byte_level = 1;
    }
    if (status == ML_OK) {
        /* Llama 3 prompts start with <|begin_of_text|> (Meta's encode(bos=True), HF's
         * TemplateProcessing); no EOS is added. */
        tok->bos_id = n_base;
        tok->eos_id = n_base + 1;
        tok->prefix[0] = tok->bos_id;
        tok->n_prefix = 1;
        if (config_json) status = ml_tokenizer_apply_config(tok, config_json, config_length, config_source, 0);
    }
    if (status == ML_OK) status = ml_tokenizer_finish(tok);
    if (status != ML_OK) {
        ml_tokenizer_close(tok);
        return status;
    }
    *out = tok;
    return ML_OK;
}

int ml_tokenizer_load_tiktoken(const char *text, size_t length, const char *source, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_load_tiktoken: out is NULL");
    *out = NULL;
    if (!text && length) return ml_set_error(ML_ERR_ARG, "ml_tokenizer_load_tiktoken: text is NULL");
    return ml_tokenizer_load_tiktoken_files(text ? text : "", length, source ? source : "tokenizer.model", NULL, 0,
                                            NULL, out);
}
