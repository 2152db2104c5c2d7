/* The hidden-state callback (include/meshllama.h): the named intermediates come in the
 * documented order with the documented shapes; they add up (layer_out = attn_residual + ffn_out,
 * bit for bit, as the residual adds are); sharded ones are gathered into the global layout,
 * so at tp 2 and tp 4 (KV heads replicated: 3 KV heads) the first layer's attn_norm, q, k, v and
 * attn_out equal tp 1's bit for bit and everything else is within 1e-5 (the all-reduce sums
 * partials in another order); setting a callback does not change a logit; NULL removes it;
 * a NULL model is ignored; the tp 1 recording written as an MLHIDDN1 dump (what `eval
 * --dump-layers` writes, formats/hidden_dump.h) reads back bit for bit. Fixture h9kv3_llama3rope_bf16: hidden 144, 9 heads, 3 KV heads,
 * head_dim 16, intermediate 256, 3 layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/hidden_dump.h"
#include "meshllama.h"
#include "test_util.h"

enum { N_TOK = 11, N_LAYERS = 3, HIDDEN = 144, Q_WIDTH = 144, KV_WIDTH = 48, FFN = 256, VOCAB = 320 };
enum { PER_LAYER = 13, N_ENTRIES = 1 + N_LAYERS * PER_LAYER + 1 };

static const char *const layer_names[PER_LAYER] = {"attn_norm", "q",        "k",        "v",       "attn_out",
                                                    "o_proj",    "attn_residual", "ffn_norm", "gate", "up",
                                                    "ffn_act",   "ffn_out",  "layer_out"};
static const int layer_widths[PER_LAYER] = {HIDDEN, Q_WIDTH, KV_WIDTH, KV_WIDTH, Q_WIDTH, HIDDEN, HIDDEN,
                                            HIDDEN, FFN,     FFN,     FFN,      HIDDEN,  HIDDEN};

static char dir[512];

typedef ml_hidden_entry entry; /* data [N_TOK, width] */

typedef struct {
    int n;
    entry entries[N_ENTRIES + 8];
    int bad_call;
} recording;

static void record(const ml_hidden_state *s, void *user) {
    recording *r = user;
    if (r->n >= N_ENTRIES + 8 || s->token_begin != 0 || s->n_tok != N_TOK || s->width < 1) {
        r->bad_call = 1;
        return;
    }
    entry *e = &r->entries[r->n++];
    snprintf(e->name, sizeof e->name, "%s", s->name);
    e->layer = s->layer;
    e->width = s->width;
    e->data = malloc((size_t)N_TOK * s->width * sizeof(float));
    if (e->data) memcpy(e->data, s->data, (size_t)N_TOK * s->width * sizeof(float));
}

static void recording_free(recording *r) {
    for (int i = 0; i < r->n; i++) free(r->entries[i].data);
    r->n = 0;
}

static ml_model *open_model(int tp) {
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    p.n_threads = 2;
    p.max_seq_len = 32;
    ml_model *m = NULL;
    CHECK(ml_model_open(dir, &p, &m) == ML_OK, "open tp %d: %s", tp, ml_last_error());
    return m;
}

static int run(ml_model *m, const int32_t *prompt, float *logits) {
    int slot = 0, start = 0, n = N_TOK;
    ml_batch b = {1, &slot, &start, &n, prompt, 0};
    ml_reset_slot(m, 0);
    int status = ml_forward(m, &b, logits);
    CHECK(status == ML_OK, "forward: %s", ml_last_error());
    return status;
}

/* The order, names, layers and widths of the documented list. */
static void check_layout(const recording *r, int tp) {
    CHECK(!r->bad_call, "tp %d: a call with a wrong token range or width", tp);
    CHECK(r->n == N_ENTRIES, "tp %d: %d intermediates, expected %d", tp, r->n, N_ENTRIES);
    if (r->n != N_ENTRIES) return;
    CHECK(strcmp(r->entries[0].name, "embed") == 0 && r->entries[0].layer == -1 && r->entries[0].width == HIDDEN,
          "tp %d: first is %s/%d, expected embed/-1", tp, r->entries[0].name, r->entries[0].layer);
    for (int layer = 0; layer < N_LAYERS; layer++)
        for (int i = 0; i < PER_LAYER; i++) {
            const entry *e = &r->entries[1 + layer * PER_LAYER + i];
            CHECK(strcmp(e->name, layer_names[i]) == 0 && e->layer == layer && e->width == layer_widths[i],
                  "tp %d: entry %d is %s/%d width %d, expected %s/%d width %d", tp, 1 + layer * PER_LAYER + i,
                  e->name, e->layer, e->width, layer_names[i], layer, layer_widths[i]);
        }
    const entry *last = &r->entries[N_ENTRIES - 1];
    CHECK(strcmp(last->name, "final_norm") == 0 && last->layer == -1, "tp %d: last is %s/%d", tp, last->name,
          last->layer);
}

static const entry *find(const recording *r, const char *name, int layer) {
    ml_hidden_dump view = {.n_entries = r->n, .entries = (entry *)r->entries};
    return ml_hidden_dump_find(&view, name, layer);
}

