/* bf16 weights in row groups (kernels.h, ML_GROUP_ROWS): the packing, and the scalar reference
 * of matmul_f32_bf16g / matmul_bf16_bf16g, which the vector variants (kernels_groups_avx2.c,
 * kernels_groups_avx512.c) equal bit for bit: per output, fused chains over chunks of
 * ML_GROUP_CHUNK columns in index order, the chunks' sums added in order. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include <math.h>
#include <string.h>

#include "core/numeric.h"

void ml_bf16_groups_pack(uint16_t *dst, const uint16_t *src, size_t src_ld, int n_rows, int n_in) {
    int n_groups = (n_rows + ML_GROUP_ROWS - 1) / ML_GROUP_ROWS, n_pairs = n_in / 2;
    for (int g = 0; g < n_groups; g++) {
        uint16_t *group = dst + (size_t)g * ML_GROUP_ROWS * (size_t)n_in; /* [n_pairs][16][2] */
        for (int lane = 0; lane < ML_GROUP_ROWS; lane++) {
            int r = g * ML_GROUP_ROWS + lane;
            uint16_t *out = group + 2 * lane;
            if (r >= n_rows) {
                for (int j = 0; j < n_pairs; j++) memset(out + (size_t)j * 2 * ML_GROUP_ROWS, 0, 4);
                continue;
            }
            const uint16_t *row = src + (size_t)r * src_ld;
            for (int j = 0; j < n_pairs; j++) memcpy(out + (size_t)j * 2 * ML_GROUP_ROWS, row + 2 * (size_t)j, 4);
        }
    }
}

/* One output: the chunked chains of kernels.h over row r of the packed w and the float32 x row. */
static float chain(const float *x, const uint16_t *w, int n_in, int r) {
    float sum = 0.0f;
    for (int c = 0; c < n_in; c += ML_GROUP_CHUNK) {
        int end = n_in - c < ML_GROUP_CHUNK ? n_in : c + ML_GROUP_CHUNK;
        float acc = 0.0f;
        for (int i = c; i < end; i++) acc = fmaf(x[i], ml_bf16_to_f32(ml_bf16_groups_at(w, n_in, r, i)), acc);
        sum = c == 0 ? acc : sum + acc;
    }
    return sum;
}

/* The copies go a span of INTERLEAVE_SPAN elements at a time, each token's span read whole
 * before the next token's: read column by column across the block's 12 rows instead, rows
 * 16 KiB apart (n_in 8192) all fall in one set of the L1 and evict each other at every column
 * (Zen 4, one thread, 32 tokens, best of 200: 8192 wide, bf16 pairs 117 -> 40 us, float32
 * 237 -> 80 us; 2048 wide 12.5 -> 9.5 and 58 -> 19 us; 8 tokens 2048 wide alike, 2-5 us), and
 * the other threads wait for the copy (model/matmul_jobs.c makes it before the region). */
#define INTERLEAVE_SPAN 256

void ml_groups_interleave_x(float *xt, const float *x, size_t ldx, int n_in, int n_tok) {
    for (int t0 = 0; t0 < n_tok; t0 += ML_GROUP_TOKENS) {
        int tb = n_tok - t0 < ML_GROUP_TOKENS ? n_tok - t0 : ML_GROUP_TOKENS;
        float *block = xt + (size_t)t0 * (size_t)n_in;
        for (int i0 = 0; i0 < n_in; i0 += INTERLEAVE_SPAN) {
            int i1 = n_in - i0 < INTERLEAVE_SPAN ? n_in : i0 + INTERLEAVE_SPAN;
            for (int t = 0; t < tb; t++) {
                const float *row = x + (size_t)(t0 + t) * ldx;
                for (int i = i0; i < i1; i++) block[(size_t)i * tb + t] = row[i];
            }
        }
    }
}

void ml_groups_interleave_pairs(uint16_t *xt, const uint16_t *x, size_t ldx, int n_in, int n_tok) {
    int n_pairs = n_in / 2;
    for (int t0 = 0; t0 < n_tok; t0 += ML_GROUP_TOKENS) {
        int tb = n_tok - t0 < ML_GROUP_TOKENS ? n_tok - t0 : ML_GROUP_TOKENS;
        uint16_t *block = xt + (size_t)t0 * (size_t)n_in;
        for (int j0 = 0; j0 < n_pairs; j0 += INTERLEAVE_SPAN / 2) {
            int j1 = n_pairs - j0 < INTERLEAVE_SPAN / 2 ? n_pairs : j0 + INTERLEAVE_SPAN / 2;
            for (int t = 0; t < tb; t++) {
                const uint16_t *row = x + (size_t)(t0 + t) * ldx;
                for (int j = j0; j < j1; j++) memcpy(block + ((size_t)j * tb + t) * 2, row + 2 * (size_t)j, 4);
            }
        }
    }
}

