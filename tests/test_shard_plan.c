/* The shard plan for every tp from 1 to n_heads on many head layouts: each query head is owned
 * by exactly one device, a device's query heads read only KV heads it holds, KV heads are
 * replicated only when tp > n_kv_heads, and ffn/vocab slices tile their ranges exactly. */
#include <string.h>

#include "core/error.h"
#include "mesh/shard_plan.h"
#include "test_util.h"

static void check_plan(int n_heads, int n_kv, int ffn, int vocab, int tp) {
    ml_shard_plan *plan;
    int status = ml_shard_plan_build(n_heads, n_kv, 64, ffn, vocab, tp, 0, 0, &plan);
    CHECK(status == ML_OK, "heads %d kv %d tp %d: %s", n_heads, n_kv, tp, ml_last_error());
    if (status != ML_OK) return;
    int group = n_heads / n_kv;
    int owner[256];
    memset(owner, 0xff, sizeof owner);
    int kv_holders[256] = {0};
    int ffn_next = 0, vocab_next = 0, max_q = 0, min_q = 1 << 30;
    for (int d = 0; d < tp; d++) {
        const ml_shard *s = &plan->shards[d];
        CHECK(s->q_head_count >= 1, "heads %d kv %d tp %d: device %d has no query head", n_heads, n_kv, tp, d);
        for (int h = s->q_head_begin; h < s->q_head_begin + s->q_head_count; h++) {
            CHECK(owner[h] == -1, "query head %d owned twice", h);
            owner[h] = d;
            int kv_local = ml_shard_kv_local(s, h, group);
            CHECK(kv_local >= 0 && kv_local < s->kv_head_count, "tp %d device %d head %d: KV head not held", tp, d, h);
        }
        for (int k = s->kv_head_begin; k < s->kv_head_begin + s->kv_head_count; k++) kv_holders[k]++;
        if (s->q_head_count > max_q) max_q = s->q_head_count;
        if (s->q_head_count < min_q) min_q = s->q_head_count;
        CHECK(s->ffn_begin == ffn_next, "ffn slices not contiguous at device %d", d);
        CHECK(s->vocab_begin == vocab_next, "vocab slices not contiguous at device %d", d);
        ffn_next = s->ffn_begin + s->ffn_count;
        vocab_next = s->vocab_begin + s->vocab_count;
    }
    for (int h = 0; h < n_heads; h++) CHECK(owner[h] >= 0, "heads %d kv %d tp %d: head %d unowned", n_heads, n_kv, tp, h);
    for (int k = 0; k < n_kv; k++) {
        CHECK(kv_holders[k] >= 1, "KV head %d held by nobody", k);
        if (tp <= n_kv) CHECK(kv_holders[k] == 1, "tp %d <= n_kv %d but KV head %d replicated", tp, n_kv, k);
    }
    CHECK(ffn_next == ffn && vocab_next == vocab, "ffn %d/%d vocab %d/%d", ffn_next, ffn, vocab_next, vocab);
    /* balance: at KV-group granularity when tp <= n_kv, else within a group */
    int bound = tp <= n_kv ? group * ((n_kv + tp - 1) / tp) : (group + 1) / 2 + group;
    CHECK(max_q <= bound, "heads %d kv %d tp %d: %d heads on one device", n_heads, n_kv, tp, max_q);
    ml_shard_plan_free(plan);
}

int main(void) {
    const int layouts[][2] = {{32, 8}, {9, 3}, {6, 2}, {8, 2}, {4, 4}, {4, 1}, {15, 5}, {12, 4}, {7, 7}, {64, 8}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        for (int tp = 1; tp <= layouts[i][0]; tp++) check_plan(layouts[i][0], layouts[i][1], 8192, 128256, tp);
    /* SmolLM2-135M at tp 2: KV groups of 2 and 1 */
    ml_shard_plan *plan;
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 49152, 2, 0, 0, &plan) == ML_OK, "smollm2 tp 2");
    CHECK(plan->shards[0].kv_head_count + plan->shards[1].kv_head_count == 3, "3 KV heads over 2 devices");
    ml_shard_plan_free(plan);
    /* the seed's 2x4 mesh is tp 8 */
    CHECK(ml_shard_plan_build(32, 8, 64, 8192, 128256, 0, 2, 4, &plan) == ML_OK && plan->tp == 8, "mesh 2x4");
    ml_shard_plan_free(plan);
    /* impossible */
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 49152, 10, 0, 0, &plan) == ML_ERR_ARG, "tp 10 > 9 heads accepted");
    CHECK(strstr(ml_last_error(), "tp 10") != NULL, "message: %s", ml_last_error());
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 49152, 0, 0, 0, &plan) == ML_ERR_ARG, "tp 0 accepted");
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 49152, 4, 2, 3, &plan) == ML_ERR_ARG, "mesh 2x3 with tp 4 accepted");
    CHECK(ml_shard_plan_build(9, 2, 64, 1536, 49152, 1, 0, 0, &plan) == ML_ERR_ARG, "9 heads over 2 KV heads accepted");
    return ml_test_finish("shard_plan");
}
