/* The BPE merge step for one pre-tokenized piece.
 *
 * Semantics (HF tokenizers' Word::merge_all, and tiktoken's byte_pair_encode for vocabularies
 * where a pair's rank is its merged token's rank): start from one symbol per byte and
 * repeatedly merge the adjacent pair with the lowest rank, the leftmost one on ties, until no
 * adjacent pair has a merge rule.
 *
 * Short pieces (almost all of them) use small arrays and linear scans, as tiktoken does. Long
 * pieces use a doubly linked list of symbols and a blocked tournament tree over the pairs'
 * (rank, position) keys, so a 10 MB piece costs O(n log n) time and 20 bytes per byte, with no
 * rescans and no stale entries. A small direct-mapped cache remembers the ids of short
 * pieces during one long encode call (words repeat). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

#define SHORT_PIECE_MAX 64
#define CACHE_ENTRIES 4096 /* power of two */
#define CACHE_KEY_MAX 24
#define CACHE_IDS_MAX 8

typedef struct {
    uint64_t hash;
    uint8_t length; /* 0: empty */
    uint8_t n_ids;
    uint8_t key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
} cache_entry;

struct ml_bpe_cache {
    cache_entry entries[CACHE_ENTRIES];
};

ml_bpe_cache *ml_bpe_cache_create(void) { return calloc(1, sizeof(ml_bpe_cache)); }

void ml_bpe_cache_free(ml_bpe_cache *cache) { free(cache); }

/* ---- short pieces: arrays and linear scans --------------------------------------------- */

static int merge_short(ml_encode_ctx *ctx, int32_t *ids, size_t count) {
    const ml_vocab *v = &ctx->tok->vocab;
    uint32_t rank[SHORT_PIECE_MAX];
    int32_t merged[SHORT_PIECE_MAX];
    for (size_t i = 0; i + 1 < count; i++) {
        if (!ml_vocab_pair(v, ids[i], ids[i + 1], &rank[i], &merged[i])) rank[i] = UINT32_MAX;
    }
    while (count > 1) {
        size_t best = 0;
        uint32_t best_rank = UINT32_MAX;
        for (size_t i = 0; i + 1 < count; i++) {
            if (rank[i] < best_rank) {
                best_rank = rank[i];
                best = i;
            }
        }
        if (best_rank == UINT32_MAX) break;
        ids[best] = merged[best];
        size_t tail = count - best - 2; /* elements after the removed right symbol */
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        memmove(rank + best + 1, rank + best + 2, tail * sizeof *rank);
        memmove(merged + best + 1, merged + best + 2, tail * sizeof *merged);
        count--;
        if (best + 1 < count) {
            if (!ml_vocab_pair(v, ids[best], ids[best + 1], &rank[best], &merged[best])) rank[best] = UINT32_MAX;
        } else {
            rank[best] = UINT32_MAX;
        }
        if (best > 0) {
            if (!ml_vocab_pair(v, ids[best - 1], ids[best], &rank[best - 1], &merged[best - 1]))
                rank[best - 1] = UINT32_MAX;
        }
    }
    return (int)count;
}

/* ---- long pieces: linked list + blocked tournament tree ------------------------------- */

/* Every symbol position holds the key of the pair it starts, (rank << 32) | position, or
 * UINT64_MAX; keys are unique, so the minimum is the lowest rank, leftmost. A block of
 * QUEUE_BLOCK positions keeps its minimum in a leaf of a tournament tree over the blocks, whose
 * root is the global minimum. Merges move left to right through the text, so the positions
 * touched are close together and the tree (n / 32 leaves) stays in cache; a binary heap over
 * all positions would miss the cache on every level. */
#define QUEUE_BLOCK 32

