/* The same weights through safetensors and through GGUF (Q/K rows permuted to Meta's
 * interleaved layout by the converter, restored at load) give the same logits: bit-identical
 * for BF16/F32 GGUFs, within Q8_0's rounding for the quantised ones. Also at tp 3 and 4. A qwen2
 * GGUF (unpermuted Q/K rows, q/k/v biases) gives its safetensors twin's logits the same way, and
 * so does a llama GGUF with attention and MLP biases (q/k biases permuted like their rows); the
 * float32 ones also within 1e-4 of HF's logits, at tp 1 to 4.
 *
 * Quantised GGUFs kept in their blocks (the default) against the same files dequantised to
 * float32 at load (MESHLLAMA_GGUF_DEQUANTIZE=1): prefill and decode logits bit-identical
 * (memcmp: the quantised kernels promise the bits of the float32 path on the dequantised
 * matrix, docs/GGUF.md; the error is printed too) at tp 1, 2 and a tp whose row-parallel
 * columns cut a block (those matrices fall back to float32),
 * in accurate and fast mode, with the held dtype and bytes reported by ml_model_get_info.
 * Except fast mode on the block types (Q8_0 ... IQ4_NL, the K-quants): there the activations are
 * quantised to int8 (backend/cpu/kernels.h, matmul_q8_blocks and, per super-block of 256,
 * matmul_q8k_blocks), so the logits must differ from the float32 path (the int8 products ran)
 * by no more than int8 rounding: observed 2-5.4e-2 normalised on these files (kquant_mix
 * 3.1-5.4e-2, its activations scaled per 256, Q2_K/Q3_K included); TOL_INT8_LOGITS leaves a
 * 2x margin and still
 * fails a wrong scale or lost block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshllama.h"
#include "test_util.h"

#define TOL_INT8_LOGITS 0.1

static float *prompt_logits(const char *path, int tp, const ml_test_reference *ref) {
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    p.n_threads = 2;
    p.max_seq_len = 64;
    ml_model *m = NULL;
    int status = ml_model_open(path, &p, &m);
    CHECK(status == ML_OK, "%s: %s", path, ml_last_error());
    if (status != ML_OK) return NULL;
    float *logits = malloc((size_t)ref->n_prompt * ref->vocab_size * sizeof(float));
    int slot = 0, start = 0, n = ref->n_prompt;
    ml_batch b = {1, &slot, &start, &n, ref->prompt_ids, 1};
    CHECK(ml_forward(m, &b, logits) == ML_OK, "%s forward: %s", path, ml_last_error());
    ml_model_close(m);
    return logits;
}

static void compare(const char *fixture, const char *gguf, int exact) {
    char dir[512], gguf_path[512], ref_path[600];
    ml_test_fixture_path(dir, sizeof dir, fixture);
    snprintf(ref_path, sizeof ref_path, "%s/reference.bin", dir);
    ml_test_fixture_path(gguf_path, sizeof gguf_path, gguf);
    ml_test_reference ref;
    if (ml_test_reference_load(ref_path, &ref) != 0) {
        CHECK(0, "reference %s", ref_path);
        return;
    }
    size_t n = (size_t)ref.n_prompt * ref.vocab_size;
    static const int tps[] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof tps / sizeof tps[0]; i++) {
        int tp = tps[i];
        float *a = prompt_logits(dir, tp, &ref), *b = prompt_logits(gguf_path, tp, &ref);
        if (a && b) {
            double err = ml_test_norm_error(b, a, n);
            printf("%-36s tp %d: vs safetensors %.2e, vs HF %.2e\n", gguf, tp, err, ml_test_norm_error(b, ref.logits, n));
            if (exact) {
                CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s tp %d: logits differ (%.3e)", gguf, tp, err);
                /* and so within test_model_hf's float32 bound of HF's own logits */
                double hf_err = ml_test_norm_error(b, ref.logits, n);
                CHECK(hf_err <= 1e-4 || strstr(gguf, "bf16"), "%s tp %d: %.3e from HF", gguf, tp, hf_err);
            }
            else
                CHECK(err < 5e-2, "%s tp %d: Q8_0 logits %.3e from safetensors", gguf, tp, err);
        }
        free(a);
        free(b);
    }
    ml_test_reference_free(&ref);
}

