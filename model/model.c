/* Opening, closing and running a model: parameters, buffers, the public forward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/model_internal.h"

ml_model_params ml_model_default_params(void) {
    ml_model_params p;
    memset(&p, 0, sizeof p);
    p.tp = 1;
    p.n_threads = 0;
    p.max_seq_len = 0;
    p.max_batch = 1;
    p.act_mode = ML_ACT_ACCURATE;
    p.kv_dtype = ML_KV_F32;
    p.collective_timeout_s = 600.0;
    return p;
}

#define ML_DEFAULT_MAX_SEQ_LEN 4096

static int resolve_params(const ml_config *c, const ml_model_params *in, ml_model_params *out) {
    *out = *in;
    if (in->max_batch < 1 || in->max_batch > ML_MAX_BATCH)
        return ml_set_error(ML_ERR_ARG, "max_batch %d: expected 1..%d", in->max_batch, ML_MAX_BATCH);
    if (in->max_seq_len < 0)
        return ml_set_error(ML_ERR_ARG, "max_seq_len %d: expected a positive length (or 0 for the default)",
                            in->max_seq_len);
    if (in->max_seq_len == 0) {
        out->max_seq_len = c->max_position_embeddings < ML_DEFAULT_MAX_SEQ_LEN ? c->max_position_embeddings
                                                                              : ML_DEFAULT_MAX_SEQ_LEN;
        if (c->sliding_window > 0 && out->max_seq_len > c->sliding_window) out->max_seq_len = c->sliding_window;
    }
    if (out->max_seq_len > (1 << 24))
        return ml_set_error(ML_ERR_ARG, "max_seq_len %d: at most %d supported", out->max_seq_len, 1 << 24);
    if (in->act_mode != ML_ACT_ACCURATE && in->act_mode != ML_ACT_FAST)
        return ml_set_error(ML_ERR_ARG, "act_mode %d: expected accurate (0) or fast (1)", (int)in->act_mode);
    if ((int)in->mesh_backend < ML_MESH_AUTO || (int)in->mesh_backend > ML_MESH_MPI)
        return ml_set_error(ML_ERR_ARG, "mesh_backend %d: expected auto (0), threads (1) or mpi (2)",
                            (int)in->mesh_backend);
    if (in->kv_dtype != ML_KV_F32 && in->kv_dtype != ML_KV_BF16)
        return ml_set_error(ML_ERR_ARG, "kv_dtype %d: expected f32 (0) or bf16 (1)", (int)in->kv_dtype);
    if (in->mesh_rows > 0 || in->mesh_cols > 0) {
        if (in->mesh_rows <= 0 || in->mesh_cols <= 0)
            return ml_set_error(ML_ERR_ARG, "mesh %dx%d: both dimensions must be positive", in->mesh_rows,
                                in->mesh_cols);
        out->tp = in->mesh_rows * in->mesh_cols;
        if (in->tp > 1 && in->tp != out->tp)
            return ml_set_error(ML_ERR_ARG, "mesh %dx%d has %d devices but tp is %d", in->mesh_rows, in->mesh_cols,
                                out->tp, in->tp);
    }
    if (out->tp > ML_MAX_LOCAL_DEVICES)
        return ml_set_error(ML_ERR_UNSUPPORTED, "tp %d: the threads backend hosts at most %d devices", out->tp,
                            ML_MAX_LOCAL_DEVICES);
    return ML_OK;
}

/* Every query attends to all earlier positions of its sequence. HF masks keys more than
 * sliding_window - 1 positions back (masking_utils.sliding_window_overlay), which changes nothing
 * while no sequence is longer than the window; a longer context is refused, not approximated. */
static int check_window(const ml_model *m) {
    int window = m->config.sliding_window;
    if (window <= 0 || m->params.max_seq_len <= window) return ML_OK;
    return ml_set_error(ML_ERR_UNSUPPORTED,
                        "%s: max_seq_len %d exceeds the config's sliding_window %d: sliding-window attention is not "
                        "implemented (positions past the window would attend to keys HF masks); run with "
                        "max_seq_len (-c) <= %d",
                        m->checkpoint.path, m->params.max_seq_len, window, window);
}