static int grow_scratch(ml_encode_ctx *ctx, size_t n) {
    size_t blocks = (n + QUEUE_BLOCK - 1) / QUEUE_BLOCK, leaves = 1;
    while (leaves < blocks) leaves *= 2;
    if (n <= ctx->sym_capacity && 2 * leaves <= ctx->tree_capacity) return ML_OK;
    size_t capacity = ctx->sym_capacity > n ? ctx->sym_capacity : n;
    free(ctx->sym_id);
    free(ctx->sym_prev);
    free(ctx->sym_next);
    free(ctx->pair_key);
    free(ctx->block_tree);
    ctx->sym_id = malloc(capacity * sizeof *ctx->sym_id);
    ctx->sym_prev = malloc(capacity * sizeof *ctx->sym_prev);
    ctx->sym_next = malloc(capacity * sizeof *ctx->sym_next);
    ctx->pair_key = malloc(capacity * sizeof *ctx->pair_key);
    ctx->block_tree = malloc(2 * leaves * sizeof *ctx->block_tree);
    if (!ctx->sym_id || !ctx->sym_prev || !ctx->sym_next || !ctx->pair_key || !ctx->block_tree) {
        ctx->sym_capacity = ctx->tree_capacity = 0;
        return ML_ERR_NOMEM;
    }
    ctx->sym_capacity = capacity;
    ctx->tree_capacity = 2 * leaves;
    return ML_OK;
}

typedef struct {
    uint64_t *key;  /* [n] */
    uint64_t *tree; /* [2 * leaves]: tree[leaves + b] = minimum of block b; tree[1] = global */
    size_t leaves, n;
} pair_queue;

static void queue_init(pair_queue *q) {
    size_t blocks = (q->n + QUEUE_BLOCK - 1) / QUEUE_BLOCK;
    for (size_t b = 0; b < q->leaves; b++) {
        uint64_t m = UINT64_MAX;
        if (b < blocks) {
            size_t end = (b + 1) * QUEUE_BLOCK < q->n ? (b + 1) * QUEUE_BLOCK : q->n;
            for (size_t i = b * QUEUE_BLOCK; i < end; i++) m = q->key[i] < m ? q->key[i] : m;
        }
        q->tree[q->leaves + b] = m;
    }
    for (size_t i = q->leaves - 1; i >= 1; i--) {
        uint64_t left = q->tree[2 * i], right = q->tree[2 * i + 1];
        q->tree[i] = left < right ? left : right;
    }
}

static void queue_set(pair_queue *q, uint32_t position, uint64_t key) {
    uint64_t old = q->key[position];
    if (old == key) return;
    q->key[position] = key;
    size_t block = position / QUEUE_BLOCK, leaf = q->leaves + block;
    uint64_t m = q->tree[leaf];
    if (key < m) {
        m = key;
    } else if (old == m) { /* the block's minimum went up: rescan the block */
        size_t end = (block + 1) * QUEUE_BLOCK < q->n ? (block + 1) * QUEUE_BLOCK : q->n;
        m = UINT64_MAX;
        for (size_t i = block * QUEUE_BLOCK; i < end; i++) m = q->key[i] < m ? q->key[i] : m;
    } else {
        return;
    }
    if (m == q->tree[leaf]) return;
    q->tree[leaf] = m;
    for (size_t i = leaf / 2; i >= 1; i /= 2) {
        uint64_t left = q->tree[2 * i], right = q->tree[2 * i + 1];
        uint64_t v = left < right ? left : right;
        if (q->tree[i] == v) break;
        q->tree[i] = v;
    }
}

static uint64_t pair_key(const ml_vocab *v, const int32_t *ids, const int32_t *next, uint32_t position) {
    uint32_t rank;
    int32_t merged;
    if (next[position] < 0 || !ml_vocab_pair(v, ids[position], ids[next[position]], &rank, &merged)) return UINT64_MAX;
    return ((uint64_t)rank << 32) | position;
}

static int merge_long(ml_encode_ctx *ctx, size_t count) {
    const ml_vocab *v = &ctx->tok->vocab;
    int32_t *ids = ctx->sym_id, *prev = ctx->sym_prev, *next = ctx->sym_next;
    size_t blocks = (count + QUEUE_BLOCK - 1) / QUEUE_BLOCK, leaves = 1;
    while (leaves < blocks) leaves *= 2;
    pair_queue q = {ctx->pair_key, ctx->block_tree, leaves, count};
    for (size_t i = 0; i < count; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < count ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i < count; i++) q.key[i] = pair_key(v, ids, next, (uint32_t)i);
    queue_init(&q);
    while (q.tree[1] != UINT64_MAX) {
        uint32_t position = (uint32_t)q.tree[1];
        int32_t right = next[position];
        uint32_t rank;
        int32_t merged = -1;
        ml_vocab_pair(v, ids[position], ids[right], &rank, &merged); /* exists: keys are kept current */
        ids[position] = merged;
        queue_set(&q, (uint32_t)right, UINT64_MAX);
        int32_t after = next[right];
        next[position] = after;
        if (after >= 0) prev[after] = (int32_t)position;
        queue_set(&q, position, pair_key(v, ids, next, position));
        if (prev[position] >= 0)
            queue_set(&q, (uint32_t)prev[position], pair_key(v, ids, next, (uint32_t)prev[position]));
    }
    /* Compact the surviving symbols to the front. */
    size_t out = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) ids[out++] = ids[i];
    return (int)out;
}

