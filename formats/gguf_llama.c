/* The llama (and qwen2) architecture of a GGUF mapped onto the engine: ml_config from the
 * llama.* (qwen2.*) and tokenizer.ggml.* keys, and a weight set that looks like a Hugging Face
 * checkpoint (names, shapes, rotate-half Q/K rows, qwen2's q/k/v biases) so that
 * model/weights.c loads it unchanged. docs/GGUF.md. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/weight_set.h"

/* The bounds formats/hf_config.c applies to config.json. */
#define MAX_DIM (1 << 24)
#define MAX_LAYERS 1024

/* ---- config ---- */

/* The architecture's own key prefix: "llama" or "qwen2" (ml_gguf_llama_config accepts only
 * these, before any other key is read). */
static const char *arch_prefix(const ml_gguf *g) {
    const ml_gguf_value *value = ml_gguf_find(g, "general.architecture");
    int qwen2 = value && value->type == ML_GGUF_STRING && value->as.str.length == 5 &&
                memcmp(value->as.str.text, "qwen2", 5) == 0;
    return qwen2 ? "qwen2" : "llama";
}

/* "<arch>.<suffix>", held by value so that K(...) can stand in a call's arguments (the
 * temporary lives until the end of the full expression). */
typedef struct {
    char text[96];
} arch_key_name;

static arch_key_name arch_key(const ml_gguf *g, const char *suffix) {
    arch_key_name key;
    snprintf(key.text, sizeof key.text, "%s.%s", arch_prefix(g), suffix);
    return key;
}
#define K(suffix) (arch_key(g, suffix).text)

static int int_in_range(const ml_gguf *g, const char *key, long long min_value, long long max_value, int *out) {
    int64_t value = 0;
    ML_TRY(ml_gguf_get_int(g, key, &value));
    if (value < min_value || value > max_value) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected an integer in [%lld, %lld], found %lld", g->source,
                            key, min_value, max_value, (long long)value);
    }
    *out = (int)value;
    return ML_OK;
}

static int required_dim(const ml_gguf *g, const char *key, long long max_value, int *out) {
    if (!ml_gguf_find(g, key)) {
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (expected an integer in [1, %lld])",
                            g->source, key, max_value);
    }
    return int_in_range(g, key, 1, max_value, out);
}

static int optional_dim(const ml_gguf *g, const char *key, long long max_value, int *out) {
    return ml_gguf_find(g, key) ? int_in_range(g, key, 1, max_value, out) : ML_OK;
}

/* A finite positive number that stays finite and positive as a float. */
static int positive_float(const ml_gguf *g, const char *key, float *out) {
    double value = 0;
    ML_TRY(ml_gguf_get_float(g, key, &value));
    float as_float = (float)value;
    if (!isfinite(value) || !(value > 0) || !isfinite(as_float) || !(as_float > 0)) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a finite positive number, found %.17g", g->source,
                            key, value);
    }
    *out = as_float;
    return ML_OK;
}

static int token_id(const ml_gguf *g, const char *key, int vocab_size, int *out) {
    return int_in_range(g, key, 0, vocab_size - 1, out);
}

static int parse_vocab_size(const ml_gguf *g, ml_config *c) {
    const ml_gguf_value *tokens = ml_gguf_find(g, "tokenizer.ggml.tokens");
    size_t n_tokens = 0;
    if (tokens) {
        const ml_gguf_string *strings;
        ML_TRY(ml_gguf_get_string_array(g, "tokenizer.ggml.tokens", &strings, &n_tokens));
    }
    if (ml_gguf_find(g, K("vocab_size"))) {
        ML_TRY(int_in_range(g, K("vocab_size"), 1, MAX_DIM, &c->vocab_size));
        if (tokens && n_tokens > (size_t)c->vocab_size) {
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"tokenizer.ggml.tokens\" lists %zu tokens, more than "
                                "%s (%d)", g->source, n_tokens, K("vocab_size"), c->vocab_size);
        }
        return ML_OK;
    }
    if (!tokens) {
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (and no "
                            "\"tokenizer.ggml.tokens\" list to count)", g->source, K("vocab_size"));
    }
    if (n_tokens < 1 || n_tokens > MAX_DIM) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"tokenizer.ggml.tokens\": expected 1 to %d tokens, found %zu",
                            g->source, MAX_DIM, n_tokens);
    }
    c->vocab_size = (int)n_tokens;
    return ML_OK;
}