#define N_PROMPT 13
#define N_DECODE 4

typedef struct {
    float *logits;           /* [N_PROMPT + N_DECODE, vocab] */
    int vocab;
    char weight_dtype[16];
    double matmul_bytes;
} quant_run;

/* Prefill N_PROMPT tokens (every position's logits: the kernels' many-token path), then
 * N_DECODE single tokens (the one-token path). */
static int run_quant(const char *path, int tp, int fast, int dequantize, quant_run *out) {
    memset(out, 0, sizeof *out);
    if (dequantize)
        setenv("MESHLLAMA_GGUF_DEQUANTIZE", "1", 1);
    else
        unsetenv("MESHLLAMA_GGUF_DEQUANTIZE");
    ml_model_params p = ml_model_default_params();
    p.tp = tp;
    p.n_threads = 2;
    p.max_seq_len = 32;
    p.act_mode = fast ? ML_ACT_FAST : ML_ACT_ACCURATE;
    ml_model *m = NULL;
    int status = ml_model_open(path, &p, &m);
    unsetenv("MESHLLAMA_GGUF_DEQUANTIZE");
    CHECK(status == ML_OK, "%s tp %d: %s", path, tp, ml_last_error());
    if (status != ML_OK) return -1;
    ml_model_info info;
    ml_model_get_info(m, &info);
    out->vocab = info.vocab_size;
    snprintf(out->weight_dtype, sizeof out->weight_dtype, "%s", info.weight_dtype);
    out->matmul_bytes = info.matmul_bytes;
    out->logits = malloc((size_t)(N_PROMPT + N_DECODE) * out->vocab * sizeof(float));
    int32_t tokens[N_PROMPT + N_DECODE];
    for (int i = 0; i < N_PROMPT + N_DECODE; i++) tokens[i] = (int32_t)((i * 7 + 3) % out->vocab);
    int slot = 0, start = 0, n = N_PROMPT;
    ml_batch b = {1, &slot, &start, &n, tokens, 1};
    status = ml_forward(m, &b, out->logits);
    for (int i = 0; i < N_DECODE && status == ML_OK; i++) {
        start = N_PROMPT + i;
        n = 1;
        ml_batch step = {1, &slot, &start, &n, tokens + start, 0};
        status = ml_forward(m, &step, out->logits + (size_t)start * out->vocab);
    }
    CHECK(status == ML_OK, "%s tp %d forward: %s", path, tp, ml_last_error());
    ml_model_close(m);
    return status == ML_OK ? 0 : -1;
}

/* kept_dtype: what get_info must report for the kept model ("mixed" where a row-parallel
 * matrix fell back to float32). int8: fast mode runs int8 products on some of its matrices. */
