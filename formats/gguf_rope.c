/* Llama 3 RoPE scaling and llama.cpp's rope_freqs.weight.
 *
 * transformers scales the inverse frequencies itself from four numbers (rope_scaling: factor,
 * low_freq_factor, high_freq_factor, original_max_position_embeddings;
 * modeling_rope_utils._compute_llama3_parameters), and model/rope.c reproduces that bit for bit
 * from ml_config. llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel) instead stores one
 * divisor per frequency, f[i] = 1 for wavelengths below L/high, factor above L/low, and
 * 1 / ((1 - s) / factor + s) with s = (L / wavelength - low) / (high - low) in between, and writes
 * no rope_scaling keys. Dividing by f[i] equals HF's formula in exact arithmetic but not in
 * float32, so to match HF we recover the four numbers from f and let model/rope.c do the rest:
 *   factor = max f;  the in-between entries give s_i, and s = (L x - low) / (high - low) with
 *   x = 1 / wavelength is linear in x. Only L/low and L/high are identifiable (scaling L, low and
 *   high together changes nothing), so low = 1 is assumed (every Llama 3.x release uses
 *   low 1, high 4, L 8192) and L, high are fitted, then snapped to an integer and to 1/64.
 * The result is accepted only if recomputing the converter's factors from it reproduces every
 * stored factor (relative 1e-5); otherwise the file is refused as ML_ERR_UNSUPPORTED. */
#include <math.h>
#include <stdio.h>

#include "core/error.h"
#include "formats/gguf.h"

#define FACTOR_TOLERANCE 1e-5
#define MAX_HALF_DIM 4096

static const double two_pi = 6.283185307179586476925286766559;

/* convert_hf_to_gguf.py: freqs = 1 / base ** (arange(0, dim, 2, float32) / dim), in float32. */
static float converter_inv_freq(float theta, int i, int dim) {
    float exponent = (float)(2 * i) / (float)dim;
    return 1.0f / powf(theta, exponent);
}

