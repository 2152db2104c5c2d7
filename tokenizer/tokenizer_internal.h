/* Internals shared by the tokenizer/ files: the vocabulary tables, the pre-tokenizer, the added
 * tokens, the BPE merge step and the per-call encoding context. Not part of the public API.
 *
 * The tokenizer (DESIGN.md layer 3) is byte-level BPE: loaders for HF tokenizer.json, Meta's
 * tiktoken tokenizer.model and GGUF tokenizer metadata; encoding that matches HF `tokenizers`
 * and `tiktoken` token for token; decoding, streaming decoding and chat templates. Its API is
 * the tokenizer section of include/meshllama.h. A tokenizer is immutable once loaded, so one
 * handle may be used by several threads at once. docs/TOKENIZER.md describes the behaviour. */
#ifndef ML_TOKENIZER_INTERNAL_H
#define ML_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "meshllama.h"

/* ---- Growable arrays -------------------------------------------------------------------- */

typedef struct {
    int32_t *data;
    size_t n, capacity;
} ml_id_vec;

int ml_id_vec_push(ml_id_vec *v, int32_t id);
int ml_id_vec_append(ml_id_vec *v, const int32_t *ids, size_t n);

typedef struct {
    char *data;
    size_t n, capacity;
} ml_byte_buf;

int ml_byte_buf_append(ml_byte_buf *b, const void *bytes, size_t n);

/* ---- GPT-2 byte-level alphabet (byte_level.c) ------------------------------------------- */

/* Code point that byte b is written as in byte-level vocabularies (GPT-2 bytes_to_unicode). */
uint32_t ml_byte_level_char(uint8_t b);
/* Converts byte-level text to raw bytes, appending to out. Returns 1 if every character was in
 * the byte-level alphabet, 0 if not (malformed UTF-8 counts as not), -1 if out of memory; on 0
 * and -1 out is left as it was. */
int ml_byte_level_decode(const char *text, size_t length, ml_byte_buf *out);
/* Decodes one UTF-8 character at s[0..n): returns its length (1..4) and sets *cp, or 0 if the
 * bytes there are not a valid, complete, shortest-form character. */
