/* The shard plan for every tp from 1 to n_heads on many head layouts: each query head is owned
 * by exactly one device, a device's query heads read only KV heads it holds, KV heads are
 * replicated only when tp > n_kv_heads, and ffn/vocab slices tile their ranges exactly; the FFN
 * range in whole blocks of a quantised down_proj (32, 256) where there are at least tp of them,
 * as evenly as the blocks allow, and evenly by feature otherwise and for float weights. */
#include <string.h>

#include "core/error.h"
#include "mesh/shard_plan.h"
#include "test_util.h"

static void check_plan(int n_heads, int n_kv, int ffn, int ffn_block, int vocab, int tp) {
    ml_shard_plan *plan;
    int status = ml_shard_plan_build(n_heads, n_kv, 64, ffn, ffn_block, vocab, tp, 0, 0, &plan);
    CHECK(status == ML_OK, "heads %d kv %d tp %d: %s", n_heads, n_kv, tp, ml_last_error());
    if (status != ML_OK) return;
    int group = n_heads / n_kv;
    int owner[256];
    memset(owner, 0xff, sizeof owner);
    int kv_holders[256] = {0};
    int ffn_next = 0, vocab_next = 0;
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
    /* the FFN range: whole blocks, each device floor or ceil of blocks / tp of them; else (too
     * few blocks, or none) floor or ceil of ffn / tp features, the split of float weights */
    int aligned = ffn_block > 1 && ffn % ffn_block == 0 && ffn / ffn_block >= tp;
    int unit = aligned ? ffn_block : 1, units = ffn / unit;
    CHECK(plan->ffn_block == unit, "ffn %d block %d tp %d: plan says blocks of %d", ffn, ffn_block, tp, plan->ffn_block);
    for (int d = 0; d < tp; d++) {
        const ml_shard *s = &plan->shards[d];
        CHECK(s->ffn_begin % unit == 0 && s->ffn_count % unit == 0 &&
                  (s->ffn_count / unit == units / tp || s->ffn_count / unit == (units + tp - 1) / tp),
              "ffn %d block %d tp %d: device %d holds %d+%d", ffn, ffn_block, tp, d, s->ffn_begin, s->ffn_count);
    }
    CHECK(!aligned || ml_shard_plan_cut_device(plan, 1, ffn_block) < 0, "ffn %d block %d tp %d: down_proj cut", ffn,
          ffn_block, tp);
    /* balance, as tight as the split allows: tp <= n_kv gives each device floor or ceil of n_kv / tp
     * whole KV groups; tp > n_kv gives each KV head floor or ceil of tp / n_kv devices, which share
     * its group of query heads as floor or ceil of group / devices each */
    for (int d = 0; d < tp; d++) {
        const ml_shard *s = &plan->shards[d];
        if (tp <= n_kv) {
            CHECK(s->kv_head_count == n_kv / tp || s->kv_head_count == (n_kv + tp - 1) / tp,
                  "heads %d kv %d tp %d: device %d holds %d KV heads", n_heads, n_kv, tp, d, s->kv_head_count);
            CHECK(s->q_head_count == s->kv_head_count * group, "heads %d kv %d tp %d: device %d: %d query heads for %d groups",
                  n_heads, n_kv, tp, d, s->q_head_count, s->kv_head_count);
        } else {
            int holders = kv_holders[s->kv_head_begin];
            CHECK(s->kv_head_count == 1 && (holders == tp / n_kv || holders == (tp + n_kv - 1) / n_kv),
                  "heads %d kv %d tp %d: device %d: %d KV heads, its head on %d devices", n_heads, n_kv, tp, d,
                  s->kv_head_count, holders);
            CHECK(s->q_head_count == group / holders || s->q_head_count == (group + holders - 1) / holders,
                  "heads %d kv %d tp %d: device %d: %d query heads of a group of %d over %d devices", n_heads, n_kv,
                  tp, d, s->q_head_count, group, holders);
        }
    }
    ml_shard_plan_free(plan);
}

/* The whole plan, device by device: {q_head_begin, q_head_count, kv_head_begin, kv_head_count}. */
static void check_exact_plan(int n_heads, int n_kv, int tp, const int (*expected)[4]) {
    ml_shard_plan *plan;
    int status = ml_shard_plan_build(n_heads, n_kv, 64, 1024, 1, 1000, tp, 0, 0, &plan);
    CHECK(status == ML_OK, "heads %d kv %d tp %d: %s", n_heads, n_kv, tp, ml_last_error());
    if (status != ML_OK) return;
    for (int d = 0; d < tp; d++) {
        const ml_shard *s = &plan->shards[d];
        CHECK(s->q_head_begin == expected[d][0] && s->q_head_count == expected[d][1] &&
                  s->kv_head_begin == expected[d][2] && s->kv_head_count == expected[d][3],
              "heads %d kv %d tp %d device %d: query heads %d+%d, KV heads %d+%d; expected %d+%d, %d+%d", n_heads,
              n_kv, tp, d, s->q_head_begin, s->q_head_count, s->kv_head_begin, s->kv_head_count, expected[d][0],
              expected[d][1], expected[d][2], expected[d][3]);
    }
    ml_shard_plan_free(plan);
}