/* Some projection or LM head of this process has an int8 product of the kind supports names
 * (ml_q8_supports or ml_q8k_supports; fast mode then quantises the activations to it too). */
static int any_int8_weights(const ml_model *m, int (*supports)(ml_dtype)) {
    for (int d = 0; d < m->mesh->n_local; d++) {
        const ml_device *dev = &m->devices[d];
        if (supports(dev->lm_head.dtype)) return 1;
        for (int l = 0; l < m->config.n_layers; l++) {
            const ml_layer_slice *w = &dev->layers[l];
            const ml_weight *all[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                if (supports(all[i]->dtype)) return 1;
        }
    }
    return 0;
}

static int alloc_device_buffers(ml_model *m, ml_device *dev) {
    const ml_config *c = &m->config;
    const ml_shard *s = &dev->shard;
    size_t chunk = ML_CHUNK_TOKENS, hd = (size_t)c->head_dim;
    size_t q_width = (size_t)s->q_head_count * hd, kv_width = (size_t)s->kv_head_count * hd;
    size_t ffn = (size_t)s->ffn_count;
    size_t widest = q_width > ffn ? q_width : ffn;
    dev->q = ml_alloc(chunk * q_width * sizeof(float), "q activations");
    dev->k = ml_alloc(chunk * kv_width * sizeof(float), "k activations");
    dev->v = ml_alloc(chunk * kv_width * sizeof(float), "v activations");
    dev->attn = ml_alloc(chunk * q_width * sizeof(float), "attention output");
    dev->gate = ml_alloc(chunk * ffn * sizeof(float), "gate activations");
    dev->up = ml_alloc(chunk * ffn * sizeof(float), "up activations");
    dev->partial = ml_alloc(chunk * (size_t)c->hidden_size * sizeof(float), "partial sums");
    dev->act_bf16 = ml_alloc(chunk * widest * sizeof(uint16_t), "bf16 activations");
    if (!dev->q || !dev->k || !dev->v || !dev->attn || !dev->gate || !dev->up || !dev->partial || !dev->act_bf16)
        return ML_ERR_NOMEM;
    if (m->act_q8) {
        dev->act_q8 = ml_alloc(chunk * ml_q8_row_bytes((int)widest), "int8 activations");
        if (!dev->act_q8) return ML_ERR_NOMEM;
    }
    if (m->act_q8k) {
        dev->act_q8k = ml_alloc(chunk * ml_q8k_row_bytes((int)widest), "int8 super-block activations");
        if (!dev->act_q8k) return ML_ERR_NOMEM;
    }
    size_t element = m->params.kv_dtype == ML_KV_BF16 ? 2 : 4;
    size_t cells = (size_t)c->n_layers * (size_t)m->params.max_batch * (size_t)s->kv_head_count *
                   (size_t)m->params.max_seq_len * hd;
    if (ml_mul_size(cells, element, &dev->cache_bytes) != 0)
        return ml_set_error(ML_ERR_ARG, "KV cache of %d positions x %d sequences is too large", m->params.max_seq_len,
                            m->params.max_batch);
    dev->k_cache = ml_alloc_pages(dev->cache_bytes, "K cache");
    dev->v_cache = ml_alloc_pages(dev->cache_bytes, "V cache");
    if (!dev->k_cache || !dev->v_cache) return ML_ERR_NOMEM;
    return ML_OK;
}

static void free_device_buffers(ml_device *dev) {
    ml_free(dev->q);
    ml_free(dev->k);
    ml_free(dev->v);
    ml_free(dev->attn);
    ml_free(dev->gate);
    ml_free(dev->up);
    ml_free(dev->partial);
    ml_free(dev->act_bf16);
    ml_free(dev->act_q8);
    ml_free(dev->act_q8k);
    ml_free_pages(dev->k_cache, dev->cache_bytes);
    ml_free_pages(dev->v_cache, dev->cache_bytes);
}

static int alloc_model_buffers(ml_model *m) {
    const ml_config *c = &m->config;
    size_t chunk = ML_CHUNK_TOKENS, hidden = (size_t)c->hidden_size;
    int threads = ml_pool_threads(m->pool);
    m->x = ml_alloc(chunk * hidden * sizeof(float), "residual stream");
    m->xn = ml_alloc(chunk * hidden * sizeof(float), "normed activations");
    m->xn_bf16 = ml_alloc(chunk * hidden * sizeof(uint16_t), "bf16 normed activations");
    m->reduced = ml_alloc(chunk * hidden * sizeof(float), "all-reduce buffer");
    m->attn_scratch = ml_alloc((size_t)threads * (size_t)m->params.max_seq_len * sizeof(float), "attention scratch");
    m->slot_length = ml_alloc((size_t)m->params.max_batch * sizeof(int), "slot lengths");
    m->attn_norm = ml_alloc((size_t)c->n_layers * hidden * sizeof(float), "attention norms");
    m->mlp_norm = ml_alloc((size_t)c->n_layers * hidden * sizeof(float), "MLP norms");
    m->final_norm = ml_alloc(hidden * sizeof(float), "final norm");
    if (!m->x || !m->xn || !m->xn_bf16 || !m->reduced || !m->attn_scratch || !m->slot_length ||
        !m->attn_norm || !m->mlp_norm || !m->final_norm)
        return ML_ERR_NOMEM;
    return ML_OK;
}

/* The checkpoint's files are as they were mapped (see ml_mapped_file_install_sigbus_handler). */
static int check_files(const ml_model *m) {
    const ml_mapped_file *files;
    int n_files = ml_checkpoint_files(&m->checkpoint, &files);
    return ml_mapped_files_check(files, n_files);
}

/* Everything of opening that is local to this process (no collectives: under MPI the ranks
 * agree on the outcome afterwards). */
static int open_local(ml_model *m, const ml_model_source *src, const ml_model_params *params) {
    if (src->produce) ML_TRY(src->produce(src, &m->checkpoint));
    else ML_TRY(ml_checkpoint_open(src->path, &m->checkpoint));
    m->config = m->checkpoint.config;
    ML_TRY(resolve_params(&m->config, params, &m->params));
    ML_TRY(check_window(m));
    const ml_config *c = &m->config;
    /* under MPI, tp 1 (the default) means one device per rank */
    if (m->mesh->n_ranks > 1 && m->params.tp == 1 && m->params.mesh_rows == 0) m->params.tp = m->mesh->n_ranks;
    ml_shard_plan *plan;
    ML_TRY(ml_shard_plan_build(c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate_size,
                               ml_checkpoint_ffn_block(&m->checkpoint), c->vocab_size, m->params.tp,
                               m->params.mesh_rows, m->params.mesh_cols, &plan));
    m->params.tp = plan->tp;
    int threads = m->params.n_threads;
    if (threads == 0 && m->mesh->ranks_on_node > 1) {
        threads = ml_online_cores() / m->mesh->ranks_on_node;
        if (threads < 1) threads = 1;
    }
    ML_TRY(ml_pool_create(threads, &m->pool));
    m->params.n_threads = ml_pool_threads(m->pool);
    ML_TRY(ml_mesh_attach(m->mesh, plan, m->pool));
    m->kernels = ml_cpu_kernels_best();
    m->devices = calloc((size_t)m->mesh->n_local, sizeof *m->devices);
    if (!m->devices) return ml_set_error(ML_ERR_NOMEM, "devices: out of memory");
    for (int d = 0; d < m->mesh->n_local; d++) m->devices[d].shard = m->mesh->plan->shards[m->mesh->device_begin + d];
    ML_TRY(alloc_model_buffers(m));
    ML_TRY(ml_model_load_weights(m));
    ML_TRY(ml_model_regroup_bf16(m));
    ML_TRY(check_files(m));
    m->act_q8 = m->params.act_mode == ML_ACT_FAST && any_int8_weights(m, ml_q8_supports);
    m->act_q8k = m->params.act_mode == ML_ACT_FAST && any_int8_weights(m, ml_q8k_supports);
    if (m->act_q8k) {
        m->xn_q8k = ml_alloc(ML_CHUNK_TOKENS * ml_q8k_row_bytes(c->hidden_size), "int8 normed super-blocks");
        if (!m->xn_q8k) return ML_ERR_NOMEM;
    }
    if (m->act_q8) {
        m->xn_q8 = ml_alloc(ML_CHUNK_TOKENS * ml_q8_row_bytes(c->hidden_size), "int8 normed activations");
        if (!m->xn_q8) return ML_ERR_NOMEM;
    }
    for (int d = 0; d < m->mesh->n_local; d++) ML_TRY(alloc_device_buffers(m, &m->devices[d]));
    return ml_rope_tables_build(c, m->params.max_seq_len, &m->rope_cos, &m->rope_sin);
}

/* Under MPI, what every rank must have the same of before the first step: the configuration,
 * the shard plan, the weights (sizes and a hash of each file's first MiB, which holds the
 * safetensors header or the GGUF metadata) and the options. */
static int agree_across_ranks(ml_model *m) {
    if (m->mesh->n_ranks <= 1) return ML_OK;
    ml_mesh_fingerprint items[4];
    memset(items, 0, sizeof items);
    const ml_config *c = &m->config;
    items[0].what = "the model configuration";
    items[0].hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, c, sizeof *c);
    snprintf(items[0].detail, sizeof items[0].detail, "vocab %d, hidden %d, %d layers, %d/%d heads, ffn %d",
             c->vocab_size, c->hidden_size, c->n_layers, c->n_heads, c->n_kv_heads, c->intermediate_size);
    const ml_shard_plan *plan = m->mesh->plan;
    items[1].what = "the shard plan";
    items[1].hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, plan,
                                        sizeof *plan + (size_t)plan->tp * sizeof plan->shards[0]);
    snprintf(items[1].detail, sizeof items[1].detail, "tp %d (%dx%d)", plan->tp, plan->mesh_rows, plan->mesh_cols);
    items[2].what = "the weights";
    uint64_t hash = ML_FINGERPRINT_SEED;
    size_t total = 0;
    const ml_mapped_file *files;
    int n_files = ml_checkpoint_files(&m->checkpoint, &files);
    for (int i = 0; i < n_files; i++) {
        const ml_mapped_file *file = &files[i];
        size_t head = file->size < ((size_t)1 << 20) ? file->size : ((size_t)1 << 20);
        hash = ml_fingerprint_hash(hash, &file->size, sizeof file->size);
        if (head) hash = ml_fingerprint_hash(hash, file->data, head);
        total += file->size;
    }
    items[2].hash = hash;
    snprintf(items[2].detail, sizeof items[2].detail, "%d file(s) of %zu bytes, header hash %016llx",
             n_files, total, (unsigned long long)hash);
    const ml_model_params *p = &m->params;
    int options[4] = {p->max_seq_len, p->max_batch, (int)p->act_mode, (int)p->kv_dtype};
    items[3].what = "the model options";
    items[3].hash = ml_fingerprint_hash(ML_FINGERPRINT_SEED, options, sizeof options);
    snprintf(items[3].detail, sizeof items[3].detail, "ctx %d, batch %d, act %s, kv %s", p->max_seq_len,
             p->max_batch, p->act_mode == ML_ACT_FAST ? "fast" : "accurate", p->kv_dtype == ML_KV_BF16 ? "bf16" : "f32");
    return ml_mesh_agree_fingerprint(m->mesh, items, 4);
}