void ml_gguf_llama3_rope_factors(const ml_config *c, float *factors) {
    int dim = c->head_dim;
    double low_wavelen = (double)c->rope_original_max_position / c->rope_low_freq_factor;
    double high_wavelen = (double)c->rope_original_max_position / c->rope_high_freq_factor;
    for (int i = 0; i < dim / 2; i++) {
        float wavelen = (float)(two_pi / (double)converter_inv_freq(c->rope_theta, i, dim));
        if (wavelen < high_wavelen) {
            factors[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            factors[i] = c->rope_factor;
        } else {
            float smooth = ((float)c->rope_original_max_position / wavelen - c->rope_low_freq_factor) /
                           (c->rope_high_freq_factor - c->rope_low_freq_factor);
            factors[i] = 1.0f / ((1.0f - smooth) / c->rope_factor + smooth);
        }
    }
}

/* Index of the first factor that the candidate does not reproduce, or -1. */
static int first_mismatch(const ml_config *candidate, const float *factors, int n) {
    float expected[MAX_HALF_DIM];
    ml_gguf_llama3_rope_factors(candidate, expected);
    for (int i = 0; i < n; i++) {
        double diff = fabs((double)expected[i] - (double)factors[i]);
        if (!(diff <= FACTOR_TOLERANCE * fabs((double)factors[i]))) return i;
    }
    return -1;
}

static double snap(double value, double step) {
    double snapped = round(value / step) * step;
    return fabs(snapped - value) <= 1e-3 * fabs(value) ? snapped : value;
}

int ml_gguf_llama3_rope_from_factors(const float *factors, int n_factors, const char *source, ml_config *c) {
    if (!source) source = "GGUF";
    int dim = c->head_dim;
    if (n_factors != dim / 2 || n_factors < 1 || n_factors > MAX_HALF_DIM) {
        return ml_set_error(ML_ERR_TENSOR, "%s: tensor \"rope_freqs.weight\" has %d factors; head_dim %d implies %d",
                            source, n_factors, dim, dim / 2);
    }
    float factor = 0.0f;
    for (int i = 0; i < n_factors; i++) {
        if (!isfinite(factors[i]) || !(factors[i] >= 1.0f)) {
            return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"rope_freqs.weight\"[%d] = %g: llama3 RoPE factors are "
                                "finite and at least 1", source, i, (double)factors[i]);
        }
        if (factors[i] > factor) factor = factors[i];
    }
    if (factor == 1.0f) return ML_OK; /* every divisor is 1: plain RoPE */

    /* In-between entries: s_i = (1/f_i - 1/F) / (1 - 1/F), and L x_i - (high - 1) s_i = 1. */
    double sxx = 0, sxs = 0, sss = 0, sx = 0, ss = 0, x_one = 0, s_one = 0;
    double max_high_wavelen = 0, min_low_wavelen = INFINITY;
    int n_medium = 0;
    for (int i = 0; i < n_factors; i++) {
        double wavelen = two_pi / (double)converter_inv_freq(c->rope_theta, i, dim);
        if (factors[i] == 1.0f) {
            if (wavelen > max_high_wavelen) max_high_wavelen = wavelen;
        } else if (factors[i] == factor) {
            if (wavelen < min_low_wavelen) min_low_wavelen = wavelen;
        } else {
            double s = (1.0 / factors[i] - 1.0 / factor) / (1.0 - 1.0 / factor);
            double x = 1.0 / wavelen;
            sxx += x * x, sxs += x * s, sss += s * s, sx += x, ss += s;
            x_one = x, s_one = s;
            n_medium++;
        }
    }
    ml_config candidate = *c;
    candidate.rope_type = ML_ROPE_LLAMA3;
    candidate.rope_factor = factor;
    candidate.rope_low_freq_factor = 1.0f;
    candidate.rope_high_freq_factor = 4.0f;
    candidate.rope_original_max_position = 8192;
    if (n_medium >= 2) {
        /* Least squares for [L, k] in L x - k s = 1 (k = high - 1). */
        double det = sxx * sss - sxs * sxs;
        if (det != 0) {
            double length = (sx * sss - ss * sxs) / det;
            double k = (sx * sxs - ss * sxx) / det;
            length = snap(length, 1.0);
            double high = snap(1.0 + k, 1.0 / 64);
            if (length >= 1 && length <= 1e9 && high > 1 && high < 1e6) {
                candidate.rope_original_max_position = (int)length;
                candidate.rope_high_freq_factor = (float)high;
            }
        }
    } else if (n_medium == 1) {
        /* With high = 4: s = (L x - 1) / 3. */
        double length = snap((3.0 * s_one + 1.0) / x_one, 1.0);
        if (length >= 1 && length <= 1e9) candidate.rope_original_max_position = (int)length;
    } else if (first_mismatch(&candidate, factors, n_factors) >= 0 && min_low_wavelen < INFINITY) {
        /* No in-between entry: any L with 4 * max_high < L < min_low classifies alike. */
        double length = ceil(min_low_wavelen) - 1.0;
        if (length > 4.0 * max_high_wavelen && length >= 1 && length <= 1e9)
            candidate.rope_original_max_position = (int)length;
    }
    int mismatch = first_mismatch(&candidate, factors, n_factors);
    if (mismatch >= 0) {
        return ml_set_error(ML_ERR_UNSUPPORTED, "%s: tensor \"rope_freqs.weight\": the factors follow no llama3 RoPE "
                            "scaling (best guess factor %g, low_freq_factor 1, high_freq_factor %g, "
                            "original_max_position_embeddings %d misses factor %d = %.9g)",
                            source, (double)factor, (double)candidate.rope_high_freq_factor,
                            candidate.rope_original_max_position, mismatch, (double)factors[mismatch]);
    }
    c->rope_type = ML_ROPE_LLAMA3;
    c->rope_factor = candidate.rope_factor;
    c->rope_low_freq_factor = candidate.rope_low_freq_factor;
    c->rope_high_freq_factor = candidate.rope_high_freq_factor;
    c->rope_original_max_position = candidate.rope_original_max_position;
    return ML_OK;
}
