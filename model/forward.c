/* The Llama forward pass over the mesh, one chunk of tokens at a time (HF LlamaForCausalLM; also
 * MistralForCausalLM and Qwen2ForCausalLM, the same pass with the projections' biases where the
 * config has them: column-parallel biases in each device's product, row-parallel ones once after
 * the all-reduce):
 *   x = embed(tokens)
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v))   q,k,v = proj(rmsnorm(x))
 *               x += down_proj(silu(gate_proj(h)) * up_proj(h)) h = rmsnorm(x)
 *   logits = lm_head(rmsnorm(x))
 * Projections are sharded over devices; o_proj and down_proj leave partial sums that the mesh
 * all-reduces (two per layer). Each step is one parallel region over all local devices.
 *
 * Steps are fused where the data of one task allows it, so a layer is 10 steps (11 when a
 * sequence feeds several tokens; a step of one task runs on the calling thread, no region).
 * Each fused step is named by its formula:
 *   embed_then_rmsnorm              one task per token: the token's row, then its norm;
 *   residual_add_then_rmsnorm       after each all-reduce, one task per token: x += reduced,
 *                                   then the next sublayer's norm (or the final norm for the
 *                                   tokens whose logits are wanted) and the fast-mode rounding;
 *   rope_cache_write_attention      when every sequence of the chunk feeds one token (decode),
 *                                   one task per (device, token, KV head) does all three: no
 *                                   token reads another's new cache row. Otherwise
 *                                   rope_then_cache_write is a region of its own (a prompt's
 *                                   tokens read each other's rows) before attention;
 *   attention (then bf16 rounding)  fast mode rounds each task's output heads in place;
 *   silu_mul_then_round             one task per (device, token).
 * The chunk's tokens (ids, KV slots, positions) travel to every step in one ml_chunk_tokens.
 * Between the steps each intermediate is handed to the hidden-state callback, if one is set, by
 * (name, layer) (model/intermediates.c).
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

/* Fast mode on weights with int8 products: a matmul input of this width has int8 rows (its
 * blocks must tile the row), in blocks of 32 (has_q8_input) or, for K-quant weights,
 * super-blocks of 256 (has_q8k_input). */
static int has_q8_input(const ml_model *m, int width) { return m->act_q8 && width % ML_Q8_BLOCK == 0; }
static int has_q8k_input(const ml_model *m, int width) { return m->act_q8k && width % ML_Q8K_BLOCK == 0; }

/* out [n] as the int8 rows of the formats the model's weights take (row of width n). */
static void quantize_input(const ml_model *m, uint8_t *q8, uint8_t *q8k, const float *x, int n) {
    if (q8) m->kernels->quantize_q8(q8, x, n);
    if (q8k) m->kernels->quantize_q8k(q8k, x, n);
}

/* xn[dst] = rmsnorm(x[src]) (+ fast-mode rounding into xn_bf16[dst], and the int8 row). */
static void rmsnorm_row(ml_model *m, const float *weight, int src, int dst) {
    int hidden = m->config.hidden_size;
    float *out = m->xn + (size_t)dst * hidden;
    m->kernels->rmsnorm(out, m->x + (size_t)src * hidden, weight, hidden, m->config.rms_norm_eps);
    if (m->params.act_mode == ML_ACT_FAST) round_to_bf16(m, out, m->xn_bf16 + (size_t)dst * hidden, (size_t)hidden);
    quantize_input(m, has_q8_input(m, hidden) ? m->xn_q8 + (size_t)dst * ml_q8_row_bytes(hidden) : NULL,
                   has_q8k_input(m, hidden) ? m->xn_q8k + (size_t)dst * ml_q8k_row_bytes(hidden) : NULL, out, hidden);
}

/* ---- matmul jobs ----------------------------------------------------------------------- */

/* The input of a projection: float32 activations [n_tok, width] and, in fast mode, the same
 * values as bf16 bits (NULL in accurate mode), as int8 blocks (NULL unless has_q8_input) and
 * as int8 super-blocks (NULL unless has_q8k_input). */
typedef struct {
    const float *f32;
    const uint16_t *bf16;
    const uint8_t *q8;
    const uint8_t *q8k;
    int width;
} matmul_input;

