/* Named intermediates for the hidden-state callback (include/meshllama.h lists the names): the
 * forward pass hands each activation over by (name, layer) as llama.cpp's eval callback does, so
 * a dump can be compared with Hugging Face's module hooks one operation at a time.
 *
 * Replicated activations (the residual stream, norms, all-reduced sums) are handed over as
 * they are. Sharded ones (q, k, v, attention output, gate, up, SiLU*up) are gathered from the
 * local devices into HF's layout: device d's columns go where its heads or features sit in the
 * full matrix (replicated KV heads, when tp > n_kv_heads, are written by each holder with the
 * same bits). Under MPI a rank holds only its own devices, so these are left out there.
 * Nothing here runs unless a callback is set. */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

void ml_model_set_hidden_callback(ml_model *m, ml_hidden_callback callback, void *user) {
    if (!m) return;
    m->hidden_callback = callback;
    m->hidden_callback_user = user;
}

void ml_emit_intermediate(ml_model *m, const ml_chunk_tokens *chunk, const char *name, int layer, const float *data,
                          int width) {
    if (!m->hidden_callback) return;
    ml_hidden_state state = {name, layer, chunk->token_begin, chunk->n_tok, width, data};
    m->hidden_callback(&state, m->hidden_callback_user);
}

/* Where a device's slice of a sharded activation sits: its buffer [n_tok, count * unit] and
 * its first column in the full [n_tok, total * unit]. */
typedef struct {
    const float *data;
    int begin, count;
} device_slice;

static device_slice slice_of(const ml_device *dev, ml_sharded_activation which) {
    const ml_shard *s = &dev->shard;
    switch (which) {
    case ML_SHARDED_Q: return (device_slice){dev->q, s->q_head_begin, s->q_head_count};
    case ML_SHARDED_K: return (device_slice){dev->k, s->kv_head_begin, s->kv_head_count};
    case ML_SHARDED_V: return (device_slice){dev->v, s->kv_head_begin, s->kv_head_count};
    case ML_SHARDED_ATTN: return (device_slice){dev->attn, s->q_head_begin, s->q_head_count};
    case ML_SHARDED_GATE: return (device_slice){dev->gate, s->ffn_begin, s->ffn_count};
    default: return (device_slice){dev->up, s->ffn_begin, s->ffn_count};
    }
}

void ml_emit_sharded(ml_model *m, const ml_chunk_tokens *chunk, const char *name, int layer,
                     ml_sharded_activation which) {
    if (!m->hidden_callback || m->mesh->n_local != m->params.tp) return;
    const ml_config *c = &m->config;
    int heads = which == ML_SHARDED_Q || which == ML_SHARDED_ATTN;
    int kv = which == ML_SHARDED_K || which == ML_SHARDED_V;
    int unit = heads || kv ? c->head_dim : 1;
    int total = heads ? c->n_heads : kv ? c->n_kv_heads : c->intermediate_size;
    size_t width = (size_t)total * unit;
    float *full = malloc((size_t)chunk->n_tok * width * sizeof *full); /* [n_tok, width] */
    if (!full) return; /* a debugging aid: skip the entry rather than fail the forward */
    for (int d = 0; d < m->mesh->n_local; d++) {
        device_slice slice = slice_of(&m->devices[d], which);
        size_t columns = (size_t)slice.count * unit;
        for (int t = 0; t < chunk->n_tok; t++)
            memcpy(full + (size_t)t * width + (size_t)slice.begin * unit, slice.data + (size_t)t * columns,
                   columns * sizeof(float));
    }
    ml_emit_intermediate(m, chunk, name, layer, full, (int)width);
    free(full);
}

void ml_emit_final_norm(ml_model *m, const ml_chunk_tokens *chunk) {
    if (!m->hidden_callback) return;
    int hidden = m->config.hidden_size;
    /* the forward pass norms only the tokens whose logits are wanted: norm them all here */
    float *normed = malloc((size_t)chunk->n_tok * hidden * sizeof *normed);
    if (!normed) return;
    for (int t = 0; t < chunk->n_tok; t++)
        m->kernels->rmsnorm(normed + (size_t)t * hidden, m->x + (size_t)t * hidden, m->final_norm, hidden,
                            m->config.rms_norm_eps);
    ml_emit_intermediate(m, chunk, "final_norm", -1, normed, hidden);
    free(normed);
}