static int open_model(ml_model *m, const ml_model_source *src, const ml_model_params *params) {
    if (!(params->collective_timeout_s >= 0))
        return ml_set_error(ML_ERR_ARG, "collective_timeout_s %g: expected >= 0 seconds (0 = no limit)",
                            params->collective_timeout_s);
    ML_TRY(ml_mesh_open(params->mesh_backend, &m->mesh));
    m->mesh->collective_timeout_s = params->collective_timeout_s;
    /* after the mesh: MPI_Init installs SIGBUS handlers of its own, which ours chains to */
    ML_TRY(ml_mapped_file_install_sigbus_handler());
    int status = open_local(m, src, params);
    ML_TRY(ml_mesh_agree(m->mesh, status));
    return agree_across_ranks(m);
}

void ml_shutdown(void) { ml_mesh_shutdown(); }

int ml_model_open(const char *path, const ml_model_params *params, ml_model **out_model) {
    if (!out_model) return ml_set_error(ML_ERR_ARG, "ml_model_open: out_model is NULL");
    *out_model = NULL;
    if (!path) return ml_set_error(ML_ERR_ARG, "ml_model_open: path is NULL");
    ml_model_source src = {path, NULL, NULL};
    return ml_model_open_source(&src, params, out_model);
}

int ml_model_open_source(const ml_model_source *src, const ml_model_params *params, ml_model **out_model) {
    *out_model = NULL;
    ml_model_params defaults = ml_model_default_params();
    ml_model *m = calloc(1, sizeof *m);
    if (!m) return ml_set_error(ML_ERR_NOMEM, "ml_model_open: out of memory");
    int status = open_model(m, src, params ? params : &defaults);
    if (status != ML_OK) {
        ml_model_close(m);
        return status;
    }
    *out_model = m;
    return ML_OK;
}

