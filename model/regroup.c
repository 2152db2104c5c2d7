/* The row-group layout of bf16 matrices (backend/cpu/kernels.h, ML_GROUP_ROWS): after loading,
 * every bf16 matrix of every local device whose width is even is copied into row groups of 16,
 * in one allocation per device, and its ml_weight points there (grouped = 1); the kernels then
 * hold 16 rows in a vector and several tokens beside them (docs/DECISIONS.md). The copy
 * replaces the rows the device read in place: where those lie in a file the checkpoint maps,
 * their pages are dropped after each matrix (the resident size stays that of the weights), and
 * a device's packed row-parallel columns (tp > 1) are freed once all of them are regrouped.
 * Caller memory (a borrowed weight set: ml_model_open_tensors, Python's build_model) is copied
 * too and left alone, so every way of opening a model gives the same bits. The copies are made
 * by the thread pool, GROUPS_PER_TASK groups a task. MESHLLAMA_BF16_GROUPS=0 keeps the natural
 * rows (the dot-product kernels): for comparison. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/model_internal.h"

#define GROUPS_PER_TASK 64
#define CHUNK_GROUPS 512 /* 16 MiB of rows of 2048 */

typedef struct {
    const ml_device *dev;
    ml_weight *weight;
    const uint16_t *src; /* [n_rows, n_in] natural rows */
    int n_rows, n_in;
    uint16_t *dst;       /* ml_bf16_groups_bytes(n_rows, n_in) */
    int group_begin;     /* the groups [group_begin, group_end) of this round's chunk */
    int group_end;
    int first_task;      /* tasks [first_task, next item's) */
} regroup_item;

typedef struct {
    regroup_item *items;
    int n_items;
} regroup_plan;

static int regroupable(const ml_weight *w, int n_in) {
    return w->dtype == ML_DTYPE_BF16 && !w->grouped && n_in > 0 && n_in % 2 == 0;
}

static int in_packed(const ml_device *dev, const void *p) {
    return dev->packed && (const uint8_t *)p >= dev->packed && (const uint8_t *)p < dev->packed + dev->packed_bytes;
}

/* Source bytes that are not read again: pages of a mapped file dropped (weights.c), or the whole
 * pages of the device's packed columns given back (anonymous: they read as zeros afterwards;
 * the buffer is freed once all of it is regrouped). */
static void release(const ml_model *m, const ml_device *dev, const void *begin, size_t bytes) {
    if (!in_packed(dev, begin)) {
        ml_model_release_bytes(m, begin, bytes);
        return;
    }
    ml_model_drop_whole_pages((uintptr_t)begin, (uintptr_t)begin + bytes);
}

static void add(const ml_device *dev, regroup_item *items, int *n, ml_weight *w, int64_t n_rows, int64_t n_in) {
    if (n_rows <= 0 || !regroupable(w, (int)n_in)) return;
    regroup_item item = {dev, w, w->data, (int)n_rows, (int)n_in, NULL, 0, 0, 0};
    items[(*n)++] = item;
}

/* The device's matrices that take the layout, in its items (at most 7 per layer + the LM head). */
static int list_device(const ml_model *m, ml_device *dev, regroup_item *items) {
    const ml_config *c = &m->config;
    const ml_shard *s = &dev->shard;
    int64_t hd = c->head_dim, hidden = c->hidden_size, q_rows = s->q_head_count * hd;
    int64_t kv_rows = s->kv_head_count * hd, ffn = s->ffn_count;
    int tp1 = m->mesh->plan->tp == 1;
    int n = 0;
    add(dev, items, &n, &dev->lm_head, s->vocab_count, hidden);
    for (int l = 0; l < c->n_layers; l++) {
        ml_layer_slice *w = &dev->layers[l];
        add(dev, items, &n, &w->wq, q_rows, hidden);
        add(dev, items, &n, &w->wk, kv_rows, hidden);
        add(dev, items, &n, &w->wv, kv_rows, hidden);
        add(dev, items, &n, &w->wo, hidden, tp1 ? (int64_t)c->n_heads * hd : q_rows);
        add(dev, items, &n, &w->w_gate, ffn, hidden);
        add(dev, items, &n, &w->w_up, ffn, hidden);
        add(dev, items, &n, &w->w_down, hidden, tp1 ? (int64_t)c->intermediate_size : ffn);
    }
    return n;
}

static void regroup_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const regroup_plan *plan = ctx;
    int lo = 0, hi = plan->n_items - 1; /* the last item whose first task is <= task */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (plan->items[mid].first_task <= task) lo = mid;
        else hi = mid - 1;
    }
    const regroup_item *it = &plan->items[lo];
    int g0 = it->group_begin + (task - it->first_task) * GROUPS_PER_TASK;
    int g1 = g0 + GROUPS_PER_TASK < it->group_end ? g0 + GROUPS_PER_TASK : it->group_end;
    size_t group = (size_t)ML_GROUP_ROWS * (size_t)it->n_in; /* elements of one group */
    int rows = (g1 * ML_GROUP_ROWS < it->n_rows ? g1 * ML_GROUP_ROWS : it->n_rows) - g0 * ML_GROUP_ROWS;
    ml_bf16_groups_pack(it->dst + (size_t)g0 * group, it->src + (size_t)g0 * group, (size_t)it->n_in, rows, it->n_in);
}