static int parse_dimensions(const ml_gguf *g, ml_config *c) {
    ML_TRY(required_dim(g, K("embedding_length"), MAX_DIM, &c->hidden_size));
    ML_TRY(required_dim(g, K("feed_forward_length"), MAX_DIM, &c->intermediate_size));
    ML_TRY(required_dim(g, K("block_count"), MAX_LAYERS, &c->n_layers));
    ML_TRY(required_dim(g, K("attention.head_count"), MAX_DIM, &c->n_heads));
    ML_TRY(required_dim(g, K("context_length"), MAX_DIM, &c->max_position_embeddings));
    c->n_kv_heads = c->n_heads;
    ML_TRY(optional_dim(g, K("attention.head_count_kv"), MAX_DIM, &c->n_kv_heads));
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0) {
        return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a divisor of %s (%d), found %d", g->source,
                            K("attention.head_count_kv"), K("attention.head_count"), c->n_heads, c->n_kv_heads);
    }
    /* llama.cpp: head size = attention.key_length, default embedding_length / head_count. */
    c->head_dim = 0;
    ML_TRY(optional_dim(g, K("attention.key_length"), MAX_DIM, &c->head_dim));
    if (c->head_dim == 0) {
        if (c->hidden_size % c->n_heads != 0) {
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected a multiple of %s (%d) since %s is absent, found %d",
                                g->source, K("embedding_length"), K("attention.head_count"), c->n_heads,
                                K("attention.key_length"), c->hidden_size);
        }
        c->head_dim = c->hidden_size / c->n_heads;
    }
    int value_length = c->head_dim, rope_dims = c->head_dim;
    ML_TRY(optional_dim(g, K("attention.value_length"), MAX_DIM, &value_length));
    ML_TRY(optional_dim(g, K("rope.dimension_count"), MAX_DIM, &rope_dims));
    if (value_length != c->head_dim) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\" is %d but the key length is %d: different K and V "
                            "head sizes are not supported", g->source, K("attention.value_length"), value_length, c->head_dim);
    }
    if (rope_dims != c->head_dim) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\" is %d but the head size is %d: partial rotary "
                            "embeddings are not supported", g->source, K("rope.dimension_count"), rope_dims, c->head_dim);
    }
    if (c->head_dim % 2 != 0) {
        return ml_set_error(ML_ERR_CONFIG, "%s: head size %d is odd; RoPE rotates pairs", g->source, c->head_dim);
    }
    if ((long long)c->n_heads * c->head_dim > MAX_DIM) {
        return ml_set_error(ML_ERR_CONFIG, "%s: head_count * head size = %d * %d exceeds %d", g->source, c->n_heads,
                            c->head_dim, MAX_DIM);
    }
    return parse_vocab_size(g, c);
}

static int read_rope_freqs(const ml_gguf *g, ml_config *c) {
    const ml_gguf_tensor *t = ml_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return ML_OK;
    if (t->n_dims != 1 || t->ne[0] != c->head_dim / 2 || t->type != ML_GGML_F32) {
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"rope_freqs.weight\" is %s [%lld] (n_dims %d); expected F32 "
                            "[%d] (head size / 2)", g->source, ml_ggml_type_name(t->type), (long long)t->ne[0],
                            t->n_dims, c->head_dim / 2);
    }
    float factors[4096];
    if (c->head_dim / 2 > 4096) return ml_set_error(ML_ERR_UNSUPPORTED, "%s: head size %d is too large", g->source, c->head_dim);
    ML_TRY(ml_gguf_tensor_to_f32(g, t, factors));
    if (c->rope_type == ML_ROPE_LLAMA3) {
        /* Explicit keys win; the tensor must agree with them. */
        float expected[4096];
        ml_gguf_llama3_rope_factors(c, expected);
        for (int i = 0; i < c->head_dim / 2; i++) {
            if (!(fabs((double)expected[i] - factors[i]) <= 1e-5 * fabs((double)factors[i]))) {
                return ml_set_error(ML_ERR_CONFIG, "%s: tensor \"rope_freqs.weight\"[%d] = %.9g disagrees with the "
                                    "%s.rope.scaling.* keys, which imply %.9g", g->source, i, (double)factors[i],
                                    arch_prefix(g), (double)expected[i]);
            }
        }
        return ML_OK;
    }
    return ml_gguf_llama3_rope_from_factors(factors, c->head_dim / 2, g->source, c);
}

/* llama.rope.scaling.type: absent or "none" (plain, unless rope_freqs.weight says llama3),
 * "linear" with factor 1 (a no-op), or "llama3" with factor, low_freq_factor, high_freq_factor and
 * original_context_length (our extension; llama.cpp's converter writes rope_freqs.weight instead). */