void ml_model_close(ml_model *m) {
    if (!m) return;
    if (m->devices && m->mesh) {
        ml_model_free_weights(m);
        for (int d = 0; d < m->mesh->n_local; d++) free_device_buffers(&m->devices[d]);
        free(m->devices);
    }
    ml_mesh_destroy(m->mesh);
    ml_pool_destroy(m->pool);
    ml_checkpoint_close(&m->checkpoint);
    ml_free(m->biases);
    ml_free(m->x);
    ml_free(m->xn);
    ml_free(m->xn_bf16);
    ml_free(m->xn_q8);
    ml_free(m->xn_q8k);
    ml_free(m->reduced);
    ml_free(m->x_interleaved);
    ml_free(m->attn_scratch);
    ml_free(m->slot_length);
    ml_free(m->attn_norm);
    ml_free(m->mlp_norm);
    ml_free(m->final_norm);
    ml_free(m->rope_cos);
    ml_free(m->rope_sin);
    free(m);
}

void ml_model_get_info(const ml_model *m, ml_model_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!m) return; /* a NULL model has no facts: every field stays 0 or NULL */
    const ml_config *c = &m->config;
    info->vocab_size = c->vocab_size;
    info->hidden_size = c->hidden_size;
    info->n_layers = c->n_layers;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->max_seq_len = m->params.max_seq_len;
    info->max_batch = m->params.max_batch;
    info->tp = m->params.tp;
    info->n_threads = m->params.n_threads;
    info->bos_token_id = c->bos_token_id;
    info->n_eos = c->n_eos;
    for (int i = 0; i < c->n_eos && i < ML_MAX_EOS; i++) info->eos_token_ids[i] = c->eos_token_ids[i];
    info->weight_dtype = m->weight_dtype_mixed ? "mixed" : ml_dtype_name(m->weight_dtype);
    info->isa = m->kernels->name;
    info->backend = m->mesh->backend->name;
    info->path = m->checkpoint.path;
    info->rank = m->mesh->rank;
    info->n_ranks = m->mesh->n_ranks;
    info->device_begin = m->mesh->device_begin;
    info->n_local_devices = m->mesh->n_local;
    info->intermediate_size = c->intermediate_size;
    info->tied_embeddings = c->tie_word_embeddings;
    info->matmul_bytes = m->matmul_bytes;
    info->max_position_embeddings = c->max_position_embeddings;
}

