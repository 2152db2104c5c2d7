/* The int8 products of fast mode with AVX2 (kernels_int8_vector.h): the four products per lane
 * by vpmaddubsw (pairs, into int16; no saturation with these operands) then vpmaddwd by 1.
 * Also the AVX-512 table's (the instruction that does it in one step, vpdpbusd, is in
 * kernels_int8_avx512vnni.c). */
#include "backend/cpu/kernels_internal.h"

#define Q8_PREFIX(name) ml_avx2_##name
#define Q8_DOT(acc, u, s) \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))

#define Q8_DOT16(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16((a), (b)))

#define Q8_DOT_SCALED(acc, u, s, scale16) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), (scale16)))
#define Q8_HAS_PERMW 0

#define Q8_OFFSET_SIGNED 0
/* The K-quants (kernels_q8k_vector.h; measured on Zen 3, docs/BENCHMARKS.md "K-quant int8
 * kernels on AVX2"): up to 23 tokens one row at a time, 4 tokens per pass, 2 KiB prefetched
 * ahead in the row (the tile, faster from L3 from 5 tokens, reads eight rows at once, which
 * is slower from memory: batch 8 decode 27 -> 18 tok/s); from 24 tokens the tile, its
 * vpmaddubsw sums added in int16 and scaled by one vpmaddwd. */
#define Q8K_ROW_STREAM 1
#define Q8K_ROW_PREFETCH 2048 /* from memory +20-30% at 1 token, in L3 0 to -8% */
#define Q8K_TILE_MIN_TOKENS 24
#define Q8K_TILE_INT16 1
/* The blocks of 32 (kernels_int8_vector.h; Zen 3, docs/BENCHMARKS.md "Q8_0 int8 kernels on
 * AVX2 (Zen 3)"): the 1-2 token products prefetch the next 8 rows alongside, row sums are
 * reduced by unpacks (vphaddd is 3-4 uops; the K-quants' q8_reduce8 too), q8_group is one
 * instance per type, the tiles' sums stay in registers, and Q8_0's tile (a vpsignb more per
 * product) starts at 6 tokens. */
#define Q8_NEXT_ROWS 1
#define Q8_REDUCE_UNPACK 1
#define Q8_GROUP_PER_TYPE 1
#define Q8_KEEP(v) __asm__("" : "+x"(v))
#define Q8_0_TILE_MIN_TOKENS 6
#define Q8K_TILE_TOKENS 4 /* tokens per register block of the K-quant tile (16 vector registers) */

#include "backend/cpu/kernels_int8_vector.h"
#include "backend/cpu/kernels_q8k_vector.h"