static int parse_rope(const ml_gguf *g, ml_config *c) {
    c->rope_theta = 10000.0f;
    if (ml_gguf_find(g, K("rope.freq_base"))) ML_TRY(positive_float(g, K("rope.freq_base"), &c->rope_theta));
    c->rope_type = ML_ROPE_DEFAULT;
    c->rope_factor = 1.0f;
    c->rope_low_freq_factor = 0.0f;
    c->rope_high_freq_factor = 0.0f;
    c->rope_original_max_position = c->max_position_embeddings;
    const char *type = "none";
    if (ml_gguf_find(g, K("rope.scaling.type"))) ML_TRY(ml_gguf_get_string(g, K("rope.scaling.type"), &type, NULL));
    if (strcmp(type, "linear") == 0) {
        float factor = 1.0f;
        if (ml_gguf_find(g, K("rope.scaling.factor"))) ML_TRY(positive_float(g, K("rope.scaling.factor"), &factor));
        if (factor != 1.0f) {
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\": linear RoPE scaling (factor %g) is not supported",
                                g->source, K("rope.scaling.type"), (double)factor);
        }
    } else if (strcmp(type, "llama3") == 0) {
        ML_TRY(positive_float(g, K("rope.scaling.factor"), &c->rope_factor));
        ML_TRY(positive_float(g, K("rope.scaling.low_freq_factor"), &c->rope_low_freq_factor));
        ML_TRY(positive_float(g, K("rope.scaling.high_freq_factor"), &c->rope_high_freq_factor));
        ML_TRY(required_dim(g, K("rope.scaling.original_context_length"), MAX_DIM, &c->rope_original_max_position));
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor)) {
            return ml_set_error(ML_ERR_CONFIG, "%s: key \"%s\": expected more than low_freq_factor (%g), found %g",
                                g->source, K("rope.scaling.high_freq_factor"), (double)c->rope_low_freq_factor,
                                (double)c->rope_high_freq_factor);
        }
        c->rope_type = ML_ROPE_LLAMA3;
    } else if (strcmp(type, "none") != 0) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\": RoPE scaling \"%.40s\" is not supported (expected "
                            "none or llama3)", g->source, K("rope.scaling.type"), type);
    }
    return read_rope_freqs(g, c);
}

/* BOS, and EOS from eos_token_id plus eot/eom when present (Llama 3 instruct stops at all three). */
static int parse_special_tokens(const ml_gguf *g, ml_config *c) {
    c->bos_token_id = -1;
    if (ml_gguf_find(g, "tokenizer.ggml.bos_token_id"))
        ML_TRY(token_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size, &c->bos_token_id));
    static const char *const eos_keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                           "tokenizer.ggml.eom_token_id"};
    c->n_eos = 0;
    for (size_t k = 0; k < sizeof eos_keys / sizeof eos_keys[0]; k++) {
        if (!ml_gguf_find(g, eos_keys[k])) continue;
        int id = -1;
        ML_TRY(token_id(g, eos_keys[k], c->vocab_size, &id));
        int seen = 0;
        for (int i = 0; i < c->n_eos; i++) seen |= c->eos_token_ids[i] == id;
        if (!seen) c->eos_token_ids[c->n_eos++] = id;
    }
    return ML_OK;
}

