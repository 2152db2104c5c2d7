/* Pre-tokenization: a chain of regex splits (HF pre_tokenizers Split / ByteLevel / Digits /
 * Sequence, tiktoken's pat_str) run through PCRE2 with JIT, each stage splitting the pieces of
 * the one before; the last stage's pieces go to BPE.
 *
 * Patterns compile with PCRE2_UTF | PCRE2_UCP (so \s, \p{L}, \p{N} and (?i) are Unicode-aware,
 * as in Rust's regex and Oniguruma) and PCRE2_MATCH_INVALID_UTF: an invalid UTF-8 sequence never
 * matches, so it is left between matches and becomes a piece of its own that BPE encodes as
 * bytes. The input is never rejected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

/* Meta's Llama 3 pat_str (llama_models/llama3/tokenizer.py; also the Split regex of Llama 3's
 * tokenizer.json). */
const char ml_pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* GPT-2's pattern, used by HF's ByteLevel pre-tokenizer when use_regex is true. */
const char ml_pattern_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Qwen2's pattern: Llama 3's with single digits. */
const char ml_pattern_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_digit[] = "\\p{N}";
static const char pattern_digits[] = "\\p{N}+";

enum { KIND_CUSTOM = 0, KIND_LLAMA3, KIND_GPT2, KIND_QWEN2, KIND_DIGIT, KIND_PLAIN };

int ml_pretok_add_regex(ml_pretokenizer *p, const char *pattern, size_t length, int literal, int behavior,
                        int invert, const char *source, const char *what) {
    if (p->n_stages >= ML_MAX_PRETOK_STAGES)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: %s: more than %d pre-tokenizer stages", source, what,
                            ML_MAX_PRETOK_STAGES);
    int error_code;
    PCRE2_SIZE error_offset;
    /* PCRE2_LITERAL allows no PCRE2_UCP (nothing in a literal depends on it). */
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, length, options, &error_code, &error_offset, NULL);
    if (!code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error_code, message, sizeof message);
        return ml_set_error(ML_ERR_FORMAT, "%s: %s: regex does not compile at offset %zu: %s (pattern: %.200s)",
                            source, what, (size_t)error_offset, (const char *)message, pattern);
    }
    /* JIT is optional: without it (unsupported CPU, no executable memory) pcre2_match runs. */
    int jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    char *pattern_copy = malloc(length + 1);
    if (!pattern_copy) {
        pcre2_code_free(code);
        return ml_set_error(ML_ERR_NOMEM, "%s: %s: out of memory", source, what);
    }
    memcpy(pattern_copy, pattern, length);
    pattern_copy[length] = '\0';
    ml_pretok_stage *stage = &p->stages[p->n_stages++];
    memset(stage, 0, sizeof *stage);
    stage->code = code;
    stage->pattern = pattern_copy;
    stage->jit = jit;
    stage->behavior = behavior;
    stage->invert = invert;
    stage->kind = KIND_CUSTOM;
    if (!literal && behavior == ML_SPLIT_ISOLATED && !invert) {
        if (length == strlen(ml_pattern_llama3) && memcmp(pattern, ml_pattern_llama3, length) == 0)
            stage->kind = KIND_LLAMA3;
        else if (length == strlen(ml_pattern_gpt2) && memcmp(pattern, ml_pattern_gpt2, length) == 0)
            stage->kind = KIND_GPT2;
        else if (length == strlen(ml_pattern_qwen2) && memcmp(pattern, ml_pattern_qwen2, length) == 0)
            stage->kind = KIND_QWEN2;
        else if (length == strlen(pattern_digit) && memcmp(pattern, pattern_digit, length) == 0)
            stage->kind = KIND_DIGIT;
    }
    return ML_OK;
}

int ml_pretok_add_plain(ml_pretokenizer *p, int add_prefix_space, const char *source) {
    if (p->n_stages >= ML_MAX_PRETOK_STAGES)
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer stages", source,
                            ML_MAX_PRETOK_STAGES);
    ml_pretok_stage *stage = &p->stages[p->n_stages++];
    memset(stage, 0, sizeof *stage);
    stage->add_prefix_space = add_prefix_space;
    stage->kind = KIND_PLAIN;
    return ML_OK;
}

