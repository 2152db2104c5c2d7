/* Vocabulary tables: id -> bytes, bytes -> id (open addressing over the mergeable tokens), and
 * the merge rules (left id, right id) -> (rank, merged id). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

static inline uint64_t mix64(uint64_t a, uint64_t b) {
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

/* A multiply-xorshift hash over 8-byte words; tokens are short, so the tail load matters most. */
uint64_t ml_hash_bytes(const void *data, size_t length) {
    const uint8_t *p = data;
    uint64_t h = 0x243F6A8885A308D3ull ^ ((uint64_t)length * 0x9E3779B97F4A7C15ull);
    size_t n = length;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        h = mix64(h ^ word, 0xA0761D6478BD642Full);
        p += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    if (n) memcpy(&tail, p, n);
    return mix64(h ^ tail ^ 0xE7037ED1A0B428DBull, 0x8EBC6AF09C88C6E3ull);
}

void ml_vocab_free(ml_vocab *v) {
    if (!v) return;
    free(v->offset);
    free(v->length);
    free(v->flags);
    free(v->bytes);
    free(v->map);
    free(v->pairs);
    memset(v, 0, sizeof *v);
}

static int grow_ids(ml_vocab *v, int32_t needed) {
    if (needed <= v->capacity) return ML_OK;
    int32_t capacity = v->capacity ? v->capacity : 1024;
    while (capacity < needed) capacity = capacity > INT32_MAX / 2 ? INT32_MAX : capacity * 2;
    uint32_t *offset = realloc(v->offset, (size_t)capacity * sizeof *offset);
    if (offset) v->offset = offset;
    uint32_t *length = realloc(v->length, (size_t)capacity * sizeof *length);
    if (length) v->length = length;
    uint8_t *flags = realloc(v->flags, (size_t)capacity);
    if (flags) v->flags = flags;
    if (!offset || !length || !flags) return ML_ERR_NOMEM;
    memset(v->flags + v->capacity, 0, (size_t)(capacity - v->capacity));
    v->capacity = capacity;
    return ML_OK;
}

int ml_vocab_set(ml_vocab *v, int32_t id, const void *bytes, size_t length, unsigned flags) {
    if (id < 0 || id == INT32_MAX) return ML_ERR_ARG;
    if (ml_vocab_has(v, id)) return ML_ERR_ARG;
    if (length > UINT32_MAX / 2 || v->bytes_size + length > UINT32_MAX) return ML_ERR_NOMEM;
    int status = grow_ids(v, id + 1);
    if (status != ML_OK) return status;
    if (!v->bytes || v->bytes_size + length > v->bytes_capacity) { /* bytes is never NULL once set */
        size_t capacity = v->bytes_capacity ? v->bytes_capacity : 65536;
        while (capacity < v->bytes_size + length) capacity *= 2;
        char *grown = realloc(v->bytes, capacity);
        if (!grown) return ML_ERR_NOMEM;
        v->bytes = grown;
        v->bytes_capacity = capacity;
    }
    if (length) memcpy(v->bytes + v->bytes_size, bytes, length);
    v->offset[id] = (uint32_t)v->bytes_size;
    v->length[id] = (uint32_t)length;
    v->flags[id] = (uint8_t)(flags | ML_TOKF_PRESENT);
    v->bytes_size += length;
    if (id >= v->n_ids) v->n_ids = id + 1;
    return ML_OK;
}

int32_t ml_vocab_find_hashed(const ml_vocab *v, const void *bytes, size_t length, uint64_t h) {
    if (!v->map) return -1;
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h;; i++) {
        const ml_bytes_slot *slot = &v->map[i & v->map_mask];
        if (slot->id < 0) return -1;
        if (slot->tag == tag && slot->length == length &&
            (length == 0 || memcmp(v->bytes + slot->offset, bytes, length) == 0))
            return slot->id;
    }
}