int ml_gguf_llama_config(const ml_gguf *g, ml_config *out) {
    if (!g || !out) return ml_set_error(ML_ERR_ARG, "ml_gguf_llama_config: invalid arguments");
    memset(out, 0, sizeof *out);
    const char *arch;
    if (!ml_gguf_find(g, "general.architecture"))
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"general.architecture\"", g->source);
    ML_TRY(ml_gguf_get_string(g, "general.architecture", &arch, NULL));
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"general.architecture\": expected \"llama\" or \"qwen2\", "
                            "found \"%.40s\" (unsupported architecture)", g->source, arch);
    }
    if (ml_gguf_find(g, K("expert_count"))) {
        int64_t experts = 0;
        ML_TRY(ml_gguf_get_int(g, K("expert_count"), &experts));
        if (experts > 0) {
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: key \"%s\" is %lld: mixture-of-experts models are not "
                                "supported", g->source, K("expert_count"), (long long)experts);
        }
    }
    ml_config c;
    memset(&c, 0, sizeof c);
    /* qwen2: llama.cpp's Qwen2 converter writes the same keys under qwen2.*, the q/k/v biases as
     * blk.N.attn_{q,k,v}.bias, and Q/K rows unpermuted (its RoPE is rotate-half, as HF's) */
    if (strcmp(arch, "qwen2") == 0) {
        c.arch = ML_ARCH_QWEN2;
        c.qkv_bias = 1;
    } else {
        /* llama: no key says so; layer 0's tensors do, as llama.cpp loads them (optional
         * blk.N.attn_{q,k,v,output}.bias for attention_bias, blk.N.ffn_{gate,up,down}.bias for
         * mlp_bias); every layer must then have them */
        c.qkv_bias = ml_gguf_find_tensor(g, "blk.0.attn_q.bias") || ml_gguf_find_tensor(g, "blk.0.attn_k.bias") ||
                     ml_gguf_find_tensor(g, "blk.0.attn_v.bias");
        c.o_bias = ml_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
        c.mlp_bias = ml_gguf_find_tensor(g, "blk.0.ffn_gate.bias") || ml_gguf_find_tensor(g, "blk.0.ffn_up.bias") ||
                     ml_gguf_find_tensor(g, "blk.0.ffn_down.bias");
    }
    ML_TRY(parse_dimensions(g, &c));
    if (!ml_gguf_find(g, K("attention.layer_norm_rms_epsilon"))) {
        return ml_set_error(ML_ERR_CONFIG, "%s: missing required key \"%s\" (expected a positive number)",
                            g->source, K("attention.layer_norm_rms_epsilon"));
    }
    ML_TRY(positive_float(g, K("attention.layer_norm_rms_epsilon"), &c.rms_norm_eps));
    ML_TRY(parse_rope(g, &c));
    c.tie_word_embeddings = ml_gguf_find_tensor(g, "output.weight") == NULL;
    ML_TRY(parse_special_tokens(g, &c));
    *out = c;
    return ML_OK;
}

/* ---- weights ---- */

typedef enum { PLAIN, PERMUTE_Q, PERMUTE_K } row_order;

typedef struct {
    const ml_gguf *g;
    const ml_config *c;
    ml_weight_set *out;
    const uint8_t *base;    /* the image the zero-copy views point into */
    int owned_capacity;
    ml_gguf_quant_mode mode;
    int borrow;             /* views point into g's image (ml_gguf_llama_weights_borrowed) */
    int defer;              /* changed matrices are made on demand (formats/weight_set.h) */
} builder;

/* The engine dtype a ggml type can be held as, if any. */
static int dtype_of(uint32_t type, ml_dtype *out) { return ml_ggml_type_dtype(type, out); }

/* Finds gguf_name and checks it against the HF shape [rows, cols] (cols == 0: 1-D [rows]). */
static int find_checked(const builder *b, const char *gguf_name, const char *hf_name, int64_t rows, int64_t cols,
                        const ml_gguf_tensor **out) {
    const char *source = b->g->source;
    const ml_gguf_tensor *t = ml_gguf_find_tensor(b->g, gguf_name);
    if (!t) return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" (%s) is missing", source, gguf_name, hf_name);
    int ok = cols > 0 ? (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows) : (t->n_dims == 1 && t->ne[0] == rows);
    if (!ok) {
        char found[96];
        if (t->n_dims == 1)
            snprintf(found, sizeof found, "ne [%lld] (HF shape [%lld])", (long long)t->ne[0], (long long)t->ne[0]);
        else
            snprintf(found, sizeof found, "ne [%lld, %lld%s] (HF shape [%lld, %lld%s])", (long long)t->ne[0],
                     (long long)t->ne[1], t->n_dims > 2 ? ", ..." : "", (long long)t->ne[1], (long long)t->ne[0],
                     t->n_dims > 2 ? ", ..." : "");
        if (cols > 0)
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" (%s) has %s; the config implies HF shape [%lld, %lld]",
                                source, gguf_name, hf_name, found, (long long)rows, (long long)cols);
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" (%s) has %s; the config implies HF shape [%lld]", source,
                            gguf_name, hf_name, found, (long long)rows);
    }
    const ml_ggml_type_traits *traits = ml_ggml_traits(t->type);
    if (!traits || !traits->can_dequantize) {
        char type[48];
        if (traits)
            snprintf(type, sizeof type, "%s", traits->name);
        else
            snprintf(type, sizeof type, "id %u (unknown)", t->type);
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" (%s) has ggml type %s, which is not supported "
                            "(supported: " ML_GGML_SUPPORTED_TYPES ")", source, gguf_name, hf_name, type);
    }
    *out = t;
    return ML_OK;
}