static void compare_dequantized_int8(const char *path, int tp, int fast, const char *kept_dtype, int int8) {
    quant_run kept, plain;
    int ok = run_quant(path, tp, fast, 0, &kept) == 0 && run_quant(path, tp, fast, 1, &plain) == 0;
    if (ok && kept.vocab == plain.vocab) {
        size_t n = (size_t)(N_PROMPT + N_DECODE) * kept.vocab;
        double err = ml_test_norm_error(kept.logits, plain.logits, n);
        int identical = memcmp(kept.logits, plain.logits, n * sizeof(float)) == 0;
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        printf("%-36s tp %d %-8s %-5s vs dequantised: %.2e%s, %.0f vs %.0f weight bytes\n", name, tp,
               fast ? "fast" : "accurate", kept.weight_dtype, err, identical ? " (identical bits)" : "",
               kept.matmul_bytes, plain.matmul_bytes);
        if (fast && int8)
            CHECK(!identical && err <= TOL_INT8_LOGITS,
                  "%s tp %d fast: int8 logits %s the float32 ones (%.3e normalised, tolerance %.1g)", path, tp,
                  identical ? "equal (int8 products not used?)" : "too far from", err, TOL_INT8_LOGITS);
        else
            CHECK(identical, "%s tp %d%s: kept-quantised logits differ from the dequantised ones (%.3e normalised)",
                  path, tp, fast ? " fast" : "", err);
        CHECK(strcmp(kept.weight_dtype, kept_dtype) == 0 && strcmp(plain.weight_dtype, "f32") == 0,
              "%s tp %d: weight dtype %s (want %s), dequantised %s", path, tp, kept.weight_dtype, kept_dtype,
              plain.weight_dtype);
        /* Q8_0 is 34/128 of float32, Q4_1 20/128; a float32 fallback matrix counts in full */
        double most = strcmp(kept_dtype, "mixed") == 0 ? 0.9 : 0.3;
        CHECK(kept.matmul_bytes > 0 && kept.matmul_bytes < most * plain.matmul_bytes,
              "%s tp %d: %.0f bytes per step kept, %.0f dequantised", path, tp, kept.matmul_bytes, plain.matmul_bytes);
    }
    free(kept.logits);
    free(plain.logits);
}

/* Files without int8-product matrices, or accurate mode. */
static void compare_dequantized(const char *path, int tp, int fast, const char *kept_dtype) {
    compare_dequantized_int8(path, tp, fast, kept_dtype, 0);
}