static matmul_input input_of(const ml_model *m, const float *f32, const uint16_t *bf16, const uint8_t *q8,
                             const uint8_t *q8k, int width) {
    matmul_input in = {f32, m->params.act_mode == ML_ACT_FAST ? bf16 : NULL, has_q8_input(m, width) ? q8 : NULL,
                       has_q8k_input(m, width) ? q8k : NULL, width};
    return in;
}

/* y[t, 0..n_rows) = in[t] W^T (+ bias) for n_tok tokens; y rows are ldy apart. bias: [n_rows] or NULL. */
static ml_matmul_job project(ml_weight w, const float *bias, int n_rows, matmul_input in, float *y, size_t ldy,
                             int n_tok) {
    ml_matmul_job job = {.w = w, .n_rows = n_rows, .n_in = in.width, .x = in.f32, .x_bf16 = in.bf16,
                         .ldx = (size_t)in.width, .x_q8 = in.q8, .ldx_q8 = ml_q8_row_bytes(in.width), .x_q8k = in.q8k,
                         .ldx_q8k = ml_q8k_row_bytes(in.width), .y = y,
                         .ldy = ldy, .n_tok = n_tok, .bias = bias};
    return job;
}

/* ---- embedding (+ the first layer's norm) ---------------------------------------------- */

typedef struct {
    ml_model *model;
    const ml_chunk_tokens *chunk;
} embed_step;

/* x[t] = embed[token t]; xn[t] = rmsnorm(x[t]) with layer 0's attention norm. */
static void embed_then_rmsnorm(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const embed_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    size_t row_bytes = ml_dtype_row_bytes(m->embed.dtype, (size_t)hidden);
    const uint8_t *row = (const uint8_t *)m->embed.data + (size_t)step->chunk->tokens[t] * row_bytes;
    ml_weight_row_to_f32(m->kernels, m->embed.dtype, row, (size_t)hidden, m->x + (size_t)t * hidden);
    rmsnorm_row(m, m->attn_norm, t, t);
}

/* ---- all-reduce, residual add and the next norm ------------------------------------------ */

typedef struct {
    ml_model *model;
    const float *bias;     /* [hidden] the row-parallel projection's bias, or NULL */
    const float *weight;   /* [hidden] the next norm */
    const int *norm_dst;   /* NULL: token t's norm goes to row t; else row norm_dst[t], or none if < 0 */
} add_norm_step;

/* reduced[t] += bias (once, after the sum of the devices' partials, as nn.Linear adds it to the
 * whole product); x[t] += reduced[t]; then xn[dst] = rmsnorm(x[t]) with the next norm. */
static void residual_add_then_rmsnorm(void *ctx, int t, int thread_index) {
    (void)thread_index;
    const add_norm_step *step = ctx;
    ml_model *m = step->model;
    int hidden = m->config.hidden_size;
    float *x = m->x + (size_t)t * hidden;
    float *add = m->reduced + (size_t)t * hidden;
    if (step->bias)
        for (int i = 0; i < hidden; i++) add[i] += step->bias[i];
    for (int i = 0; i < hidden; i++) x[i] += add[i];
    int dst = step->norm_dst ? step->norm_dst[t] : t;
    if (dst >= 0) rmsnorm_row(m, step->weight, t, dst);
}

