/* RoPE tables, computed in float32 the way transformers does (LlamaRotaryEmbedding with
 * rope_init_fn "default" or "llama3"), so angles round like HF's at every position. */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/model_internal.h"

/* inv_freq [head_dim / 2] in float32, as HF. */
static void rope_inv_freq(const ml_config *config, float *inv_freq) {
    int dim = config->head_dim;
    float base = config->rope_theta;
    for (int i = 0; i < dim / 2; i++) {
        /* inv_freq = 1 / base ** (arange(0, dim, 2).float() / dim) */
        float exponent = (float)(2 * i) / (float)dim;
        inv_freq[i] = 1.0f / powf(base, exponent);
    }
    if (config->rope_type != ML_ROPE_LLAMA3) return;
    /* transformers.modeling_rope_utils._compute_llama3_parameters */
    const float pi = 3.14159265358979323846f;
    float factor = config->rope_factor;
    float low_freq_factor = config->rope_low_freq_factor;
    float high_freq_factor = config->rope_high_freq_factor;
    float old_context_len = (float)config->rope_original_max_position;
    float low_freq_wavelen = old_context_len / low_freq_factor;
    float high_freq_wavelen = old_context_len / high_freq_factor;
    for (int i = 0; i < dim / 2; i++) {
        float wavelen = 2.0f * pi / inv_freq[i];
        float scaled = wavelen > low_freq_wavelen ? inv_freq[i] / factor : inv_freq[i];
        int is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        if (is_medium) {
            float smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv_freq[i] = scaled;
    }
}

int ml_rope_tables_build(const ml_config *config, int max_seq_len, float **out_cos, float **out_sin) {
    int half = config->head_dim / 2;
    size_t n = (size_t)max_seq_len * (size_t)half;
    float *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    float *cos_table = ml_alloc(n * sizeof(float), "RoPE cos table");
    float *sin_table = ml_alloc(n * sizeof(float), "RoPE sin table");
    if (!inv_freq || !cos_table || !sin_table) {
        free(inv_freq);
        ml_free(cos_table);
        ml_free(sin_table);
        return ml_set_error(ML_ERR_NOMEM, "RoPE tables for %d positions: out of memory", max_seq_len);
    }
    rope_inv_freq(config, inv_freq);
    for (int pos = 0; pos < max_seq_len; pos++) {
        for (int i = 0; i < half; i++) {
            /* freqs = inv_freq @ position_ids in float32: one rounding of the product */
            float angle = inv_freq[i] * (float)pos;
            cos_table[(size_t)pos * half + i] = cosf(angle);
            sin_table[(size_t)pos * half + i] = sinf(angle);
        }
    }
    free(inv_freq);
    *out_cos = cos_table;
    *out_sin = sin_table;
    return ML_OK;
}
