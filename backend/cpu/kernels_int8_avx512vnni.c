/* The int8 products of fast mode with AVX512_VNNI (kernels_int8_vector.h): the four products
 * per lane and their sum in one vpdpbusd on 256-bit vectors (AVX512VL; the tiles for many
 * tokens on 512-bit vectors, Q8_TILE16 and Q8K_TILE16 below). The avx512bf16 table
 * uses these: every CPU with AVX512_BF16 has AVX512_VNNI (and dispatch.c checks it). */
#include "backend/cpu/kernels_internal.h"

#include <immintrin.h>
#include <stdint.h>

#define Q8_PREFIX(name) ml_avx512vnni_##name
#define Q8_DOT(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))

#define Q8_DOT16(acc, a, b) _mm256_dpwssd_epi32((acc), (a), (b))

#define Q8_DOT_SCALED(acc, u, s, scale16) _mm256_dpwssd_epi32((acc), _mm256_maddubs_epi16((u), (s)), (scale16))
#define Q8_HAS_PERMW 1

/* vpdpbusd with the four bytes at p broadcast by the instruction itself ({1to8}): one fused
 * uop where a separate vpbroadcastd costs a second one in the tile loops, whose Q8_DOTs are
 * otherwise limited by how many uops the core can issue per cycle. GCC does not fold the
 * broadcast into the instruction itself. */
static inline __m256i q8_dot_broadcast_vnni(__m256i acc, __m256i u, const void *p) {
    __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)p));
    return acc;
}
#define Q8_DOT_BROADCAST(acc, u, p) q8_dot_broadcast_vnni((acc), (u), (p))

#define Q8_OFFSET_SIGNED 1
#define Q8K_TILE_TOKENS 4 /* tokens per register block of the K-quant tile */
/* The K-quant tile from 8 tokens: sixteen rows in 512-bit vectors, vpdpbusd zmm (this Intel
 * Xeon issues two per cycle, as two ymm: twice the products per uop), 4 tokens per register
 * block; docs/BENCHMARKS.md "K-quant int8 kernels on AVX-512 VNNI (Intel Xeon)". */
#define Q8K_TILE16 1
#define Q8K_TILE16_TOKENS 4
#define Q8K_TILE16_MIN_TOKENS 8
/* The same for Q8_0/Q4_0/Q4_1 from 6 tokens (their 16-row tile costs less to build), 8 tokens
 * per register block (one chain of 8 vpdpbusd per token and block). */
#define Q8_TILE16 1
#define Q8_TILE16_TOKENS 8
#define Q8_TILE16_MIN_TOKENS 6

#include "backend/cpu/kernels_int8_vector.h"
#include "backend/cpu/kernels_q8k_vector.h"
