/* The Llama forward pass over the mesh, one chunk of tokens at a time (HF LlamaForCausalLM):
 *   x = embed(tokens)
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v))   q,k,v = proj(rmsnorm(x))
 *               x += down_proj(silu(gate_proj(h)) * up_proj(h)) h = rmsnorm(x)
 *   logits = lm_head(rmsnorm(x))
 * Projections are sharded over devices; o_proj and down_proj leave partial sums that the mesh
 * all-reduces (two per layer). Each step is one parallel region over all local devices. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/numeric.h"
#include "model/model_internal.h"

/* ---- small parallel steps ------------------------------------------------------------- */

typedef struct {
    ml_model *model;
    const int32_t *tokens;
} embed_step;

static void embed_task(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const embed_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    size_t row = (size_t)step->tokens[t] * hidden;
    float *dst = m->x + (size_t)t * hidden;
    switch (m->embed.dtype) {
    case ML_DTYPE_BF16: m->kernels->bf16_to_f32(dst, (const uint16_t *)m->embed.data + row, (size_t)hidden); break;
    case ML_DTYPE_F16: m->kernels->f16_to_f32(dst, (const uint16_t *)m->embed.data + row, (size_t)hidden); break;
    default: memcpy(dst, (const float *)m->embed.data + row, (size_t)hidden * sizeof(float)); break;
    }
}

typedef struct {
    ml_model *model;
    const float *weight;   /* [hidden] */
    const int *rows;       /* NULL: row t of x; else the x rows to normalise, [n] */
    int fast;              /* also round to bf16 (values and xn_bf16) */
} norm_step;

static void norm_task(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const norm_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    int src_row = step->rows ? step->rows[t] : t;
    float *out = m->xn + (size_t)t * hidden;
    m->kernels->rmsnorm(out, m->x + (size_t)src_row * hidden, step->weight, hidden, m->config.rms_norm_eps);
    if (step->fast) {
        uint16_t *out_bf16 = m->xn_bf16 + (size_t)t * hidden;
        m->kernels->f32_to_bf16(out_bf16, out, (size_t)hidden);
        m->kernels->bf16_to_f32(out, out_bf16, (size_t)hidden);
    }
}

static void rmsnorm_rows(ml_model *m, const float *weight, const int *rows, int n) {
    norm_step step = {m, weight, rows, m->params.act_mode == ML_ACT_FAST};
    ml_pool_run(m->pool, norm_task, &step, n);
}

/* Fast mode: a device buffer [n_tok, width] rounded to bf16, values and bits. */
typedef struct {
    ml_model *model;
    int n_tok;
    int which; /* 0: attn, 1: gate */
} round_step;

static void round_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const round_step *step = ctx;
    ml_model *m = step->model;
    int d = task / step->n_tok, t = task % step->n_tok;
    ml_device *dev = &m->devices[d];
    int width = step->which == 0 ? dev->shard.q_head_count * m->config.head_dim : dev->shard.ffn_count;
    float *src = (step->which == 0 ? dev->attn : dev->gate) + (size_t)t * width;
    uint16_t *bits = dev->act_bf16 + (size_t)t * width;
    m->kernels->f32_to_bf16(bits, src, (size_t)width);
    m->kernels->bf16_to_f32(src, bits, (size_t)width);
}

static void round_device_inputs(ml_model *m, int n_tok, int which) {
    if (m->params.act_mode != ML_ACT_FAST) return;
    round_step step = {m, n_tok, which};
    ml_pool_run(m->pool, round_task, &step, n_tok * m->mesh->n_local);
}

/* x += reduced, in chunks of the residual. */
typedef struct {
    float *x;
    const float *add;
    size_t n;
} add_step;

#define ML_ADD_CHUNK 4096

static void add_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const add_step *step = ctx;
    size_t begin = (size_t)task * ML_ADD_CHUNK;
    size_t end = begin + ML_ADD_CHUNK < step->n ? begin + ML_ADD_CHUNK : step->n;
    for (size_t i = begin; i < end; i++) step->x[i] += step->add[i];
}