size_t ml_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Python's str.isspace() (used by Jinja's trim) and Unicode White_Space (HF's is_whitespace). */
int ml_unicode_is_python_space(uint32_t cp);
int ml_unicode_is_white_space(uint32_t cp);

/* ---- Vocabulary (vocab.c) --------------------------------------------------------------- */

/* Token ids index arrays, so files may not use ids beyond this (real vocabularies: < 2^19). */
#define ML_MAX_TOKEN_ID (1 << 24)

enum {
    ML_TOKF_PRESENT = 1,  /* the id is in use */
    ML_TOKF_ADDED = 2,    /* an added token: matched in text as a whole, never merged */
    ML_TOKF_SPECIAL = 4,  /* special/control: matched only with ML_TOKENIZE_PARSE_SPECIAL */
    ML_TOKF_MERGEABLE = 8 /* part of the BPE vocabulary: in the bytes -> id map */
};

typedef struct {
    uint32_t tag;    /* high bits of the hash, to skip most byte comparisons */
    int32_t id;      /* -1: empty */
    uint32_t offset; /* the token's bytes, copied here so a lookup touches one slot and the bytes */
    uint32_t length;
} ml_bytes_slot;

typedef struct {
    uint64_t key;    /* (left << 32) | right; UINT64_MAX: empty */
    uint32_t rank;   /* lower merges first */
    int32_t merged;  /* id of the merged token */
} ml_pair_slot;

typedef struct {
    int32_t n_ids;          /* highest id + 1 */
    int32_t capacity;
    uint32_t *offset;       /* [n_ids] into bytes */
    uint32_t *length;       /* [n_ids] */
    uint8_t *flags;         /* [n_ids] ML_TOKF_* */
    char *bytes;            /* every token's raw bytes, back to back */
    size_t bytes_size, bytes_capacity;
    ml_bytes_slot *map;     /* mergeable tokens: bytes -> id, open addressing */
    uint32_t map_mask;
    ml_pair_slot *pairs;    /* merge rules: (left id, right id) -> rank, merged id */
    uint64_t pairs_mask;
    int32_t n_merges;
    int32_t byte_token[256]; /* id of each single byte, -1 if the vocabulary lacks it */
} ml_vocab;

uint64_t ml_hash_bytes(const void *data, size_t length);
void ml_vocab_free(ml_vocab *v);
/* Stores token id's raw bytes and flags. ML_ERR_ARG if the id is negative or already set. */
int ml_vocab_set(ml_vocab *v, int32_t id, const void *bytes, size_t length, unsigned flags);
/* Builds the bytes -> id map over the ML_TOKF_MERGEABLE tokens and the single-byte table.
 * If two mergeable tokens have the same bytes, dup_first and dup_second receive them and the
 * result is ML_ERR_FORMAT (the caller words the message); keep_first resolves it silently. */
int ml_vocab_build_map(ml_vocab *v, int keep_first, int32_t *dup_first, int32_t *dup_second);
int32_t ml_vocab_find(const ml_vocab *v, const void *bytes, size_t length);
/* The same with hash = ml_hash_bytes(bytes, length) already computed. */
int32_t ml_vocab_find_hashed(const ml_vocab *v, const void *bytes, size_t length, uint64_t hash);
/* Merge rules: reserve room for n, then add. A later rule for the same pair replaces the
 * earlier one (HF builds its merge map the same way). */
int ml_vocab_reserve_merges(ml_vocab *v, size_t n);
int ml_vocab_add_merge(ml_vocab *v, int32_t left, int32_t right, uint32_t rank, int32_t merged);

static inline int ml_vocab_has(const ml_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_ids && (v->flags[id] & ML_TOKF_PRESENT);
}

/* Looks up a merge rule; returns 1 and fills rank/merged if (left, right) merges. */
static inline int ml_vocab_pair(const ml_vocab *v, int32_t left, int32_t right, uint32_t *rank, int32_t *merged) {
    if (!v->pairs) return 0;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> 20;
    for (;;) {
        const ml_pair_slot *s = &v->pairs[i & v->pairs_mask];
        if (s->key == key) {
            *rank = s->rank;
            *merged = s->merged;
            return 1;
        }
        if (s->key == UINT64_MAX) return 0;
        i++;
    }
}

/* ---- Pre-tokenizer (pretokenize.c) ------------------------------------------------------ */

enum {
    ML_SPLIT_ISOLATED = 0,
    ML_SPLIT_REMOVED,
    ML_SPLIT_MERGED_WITH_PREVIOUS,
    ML_SPLIT_MERGED_WITH_NEXT,
    ML_SPLIT_CONTIGUOUS
};

#define ML_MAX_PRETOK_STAGES 8

typedef struct {
    pcre2_code *code;     /* NULL: this stage does not split (ByteLevel without regex) */
    int jit;              /* code is JIT-compiled */
    int kind;             /* which known pattern it is (pretokenize.c), for naming */
    int behavior;         /* ML_SPLIT_* */
    int invert;           /* pieces are the text between matches */
    int add_prefix_space; /* ByteLevel add_prefix_space: prepend ' ' to pieces lacking one */
    char *pattern;        /* the pattern as written (NUL-terminated copy), for error messages */
} ml_pretok_stage;

typedef struct {
    ml_pretok_stage stages[ML_MAX_PRETOK_STAGES];
    int n_stages;
    int byte_level;       /* a ByteLevel stage was seen */
    char name[16];        /* "llama3", "gpt2", "smollm", "qwen2", "custom" */
} ml_pretokenizer;

extern const char ml_pattern_llama3[];
extern const char ml_pattern_gpt2[];
extern const char ml_pattern_qwen2[];

/* Adds a stage splitting on regex (PCRE2 syntax as HF/tiktoken write it) or, when literal is
 * set, on a fixed string. On a bad pattern records "<source>: <what>: ..." (ML_ERR_FORMAT). */
int ml_pretok_add_regex(ml_pretokenizer *p, const char *pattern, size_t length, int literal, int behavior,
                        int invert, const char *source, const char *what);
/* HF Digits: split off every digit (individual) or every run of digits. */
int ml_pretok_add_digits(ml_pretokenizer *p, int individual, const char *source);
/* Adds a stage that splits nothing (ByteLevel with use_regex false) but may add a space. */
int ml_pretok_add_plain(ml_pretokenizer *p, int add_prefix_space, const char *source);
/* Sets up the stages for a named pre-tokenizer ("llama3", "llama-bpe", "gpt2", "smollm", ...).
 * ML_ERR_UNSUPPORTED for an unknown name. */
int ml_pretok_named(ml_pretokenizer *p, const char *name, const char *source);
void ml_pretok_free(ml_pretokenizer *p);
/* Names the pre-tokenizer after the known patterns it uses ("custom" otherwise). */
void ml_pretok_identify(ml_pretokenizer *p);

/* ---- Added tokens (added_tokens.c) ------------------------------------------------------ */

typedef struct {
    int32_t id;
    uint32_t offset, length; /* content in the vocabulary's bytes */
    const char *content;     /* = vocabulary bytes + offset, set by ml_added_finalize */
    uint8_t special, lstrip, rstrip, single_word;
} ml_added_token;

typedef struct {
    ml_added_token *tokens;  /* sorted by content once finalised */
    int32_t n, capacity;
    int has_plain;           /* some non-special added token exists (always matched) */
    uint8_t first_byte[256]; /* bit 1: a special token starts with it; bit 2: a plain one */
    uint32_t max_length;
} ml_added_tokens;

/* The token's content must already be in vocab (ml_vocab_set with ML_TOKF_ADDED). */
int ml_added_add(ml_added_tokens *a, const ml_vocab *v, int32_t id, int special, int lstrip, int rstrip,
                 int single_word);
void ml_added_finalize(ml_added_tokens *a, const ml_vocab *v);
void ml_added_free(ml_added_tokens *a);
/* Finds the leftmost-longest eligible added token in text[from..n); returns 1 and the span it
 * takes (with lstrip/rstrip whitespace) or 0. */
int ml_added_find(const ml_added_tokens *a, const uint8_t *text, size_t n, size_t from,
                  int parse_special, size_t *start, size_t *end, int32_t *id);

/* ---- The tokenizer ---------------------------------------------------------------------- */

#define ML_MAX_TEMPLATE_TOKENS 8

/* SentencePiece-style BPE (spm.c): when the leading '▁' (a space, in the vocabulary's stored form)
 * goes before a segment of text between added tokens. */
enum {
    ML_SPM_PREPEND_NEVER = 0,
    ML_SPM_PREPEND_FIRST,     /* Metaspace "first": the segment at offset 0, unless it starts with one */
    ML_SPM_PREPEND_ALWAYS,    /* Metaspace "always": every segment, unless it starts with one */
    ML_SPM_PREPEND_NORMALIZER /* normalizer Prepend("▁"): every non-empty segment, unconditionally */
};

struct ml_tokenizer {
    char *source;
    const char *format;
    ml_vocab vocab;
    ml_pretokenizer pre;
    ml_added_tokens added;
    int ignore_merges;       /* a piece that is itself a token is not merged (Llama 3, tiktoken) */
    int nfc;                 /* text between added tokens is put in Unicode NFC first (HF's NFC
                              * normalizer: Qwen2; tokenizer/unicode_nfc.c) */
    int32_t unk_id;          /* HF BPE unk_token for bytes the vocabulary lacks; -1: drop them */
    /* SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): the vocabulary holds token text with
     * '▁' stored as ' ', BPE starts from characters rather than bytes, and a character outside
     * the vocabulary becomes its UTF-8 bytes' <0xXX> tokens (byte_fallback) or unk. */
    int spm;
    int spm_prepend;         /* ML_SPM_PREPEND_* */
    int spm_split;           /* Metaspace split: every space starts a new piece */
    int spm_strip;           /* decoding drops one leading space (HF Strip / Metaspace decoder) */
    int byte_fallback;
    int fuse_unk;            /* consecutive unknown characters give one unk */
    int32_t byte_fallback_id[256]; /* id of <0xXX>, -1 if absent */
    int32_t prefix[ML_MAX_TEMPLATE_TOKENS]; /* ML_TOKENIZE_ADD_SPECIAL adds these before... */
    int n_prefix;
    int32_t suffix[ML_MAX_TEMPLATE_TOKENS]; /* ...and these after */
    int n_suffix;
    int32_t bos_id, eos_id;
    char *chat_template;
};

/* Allocates an empty tokenizer (ids -1, no stages). */
int ml_tokenizer_alloc(const char *source, const char *format, ml_tokenizer **out);
/* Applies tokenizer_config.json (bos/eos tokens, add_bos_token/add_eos_token when the
 * tokenizer has no post-processor of its own, chat_template). */
int ml_tokenizer_apply_config(ml_tokenizer *tok, const char *json, size_t length, const char *source,
                              int has_post_processor);
/* tokenizer.json text (+ optional tokenizer_config.json text), each named for messages. */
int ml_tokenizer_load_hf_files(const char *json, size_t json_length, const char *source, const char *config_json,
                               size_t config_length, const char *config_source, ml_tokenizer **out);
/* tiktoken text; config as above (for chat_template and add_bos_token). */
int ml_tokenizer_load_tiktoken_files(const char *text, size_t length, const char *source, const char *config_json,
                                     size_t config_length, const char *config_source, ml_tokenizer **out);
/* Checks the finished tokenizer (byte alphabet, ids) and finalises the added-token matcher. */
int ml_tokenizer_finish(ml_tokenizer *tok);

/* ---- Encoding (bpe.c, pretokenize.c) ---------------------------------------------------- */

typedef struct ml_bpe_cache ml_bpe_cache;

typedef struct {
    const ml_tokenizer *tok;
    ml_id_vec *out;
    /* BPE scratch, grown as needed */
    int32_t *sym_id, *sym_prev, *sym_next; /* [sym_capacity] symbols of a long piece */
    uint64_t *pair_key;      /* [sym_capacity] (rank << 32) | position of each symbol's pair */
    uint64_t *block_tree;    /* [tree_capacity] minimum key per block of positions, and above */
    size_t sym_capacity, tree_capacity;
    ml_bpe_cache *cache;     /* NULL for short texts */
    /* pre-tokenizer state per stage */
    pcre2_match_data *match[ML_MAX_PRETOK_STAGES];
    pcre2_match_context *match_context;
    pcre2_jit_stack *jit_stack;
    char *space_buf[ML_MAX_PRETOK_STAGES];
    size_t space_capacity[ML_MAX_PRETOK_STAGES];
    /* SentencePiece-style BPE */
    int at_text_start;       /* the segment being encoded starts the text (Metaspace "first") */
    ml_byte_buf norm;        /* the normalised segment */
} ml_encode_ctx;

int ml_encode_ctx_init(ml_encode_ctx *ctx, const ml_tokenizer *tok, ml_id_vec *out, size_t text_length);
void ml_encode_ctx_free(ml_encode_ctx *ctx);
/* Pre-tokenizes text (no added tokens in it) and BPE-encodes every piece into ctx->out. */
int ml_encode_plain(ml_encode_ctx *ctx, const uint8_t *text, size_t length);
/* Encodes one pre-tokenized piece of raw bytes. */
int ml_bpe_encode_piece(ml_encode_ctx *ctx, const uint8_t *piece, size_t length);
/* Merges ctx->sym_id[0..count) (room for count made by ml_bpe_reserve); returns how many
 * symbols remain, at the front of ctx->sym_id. */
int ml_bpe_reserve(ml_encode_ctx *ctx, size_t count);
int ml_bpe_merge_ids(ml_encode_ctx *ctx, size_t count);
ml_bpe_cache *ml_bpe_cache_create(void);
void ml_bpe_cache_free(ml_bpe_cache *cache);

/* ---- SentencePiece-style BPE (spm.c) --------------------------------------------------- */

/* A vocabulary entry's stored bytes: "<0xXX>" (upper-case hex, as HF looks them up) gives *byte
 * = XX and that one byte; any other text is copied with each '▁' (U+2581) turned into ' '
 * (*byte = -1). out is cleared first. */
int ml_spm_token_bytes(const char *text, size_t length, ml_byte_buf *out, int *byte);
/* Normalises one segment of text (no added tokens in it) and BPE-encodes it into ctx->out. */
int ml_spm_encode(ml_encode_ctx *ctx, const uint8_t *text, size_t length);
/* Checks the settings of a finished SentencePiece-style tokenizer (unk or byte fallback). */
int ml_spm_check(const ml_tokenizer *tok, const char *source);

#endif