/* The device's items (listed into items, *n_items of them) get their places in one allocation
 * (on transparent huge pages where the system grants them: fewer faults while copying, fewer TLB
 * misses while streaming). */
static int place_device(ml_model *m, ml_device *dev, regroup_item *items, int *n_items) {
    int n = *n_items = list_device(m, dev, items);
    if (n == 0) return ML_OK;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += ml_bf16_groups_bytes(items[i].n_rows, items[i].n_in);
    dev->grouped = ml_alloc_pages(total, "bf16 weights in row groups");
    if (!dev->grouped) return ML_ERR_NOMEM;
    dev->grouped_bytes = total;
#ifdef MADV_HUGEPAGE
    madvise(dev->grouped, total, MADV_HUGEPAGE);
#endif
    uint8_t *cursor = (uint8_t *)dev->grouped;
    for (int i = 0; i < n; i++) {
        items[i].dst = (uint16_t *)cursor;
        cursor += ml_bf16_groups_bytes(items[i].n_rows, items[i].n_in);
    }
    return ML_OK;
}

/* The items of one round (the same matrix of every device) copied by the pool CHUNK_GROUPS groups
 * at a time, each chunk's source rows released once every device has its copy (devices may
 * share source rows: a replicated KV head); then the weights point at the copies. So a load
 * never holds two copies of more than a chunk per device (an LM head of 128256 rows would
 * otherwise be 250-500 MB twice). */
static void copy_round(ml_model *m, regroup_item **round, int n) {
    regroup_item flat[ML_MAX_LOCAL_DEVICES];
    int most = 0;
    for (int i = 0; i < n; i++) {
        int groups = (round[i]->n_rows + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS;
        most = groups > most ? groups : most;
    }
    for (int chunk = 0; chunk < most; chunk += CHUNK_GROUPS) {
        int tasks = 0, used = 0;
        for (int i = 0; i < n; i++) {
            int groups = (round[i]->n_rows + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS;
            if (chunk >= groups) continue;
            regroup_item *it = &flat[used++];
            *it = *round[i];
            it->group_begin = chunk;
            it->group_end = chunk + CHUNK_GROUPS < groups ? chunk + CHUNK_GROUPS : groups;
            it->first_task = tasks;
            tasks += (it->group_end - it->group_begin + GROUPS_PER_TASK - 1) / GROUPS_PER_TASK;
        }
        regroup_plan plan = {flat, used};
        ml_pool_run(m->pool, regroup_task, &plan, tasks);
        for (int i = 0; i < used; i++) {
            const regroup_item *it = &flat[i];
            size_t row_bytes = (size_t)it->n_in * sizeof(uint16_t);
            int row_end = it->group_end * ML_GROUP_ROWS < it->n_rows ? it->group_end * ML_GROUP_ROWS : it->n_rows;
            release(m, it->dev, (const uint8_t *)it->src + (size_t)it->group_begin * ML_GROUP_ROWS * row_bytes,
                                   (size_t)(row_end - it->group_begin * ML_GROUP_ROWS) * row_bytes);
        }
    }
    for (int i = 0; i < n; i++) {
        round[i]->weight->data = round[i]->dst;
        round[i]->weight->grouped = 1;
    }
}

/* A device's packed row-parallel columns (tp > 1) are not read again once every one of its o and
 * down matrices is regrouped. */
static void free_packed_if_unused(ml_model *m, ml_device *dev) {
    if (!dev->packed) return;
    for (int l = 0; l < m->config.n_layers; l++)
        if (!dev->layers[l].wo.grouped || !dev->layers[l].w_down.grouped) return;
    ml_free(dev->packed);
    dev->packed = NULL;
    dev->packed_bytes = 0;
}

int ml_model_regroup_bf16(ml_model *m) {
    const char *env = getenv("MESHLLAMA_BF16_GROUPS");
    if (env && strcmp(env, "0") == 0) return ML_OK;
    int n_local = ml_local_devices(m), most = 0;
    size_t per_device = (size_t)m->config.n_layers * 7 + 1;
    regroup_item *items = calloc(per_device * (size_t)n_local, sizeof *items);
    int *counts = calloc((size_t)n_local, sizeof *counts);
    int status = items && counts ? ML_OK : ml_set_error(ML_ERR_NOMEM, "regrouping bf16 weights: out of memory");
    for (int d = 0; d < n_local && status == ML_OK; d++) {
        status = place_device(m, &m->devices[d], items + (size_t)d * per_device, &counts[d]);
        most = counts[d] > most ? counts[d] : most;
    }
    /* a matrix at a time over all devices */
    for (int i = 0; i < most && status == ML_OK; i++) {
        regroup_item *round[ML_MAX_LOCAL_DEVICES];
        int n = 0;
        for (int d = 0; d < n_local; d++)
            if (i < counts[d]) round[n++] = &items[(size_t)d * per_device + (size_t)i];
        copy_round(m, round, n);
    }
    for (int d = 0; d < n_local && status == ML_OK; d++) free_packed_if_unused(m, &m->devices[d]);
    free(items);
    free(counts);
    return status;
}