static void test_kept_quantised(void) {
    char path[512];
    ml_test_fixture_path(path, sizeof path, "gguf/gqa_tied_q8_0.gguf"); /* hidden 96, ffn 160: 5 blocks */
    compare_dequantized(path, 1, 0, "q8_0");
    compare_dequantized(path, 2, 0, "mixed"); /* o 48 + 48 columns cut; ffn 64 + 96: down_proj whole blocks */
    compare_dequantized_int8(path, 2, 1, "mixed", 1);
    ml_test_fixture_path(path, sizeof path, "gguf/h8kv2_headdim_untied_q8_0.gguf"); /* head_dim 24, ffn 128 */
    compare_dequantized(path, 1, 0, "q8_0");
    compare_dequantized(path, 2, 0, "q8_0"); /* o columns 96 + 96, ffn 64 + 64: all blocks whole */
    compare_dequantized_int8(path, 2, 1, "q8_0", 1);
    /* tp 3: o_proj's 96/48/48 columns cut its blocks of 32 (float32); down_proj's FFN 128 goes
     * in whole blocks, 32 + 32 + 64 (uneven; an even split would cut 42/43/43) */
    compare_dequantized(path, 3, 0, "mixed");
    ml_test_fixture_path(path, sizeof path, "gguf/tiny_q4_1_llama3.gguf"); /* Q4_1, Q8_0 embedding, ffn 32 */
    compare_dequantized(path, 1, 0, "q4_1");
    compare_dequantized(path, 2, 0, "mixed");
    /* every block type, mixed per tensor (Q6_K tied embedding; rows of 1 or 2 super-blocks):
     * tp 2 keeps every row-parallel slice whole (o 256 + 256, ffn 256 + 256 columns); at tp 3
     * o_proj (4, 2, 2 heads of 64) is cut inside super-blocks, and so is down_proj (its FFN 512
     * is 2 super-blocks, too few for 3 devices: split evenly); both fall back to float32
     * (reported by inspect; tests/cli_kquant.sh) */
    ml_test_fixture_path(path, sizeof path, "gguf/kquant_mix.gguf");
    compare_dequantized(path, 1, 0, "mixed");
    compare_dequantized_int8(path, 1, 1, "mixed", 1);
    compare_dequantized(path, 2, 0, "mixed");
    compare_dequantized_int8(path, 2, 1, "mixed", 1);
    compare_dequantized(path, 3, 0, "mixed");
    compare_dequantized_int8(path, 4, 1, "mixed", 1);
    /* K-quant files made by llama.cpp's own llama-quantize (tools/make_llamacpp_quant_fixture.py):
     * Q4_K_M mixes Q4_K and Q6_K where llama.cpp chose them; at tp 3 o_proj's 4/2/2 heads of 64
     * cut its 256-weight super-blocks (float32 fallback, "mixed") */
    /* K-quants that tp 3 splits in whole super-blocks (tools/make_gguf_fixtures.py): o_proj 256
     * columns a device, down_proj FFN 1024 as 256 + 256 + 512 (an even split, 341/341/342, cut
     * them): no float32 fallback (cli_kquant checks inspect's plan), so the bytes held at tp 3 are
     * tp 1's, and the kept blocks still give the dequantised path's bits on the uneven slices */
    ml_test_fixture_path(path, sizeof path, "gguf/kquant_ffn_blocks.gguf");
    compare_dequantized(path, 1, 0, "mixed");
    compare_dequantized(path, 3, 0, "mixed");
    compare_dequantized_int8(path, 3, 1, "mixed", 1);
    {
        quant_run whole, split;
        if (run_quant(path, 1, 0, 0, &whole) == 0 && run_quant(path, 3, 0, 0, &split) == 0)
            CHECK(split.matmul_bytes == whole.matmul_bytes, "kquant_ffn_blocks tp 3: %.0f weight bytes held, tp 1 %.0f "
                  "(a float32 fallback?)", split.matmul_bytes, whole.matmul_bytes);
        free(whole.logits);
        free(split.logits);
    }
    ml_test_fixture_path(path, sizeof path, "gguf_llamacpp/q4_k_m.gguf");
    compare_dequantized(path, 1, 0, "mixed");
    compare_dequantized(path, 2, 0, "mixed");
    compare_dequantized_int8(path, 2, 1, "mixed", 1);
    compare_dequantized(path, 3, 0, "mixed");
    ml_test_fixture_path(path, sizeof path, "gguf_llamacpp/q6_k.gguf");
    compare_dequantized(path, 1, 0, "q6_k");
    compare_dequantized(path, 2, 0, "q6_k");
    compare_dequantized_int8(path, 1, 1, "q6_k", 1);
    compare_dequantized(path, 3, 0, "mixed");
    /* the default model: Q4_1 projections, Q8_0 tied embedding */
    char model[1200];
    if (ml_test_default_model(model, sizeof model) != 0) return;
    compare_dequantized(model, 1, 0, "q4_1");
    compare_dequantized(model, 2, 0, "q4_1");
    compare_dequantized_int8(model, 2, 1, "q4_1", 1);
    const char *quick = getenv("MESHLLAMA_QUICK");
    /* tp 5: the FFN's 48 blocks of 32 as 9, 10, 9, 10, 10 (uneven; an even 307/308 columns cut
     * them and fell back to float32): every matrix kept in its blocks */
    if (!quick || strcmp(quick, "1") != 0) compare_dequantized(model, 5, 0, "q4_1");
}

int main(void) {
    test_kept_quantised();
    compare("gqa_tied_bf16", "gguf/gqa_tied_bf16.gguf", 1);
    compare("h8kv2_headdim_untied_f32", "gguf/h8kv2_headdim_untied_f32.gguf", 1);
    compare("gqa_tied_bf16", "gguf/gqa_tied_q8_0.gguf", 0);
    compare("h8kv2_headdim_untied_f32", "gguf/h8kv2_headdim_untied_q8_0.gguf", 0);
    compare("qwen2_bias_bf16", "gguf/qwen2_bias_bf16.gguf", 1); /* qwen2.* keys, unpermuted Q/K, q/k/v biases */
    /* llama with attention_bias and mlp_bias: q/k biases permuted like their rows, o/v/MLP not */
    compare("llama_bias_f32", "gguf/llama_bias_f32.gguf", 1);
    return ml_test_finish("model_gguf");
}