/* The recording through the dump writer and reader: every entry identical, in order. */
static void check_dump_roundtrip(const recording *r, const int32_t *prompt) {
    char tmp[512], path[600];
    if (ml_test_make_tmpdir(tmp, sizeof tmp, "hidden") != 0) return;
    snprintf(path, sizeof path, "%s/hidden_prefill%d.bin", tmp, N_TOK);
    CHECK(ml_hidden_dump_write(path, prompt, N_TOK, HIDDEN, r->entries, r->n) == ML_OK, "dump write: %s",
          ml_last_error());
    ml_hidden_dump d;
    CHECK(ml_hidden_dump_load(path, &d) == ML_OK, "dump load: %s", ml_last_error());
    CHECK(d.version == 2 && d.n_tokens == N_TOK && d.hidden_size == HIDDEN && d.n_entries == r->n &&
              memcmp(d.prompt, prompt, N_TOK * sizeof *prompt) == 0,
          "dump header read back as version %d, %d tokens, hidden %d, %d entries", d.version, d.n_tokens,
          d.hidden_size, d.n_entries);
    for (int i = 0; i < d.n_entries && i < r->n; i++) {
        const entry *a = &d.entries[i], *b = &r->entries[i];
        CHECK(strcmp(a->name, b->name) == 0 && a->layer == b->layer && a->width == b->width &&
                  memcmp(a->data, b->data, (size_t)N_TOK * b->width * sizeof(float)) == 0,
              "dump entry %d (%s/%d) read back differently", i, b->name, b->layer);
    }
    ml_hidden_dump_free(&d);
    remove(path);
    rmdir(tmp);
}

/* attn_residual = previous residual + o_proj, layer_out = attn_residual + ffn_out (float adds). */
static void check_residual_sums(const recording *r) {
    for (int layer = 0; layer < N_LAYERS; layer++) {
        const entry *before = layer == 0 ? find(r, "embed", -1) : find(r, "layer_out", layer - 1);
        const entry *o = find(r, "o_proj", layer), *mid = find(r, "attn_residual", layer);
        const entry *ffn = find(r, "ffn_out", layer), *out = find(r, "layer_out", layer);
        if (!before || !o || !mid || !ffn || !out) continue;
        int same = 1;
        for (int i = 0; i < N_TOK * HIDDEN; i++) {
            float a = before->data[i] + o->data[i], b = mid->data[i] + ffn->data[i];
            same &= memcmp(&a, &mid->data[i], sizeof a) == 0 && memcmp(&b, &out->data[i], sizeof b) == 0;
        }
        CHECK(same, "layer %d: the residual entries do not add up", layer);
    }
}

/* tp > 1 against tp 1: gathered shards in the global layout. */
static void check_against_tp1(const recording *r, const recording *one, int tp) {
    if (r->n != N_ENTRIES || one->n != N_ENTRIES) return;
    for (int i = 0; i < N_ENTRIES; i++) {
        const entry *a = &r->entries[i], *b = &one->entries[i];
        size_t n = (size_t)N_TOK * a->width;
        int first_layer_attention = a->layer == 0 && (strcmp(a->name, "attn_norm") == 0 || strcmp(a->name, "q") == 0 ||
                                                      strcmp(a->name, "k") == 0 || strcmp(a->name, "v") == 0 ||
                                                      strcmp(a->name, "attn_out") == 0);
        if (first_layer_attention || strcmp(a->name, "embed") == 0) {
            CHECK(memcmp(a->data, b->data, n * sizeof(float)) == 0, "tp %d: %s/%d differs from tp 1 (error %.3e)", tp,
                  a->name, a->layer, ml_test_norm_error(a->data, b->data, n));
        } else {
            double err = ml_test_norm_error(a->data, b->data, n);
            CHECK(err <= 1e-5, "tp %d: %s/%d error %.3e against tp 1 > 1e-5", tp, a->name, a->layer, err);
        }
    }
}

int main(void) {
    ml_test_fixture_path(dir, sizeof dir, "h9kv3_llama3rope_bf16");
    ml_model_set_hidden_callback(NULL, NULL, NULL); /* harmless */
    ml_model_set_hidden_callback(NULL, record, NULL);
    int32_t prompt[N_TOK];
    for (int i = 0; i < N_TOK; i++) prompt[i] = (int32_t)(5 + 29 * i % (VOCAB - 5));
    float plain[VOCAB], hooked[VOCAB];
    static recording by_tp[3];
    const int tps[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        ml_model *m = open_model(tps[k]);
        if (!m) continue;
        if (run(m, prompt, plain) == ML_OK) {
            ml_model_set_hidden_callback(m, record, &by_tp[k]);
            run(m, prompt, hooked);
            CHECK(memcmp(plain, hooked, sizeof plain) == 0, "tp %d: the callback changed the logits", tps[k]);
            check_layout(&by_tp[k], tps[k]);
            check_residual_sums(&by_tp[k]);
            if (k == 0) check_dump_roundtrip(&by_tp[0], prompt);
            if (k > 0) check_against_tp1(&by_tp[k], &by_tp[0], tps[k]);
            ml_model_set_hidden_callback(m, NULL, NULL);
            int before = by_tp[k].n;
            run(m, prompt, hooked);
            CHECK(by_tp[k].n == before, "tp %d: a removed callback was still called", tps[k]);
        }
        ml_model_close(m);
    }
    for (int k = 0; k < 3; k++) recording_free(&by_tp[k]);
    return ml_test_finish("model_hidden");
}