/* x += allreduce(partials) + bias; then the next norm as residual_add_then_rmsnorm says. */
static int allreduce_residual_add_then_rmsnorm(ml_model *m, int n_tok, const float *bias, const float *next_weight,
                                               const int *norm_dst) {
    float *partials[ML_MAX_LOCAL_DEVICES];
    for (int d = 0; d < m->mesh->n_local; d++) partials[d] = m->devices[d].partial;
    ML_TRY(ml_mesh_allreduce_sum(m->mesh, partials, (size_t)n_tok * m->config.hidden_size, m->reduced));
    add_norm_step step = {m, bias, next_weight, norm_dst};
    ml_pool_run(m->pool, residual_add_then_rmsnorm, &step, n_tok);
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

/* RoPE at position pos on n_heads vectors [n_heads, head_dim]. */
static void rope_at(const ml_model *m, float *heads, int n_heads, int pos) {
    size_t half = (size_t)m->config.head_dim / 2;
    m->kernels->rope(heads, n_heads, m->config.head_dim, m->rope_cos + (size_t)pos * half,
                     m->rope_sin + (size_t)pos * half);
}

/* k = rope(k) on KV head kv_local of token t, then its k and v rows into the cache at the
 * token's slot and position. */
static void rope_then_cache_write_head(ml_model *m, ml_device *dev, int layer, const ml_chunk_tokens *chunk, int t,
                                       int kv_local) {
    int hd = m->config.head_dim, pos = chunk->pos[t];
    int kv_width = dev->shard.kv_head_count * hd;
    float *k = dev->k + (size_t)t * kv_width + (size_t)kv_local * hd;
    const float *v = dev->v + (size_t)t * kv_width + (size_t)kv_local * hd;
    rope_at(m, k, 1, pos);
    size_t at = cache_offset(m, dev, layer, chunk->slot[t], kv_local, pos);
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
    const ml_chunk_tokens *chunk;
} rope_cache_step;

/* Prefill: q = rope(q), k = rope(k) on every head of token t of device d, and its k/v rows
 * into the cache. */
static void rope_then_cache_write(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const rope_cache_step *step = ctx;
    ml_model *m = step->model;
    int n_tok = step->chunk->n_tok;
    int d = task / n_tok, t = task % n_tok;
    ml_device *dev = &m->devices[d];
    float *q = dev->q + (size_t)t * dev->shard.q_head_count * m->config.head_dim;
    rope_at(m, q, dev->shard.q_head_count, step->chunk->pos[t]);
    for (int h = 0; h < dev->shard.kv_head_count; h++) rope_then_cache_write_head(m, dev, step->layer, step->chunk, t, h);
}

typedef struct {
    ml_model *model;
    int layer;
    const ml_chunk_tokens *chunk;
    int rope_here;                            /* decode: RoPE and cache write in the same task */
    int task_begin[ML_MAX_LOCAL_DEVICES + 1]; /* first task of each local device: n_tok * kv_count tasks each */
} attention_step;

/* The query heads [*q_begin, *q_end) of shard s that read its KV head kv_local. */
static void query_group(const ml_model *m, const ml_shard *s, int kv_local, int *q_begin, int *q_end) {
    int group = m->config.n_heads / m->config.n_kv_heads;
    int kv_global = s->kv_head_begin + kv_local;
    int shard_end = s->q_head_begin + s->q_head_count;
    *q_begin = kv_global * group > s->q_head_begin ? kv_global * group : s->q_head_begin;
    *q_end = (kv_global + 1) * group < shard_end ? (kv_global + 1) * group : shard_end;
}

/* o_proj's input has int8 rows: quantised by each attention task, a group of heads at a time,
 * so each head must be whole blocks; for super-blocks of 256, each task's heads (a KV head's
 * query group, cut at the shard's ends) must be whole super-blocks, else o_proj takes the
 * float32 (bf16-rounded) input. */
static int heads_have_q8_input(const ml_model *m, const ml_shard *s) {
    return has_q8_input(m, s->q_head_count * m->config.head_dim) && m->config.head_dim % ML_Q8_BLOCK == 0;
}

static int heads_have_q8k_input(const ml_model *m, const ml_shard *s) {
    int hd = m->config.head_dim, group = m->config.n_heads / m->config.n_kv_heads;
    return has_q8k_input(m, s->q_head_count * hd) && (group * hd) % ML_Q8K_BLOCK == 0 &&
           (s->q_head_begin * hd) % ML_Q8K_BLOCK == 0;
}

/* Token t, KV head kv_local of device d: the query heads of its group on this device attend
 * to the slot's positions 0..pos (after RoPE and the cache write, when rope_here). */
static void attention(void *ctx, int task, int thread_index) {
    const attention_step *step = ctx;
    ml_model *m = step->model;
    int d = 0;
    while (task >= step->task_begin[d + 1]) d++;
    ml_device *dev = &m->devices[d];
    const ml_shard *s = &dev->shard;
    int local = task - step->task_begin[d];
    int t = local / s->kv_head_count, kv_local = local % s->kv_head_count;
    int hd = m->config.head_dim, q_begin, q_end;
    query_group(m, s, kv_local, &q_begin, &q_end);
    int q_local = q_begin - s->q_head_begin, n_q = q_end - q_begin;
    size_t head_at = (size_t)t * s->q_head_count * hd + (size_t)q_local * hd; /* in q and attn rows */
    float *q = dev->q + head_at, *out = dev->attn + head_at;
    int pos = step->chunk->pos[t];
    if (step->rope_here) {
        rope_at(m, q, n_q, pos);
        rope_then_cache_write_head(m, dev, step->layer, step->chunk, t, kv_local);
    }
    size_t at = cache_offset(m, dev, step->layer, step->chunk->slot[t], kv_local, 0);
    float scale = 1.0f / sqrtf((float)hd);
    float *scratch = m->attn_scratch + (size_t)thread_index * m->params.max_seq_len;
    if (m->params.kv_dtype == ML_KV_BF16)
        m->kernels->attention_bf16(out, q, n_q, (const uint16_t *)dev->k_cache + at,
                                   (const uint16_t *)dev->v_cache + at, pos + 1, hd, scale, scratch);
    else
        m->kernels->attention_f32(out, q, n_q, (const float *)dev->k_cache + at, (const float *)dev->v_cache + at,
                                  pos + 1, hd, scale, scratch);
    if (m->params.act_mode == ML_ACT_FAST) /* o_proj's input, the heads of this task */
        round_to_bf16(m, out, dev->act_bf16 + head_at, (size_t)n_q * hd);
    quantize_input(m, /* whole blocks (see heads_have_q8_input, heads_have_q8k_input) */
                   heads_have_q8_input(m, s) ? dev->act_q8 + (size_t)t * ml_q8_row_bytes(s->q_head_count * hd) +
                                                   ml_q8_row_bytes(q_local * hd)
                                             : NULL,
                   heads_have_q8k_input(m, s) ? dev->act_q8k + (size_t)t * ml_q8k_row_bytes(s->q_head_count * hd) +
                                                    ml_q8k_row_bytes(q_local * hd)
                                              : NULL,
                   out, n_q * hd);
}

/* Non-zero when no two tokens of the chunk share a KV slot (every sequence feeds one token). */
static int one_token_per_slot(const ml_model *m, const ml_chunk_tokens *chunk) {
    if (chunk->n_tok > m->params.max_batch) return 0;
    unsigned long long seen = 0; /* max_batch <= 32 */
    for (int t = 0; t < chunk->n_tok; t++) {
        unsigned long long bit = 1ULL << (chunk->slot[t] & 63);
        if (seen & bit) return 0;
        seen |= bit;
    }
    return 1;
}

/* RoPE, cache write and attention for every (device, token, KV head) of the chunk. */
static void rope_cache_write_attention(ml_model *m, int layer, const ml_chunk_tokens *chunk) {
    int n_local = ml_local_devices(m);
    attention_step step = {.model = m, .layer = layer, .chunk = chunk, .rope_here = one_token_per_slot(m, chunk)};
    if (!step.rope_here) {
        rope_cache_step rc = {m, layer, chunk};
        ml_pool_run(m->pool, rope_then_cache_write, &rc, chunk->n_tok * n_local);
    }
    step.task_begin[0] = 0;
    for (int d = 0; d < n_local; d++)
        step.task_begin[d + 1] = step.task_begin[d] + chunk->n_tok * m->devices[d].shard.kv_head_count;
    ml_pool_run(m->pool, attention, &step, step.task_begin[n_local]);
}

/* ---- SwiGLU ---------------------------------------------------------------------------- */

typedef struct {
    ml_model *model;
    int n_tok;
} silu_step;

/* gate = silu(gate) * up on token t of device d (then the fast-mode rounding). */
static void silu_mul_then_round(void *ctx, int task, int thread_index) {
    (void)thread_index;
    const silu_step *step = ctx;
    ml_model *m = step->model;
    int d = task / step->n_tok, t = task % step->n_tok;
    ml_device *dev = &m->devices[d];
    size_t ffn = (size_t)dev->shard.ffn_count, at = (size_t)t * ffn;
    m->kernels->silu_mul(dev->gate + at, dev->gate + at, dev->up + at, (int)ffn);
    if (m->params.act_mode == ML_ACT_FAST) round_to_bf16(m, dev->gate + at, dev->act_bf16 + at, ffn);
    quantize_input(m, has_q8_input(m, (int)ffn) ? dev->act_q8 + (size_t)t * ml_q8_row_bytes((int)ffn) : NULL,
                   has_q8k_input(m, (int)ffn) ? dev->act_q8k + (size_t)t * ml_q8k_row_bytes((int)ffn) : NULL,
                   dev->gate + at, (int)ffn);
}

/* ---- the layer ---------------------------------------------------------------------------- */

/* x += o_proj(attention(rope(q), rope(k), v)), q, k, v = proj(xn); xn holds rmsnorm(x) with
 * this layer's attention norm. Leaves xn = the MLP norm of the new x. */
static int attention_block(ml_model *m, int layer, const ml_chunk_tokens *chunk) {
    int n_local = ml_local_devices(m), hd = m->config.head_dim, hidden = m->config.hidden_size;
    int n_tok = chunk->n_tok;
    matmul_input normed = input_of(m, m->xn, m->xn_bf16, m->xn_q8, m->xn_q8k, hidden);
    ml_emit_intermediate(m, chunk, "attn_norm", layer, m->xn, hidden);
    ml_matmul_job jobs[3 * ML_MAX_LOCAL_DEVICES];
    int n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        const ml_layer_slice *w = &dev->layers[layer];
        int q_rows = dev->shard.q_head_count * hd, kv_rows = dev->shard.kv_head_count * hd;
        jobs[n_jobs++] = project(w->wq, w->bq, q_rows, normed, dev->q, (size_t)q_rows, n_tok);
        jobs[n_jobs++] = project(w->wk, w->bk, kv_rows, normed, dev->k, (size_t)kv_rows, n_tok);
        jobs[n_jobs++] = project(w->wv, w->bv, kv_rows, normed, dev->v, (size_t)kv_rows, n_tok);
    }
    ml_run_matmuls(m, jobs, n_jobs);
    ml_emit_sharded(m, chunk, "q", layer, ML_SHARDED_Q); /* before RoPE, as q_proj's output */
    ml_emit_sharded(m, chunk, "k", layer, ML_SHARDED_K);
    ml_emit_sharded(m, chunk, "v", layer, ML_SHARDED_V);

    rope_cache_write_attention(m, layer, chunk);
    ml_emit_sharded(m, chunk, "attn_out", layer, ML_SHARDED_ATTN);

    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        matmul_input heads = input_of(m, dev->attn, dev->act_bf16, heads_have_q8_input(m, &dev->shard) ? dev->act_q8 : NULL,
                                      heads_have_q8k_input(m, &dev->shard) ? dev->act_q8k : NULL,
                                      dev->shard.q_head_count * hd);
        jobs[d] = project(dev->layers[layer].wo, NULL, hidden, heads, dev->partial, (size_t)hidden, n_tok);
    }
    ml_run_matmuls(m, jobs, n_local);
    const float *o_bias = m->bias_o ? m->bias_o + (size_t)layer * hidden : NULL;
    ML_TRY(allreduce_residual_add_then_rmsnorm(m, n_tok, o_bias, m->mlp_norm + (size_t)layer * hidden, NULL));
    ml_emit_intermediate(m, chunk, "o_proj", layer, m->reduced, hidden);
    ml_emit_intermediate(m, chunk, "attn_residual", layer, m->x, hidden);
    ml_emit_intermediate(m, chunk, "ffn_norm", layer, m->xn, hidden);
    return ML_OK;
}

