/* Products and conversions for the block types of matmul_f32_blocks (Q5_0, Q5_1, IQ4_NL and the
 * K-quants): the scalar reference, and the tiled product every vector variant uses.
 *
 * Reference: each row's blocks are decoded by core/quant_blocks.c (the dequantiser's own code)
 * and meet x as in the scalar matmul_f32_f32: natural index order, one rounding per operation,
 * so each output equals matmul_f32_f32 on the dequantised matrix bit for bit.
 *
 * Tiled (AVX2, AVX-512): rows are decoded a tile at a time into the thread's scratch by the
 * variant's vector decoder (bit for bit the reference's values), then the variant's own
 * matmul_f32_f32 runs on the tile. So each output is, by construction, that table's float32
 * product on the dequantised matrix (its summation order, its independence of the split), and
 * the K-quant kernels need no register blocking of their own. The price is one store and one
 * load (from L1/L2) per weight on top of the float32 kernel. Tiles:
 *   n_tok = 1 (decode): about DECODE_TILE_BYTES of float32 rows (kept in L1/L2), a multiple of
 *       8 rows (the float32 kernels' decode block), at least 8;
 *   n_tok >= 2: about PREFILL_TILE_BYTES (kept in L2), a multiple of 24 rows (the AVX2 3 x 4 and
 *       AVX-512 4 x 6 blocks both divide it), at least 24: each weight is decoded once per call
 *       and read from L2 once per token block. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_internal.h"

#include "core/quant_blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define DECODE_TILE_BYTES (48 * 1024)
#define PREFILL_TILE_BYTES (256 * 1024)

void ml_scalar_matmul_f32_blocks(ml_dtype w_dtype, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *w,
                                 int n_in, int n_tok, int row_begin, int row_end) {
    ml_block_decoder decode = ml_quant_block_decoder(w_dtype);
    if (!decode || n_in <= 0) return;
    int block = (int)ml_dtype_block_elements(w_dtype), n_blocks = n_in / block;
    size_t block_bytes = ml_dtype_block_bytes(w_dtype), row_bytes = (size_t)n_blocks * block_bytes;
    float weights[ML_QUANT_SUPER_BLOCK];
    for (int t = 0; t < n_tok; t++) {
        const float *x_row = x + (size_t)t * ldx; /* [n_in] */
        for (int r = row_begin; r < row_end; r++) {
            const uint8_t *w_row = w + (size_t)r * row_bytes; /* [n_blocks] blocks */
            float sum = 0.0f;
            for (int b = 0; b < n_blocks; b++) {
                decode(w_row + (size_t)b * block_bytes, weights);
                for (int i = 0; i < block; i++) {
                    float product = x_row[b * block + i] * weights[i];
                    sum += product;
                }
            }
            y[(size_t)t * ldy + r] = sum;
        }
    }
}

void ml_scalar_blocks_to_f32(ml_dtype dtype, float *out, const uint8_t *in, size_t n) {
    size_t block = ml_dtype_block_elements(dtype);
    if (block > 1) ml_quant_blocks_to_f32(dtype, in, n / block, out);
}

void ml_blocks_matmul_tiled(ml_matmul_f32_f32_fn matmul_f32_f32, ml_blocks_decode_fn decode, ml_dtype w_dtype, float *y,
                            size_t ldy, const float *x, size_t ldx, const uint8_t *w, int n_in, int n_tok,
                            int row_begin, int row_end) {
    if (n_tok <= 0 || row_end <= row_begin || n_in <= 0 || ml_dtype_block_elements(w_dtype) <= 1) return;
    size_t row_bytes = ml_dtype_row_bytes(w_dtype, (size_t)n_in), row_floats_bytes = (size_t)n_in * sizeof(float);
    int multiple = n_tok == 1 ? 8 : 24;
    size_t budget = n_tok == 1 ? DECODE_TILE_BYTES : PREFILL_TILE_BYTES;
    int tile_rows = (int)(budget / row_floats_bytes) / multiple * multiple;
    if (tile_rows < multiple) tile_rows = multiple;
    if (tile_rows > row_end - row_begin) tile_rows = row_end - row_begin;
    float *tile = ml_cpu_scratch((size_t)tile_rows * (size_t)n_in); /* [tile_rows, n_in] */
    if (!tile) { /* no memory for a tile: one row at a time, or the reference's order */
        tile_rows = 1;
        tile = ml_cpu_scratch((size_t)n_in);
        if (!tile) {
            ml_scalar_matmul_f32_blocks(w_dtype, y, ldy, x, ldx, w, n_in, n_tok, row_begin, row_end);
            return;
        }
    }
    for (int r0 = row_begin; r0 < row_end; r0 += tile_rows) {
        int r1 = r0 + tile_rows < row_end ? r0 + tile_rows : row_end;
        /* rows are contiguous blocks in w and contiguous floats in the tile: one run */
        decode(w_dtype, tile, w + (size_t)r0 * row_bytes, (size_t)(r1 - r0) * (size_t)n_in);
        matmul_f32_f32(y + r0, ldy, x, ldx, tile, n_in, n_tok, 0, r1 - r0);
    }
}