int ml_reset_slot(ml_model *m, int slot) {
    if (!m) return ml_set_error(ML_ERR_ARG, "ml_reset_slot: model is NULL");
    if (slot < 0 || slot >= m->params.max_batch)
        return ml_set_error(ML_ERR_ARG, "slot %d: expected 0..%d", slot, m->params.max_batch - 1);
    m->slot_length[slot] = 0;
    return ML_OK;
}

static int validate_batch(const ml_model *m, const ml_batch *b, int *out_total) {
    if (!b || b->n_seq < 1 || b->n_seq > m->params.max_batch)
        return ml_set_error(ML_ERR_ARG, "batch of %d sequences: expected 1..%d (max_batch)", b ? b->n_seq : 0,
                            m->params.max_batch);
    if (!b->slots || !b->start_pos || !b->n_tokens || !b->tokens)
        return ml_set_error(ML_ERR_ARG, "batch: slots, start_pos, n_tokens and tokens must not be NULL");
    long long total = 0;
    for (int s = 0; s < b->n_seq; s++) {
        int slot = b->slots[s];
        if (slot < 0 || slot >= m->params.max_batch)
            return ml_set_error(ML_ERR_ARG, "sequence %d: slot %d outside 0..%d", s, slot, m->params.max_batch - 1);
        for (int other = 0; other < s; other++)
            if (b->slots[other] == slot)
                return ml_set_error(ML_ERR_ARG, "sequences %d and %d both use slot %d", other, s, slot);
        if (b->n_tokens[s] < 1) return ml_set_error(ML_ERR_ARG, "sequence %d: %d tokens; expected >= 1", s, b->n_tokens[s]);
        if (b->start_pos[s] < 0 || b->start_pos[s] > m->slot_length[slot])
            return ml_set_error(ML_ERR_ARG, "sequence %d: start position %d, but slot %d holds %d positions", s,
                                b->start_pos[s], slot, m->slot_length[slot]);
        if ((long long)b->start_pos[s] + b->n_tokens[s] > m->params.max_seq_len)
            return ml_set_error(ML_ERR_ARG, "sequence %d: positions up to %lld exceed max_seq_len %d", s,
                                (long long)b->start_pos[s] + b->n_tokens[s], m->params.max_seq_len);
        total += b->n_tokens[s];
    }
    for (long long t = 0; t < total; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->config.vocab_size)
            return ml_set_error(ML_ERR_ARG, "token %lld of the batch: id %d outside the vocabulary 0..%d", t,
                                (int)b->tokens[t], m->config.vocab_size - 1);
    if (total > (1 << 30)) return ml_set_error(ML_ERR_ARG, "batch of %lld tokens is too large", total);
    *out_total = (int)total;
    return ML_OK;
}