/* Intel: LOOKAHEAD_BYTES. AVX-512 kernel (Intel Xeon, 2 threads, 1 GiB): no prefetch 20.0
 * GB/s at 1 token, 124 GFLOP/s at 8, 203 at 32; 512 bytes 23.2 / 145 / 188; 2048 26.1 / 171 /
 * 243; 4096 26.2 / 191 / 271; 8192 22.9 / 163 / 223. AVX2 kernel on the same Xeon (three
 * alternated rounds): none 20-21 GB/s / 72-74 GFLOP/s / 102-104; 4096 bytes 24.5-26 / 96-101 /
 * 111-122; 2048 alike (docs/BENCHMARKS.md). Other CPUs rely on their hardware prefetchers, as
 * the natural-row kernels do on AMD, where a look-ahead slowed the decode (kernels_avx512.c).
 * AMD Zen 4 (2 threads, the avx512bf16 table, x as interleaved bf16 pairs, `meshllama bench`
 * on the 1B-shape bf16 checkpoint, none and 4096 bytes alternated): fast mode batch 8 82-97 vs
 * 104-105 tokens/s, batch 32 124-125 vs 134-136; accurate batch 8 60 vs 68-74. But batch 1 fast
 * 21-24 vs 16-19, accurate 13-20 vs 12-16, batch 2 accurate 34-36 vs 25-33: there the hardware
 * prefetchers do better. So AMD parts with AVX-512 take the look-ahead from 3 tokens on; AVX2-only
 * AMD parts (Zen 3) are unmeasured and keep their hardware prefetchers. */
#define LOOKAHEAD_BYTES 4096
size_t ml_groups_lookahead_elements(int n_tok) {
    __builtin_cpu_init();
    int measured = __builtin_cpu_is("intel") || (n_tok >= 3 && __builtin_cpu_supports("avx512f"));
    return measured ? LOOKAHEAD_BYTES / sizeof(uint16_t) : 0;
}

/* AMD: the AVX-512 look-ahead fetches into L2 (prefetcht1, which Zen 4 places in L2), where
 * more misses can be in flight than L1's. Zen 4, 1B-shape bf16, fast mode, 4096 bytes, five
 * alternated rounds, L1 vs L2: batch 8 96 / 107 / 86 / 88 / 78 vs 121 / 113 / 109 / 92 / 112
 * tokens/s, batch 32 135 / 132 / 122 / 125 / 119 vs 144 / 136 / 129 / 130 / 126. Intel keeps L1
 * (the measurements above). */
int ml_groups_lookahead_to_l2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
}

/* xt is a faster copy of x for the vector variants; the reference reads x. */
void ml_scalar_matmul_f32_bf16g(float *y, size_t ldy, const float *x, size_t ldx, const float *xt, const uint16_t *w,
                                int n_in, int n_tok, int row_begin, int row_end) {
    (void)xt;
    for (int t = 0; t < n_tok; t++)
        for (int r = row_begin; r < row_end; r++) y[(size_t)t * ldy + r] = chain(x + (size_t)t * ldx, w, n_in, r);
}

/* Widened x (exact), a chunk at a time through a small buffer, then the same chains: each
 * chunk's chain for every row, its sum added to the row's output (stored exactly, so the
 * additions are chain()'s). xt unused, as in the float32 reference. */
void ml_scalar_matmul_bf16_bf16g(float *y, size_t ldy, const uint16_t *x, size_t ldx, const uint16_t *xt,
                                 const uint16_t *w, int n_in, int n_tok, int row_begin, int row_end) {
    (void)xt;
    float widened[ML_GROUP_CHUNK];
    for (int t = 0; t < n_tok; t++) {
        const uint16_t *row = x + (size_t)t * ldx;
        float *yt = y + (size_t)t * ldy;
        if (n_in <= 0)
            for (int r = row_begin; r < row_end; r++) yt[r] = 0.0f; /* chain()'s empty sum */
        for (int c = 0; c < n_in; c += ML_GROUP_CHUNK) {
            int n = n_in - c < ML_GROUP_CHUNK ? n_in - c : ML_GROUP_CHUNK;
            for (int i = 0; i < n; i++) widened[i] = ml_bf16_to_f32(row[c + i]);
            for (int r = row_begin; r < row_end; r++) {
                float acc = 0.0f;
                for (int i = 0; i < n; i++)
                    acc = fmaf(widened[i], ml_bf16_to_f32(ml_bf16_groups_at(w, n_in, r, c + i)), acc);
                yt[r] = c == 0 ? acc : yt[r] + acc;
            }
        }
    }
}