int32_t ml_vocab_find(const ml_vocab *v, const void *bytes, size_t length) {
    return ml_vocab_find_hashed(v, bytes, length, ml_hash_bytes(bytes, length));
}

int ml_vocab_build_map(ml_vocab *v, int keep_first, int32_t *dup_first, int32_t *dup_second) {
    size_t count = 0;
    for (int32_t id = 0; id < v->n_ids; id++) count += (v->flags[id] & ML_TOKF_MERGEABLE) != 0;
    size_t slots = 16;
    while (slots < count * 2) slots *= 2;
    free(v->map);
    v->map = malloc(slots * sizeof *v->map);
    if (!v->map) return ML_ERR_NOMEM;
    for (size_t i = 0; i < slots; i++) v->map[i].id = -1;
    v->map_mask = (uint32_t)(slots - 1);
    for (int32_t id = 0; id < v->n_ids; id++) {
        if (!(v->flags[id] & ML_TOKF_MERGEABLE)) continue;
        const char *bytes = v->bytes + v->offset[id];
        uint32_t length = v->length[id];
        uint64_t h = ml_hash_bytes(bytes, length);
        uint32_t tag = (uint32_t)(h >> 32);
        for (uint32_t i = (uint32_t)h;; i++) {
            ml_bytes_slot *slot = &v->map[i & v->map_mask];
            if (slot->id < 0) {
                slot->id = id;
                slot->tag = tag;
                slot->offset = v->offset[id];
                slot->length = length;
                break;
            }
            if (slot->tag == tag && slot->length == length &&
                (length == 0 || memcmp(v->bytes + slot->offset, bytes, length) == 0)) {
                if (keep_first) {
                    v->flags[id] &= (uint8_t)~ML_TOKF_MERGEABLE;
                    break;
                }
                if (dup_first) *dup_first = slot->id;
                if (dup_second) *dup_second = id;
                return ML_ERR_FORMAT;
            }
        }
    }
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        v->byte_token[b] = ml_vocab_find(v, &byte, 1);
    }
    return ML_OK;
}

static int rehash_pairs(ml_vocab *v, uint64_t slots) {
    ml_pair_slot *table = malloc(slots * sizeof *table);
    if (!table) return ML_ERR_NOMEM;
    for (uint64_t i = 0; i < slots; i++) table[i].key = UINT64_MAX;
    uint64_t mask = slots - 1;
    if (v->pairs) {
        for (uint64_t i = 0; i <= v->pairs_mask; i++) {
            ml_pair_slot s = v->pairs[i];
            if (s.key == UINT64_MAX) continue;
            uint64_t j = (s.key * 0x9E3779B97F4A7C15ull) >> 20;
            while (table[j & mask].key != UINT64_MAX) j++;
            table[j & mask] = s;
        }
        free(v->pairs);
    }
    v->pairs = table;
    v->pairs_mask = mask;
    return ML_OK;
}

int ml_vocab_reserve_merges(ml_vocab *v, size_t n) {
    uint64_t slots = 16;
    while (slots < (uint64_t)n * 2) slots *= 2;
    if (v->pairs && v->pairs_mask + 1 >= slots) return ML_OK;
    return rehash_pairs(v, slots);
}

int ml_vocab_add_merge(ml_vocab *v, int32_t left, int32_t right, uint32_t rank, int32_t merged) {
    if (!v->pairs || (uint64_t)(v->n_merges + 1) * 4 > (v->pairs_mask + 1) * 3) {
        int status = rehash_pairs(v, v->pairs ? (v->pairs_mask + 1) * 2 : 1024);
        if (status != ML_OK) return status;
    }
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> 20;; i++) {
        ml_pair_slot *s = &v->pairs[i & v->pairs_mask];
        if (s->key == key) {
            s->rank = rank;
            s->merged = merged;
            return ML_OK;
        }
        if (s->key == UINT64_MAX) {
            s->key = key;
            s->rank = rank;
            s->merged = merged;
            v->n_merges++;
            return ML_OK;
        }
    }
}