static void test_exact_plans(void) {
    /* SmolLM2 (9 heads, 3 KV) at tp 4: KV head 2 on devices 2 and 3, which split its 3 heads 1 + 2 */
    static const int smollm2_tp4[][4] = {{0, 3, 0, 1}, {3, 3, 1, 1}, {6, 1, 2, 1}, {7, 2, 2, 1}};
    check_exact_plan(9, 3, 4, smollm2_tp4);
    /* 6 heads, 2 KV at tp 5: KV head 0 on devices 0-1 (1 + 2 heads), KV head 1 on devices 2-4 */
    static const int h6kv2_tp5[][4] = {{0, 1, 0, 1}, {1, 2, 0, 1}, {3, 1, 1, 1}, {4, 1, 1, 1}, {5, 1, 1, 1}};
    check_exact_plan(6, 2, 5, h6kv2_tp5);
    /* one KV head (MQA), 4 heads at tp 3: every device holds it */
    static const int mqa_tp3[][4] = {{0, 1, 0, 1}, {1, 1, 0, 1}, {2, 2, 0, 1}};
    check_exact_plan(4, 1, 3, mqa_tp3);
    /* Llama 3 (32 heads, 8 KV) at tp 16: two devices per KV head, two query heads each */
    int llama_tp16[16][4];
    for (int d = 0; d < 16; d++) {
        llama_tp16[d][0] = 2 * d;
        llama_tp16[d][1] = 2;
        llama_tp16[d][2] = d / 2;
        llama_tp16[d][3] = 1;
    }
    check_exact_plan(32, 8, 16, (const int (*)[4])llama_tp16);
    /* tp <= n_kv: whole groups, 2 + 3 + 3 KV heads at tp 3 */
    static const int llama_tp3[][4] = {{0, 8, 0, 2}, {8, 12, 2, 3}, {20, 12, 5, 3}};
    check_exact_plan(32, 8, 3, llama_tp3);
}

/* The FFN range of the Llama-3.2-1B shape (8192) and SmolLM2 (1536) with a quantised down_proj,
 * and which tp then still cut a row-parallel matrix (o_proj follows the heads). */
static void test_ffn_blocks(void) {
    ml_shard_plan *plan;
    /* K-quant down_proj at tp 3: 10, 11 and 11 super-blocks of 256, not 2730/2731/2731 columns */
    CHECK(ml_shard_plan_build(32, 8, 64, 8192, 256, 128256, 3, 0, 0, &plan) == ML_OK, "1B tp 3");
    static const int tp3[3][2] = {{0, 2560}, {2560, 2816}, {5376, 2816}};
    for (int d = 0; d < 3; d++)
        CHECK(plan->shards[d].ffn_begin == tp3[d][0] && plan->shards[d].ffn_count == tp3[d][1],
              "1B tp 3 device %d: ffn %d+%d", d, plan->shards[d].ffn_begin, plan->shards[d].ffn_count);
    CHECK(plan->ffn_block == 256 && ml_shard_plan_cut_device(plan, 1, 256) < 0, "1B tp 3: down_proj cut");
    ml_shard_plan_free(plan);
    /* float weights keep the even split (and so their results) */
    CHECK(ml_shard_plan_build(32, 8, 64, 8192, 1, 128256, 3, 0, 0, &plan) == ML_OK, "1B bf16 tp 3");
    CHECK(plan->ffn_block == 1 && plan->shards[1].ffn_begin == 2730 && plan->shards[2].ffn_begin == 5461 &&
              ml_shard_plan_cut_device(plan, 1, 32) == 0, "1B bf16 tp 3: ffn from %d, %d", plan->shards[1].ffn_begin,
          plan->shards[2].ffn_begin);
    ml_shard_plan_free(plan);
    /* the 1B shape in K-quants: down_proj whole at every tp up to its 32 super-blocks; o_proj
     * (a device's heads x 64 columns) whole while tp <= 8 KV heads (whole groups of 4 heads = 256
     * columns), cut from tp 9 on, where a group's heads are shared by devices */
    for (int tp = 1; tp <= 32; tp++) {
        CHECK(ml_shard_plan_build(32, 8, 64, 8192, 256, 128256, tp, 0, 0, &plan) == ML_OK, "1B tp %d", tp);
        CHECK(ml_shard_plan_cut_device(plan, 1, 256) < 0, "1B tp %d: down_proj cut", tp);
        CHECK((ml_shard_plan_cut_device(plan, 0, 256) < 0) == (tp <= 8), "1B tp %d: o_proj cut: %d", tp,
              ml_shard_plan_cut_device(plan, 0, 256));
        CHECK(ml_shard_plan_cut_device(plan, 0, 32) < 0, "1B tp %d: o_proj 32-blocks cut", tp);
        ml_shard_plan_free(plan);
    }
    /* SmolLM2 (9 heads of 64, FFN 1536) in Q8_0/Q4_*: every tp keeps every block (o_proj's heads
     * are 2 blocks of 32 each; down_proj has 48 blocks); in K-quants 6 super-blocks, so tp 7-9
     * split evenly and cut them */
    for (int tp = 1; tp <= 9; tp++) {
        CHECK(ml_shard_plan_build(9, 3, 64, 1536, 32, 49152, tp, 0, 0, &plan) == ML_OK, "smollm2 tp %d", tp);
        CHECK(ml_shard_plan_cut_device(plan, 1, 32) < 0 && ml_shard_plan_cut_device(plan, 0, 32) < 0,
              "smollm2 Q4 tp %d: cut", tp);
        ml_shard_plan_free(plan);
        CHECK(ml_shard_plan_build(9, 3, 64, 1536, 256, 49152, tp, 0, 0, &plan) == ML_OK, "smollm2 tp %d", tp);
        CHECK((ml_shard_plan_cut_device(plan, 1, 256) < 0) == (tp <= 6) && plan->ffn_block == (tp <= 6 ? 256 : 1),
              "smollm2 K-quant tp %d: down_proj cut %d, blocks of %d", tp, ml_shard_plan_cut_device(plan, 1, 256),
              plan->ffn_block);
        ml_shard_plan_free(plan);
    }
}