static int all_reduce_into_residual(ml_model *m, int n_tok) {
    float *partials[ML_MAX_LOCAL_DEVICES];
    for (int d = 0; d < m->mesh->n_local; d++) partials[d] = m->devices[d].partial;
    size_t n = (size_t)n_tok * m->config.hidden_size;
    ML_TRY(ml_mesh_allreduce_sum(m->mesh, partials, n, m->reduced));
    add_step step = {m->x, m->reduced, n};
    ml_pool_run(m->pool, add_task, &step, (int)((n + ML_ADD_CHUNK - 1) / ML_ADD_CHUNK));
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

typedef struct {
    ml_model *model;
    int layer;
    int n_tok;
} rope_cache_step;

/* RoPE on the token's q and k heads, then its k and v rows into the cache. */
static void rope_cache_task(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const rope_cache_step *step = ctx;
    ml_model *m = step->model;
    int d = task / step->n_tok, t = task % step->n_tok;
    ml_device *dev = &m->devices[d];
    int hd = m->config.head_dim, half = hd / 2;
    int pos = m->token_pos[t], slot = m->token_slot[t];
    const float *cos_row = m->rope_cos + (size_t)pos * half;
    const float *sin_row = m->rope_sin + (size_t)pos * half;
    int q_width = dev->shard.q_head_count * hd, kv_width = dev->shard.kv_head_count * hd;
    float *q = dev->q + (size_t)t * q_width;
    float *k = dev->k + (size_t)t * kv_width;
    const float *v = dev->v + (size_t)t * kv_width;
    m->kernels->rope(q, dev->shard.q_head_count, hd, cos_row, sin_row);
    m->kernels->rope(k, dev->shard.kv_head_count, hd, cos_row, sin_row);
    for (int h = 0; h < dev->shard.kv_head_count; h++) {
        size_t at = cache_offset(m, dev, step->layer, slot, h, pos);
        if (m->params.kv_dtype == ML_KV_BF16) {
            m->kernels->f32_to_bf16((uint16_t *)dev->k_cache + at, k + (size_t)h * hd, (size_t)hd);
            m->kernels->f32_to_bf16((uint16_t *)dev->v_cache + at, v + (size_t)h * hd, (size_t)hd);
        } else {
            memcpy((float *)dev->k_cache + at, k + (size_t)h * hd, (size_t)hd * sizeof(float));
            memcpy((float *)dev->v_cache + at, v + (size_t)h * hd, (size_t)hd * sizeof(float));
        }
    }
}

typedef struct {
    ml_model *model;
    int layer;
    int n_tok;
    int task_begin[ML_MAX_LOCAL_DEVICES + 1]; /* first task of each local device: n_tok * kv_count tasks each */
} attention_step;

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
    int q_local = q_begin - s->q_head_begin;
    int q_width = s->q_head_count * hd;
    const float *q = dev->q + (size_t)t * q_width + (size_t)q_local * hd;
    float *out = dev->attn + (size_t)t * q_width + (size_t)q_local * hd;
    int n_pos = m->token_pos[t] + 1;
    size_t at = cache_offset(m, dev, step->layer, m->token_slot[t], kv_local, 0);
    float scale = 1.0f / sqrtf((float)hd);
    float *scratch = m->attn_scratch + (size_t)thread_index * m->params.max_seq_len;
    if (m->params.kv_dtype == ML_KV_BF16)
        m->kernels->attention_bf16(out, q, q_end - q_begin, (const uint16_t *)dev->k_cache + at,
                                   (const uint16_t *)dev->v_cache + at, n_pos, hd, scale, scratch);
    else
        m->kernels->attention_f32(out, q, q_end - q_begin, (const float *)dev->k_cache + at,
                                  (const float *)dev->v_cache + at, n_pos, hd, scale, scratch);
}

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
    size_t at = (size_t)t * dev->shard.ffn_count;
    m->kernels->silu_mul(dev->gate + at, dev->gate + at, dev->up + at, dev->shard.ffn_count);
}

/* ---- the layer ---------------------------------------------------------------------------- */

static int attention_block(ml_model *m, int layer, int n_tok) {
    const ml_config *c = &m->config;
    int n_local = m->mesh->n_local, hd = c->head_dim, hidden = c->hidden_size;
    int fast = m->params.act_mode == ML_ACT_FAST;
    rmsnorm_rows(m, m->attn_norm + (size_t)layer * hidden, NULL, n_tok);

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

    rope_cache_step rc = {m, layer, n_tok};
    ml_pool_run(m->pool, rope_cache_task, &rc, n_tok * n_local);

    attention_step at;
    at.model = m;
    at.layer = layer;
    at.n_tok = n_tok;
    at.task_begin[0] = 0;
    for (int d = 0; d < n_local; d++) at.task_begin[d + 1] = at.task_begin[d] + n_tok * m->devices[d].shard.kv_head_count;
    ml_pool_run(m->pool, attention_task, &at, at.task_begin[n_local]);

    round_device_inputs(m, n_tok, 0);
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
    return all_reduce_into_residual(m, n_tok);
}

static int mlp_block(ml_model *m, int layer, int n_tok) {
    const ml_config *c = &m->config;
    int n_local = m->mesh->n_local, hidden = c->hidden_size;
    int fast = m->params.act_mode == ML_ACT_FAST;
    rmsnorm_rows(m, m->mlp_norm + (size_t)layer * hidden, NULL, n_tok);

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
    round_device_inputs(m, n_tok, 1);

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
    return all_reduce_into_residual(m, n_tok);
}

static int lm_head(ml_model *m, const int *out_rows, int n_tok, float *logits) {
    const ml_config *c = &m->config;
    int rows[ML_CHUNK_TOKENS];
    int n_out = 0, first_out = -1;
    for (int t = 0; t < n_tok; t++) {
        if (out_rows[t] < 0) continue;
        if (first_out < 0) first_out = out_rows[t];
        if (out_rows[t] != first_out + n_out)
            return ml_set_error(ML_ERR_INTERNAL, "logit rows of one chunk must be consecutive");
        rows[n_out++] = t;
    }
    if (n_out == 0) return ML_OK;
    rmsnorm_rows(m, m->final_norm, rows, n_out);
    float *out = logits + (size_t)first_out * c->vocab_size;
    ml_matmul_job jobs[ML_MAX_LOCAL_DEVICES];
    int n_local = m->mesh->n_local;
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
    embed_step es = {m, tokens};
    ml_pool_run(m->pool, embed_task, &es, n_tok);
    ml_model_dump_hidden(m, 0, n_tok);
    for (int layer = 0; layer < m->config.n_layers; layer++) {
        ML_TRY(attention_block(m, layer, n_tok));
        ML_TRY(mlp_block(m, layer, n_tok));
        ml_model_dump_hidden(m, layer + 1, n_tok);
    }
    return lm_head(m, out_rows, n_tok, logits);
}