void ml_pretok_free(ml_pretokenizer *p) {
    if (!p) return;
    for (int i = 0; i < p->n_stages; i++) {
        pcre2_code_free(p->stages[i].code);
        free(p->stages[i].pattern);
    }
    memset(p, 0, sizeof *p);
}

void ml_pretok_identify(ml_pretokenizer *p) {
    int kinds[ML_MAX_PRETOK_STAGES], n = 0, prefix_space = 0;
    for (int i = 0; i < p->n_stages; i++) {
        prefix_space |= p->stages[i].add_prefix_space;
        if (p->stages[i].kind != KIND_PLAIN) kinds[n++] = p->stages[i].kind;
    }
    const char *name = "custom";
    if (!prefix_space && n == 1 && kinds[0] == KIND_LLAMA3) name = "llama3";
    else if (!prefix_space && n == 1 && kinds[0] == KIND_GPT2) name = "gpt2";
    else if (!prefix_space && n == 1 && kinds[0] == KIND_QWEN2) name = "qwen2";
    else if (!prefix_space && n == 2 && kinds[0] == KIND_DIGIT && kinds[1] == KIND_GPT2) name = "smollm";
    snprintf(p->name, sizeof p->name, "%s", name);
}

int ml_pretok_named(ml_pretokenizer *p, const char *name, const char *source) {
    static const char *const llama3_names[] = {"llama3", "llama-bpe", "llama-v3", NULL};
    static const char *const gpt2_names[] = {"gpt2", "gpt-2", "default", NULL};
    static const char *const digit_names[] = {"smollm", "starcoder", "refact", NULL};
    const char *what = "pre-tokenizer";
    for (int i = 0; llama3_names[i]; i++) {
        if (strcmp(name, llama3_names[i]) == 0)
            return ml_pretok_add_regex(p, ml_pattern_llama3, strlen(ml_pattern_llama3), 0, ML_SPLIT_ISOLATED, 0,
                                       source, what);
    }
    for (int i = 0; gpt2_names[i]; i++) {
        if (strcmp(name, gpt2_names[i]) == 0)
            return ml_pretok_add_regex(p, ml_pattern_gpt2, strlen(ml_pattern_gpt2), 0, ML_SPLIT_ISOLATED, 0,
                                       source, what);
    }
    for (int i = 0; digit_names[i]; i++) {
        if (strcmp(name, digit_names[i]) == 0) {
            /* HF Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]. */
            ML_TRY(ml_pretok_add_regex(p, pattern_digit, strlen(pattern_digit), 0, ML_SPLIT_ISOLATED, 0, source,
                                       what));
            return ml_pretok_add_regex(p, ml_pattern_gpt2, strlen(ml_pattern_gpt2), 0, ML_SPLIT_ISOLATED, 0,
                                       source, what);
        }
    }
    if (strcmp(name, "qwen2") == 0)
        return ml_pretok_add_regex(p, ml_pattern_qwen2, strlen(ml_pattern_qwen2), 0, ML_SPLIT_ISOLATED, 0, source,
                                   what);
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "%s: pre-tokenizer '%s' is not supported (known: llama3, llama-bpe, llama-v3, gpt2, default, "
                        "smollm, starcoder, refact, qwen2)",
                        source, name);
}

/* HF Digits(individual_digits=false) splits on runs of digits. */
int ml_pretok_add_digits(ml_pretokenizer *p, int individual, const char *source) {
    const char *pattern = individual ? pattern_digit : pattern_digits;
    return ml_pretok_add_regex(p, pattern, strlen(pattern), 0, ML_SPLIT_ISOLATED, 0, source, "Digits");
}

/* ---- splitting -------------------------------------------------------------------------- */

static int run_stage(ml_encode_ctx *ctx, int k, const uint8_t *text, size_t length);

static int emit(ml_encode_ctx *ctx, int k, const uint8_t *text, size_t start, size_t end) {
    if (end <= start) return ML_OK;
    if (k + 1 >= ctx->tok->pre.n_stages) return ml_bpe_encode_piece(ctx, text + start, end - start);
    return run_stage(ctx, k + 1, text + start, end - start);
}

/* Streams the spans of one stage through its behaviour (HF SplitDelimiterBehavior) with at most
 * one span held back. */
typedef struct {
    ml_encode_ctx *ctx;
    int k;
    const uint8_t *text;
    int behavior;
    int have_pending;
    int pending_match;
    size_t pending_start, pending_end;
    int previous_match;
} span_stream;