int main(void) {
    const int layouts[][2] = {{32, 8}, {9, 3}, {6, 2}, {8, 2}, {4, 4}, {4, 1}, {15, 5}, {12, 4}, {7, 7}, {64, 8}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        for (int tp = 1; tp <= layouts[i][0]; tp++) {
            check_plan(layouts[i][0], layouts[i][1], 8192, 1, 128256, tp);
            check_plan(layouts[i][0], layouts[i][1], 8192, 256, 128256, tp); /* 32 blocks: tp 33+ even */
            check_plan(layouts[i][0], layouts[i][1], 1536, 32, 49152, tp);
            check_plan(layouts[i][0], layouts[i][1], 1000, 256, 49152, tp); /* no whole blocks: even */
        }
    test_ffn_blocks();
    test_exact_plans();
    /* SmolLM2-135M at tp 2: KV groups of 2 and 1 */
    ml_shard_plan *plan;
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 1, 49152, 2, 0, 0, &plan) == ML_OK, "smollm2 tp 2");
    CHECK(plan->shards[0].kv_head_count + plan->shards[1].kv_head_count == 3, "3 KV heads over 2 devices");
    ml_shard_plan_free(plan);
    /* SmolLM2 (9 heads of 64, FFN 1536): which tp cut a 256-column K-quant super-block or a
     * 32-column block of a row-parallel matrix (o_proj: heads x 64; down_proj: the FFN range) */
    static const int whole_down_256[] = {1, 2, 3, 6}, whole_o_32[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int tp = 1; tp <= 9; tp++) {
        CHECK(ml_shard_plan_build(9, 3, 64, 1536, 1, 49152, tp, 0, 0, &plan) == ML_OK, "smollm2 tp %d", tp);
        int down_whole = 0, o_whole = 0;
        for (size_t i = 0; i < sizeof whole_down_256 / sizeof whole_down_256[0]; i++) down_whole |= whole_down_256[i] == tp;
        for (size_t i = 0; i < sizeof whole_o_32 / sizeof whole_o_32[0]; i++) o_whole |= whole_o_32[i] == tp;
        CHECK((ml_shard_plan_cut_device(plan, 1, 256) < 0) == down_whole, "tp %d: down_proj 256-blocks cut: %d", tp,
              ml_shard_plan_cut_device(plan, 1, 256));
        CHECK((ml_shard_plan_cut_device(plan, 0, 32) < 0) == o_whole, "tp %d: o_proj 32-blocks", tp);
        CHECK(ml_shard_plan_cut_device(plan, 1, 1) < 0 && ml_shard_plan_cut_device(plan, 0, 0) < 0, "no blocks");
        if (tp == 5) CHECK(ml_shard_plan_cut_device(plan, 1, 32) == 0, "tp 5: 1536 / 5 cuts on device 0 first");
        ml_shard_plan_free(plan);
    }
    /* the seed's 2x4 mesh is tp 8 */
    CHECK(ml_shard_plan_build(32, 8, 64, 8192, 1, 128256, 0, 2, 4, &plan) == ML_OK && plan->tp == 8, "mesh 2x4");
    ml_shard_plan_free(plan);
    /* impossible */
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 1, 49152, 10, 0, 0, &plan) == ML_ERR_ARG, "tp 10 > 9 heads accepted");
    CHECK(strstr(ml_last_error(), "tp 10") != NULL, "message: %s", ml_last_error());
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 1, 49152, 0, 0, 0, &plan) == ML_ERR_ARG, "tp 0 accepted");
    CHECK(ml_shard_plan_build(9, 3, 64, 1536, 1, 49152, 4, 2, 3, &plan) == ML_ERR_ARG, "mesh 2x3 with tp 4 accepted");
    CHECK(ml_shard_plan_build(9, 2, 64, 1536, 1, 49152, 1, 0, 0, &plan) == ML_ERR_ARG, "9 heads over 2 KV heads accepted");
    return ml_test_finish("shard_plan");
}