static int own(builder *b, void *buffer) {
    ml_weight_set *st = b->out;
    if (st->n_owned == b->owned_capacity) {
        int capacity = b->owned_capacity ? 2 * b->owned_capacity : 64;
        void **grown = realloc(st->owned, (size_t)capacity * sizeof *grown);
        if (!grown) {
            ml_free(buffer);
            return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", b->g->source);
        }
        st->owned = grown;
        b->owned_capacity = capacity;
    }
    st->owned[st->n_owned++] = buffer;
    return ML_OK;
}

/* GGUF row of HF row r in a Q or K matrix: llama.cpp's converter stored HF row
 * h*hd + j*hd/2 + i at GGUF row h*hd + 2*i + j (convert_hf_to_gguf.py LlamaModel.permute). Each
 * head's rows stay within the head, so any run of whole heads can be made alone. */
static int64_t gguf_row(int64_t r, int head_dim) {
    int64_t head = r / head_dim, within = r % head_dim, half = head_dim / 2;
    return head * head_dim + 2 * (within % half) + within / half;
}

/* A view's rows [row_begin, row_end) in HF order, from the GGUF bytes it was made a view of
 * (ml_make_rows_fn): whole rows of the stored type when the view keeps it, else dequantised to
 * float32; rows of a Q/K matrix (source_head_dim > 0) taken from their interleaved places. */
static int make_gguf_rows(const ml_tensor_view *view, int64_t row_begin, int64_t row_end, void *dst) {
    const ml_ggml_type_traits *traits = ml_ggml_traits(view->source_type);
    int64_t cols = view->shape[1];
    size_t src_row_bytes = (size_t)cols / traits->block_size * traits->type_size;
    size_t dst_row_bytes = ml_dtype_row_bytes(view->dtype, (size_t)cols);
    ml_dtype stored;
    int copy = ml_ggml_type_dtype(view->source_type, &stored) && stored == view->dtype;
    for (int64_t r = row_begin; r < row_end; r++) {
        int64_t src_row = view->source_head_dim > 0 ? gguf_row(r, view->source_head_dim) : r;
        const uint8_t *src = (const uint8_t *)view->source + (size_t)src_row * src_row_bytes;
        uint8_t *out = (uint8_t *)dst + (size_t)(r - row_begin) * dst_row_bytes;
        if (copy) {
            memcpy(out, src, dst_row_bytes);
        } else {
            int status = ml_gguf_dequantize(view->source_type, src, (size_t)cols, (float *)(void *)out);
            if (status != ML_OK) return status;
        }
    }
    return ML_OK;
}

/* Whether t keeps its file type: F32/F16/BF16 unless to_f32; block-quantised matrices (2-D)
 * unless the mode dequantises; quantised 1-D tensors (norms) never. */
static int keeps_type(const builder *b, const ml_gguf_tensor *t, int to_f32, ml_dtype *kept) {
    if (to_f32 || !dtype_of(t->type, kept)) return 0;
    if (!ml_dtype_is_quantized(*kept)) return 1;
    return b->mode == ML_GGUF_KEEP_QUANTIZED && t->n_dims == 2;
}

/* Adds the view hf_name for t: zero-copy when the bytes can be used as they are, else rows
 * un-permuted, whole rows of blocks for a quantised type, and converted to float32 when the type
 * is not kept: made on demand for a matrix of a deferring weight set (the checkpoint's), into an
 * owned buffer otherwise. Quantised blocks need no alignment (kernels read their f16 scales by
 * memcpy), so they are zero-copy wherever the rows are in order. */
