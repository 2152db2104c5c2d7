/* The Llama forward pass over the mesh, one chunk of tokens at a time (HF LlamaForCausalLM):
 *   x = embed(tokens)
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v))   q,k,v = proj(rmsnorm(x))
 *               x += down_proj(silu(gate_proj(h)) * up_proj(h)) h = rmsnorm(x)
 *   logits = lm_head(rmsnorm(x))
 * Projections are sharded over devices; o_proj and down_proj leave partial sums that the mesh
 * all-reduces (two per layer). Each step is one parallel region over all local devices.
 *
 * Steps are fused where the data of one task allows it, so a layer is 10 steps (11 when a
 * sequence feeds several tokens; a step of one task runs on the calling thread, no region):
 *   embed + first RMSNorm           one task per token: the token's row, then its norm;
 *   residual add + next RMSNorm     after each all-reduce, one task per token: x += reduced,
 *                                   then the next sublayer's norm (or the final norm for the
 *                                   tokens whose logits are wanted) and the fast-mode rounding;
 *   RoPE + cache write + attention  when every sequence of the chunk feeds one token (decode),
 *                                   one task per (device, token, KV head) does all three: no
 *                                   token reads another's new cache row. Otherwise RoPE and
 *                                   the cache write are a region of their own (a prompt's
 *                                   tokens read each other's rows);
 *   attention + rounding            fast mode rounds each task's output heads in place;
 *   SiLU*up + rounding              one task per (device, token).
 * Each fused step does the same operations on the same values in the same order as the steps
 * it replaces, so results are bit-identical to running them one by one. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/numeric.h"
#include "model/model_internal.h"

/* Fast mode: round n values to bf16 in place, keeping the bits for the matmul too. */
static void round_to_bf16(const ml_model *m, float *values, uint16_t *bits, size_t n) {
    m->kernels->f32_to_bf16(bits, values, n);
    m->kernels->bf16_to_f32(values, bits, n);
}

/* xn[dst] = rmsnorm(x[src]) (+ fast-mode rounding into xn_bf16[dst]). */
static void norm_row(ml_model *m, const float *weight, int src, int dst) {
    int hidden = m->config.hidden_size;
    float *out = m->xn + (size_t)dst * hidden;
    m->kernels->rmsnorm(out, m->x + (size_t)src * hidden, weight, hidden, m->config.rms_norm_eps);
    if (m->params.act_mode == ML_ACT_FAST) round_to_bf16(m, out, m->xn_bf16 + (size_t)dst * hidden, (size_t)hidden);
}

/* ---- embedding (+ the first layer's norm) ---------------------------------------------- */

typedef struct {
    ml_model *model;
    const int32_t *tokens;
} embed_step;

static void embed_task(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const embed_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    size_t row_bytes = ml_dtype_row_bytes(m->embed.dtype, (size_t)hidden);
    const uint8_t *row = (const uint8_t *)m->embed.data + (size_t)step->tokens[t] * row_bytes;
    ml_weight_row_to_f32(m->kernels, m->embed.dtype, row, (size_t)hidden, m->x + (size_t)t * hidden);
    norm_row(m, m->attn_norm, t, t);
}

/* ---- all-reduce, residual add and the next norm ------------------------------------------ */

typedef struct {
    ml_model *model;
    const float *weight;   /* [hidden] the next norm */
    const int *norm_dst;   /* NULL: token t's norm goes to row t; else row norm_dst[t], or none if < 0 */
} add_norm_step;

static void add_norm_task(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const add_norm_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    float *x = m->x + (size_t)t * hidden;
    const float *add = m->reduced + (size_t)t * hidden;
    for (int i = 0; i < hidden; i++) x[i] += add[i];
    int dst = step->norm_dst ? step->norm_dst[t] : t;
    if (dst >= 0) norm_row(m, step->weight, t, dst);
}

/* x += allreduce(partials); then the next norm as add_norm_task says. */
static int all_reduce_add_norm(ml_model *m, int n_tok, const float *next_weight, const int *norm_dst) {
    float *partials[ML_MAX_LOCAL_DEVICES];
    for (int d = 0; d < m->mesh->n_local; d++) partials[d] = m->devices[d].partial;
    ML_TRY(ml_mesh_allreduce_sum(m->mesh, partials, (size_t)n_tok * m->config.hidden_size, m->reduced));
    add_norm_step step = {m, next_weight, norm_dst};
    ml_pool_run(m->pool, add_norm_task, &step, n_tok);
    return ML_OK;
}

/* ---- attention --------------------------------------------------------------------------- */