static int span_flush(span_stream *s) {
    if (!s->have_pending) return ML_OK;
    s->have_pending = 0;
    return emit(s->ctx, s->k, s->text, s->pending_start, s->pending_end);
}

static int span_hold(span_stream *s, size_t start, size_t end, int is_match) {
    s->have_pending = 1;
    s->pending_start = start;
    s->pending_end = end;
    s->pending_match = is_match;
    return ML_OK;
}

static int span_push(span_stream *s, size_t start, size_t end, int is_match) {
    int status = ML_OK;
    switch (s->behavior) {
    case ML_SPLIT_ISOLATED: status = emit(s->ctx, s->k, s->text, start, end); break;
    case ML_SPLIT_REMOVED:
        if (!is_match) status = emit(s->ctx, s->k, s->text, start, end);
        break;
    case ML_SPLIT_MERGED_WITH_PREVIOUS:
        /* A match joins the span before it unless that span was a match too. */
        if (is_match && !s->previous_match && s->have_pending) {
            s->pending_end = end;
        } else {
            status = span_flush(s);
            span_hold(s, start, end, is_match);
        }
        break;
    case ML_SPLIT_MERGED_WITH_NEXT:
        /* A match joins the span after it unless that span is a match too. */
        if (s->have_pending && s->pending_match && !is_match) {
            s->pending_end = end;
            s->pending_match = 0;
            status = span_flush(s);
        } else {
            status = span_flush(s);
            if (status == ML_OK) {
                if (is_match) span_hold(s, start, end, 1);
                else status = emit(s->ctx, s->k, s->text, start, end);
            }
        }
        break;
    case ML_SPLIT_CONTIGUOUS:
        if (s->have_pending && is_match == s->previous_match) {
            s->pending_end = end;
        } else {
            status = span_flush(s);
            span_hold(s, start, end, is_match);
        }
        break;
    }
    s->previous_match = is_match;
    return status;
}

/* PCRE2's match limit counts backtracking steps of one pcre2_match call (and the JIT's
 * equivalent); the depth limit bounds the interpreter's backtracking nesting. The real
 * tokenizers' patterns take a few steps per byte of subject (a run of N spaces costs about 2N
 * under Llama 3's "\s*[\r\n]+" alternative), so the limits grow with the subject; a pattern
 * that backtracks exponentially ("(a|a)+$") exceeds them within a fraction of a second. */
enum { MATCH_LIMIT_BASE = 10 * 1000 * 1000, MATCH_LIMIT_PER_BYTE = 64 };

static uint32_t match_limit_for(size_t subject_length) {
    uint64_t limit = MATCH_LIMIT_BASE + (uint64_t)MATCH_LIMIT_PER_BYTE * subject_length;
    return limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit;
}

static int stage_match(ml_encode_ctx *ctx, int k, const uint8_t *text, size_t length, size_t offset) {
    const ml_pretok_stage *stage = &ctx->tok->pre.stages[k];
    uint32_t limit = match_limit_for(length - offset);
    pcre2_set_match_limit(ctx->match_context, limit);
    pcre2_set_depth_limit(ctx->match_context, limit);
    for (;;) {
        int rc = stage->jit ? pcre2_jit_match(stage->code, text, length, offset, 0, ctx->match[k], ctx->match_context)
                            : pcre2_match(stage->code, text, length, offset, 0, ctx->match[k], ctx->match_context);
        if (rc != PCRE2_ERROR_JIT_STACKLIMIT || ctx->jit_stack) return rc;
        /* Deeply nested custom patterns can outgrow the default 32 KiB JIT stack. */
        ctx->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!ctx->jit_stack) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(ctx->match_context, NULL, ctx->jit_stack);
    }
}