static int add_view(builder *b, const char *hf_name, const ml_gguf_tensor *t, row_order order, int to_f32) {
    ml_weight_set *st = b->out;
    ml_tensor_view *view = &st->tensors[st->n_tensors];
    memset(view, 0, sizeof *view);
    view->name = strdup(hf_name);
    if (!view->name) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", b->g->source);
    st->n_tensors++;
    view->file_index = 0;
    view->n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) view->shape[d] = t->ne[t->n_dims - 1 - d];
    int64_t cols = t->ne[0], rows = (int64_t)(t->n_elements / (cols ? (size_t)cols : 1));
    if (t->n_dims == 1 && order != PLAIN) {
        /* a q/k bias: the converter permuted its elements as the matrix's rows, so each element
         * is a row of one (a whole block only for a plain float type) */
        ml_dtype stored;
        if (!dtype_of(t->type, &stored) || ml_dtype_is_quantized(stored))
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\" (%s) has ggml type %s; a q/k bias is un-permuted "
                                "element by element and must be F32, F16 or BF16", b->g->source, t->name, hf_name,
                                ml_ggml_type_name(t->type));
        rows = cols;
        cols = 1;
    }
    int head_dim = b->c->head_dim;
    ml_dtype kept = ML_DTYPE_F32;
    int keep = keeps_type(b, t, to_f32, &kept);
    view->dtype = keep ? kept : ML_DTYPE_F32;
    size_t dst_row_bytes = ml_dtype_row_bytes(view->dtype, (size_t)cols);
    if (ml_mul_size((size_t)rows, dst_row_bytes, &view->n_bytes) != 0)
        return ml_set_error(ML_ERR_NOMEM, "%s: tensor \"%s\" is too large", b->g->source, t->name);
    if (t->n_elements == 0) return ML_OK;
    const uint8_t *mapped = b->base + (t->data - b->g->image);
    int aligned = ml_dtype_is_quantized(view->dtype) || (uintptr_t)mapped % ml_dtype_size(view->dtype) == 0;
    if (keep && order == PLAIN && aligned) {
        view->data = mapped;
        return ML_OK;
    }
    view->source = mapped;
    view->source_bytes = t->n_bytes;
    view->source_type = t->type;
    view->source_head_dim = order == PLAIN ? 0 : head_dim;
    if (b->defer && t->n_dims == 2) {
        view->make_rows = make_gguf_rows;
        return ML_OK;
    }
    /* a 1-D tensor is one row of cols elements */
    ml_tensor_view whole = *view;
    whole.n_dims = 2;
    whole.shape[0] = rows;
    whole.shape[1] = cols;
    uint8_t *buffer = ml_alloc(view->n_bytes, hf_name);
    if (!buffer) return ML_ERR_NOMEM;
    ML_TRY(own(b, buffer));
    view->data = buffer;
    int status = make_gguf_rows(&whole, 0, rows, buffer);
    if (status != ML_OK) return ml_wrap_error(status, "%s: tensor \"%s\"", b->g->source, t->name);
    return ML_OK;
}

typedef struct {
    const char *gguf;
    const char *hf;
} name_pair;