static size_t cache_offset(const ml_model *m, const ml_device *dev, int layer, int slot, int kv_local, int pos) {
    size_t per_head = (size_t)m->params.max_seq_len * m->config.head_dim;
    size_t per_slot = per_head * dev->shard.kv_head_count;
    size_t per_layer = per_slot * m->params.max_batch;
    return (size_t)layer * per_layer + (size_t)slot * per_slot + (size_t)kv_local * per_head +
           (size_t)pos * m->config.head_dim;
}

/* RoPE on KV head kv_local of token t, then its k and v rows into the cache at the token's
 * slot and position. */
static void rope_cache_head(ml_model *m, ml_device *dev, int layer, int t, int kv_local) {
    int hd = m->config.head_dim, half = hd / 2;
    int pos = m->token_pos[t];
    int kv_width = dev->shard.kv_head_count * hd;
    float *k = dev->k + (size_t)t * kv_width + (size_t)kv_local * hd;
    const float *v = dev->v + (size_t)t * kv_width + (size_t)kv_local * hd;
    m->kernels->rope(k, 1, hd, m->rope_cos + (size_t)pos * half, m->rope_sin + (size_t)pos * half);
    size_t at = cache_offset(m, dev, layer, m->token_slot[t], kv_local, pos);
    if (m->params.kv_dtype == ML_KV_BF16) {
        m->kernels->f32_to_bf16((uint16_t *)dev->k_cache + at, k, (size_t)hd);
        m->kernels->f32_to_bf16((uint16_t *)dev->v_cache + at, v, (size_t)hd);
    } else {
        memcpy((float *)dev->k_cache + at, k, (size_t)hd * sizeof(float));
        memcpy((float *)dev->v_cache + at, v, (size_t)hd * sizeof(float));
    }
}

typedef struct {
    ml_model *model;
    int layer;
    int n_tok;
} rope_cache_step;

/* Prefill: RoPE on every q and k head of token t, and its k/v rows into the cache. */
static void rope_cache_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const rope_cache_step *step = ctx;
    ml_model *m = step->model;
    int d = task / step->n_tok, t = task % step->n_tok;
    ml_device *dev = &m->devices[d];
    int hd = m->config.head_dim, half = hd / 2, pos = m->token_pos[t];
    float *q = dev->q + (size_t)t * dev->shard.q_head_count * hd;
    m->kernels->rope(q, dev->shard.q_head_count, hd, m->rope_cos + (size_t)pos * half,
                     m->rope_sin + (size_t)pos * half);
    for (int h = 0; h < dev->shard.kv_head_count; h++) rope_cache_head(m, dev, step->layer, t, h);
}

typedef struct {
    ml_model *model;
    int layer;
    int n_tok;
    int rope_here;                            /* decode: RoPE and cache write in the same task */
    int task_begin[ML_MAX_LOCAL_DEVICES + 1]; /* first task of each local device: n_tok * kv_count tasks each */
} attention_step;

/* Token t, KV head kv_local of device d: the query heads of its group on this device attend
 * to the slot's positions 0..pos. */
static void attention_task(void *ctx, int task, int thread_index) {
    const attention_step *step = ctx;
    ml_model *m = step->model;
    int d = 0;
    while (task >= step->task_begin[d + 1]) d++;
    ml_device *dev = &m->devices[d];
    const ml_shard *s = &dev->shard;
    int local = task - step->task_begin[d];
    int t = local / s->kv_head_count, kv_local = local % s->kv_head_count;
    int hd = m->config.head_dim, group = m->config.n_heads / m->config.n_kv_heads;
    /* the query heads of this shard that read KV head kv_head_begin + kv_local */
    int kv_global = s->kv_head_begin + kv_local;
    int q_begin = kv_global * group > s->q_head_begin ? kv_global * group : s->q_head_begin;
    int q_end = (kv_global + 1) * group < s->q_head_begin + s->q_head_count ? (kv_global + 1) * group
                                                                             : s->q_head_begin + s->q_head_count;
    int q_local = q_begin - s->q_head_begin, n_q = q_end - q_begin;
    int q_width = s->q_head_count * hd;
    float *q = dev->q + (size_t)t * q_width + (size_t)q_local * hd;
    float *out = dev->attn + (size_t)t * q_width + (size_t)q_local * hd;
    int pos = m->token_pos[t];
    if (step->rope_here) {
        int half = hd / 2;
        m->kernels->rope(q, n_q, hd, m->rope_cos + (size_t)pos * half, m->rope_sin + (size_t)pos * half);
        rope_cache_head(m, dev, step->layer, t, kv_local);
    }
    size_t at = cache_offset(m, dev, step->layer, m->token_slot[t], kv_local, 0);
    float scale = 1.0f / sqrtf((float)hd);
    float *scratch = m->attn_scratch + (size_t)thread_index * m->params.max_seq_len;
    if (m->params.kv_dtype == ML_KV_BF16)
        m->kernels->attention_bf16(out, q, n_q, (const uint16_t *)dev->k_cache + at,
                                   (const uint16_t *)dev->v_cache + at, pos + 1, hd, scale, scratch);
    else
        m->kernels->attention_f32(out, q, n_q, (const float *)dev->k_cache + at, (const float *)dev->v_cache + at,
                                  pos + 1, hd, scale, scratch);
    if (m->params.act_mode == ML_ACT_FAST) /* o_proj's input, the heads of this task */
        round_to_bf16(m, out, dev->act_bf16 + (size_t)t * q_width + (size_t)q_local * hd, (size_t)n_q * hd);
}