/* x += down_proj(silu(gate_proj(xn)) * up_proj(xn)); xn holds the MLP norm. Leaves xn = the
 * next layer's attention norm (norm_dst NULL), or the final norm of the rows norm_dst selects. */
static int mlp_block(ml_model *m, int layer, const ml_chunk_tokens *chunk, const float *next_weight,
                     const int *norm_dst) {
    int n_local = ml_local_devices(m), hidden = m->config.hidden_size;
    int n_tok = chunk->n_tok;
    matmul_input normed = input_of(m, m->xn, m->xn_bf16, m->xn_q8, m->xn_q8k, hidden);
    ml_matmul_job jobs[2 * ML_MAX_LOCAL_DEVICES];
    int n_jobs = 0;
    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        int ffn = dev->shard.ffn_count;
        jobs[n_jobs++] = project(dev->layers[layer].w_gate, dev->layers[layer].b_gate, ffn, normed, dev->gate, (size_t)ffn, n_tok);
        jobs[n_jobs++] = project(dev->layers[layer].w_up, dev->layers[layer].b_up, ffn, normed, dev->up, (size_t)ffn, n_tok);
    }
    ml_run_matmuls(m, jobs, n_jobs);
    ml_emit_sharded(m, chunk, "gate", layer, ML_SHARDED_GATE);
    ml_emit_sharded(m, chunk, "up", layer, ML_SHARDED_UP);

    silu_step ss = {m, n_tok};
    ml_pool_run(m->pool, silu_mul_then_round, &ss, n_tok * n_local);
    ml_emit_sharded(m, chunk, "ffn_act", layer, ML_SHARDED_GATE);

    for (int d = 0; d < n_local; d++) {
        ml_device *dev = &m->devices[d];
        matmul_input act = input_of(m, dev->gate, dev->act_bf16, dev->act_q8, dev->act_q8k, dev->shard.ffn_count);
        jobs[d] = project(dev->layers[layer].w_down, NULL, hidden, act, dev->partial, (size_t)hidden, n_tok);
    }
    ml_run_matmuls(m, jobs, n_local);
    const float *down_bias = m->bias_down ? m->bias_down + (size_t)layer * hidden : NULL;
    ML_TRY(allreduce_residual_add_then_rmsnorm(m, n_tok, down_bias, next_weight, norm_dst));
    ml_emit_intermediate(m, chunk, "ffn_out", layer, m->reduced, hidden);
    ml_emit_intermediate(m, chunk, "layer_out", layer, m->x, hidden);
    return ML_OK;
}