static const name_pair matmul_names[7] = {
    {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"}};
static const name_pair norm_names[2] = {{"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"}};

static void matmul_shape(const ml_config *c, int which, int64_t *rows, int64_t *cols) {
    int64_t hidden = c->hidden_size, q_dim = (int64_t)c->n_heads * c->head_dim;
    int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim, ffn = c->intermediate_size;
    static const int out_kind[7] = {0, 1, 1, 2, 3, 3, 2}; /* q, kv, kv, hidden, ffn, ffn, hidden */
    static const int in_kind[7] = {2, 2, 2, 0, 2, 2, 3};
    const int64_t dims[4] = {q_dim, kv_dim, hidden, ffn};
    *rows = dims[out_kind[which]];
    *cols = dims[in_kind[which]];
}

static int layer_names(int layer, const name_pair *pair, char *gguf, char *hf, size_t size) {
    snprintf(gguf, size, "blk.%d.%s.weight", layer, pair->gguf);
    snprintf(hf, size, "model.layers.%d.%s.weight", layer, pair->hf);
    return ML_OK;
}

/* Projection w (q, k, v, o, gate, up, down) of a layer, checked against its shape; hf gets its
 * Hugging Face name. */
static int find_matmul(const builder *b, int layer, int w, char *hf, size_t hf_size, const ml_gguf_tensor **out) {
    int64_t rows, cols;
    char gguf[96];
    matmul_shape(b->c, w, &rows, &cols);
    layer_names(layer, &matmul_names[w], gguf, hf, hf_size < sizeof gguf ? hf_size : sizeof gguf);
    return find_checked(b, gguf, hf, rows, cols, out);
}

/* ML_GGUF_KEEP_QUANTIZED: every projection keeps its own type (model/weights.c takes a dtype per
 * matrix). ML_GGUF_DEQUANTIZE, the earlier rule: projections keep their file dtype only when
 * every one is the same F32/F16/BF16 type; otherwise all become float32. */
static int choose_matmul_f32(const builder *b, int *to_f32) {
    const ml_config *c = b->c;
    uint32_t first = UINT32_MAX;
    int mixed = 0;
    char hf[96];
    for (int layer = 0; layer < c->n_layers; layer++) {
        for (int w = 0; w < 7; w++) {
            const ml_gguf_tensor *t;
            ML_TRY(find_matmul(b, layer, w, hf, sizeof hf, &t));
            if (first == UINT32_MAX) first = t->type;
            mixed |= t->type != first;
        }
    }
    ml_dtype dtype;
    if (b->mode == ML_GGUF_KEEP_QUANTIZED)
        *to_f32 = 0;
    else
        *to_f32 = mixed || !dtype_of(first, &dtype) || ml_dtype_is_quantized(dtype);
    return ML_OK;
}

/* Which config flag a layer's bias tensor belongs to (NULL: a bias the engine has no place for). */
static const int *bias_flag(const ml_config *c, const char *name) {
    static const char *const qkv[] = {".attn_q.bias", ".attn_k.bias", ".attn_v.bias"};
    static const char *const mlp[] = {".ffn_gate.bias", ".ffn_up.bias", ".ffn_down.bias"};
    size_t length = strlen(name);
    for (int i = 0; i < 3; i++) {
        if (length > strlen(qkv[i]) && strcmp(name + length - strlen(qkv[i]), qkv[i]) == 0) return &c->qkv_bias;
        if (length > strlen(mlp[i]) && strcmp(name + length - strlen(mlp[i]), mlp[i]) == 0) return &c->mlp_bias;
    }
    if (length > 17 && strcmp(name + length - 17, ".attn_output.bias") == 0) return &c->o_bias;
    return NULL;
}

/* Refuses what the engine would silently ignore: bias tensors it has no place for, or that layer
 * 0 lacks (the biases a file has are read from layer 0), and layers beyond block_count. */
static int check_extra_tensors(const builder *b) {
    const ml_gguf *g = b->g;
    for (size_t i = 0; i < g->n_tensors; i++) {
        const char *name = g->tensors[i].name;
        if (strncmp(name, "blk.", 4) != 0) continue;
        char *end;
        long layer = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && (layer < 0 || layer >= b->c->n_layers)) {
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" belongs to layer %ld, but the config has %d layers",
                                g->source, name, layer, b->c->n_layers);
        }
        size_t length = strlen(name);
        if (length <= 5 || strcmp(name + length - 5, ".bias") != 0) continue;
        const int *flag = bias_flag(b->c, name);
        if (!flag || (b->c->arch == ML_ARCH_QWEN2 && flag != &b->c->qkv_bias)) {
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"%s\": this bias is not supported in %s GGUF files "
                                "(supported: %s)", g->source, name, arch_prefix(g),
                                b->c->arch == ML_ARCH_QWEN2 ? "attn_q/attn_k/attn_v.bias"
                                                            : "attn_q/attn_k/attn_v/attn_output.bias, ffn_gate/ffn_up/ffn_down.bias");
        }
        if (!*flag) {
            return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"%s\" is a bias that layer 0 does not have (the biases "
                                "of a file are those of blk.0; every layer must have the same); it would be ignored",
                                g->source, name);
        }
    }
    return ML_OK;
}

/* files[0]: this weight set's own mapping of the file (compared with g's so that a file replaced
 * in between is noticed), or a path-only entry when the views borrow g's image (g parsed from
 * the caller's memory, or a borrowing weight set). */
static int attach_file(builder *b) {
    const ml_gguf *g = b->g;
    ml_weight_set *st = b->out;
    st->files = calloc(1, sizeof *st->files);
    if (!st->files) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", g->source);
    if (!g->file.data || b->borrow) {
        st->files[0].path = strdup(g->source);
        if (!st->files[0].path) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", g->source);
        st->n_files = 1;
        b->base = g->image;
        return ML_OK;
    }
    ML_TRY(ml_mapped_file_open(g->file.path, &st->files[0]));
    st->n_files = 1;
    const ml_mapped_file *mine = &st->files[0];
    if (mine->size != g->image_size || memcmp(mine->data, g->image, g->data_offset) != 0)
        return ml_set_error(ML_ERR_IO, "%s: the file changed while it was being loaded", g->source);
    b->base = mine->data;
    return ML_OK;
}