int ml_forward(ml_model *m, const ml_batch *b, float *logits) {
    if (!m || !logits) return ml_set_error(ML_ERR_ARG, "ml_forward: model and logits must not be NULL");
    int total = 0;
    ML_TRY(validate_batch(m, b, &total));
    /* A checkpoint rewritten or truncated under us (see ml_install_sigbus_handler). */
    ML_TRY(check_files(m));
    /* Flatten to (token, slot, position, logit row) and run chunks of ML_CHUNK_TOKENS. */
    int out_rows[ML_CHUNK_TOKENS], slot[ML_CHUNK_TOKENS], pos[ML_CHUNK_TOKENS];
    int s = 0, in_seq = 0, next_row = 0;
    for (int done = 0; done < total;) {
        int n = total - done < ML_CHUNK_TOKENS ? total - done : ML_CHUNK_TOKENS;
        for (int t = 0; t < n; t++) {
            while (in_seq >= b->n_tokens[s]) {
                s++;
                in_seq = 0;
            }
            slot[t] = b->slots[s];
            pos[t] = b->start_pos[s] + in_seq;
            int last = in_seq == b->n_tokens[s] - 1;
            out_rows[t] = (b->all_logits || last) ? next_row++ : -1;
            in_seq++;
        }
        ml_chunk_tokens chunk = {n, b->tokens + done, slot, pos, done};
        int status = ml_forward_chunk(m, &chunk, out_rows, logits);
        if (status != ML_OK) return status;
        done += n;
    }
    ML_TRY(check_files(m));
    for (int i = 0; i < b->n_seq; i++) m->slot_length[b->slots[i]] = b->start_pos[i] + b->n_tokens[i];
    return ML_OK;
}

int ml_model_broadcast(ml_model *m, void *buf, size_t bytes) { return ml_mesh_broadcast(m->mesh, buf, bytes); }

int ml_model_n_ranks(const ml_model *m) { return m->mesh->n_ranks; }

int ml_model_agree_fingerprint(ml_model *m, const ml_mesh_fingerprint *items, int n_items) {
    return ml_mesh_agree_fingerprint(m->mesh, items, n_items);
}

int ml_model_open_tokenizer(const ml_model *m, ml_tokenizer **out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_model_open_tokenizer: out is NULL");
    *out = NULL;
    if (!m) return ml_set_error(ML_ERR_ARG, "ml_model_open_tokenizer: model is NULL");
    return ml_checkpoint_open_tokenizer(&m->checkpoint, out);
}