/* Non-zero when no two tokens of the chunk share a KV slot (every sequence feeds one token). */
static int one_token_per_slot(const ml_model *m, int n_tok) {
    if (n_tok > m->params.max_batch) return 0;
    unsigned long long seen = 0; /* max_batch <= 32 */
    for (int t = 0; t < n_tok; t++) {
        unsigned long long bit = 1ULL << (m->token_slot[t] & 63);
        if (seen & bit) return 0;
        seen |= bit;
    }
    return 1;
}

/* ---- SwiGLU ---------------------------------------------------------------------------- */

typedef struct {
    ml_model *model;
    int n_tok;
} silu_step;

static void silu_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const silu_step *step = ctx;
    ml_model *m = step->model;
    int d = task / step->n_tok, t = task % step->n_tok;
    ml_device *dev = &m->devices[d];
    size_t ffn = (size_t)dev->shard.ffn_count, at = (size_t)t * ffn;
    m->kernels->silu_mul(dev->gate + at, dev->gate + at, dev->up + at, (int)ffn);
    if (m->params.act_mode == ML_ACT_FAST) round_to_bf16(m, dev->gate + at, dev->act_bf16 + at, ffn);
}

/* ---- the layer ---------------------------------------------------------------------------- */

/* xn holds rmsnorm(x) with this layer's attention norm. Leaves xn = the MLP norm of the new x. */
static int attention_block(ml_model *m, int layer, int n_tok) {
    const ml_config *c = &m->config;
    int n_local = m->mesh->n_local, hd = c->head_dim, hidden = c->hidden_size;
    int fast = m->params.act_mode == ML_ACT_FAST;
    if (n_local < 1) return ML_OK;

    ml_matmul_job jobs[3 * ML_MAX_LOCAL_DEVICES];
    int n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        const ml_layer_slice *w = &dev->layers[layer];
        int q_rows = dev->shard.q_head_count * hd, kv_rows = dev->shard.kv_head_count * hd;
        ml_matmul_job base = {.n_in = hidden, .x = m->xn, .x_bf16 = fast ? m->xn_bf16 : NULL, .ldx = (size_t)hidden,
                              .n_tok = n_tok};
        jobs[n_jobs] = base;
        jobs[n_jobs].w = w->wq, jobs[n_jobs].n_rows = q_rows, jobs[n_jobs].y = dev->q, jobs[n_jobs].ldy = (size_t)q_rows;
        n_jobs++;
        jobs[n_jobs] = base;
        jobs[n_jobs].w = w->wk, jobs[n_jobs].n_rows = kv_rows, jobs[n_jobs].y = dev->k, jobs[n_jobs].ldy = (size_t)kv_rows;
        n_jobs++;
        jobs[n_jobs] = base;
        jobs[n_jobs].w = w->wv, jobs[n_jobs].n_rows = kv_rows, jobs[n_jobs].y = dev->v, jobs[n_jobs].ldy = (size_t)kv_rows;
        n_jobs++;
    }
    ml_run_matmuls(m, jobs, n_jobs);

    attention_step at;
    at.model = m;
    at.layer = layer;
    at.n_tok = n_tok;
    at.rope_here = one_token_per_slot(m, n_tok);
    if (!at.rope_here) {
        rope_cache_step rc = {m, layer, n_tok};
        ml_pool_run(m->pool, rope_cache_task, &rc, n_tok * n_local);
    }
    at.task_begin[0] = 0;
    for (int d = 0; d < n_local; d++) at.task_begin[d + 1] = at.task_begin[d] + n_tok * m->devices[d].shard.kv_head_count;
    ml_pool_run(m->pool, attention_task, &at, at.task_begin[n_local]);

    n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        int q_width = dev->shard.q_head_count * hd;
        ml_matmul_job job = {.w = dev->layers[layer].wo, .n_rows = hidden, .n_in = q_width, .x = dev->attn,
                             .x_bf16 = fast ? dev->act_bf16 : NULL, .ldx = (size_t)q_width, .y = dev->partial,
                             .ldy = (size_t)hidden, .n_tok = n_tok};
        jobs[n_jobs++] = job;
    }
    ml_run_matmuls(m, jobs, n_jobs);
    return all_reduce_add_norm(m, n_tok, m->mlp_norm + (size_t)layer * hidden, NULL);
}