static int run_stage(ml_encode_ctx *ctx, int k, const uint8_t *text, size_t length) {
    const ml_pretok_stage *stage = &ctx->tok->pre.stages[k];
    if (stage->add_prefix_space && (length == 0 || text[0] != ' ')) {
        if (length + 1 > ctx->space_capacity[k]) {
            size_t capacity = length + 64;
            char *grown = realloc(ctx->space_buf[k], capacity);
            if (!grown) return ml_set_error(ML_ERR_NOMEM, "tokenizer: out of memory");
            ctx->space_buf[k] = grown;
            ctx->space_capacity[k] = capacity;
        }
        ctx->space_buf[k][0] = ' ';
        if (length) memcpy(ctx->space_buf[k] + 1, text, length);
        text = (const uint8_t *)ctx->space_buf[k];
        length++;
    }
    if (!stage->code) return emit(ctx, k, text, 0, length);

    span_stream s = {.ctx = ctx, .k = k, .text = text, .behavior = stage->behavior};
    size_t offset = 0, previous_end = 0;
    int status = ML_OK;
    while (status == ML_OK && offset < length) {
        int rc = stage_match(ctx, k, text, length, offset);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(rc, message, sizeof message);
            if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
                return ml_set_error(ML_ERR_FORMAT,
                                    "%s: pre-tokenizer regex gave up at byte %zu of a %zu-byte piece: %s (more "
                                    "than %u backtracking steps; the pattern backtracks catastrophically): %.200s",
                                    ctx->tok->source, offset, length, (const char *)message,
                                    match_limit_for(length - offset), stage->pattern);
            return ml_set_error(rc == PCRE2_ERROR_NOMEMORY ? ML_ERR_NOMEM : ML_ERR_INTERNAL,
                                "%s: pre-tokenizer regex failed at byte %zu: %s (pattern: %.200s)",
                                ctx->tok->source, offset, (const char *)message, stage->pattern);
        }
        const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(ctx->match[k]);
        size_t start = ovector[0], end = ovector[1];
        if (end <= start) {
            /* Empty matches make no pieces (HF drops empty splits); step over one character. */
            offset = start + 1;
            while (offset < length && (text[offset] & 0xC0) == 0x80) offset++;
            continue;
        }
        if (start > previous_end) status = span_push(&s, previous_end, start, stage->invert);
        if (status == ML_OK) status = span_push(&s, start, end, !stage->invert);
        previous_end = offset = end;
    }
    if (status == ML_OK && previous_end < length) status = span_push(&s, previous_end, length, stage->invert);
    if (status == ML_OK) status = span_flush(&s);
    return status;
}

int ml_encode_plain(ml_encode_ctx *ctx, const uint8_t *text, size_t length) {
    if (length == 0) return ML_OK;
    if (ctx->tok->spm) return ml_spm_encode(ctx, text, length);
    if (ctx->tok->pre.n_stages == 0) return ml_bpe_encode_piece(ctx, text, length);
    return run_stage(ctx, 0, text, length);
}

int ml_encode_ctx_init(ml_encode_ctx *ctx, const ml_tokenizer *tok, ml_id_vec *out, size_t text_length) {
    memset(ctx, 0, sizeof *ctx);
    ctx->tok = tok;
    ctx->out = out;
    ctx->match_context = pcre2_match_context_create(NULL);
    if (!ctx->match_context) return ml_set_error(ML_ERR_NOMEM, "tokenizer: out of memory");
    /* stage_match sets the match and depth limits for each subject. */
    for (int k = 0; k < tok->pre.n_stages; k++) {
        if (!tok->pre.stages[k].code) continue;
        ctx->match[k] = pcre2_match_data_create_from_pattern(tok->pre.stages[k].code, NULL);
        if (!ctx->match[k]) {
            ml_encode_ctx_free(ctx);
            return ml_set_error(ML_ERR_NOMEM, "tokenizer: out of memory");
        }
    }
    /* Words repeat in long texts; below this size the cache would cost more than it saves. */
    if (text_length >= 16384) ctx->cache = ml_bpe_cache_create();
    return ML_OK;
}

void ml_encode_ctx_free(ml_encode_ctx *ctx) {
    for (int k = 0; k < ML_MAX_PRETOK_STAGES; k++) {
        pcre2_match_data_free(ctx->match[k]);
        free(ctx->space_buf[k]);
    }
    pcre2_match_context_free(ctx->match_context);
    pcre2_jit_stack_free(ctx->jit_stack);
    ml_bpe_cache_free(ctx->cache);
    free(ctx->sym_id);
    free(ctx->sym_prev);
    free(ctx->sym_next);
    free(ctx->pair_key);
    free(ctx->block_tree);
    free(ctx->norm.data);
    memset(ctx, 0, sizeof *ctx);
}