/* xn rows 0..n_out-1 hold the final norm of the wanted tokens; their logits go to rows
 * first_out.. of logits, each device writing its vocab slice (LM head rows split over the
 * threads like any product). */
static int lm_head(ml_model *m, int first_out, int n_out, float *logits) {
    const ml_config *c = &m->config;
    int n_local = ml_local_devices(m);
    if (n_out == 0) return ML_OK;
    float *out = logits + (size_t)first_out * c->vocab_size;
    matmul_input normed = input_of(m, m->xn, m->xn_bf16, m->xn_q8, m->xn_q8k, c->hidden_size);
    ml_matmul_job jobs[ML_MAX_LOCAL_DEVICES];
    for (int d = 0; d < n_local; d++) {
        const ml_device *dev = &m->devices[d];
        jobs[d] = project(dev->lm_head, NULL, dev->shard.vocab_count, normed, out + dev->shard.vocab_begin,
                          (size_t)c->vocab_size, n_out);
    }
    ml_run_matmuls(m, jobs, n_local);
    return ml_mesh_gather_vocab(m->mesh, out, n_out);
}

int ml_forward_chunk(ml_model *m, const ml_chunk_tokens *chunk, const int *out_rows, float *logits) {
    /* the tokens whose logits are wanted: their final norms go to xn rows 0..n_out-1 */
    int norm_dst[ML_CHUNK_TOKENS];
    int n_out = 0, first_out = -1;
    for (int t = 0; t < chunk->n_tok; t++) {
        norm_dst[t] = -1;
        if (out_rows[t] < 0) continue;
        if (first_out < 0) first_out = out_rows[t];
        if (out_rows[t] != first_out + n_out)
            return ml_set_error(ML_ERR_INTERNAL, "logit rows of one chunk must be consecutive");
        norm_dst[t] = n_out++;
    }
    embed_step es = {m, chunk};
    ml_pool_run(m->pool, embed_then_rmsnorm, &es, chunk->n_tok);
    ml_emit_intermediate(m, chunk, "embed", -1, m->x, m->config.hidden_size);
    int n_layers = m->config.n_layers, hidden = m->config.hidden_size;
    for (int layer = 0; layer < n_layers; layer++) {
        ML_TRY(attention_block(m, layer, chunk));
        int last = layer + 1 == n_layers;
        ML_TRY(mlp_block(m, layer, chunk, last ? m->final_norm : m->attn_norm + (size_t)(layer + 1) * hidden,
                         last ? norm_dst : NULL));
    }
    ml_emit_final_norm(m, chunk);
    return lm_head(m, first_out, n_out, logits);
}