int ml_bpe_reserve(ml_encode_ctx *ctx, size_t count) {
    if (count > INT32_MAX) return ML_ERR_ARG;
    return grow_scratch(ctx, count ? count : 1);
}

int ml_bpe_merge_ids(ml_encode_ctx *ctx, size_t count) {
    if (count == 0) return 0;
    return count <= SHORT_PIECE_MAX ? merge_short(ctx, ctx->sym_id, count) : merge_long(ctx, count);
}

/* ---- one piece -------------------------------------------------------------------------- */

static int push_single_byte(ml_encode_ctx *ctx, uint8_t byte) {
    int32_t id = ctx->tok->vocab.byte_token[byte];
    if (id < 0) id = ctx->tok->unk_id;
    return id >= 0 ? ml_id_vec_push(ctx->out, id) : ML_OK;
}

int ml_bpe_encode_piece(ml_encode_ctx *ctx, const uint8_t *piece, size_t length) {
    const ml_tokenizer *tok = ctx->tok;
    const ml_vocab *v = &tok->vocab;
    if (length == 0) return ML_OK;
    if (length == 1) return push_single_byte(ctx, piece[0]);
    uint64_t hash = 0;
    if (tok->ignore_merges || ctx->cache) hash = ml_hash_bytes(piece, length);
    /* The cache (long texts only) is small enough to stay in L2, unlike the vocabulary map, so
     * it goes first even when the piece is itself a token. */
    cache_entry *entry = NULL;
    if (ctx->cache && length <= CACHE_KEY_MAX) {
        entry = &ctx->cache->entries[(hash >> 7) & (CACHE_ENTRIES - 1)];
        if (entry->length == length && entry->hash == hash && memcmp(entry->key, piece, length) == 0)
            return ml_id_vec_append(ctx->out, entry->ids, entry->n_ids);
    }
    if (tok->ignore_merges) {
        int32_t id = ml_vocab_find_hashed(v, piece, length, hash);
        if (id >= 0) {
            if (entry) {
                entry->hash = hash;
                entry->length = (uint8_t)length;
                entry->n_ids = 1;
                memcpy(entry->key, piece, length);
                entry->ids[0] = id;
            }
            return ml_id_vec_push(ctx->out, id);
        }
    }

    int32_t short_ids[SHORT_PIECE_MAX];
    int32_t *ids = short_ids;
    int long_piece = length > SHORT_PIECE_MAX;
    if (long_piece) {
        if (length > INT32_MAX) return ML_ERR_ARG;
        int status = grow_scratch(ctx, length);
        if (status != ML_OK) return status;
        ids = ctx->sym_id;
    }
    size_t count = 0;
    for (size_t i = 0; i < length; i++) {
        int32_t id = v->byte_token[piece[i]];
        if (id < 0) id = tok->unk_id; /* HF: an unknown character becomes unk, or is dropped */
        if (id >= 0) ids[count++] = id;
    }
    int n_out;
    if (count <= SHORT_PIECE_MAX) {
        if (long_piece) memcpy(short_ids, ids, count * sizeof *ids);
        ids = short_ids;
        n_out = count ? merge_short(ctx, ids, count) : 0;
    } else {
        n_out = merge_long(ctx, count);
    }
    if (entry && n_out <= CACHE_IDS_MAX) {
        entry->hash = hash;
        entry->length = (uint8_t)length;
        entry->n_ids = (uint8_t)n_out;
        memcpy(entry->key, piece, length);
        memcpy(entry->ids, ids, (size_t)n_out * sizeof *ids);
    }
    return ml_id_vec_append(ctx->out, ids, (size_t)n_out);
}