static int build_weights(builder *b) {
    const ml_config *c = b->c;
    int64_t hidden = c->hidden_size;
    ML_TRY(check_extra_tensors(b));
    int matmul_f32;
    ML_TRY(choose_matmul_f32(b, &matmul_f32));
    const ml_gguf_tensor *embed, *norm, *output = ml_gguf_find_tensor(b->g, "output.weight");
    ML_TRY(find_checked(b, "token_embd.weight", "model.embed_tokens.weight", c->vocab_size, hidden, &embed));
    ML_TRY(find_checked(b, "output_norm.weight", "model.norm.weight", hidden, 0, &norm));
    if (output || !c->tie_word_embeddings)
        ML_TRY(find_checked(b, "output.weight", "lm_head.weight", c->vocab_size, hidden, &output));
    int biases_per_layer = (c->qkv_bias ? 3 : 0) + (c->o_bias ? 1 : 0) + (c->mlp_bias ? 3 : 0);
    int capacity = 2 + (output ? 1 : 0) + (9 + biases_per_layer) * c->n_layers;
    b->out->tensors = calloc((size_t)capacity, sizeof *b->out->tensors);
    if (!b->out->tensors) return ml_set_error(ML_ERR_NOMEM, "%s: out of memory", b->g->source);
    ML_TRY(attach_file(b));
    ML_TRY(add_view(b, "model.embed_tokens.weight", embed, PLAIN, 0));
    ML_TRY(add_view(b, "model.norm.weight", norm, PLAIN, 0));
    if (output) ML_TRY(add_view(b, "lm_head.weight", output, PLAIN, 0));
    char gguf[96], hf[96];
    for (int layer = 0; layer < c->n_layers; layer++) {
        for (int w = 0; w < 7; w++) {
            const ml_gguf_tensor *t;
            ML_TRY(find_matmul(b, layer, w, hf, sizeof hf, &t));
            row_order order = c->arch == ML_ARCH_QWEN2 ? PLAIN : w == 0 ? PERMUTE_Q : w == 1 ? PERMUTE_K : PLAIN;
            ML_TRY(add_view(b, hf, t, order, matmul_f32));
        }
        for (int n = 0; n < 2; n++) {
            const ml_gguf_tensor *t;
            layer_names(layer, &norm_names[n], gguf, hf, sizeof gguf);
            ML_TRY(find_checked(b, gguf, hf, hidden, 0, &t));
            ML_TRY(add_view(b, hf, t, PLAIN, 0));
        }
        for (int w = 0; w < 7; w++) { /* the biases [rows] the config has (qwen2: q/k/v, rows in HF order) */
            int has = w < 3 ? c->qkv_bias : w == 3 ? c->o_bias : c->mlp_bias;
            if (!has) continue;
            const ml_gguf_tensor *t;
            int64_t rows, cols;
            matmul_shape(c, w, &rows, &cols);
            snprintf(gguf, sizeof gguf, "blk.%d.%s.bias", layer, matmul_names[w].gguf);
            snprintf(hf, sizeof hf, "model.layers.%d.%s.bias", layer, matmul_names[w].hf);
            ML_TRY(find_checked(b, gguf, hf, rows, 0, &t));
            /* llama: q/k biases permuted as their matrices' rows (convert_hf_to_gguf.py LlamaModel) */
            row_order order = c->arch == ML_ARCH_QWEN2 ? PLAIN : w == 0 ? PERMUTE_Q : w == 1 ? PERMUTE_K : PLAIN;
            ML_TRY(add_view(b, hf, t, order, 0));
        }
    }
    ml_weight_set_sort(b->out);
    return ML_OK;
}

static int llama_weights(const ml_gguf *g, const ml_config *c, ml_gguf_quant_mode mode, int borrow,
                         ml_weight_set *out) {
    if (!out) return ml_set_error(ML_ERR_ARG, "ml_gguf_llama_weights: out is NULL");
    memset(out, 0, sizeof *out);
    if (!g || !c) return ml_set_error(ML_ERR_ARG, "ml_gguf_llama_weights: invalid arguments");
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->hidden_size <= 0 || c->n_layers <= 0 || c->n_layers > MAX_LAYERS ||
        c->vocab_size <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->intermediate_size <= 0)
        return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_llama_weights: the config is not valid", g->source);
    if (mode != ML_GGUF_KEEP_QUANTIZED && mode != ML_GGUF_DEQUANTIZE)
        return ml_set_error(ML_ERR_ARG, "%s: ml_gguf_llama_weights: mode %d is not valid", g->source, (int)mode);
    builder b = {g, c, out, NULL, 0, mode, borrow, borrow};
    int status = build_weights(&b);
    if (status != ML_OK) ml_weight_set_close(out);
    return status;
}

int ml_gguf_llama_weights(const ml_gguf *g, const ml_config *c, ml_weight_set *out) {
    return llama_weights(g, c, ML_GGUF_KEEP_QUANTIZED, 0, out);
}

int ml_gguf_llama_weights_mode(const ml_gguf *g, const ml_config *c, ml_gguf_quant_mode mode, ml_weight_set *out) {
    return llama_weights(g, c, mode, 0, out);
}

int ml_gguf_llama_weights_borrowed(const ml_gguf *g, const ml_config *c, ml_gguf_quant_mode mode,
                                   ml_weight_set *out) {
    return llama_weights(g, c, mode, 1, out);
}