/* xn holds the MLP norm. Leaves xn = the next layer's attention norm (norm_dst NULL), or the
 * final norm of the rows norm_dst selects. */
static int mlp_block(ml_model *m, int layer, int n_tok, const float *next_weight, const int *norm_dst) {
    int n_local = m->mesh->n_local, hidden = m->config.hidden_size;
    int fast = m->params.act_mode == ML_ACT_FAST;
    if (n_local < 1) return ML_OK;

    ml_matmul_job jobs[2 * ML_MAX_LOCAL_DEVICES];
    int n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        int ffn = dev->shard.ffn_count;
        ml_matmul_job base = {.n_in = hidden, .n_rows = ffn, .x = m->xn, .x_bf16 = fast ? m->xn_bf16 : NULL,
                              .ldx = (size_t)hidden, .ldy = (size_t)ffn, .n_tok = n_tok};
        jobs[n_jobs] = base;
        jobs[n_jobs].w = dev->layers[layer].w_gate, jobs[n_jobs].y = dev->gate;
        n_jobs++;
        jobs[n_jobs] = base;
        jobs[n_jobs].w = dev->layers[layer].w_up, jobs[n_jobs].y = dev->up;
        n_jobs++;
    }
    ml_run_matmuls(m, jobs, n_jobs);

    silu_step ss = {m, n_tok};
    ml_pool_run(m->pool, silu_task, &ss, n_tok * n_local);

    n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        int ffn = dev->shard.ffn_count;
        ml_matmul_job job = {.w = dev->layers[layer].w_down, .n_rows = hidden, .n_in = ffn, .x = dev->gate,
                             .x_bf16 = fast ? dev->act_bf16 : NULL, .ldx = (size_t)ffn, .y = dev->partial,
                             .ldy = (size_t)hidden, .n_tok = n_tok};
        jobs[n_jobs++] = job;
    }
    ml_run_matmuls(m, jobs, n_jobs);
    return all_reduce_add_norm(m, n_tok, next_weight, norm_dst);
}

/* xn rows 0..n_out-1 hold the final norm of the wanted tokens; their logits go to rows
 * first_out.. of logits, each device writing its vocab slice (LM head rows split over the
 * threads like any product). */
static int lm_head(ml_model *m, int first_out, int n_out, float *logits) {
    const ml_config *c = &m->config;
    int n_local = m->mesh->n_local;
    if (n_out == 0 || n_local < 1) return ML_OK;
    float *out = logits + (size_t)first_out * c->vocab_size;
    ml_matmul_job jobs[ML_MAX_LOCAL_DEVICES];
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        ml_matmul_job job = {.w = dev->lm_head, .n_rows = dev->shard.vocab_count, .n_in = c->hidden_size,
                             .x = m->xn, .x_bf16 = m->params.act_mode == ML_ACT_FAST ? m->xn_bf16 : NULL,
                             .ldx = (size_t)c->hidden_size, .y = out + dev->shard.vocab_begin,
                             .ldy = (size_t)c->vocab_size, .n_tok = n_out};
        jobs[d] = job;
    }
    ml_run_matmuls(m, jobs, n_local);
    return ml_mesh_gather_vocab(m->mesh, out, n_out);
}

int ml_forward_chunk(ml_model *m, const int32_t *tokens, int n_tok, const int *out_rows, float *logits) {
    /* the tokens whose logits are wanted: their final norms go to xn rows 0..n_out-1 */
    int norm_dst[ML_CHUNK_TOKENS];
    int n_out = 0, first_out = -1;
    for (int t = 0; t < n_tok; t++) {
        norm_dst[t] = -1;
        if (out_rows[t] < 0) continue;
        if (first_out < 0) first_out = out_rows[t];
        if (out_rows[t] != first_out + n_out)
            return ml_set_error(ML_ERR_INTERNAL, "logit rows of one chunk must be consecutive");
        norm_dst[t] = n_out++;
    }
    embed_step es = {m, tokens};
    ml_pool_run(m->pool, embed_task, &es, n_tok);
    ml_model_dump_hidden(m, 0, n_tok);
    int n_layers = m->config.n_layers, hidden = m->config.hidden_size;
    for (int layer = 0; layer < n_layers; layer++) {
        ML_TRY(attention_block(m, layer, n_tok));
        int last = layer + 1 == n_layers;
        ML_TRY(mlp_block(m, layer, n_tok, last ? m->final_norm : m->attn_norm + (size_t)(layer + 1) * hidden,
                         last ? norm_dst : NULL));
        ml_model_dump_hidden(m, layer + 1, n_tok);
    }
    return lm_head(m, first_out, n_out, logits);
}
