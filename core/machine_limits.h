/* Probes of the machine's limits, measured in the same process as a benchmark so that its
 * results can be given as fractions of what this machine, now, can do (DESIGN.md
 * "Performance: how we measure"):
 *
 *   ml_probe_read_bandwidth: streaming read bandwidth with n threads, each reading its own
 *     contiguous share of one large buffer (far larger than the last-level cache) with 256-bit
 *     loads, as the decode GEMV reads weights. Best of several passes (the least disturbed by
 *     other processes). The buffer has ordinary 4 KiB pages, like the mmapped checkpoint, or
 *     with huge_pages asks for transparent huge pages (fewer TLB misses; the faster of the two
 *     is the machine's real ceiling, ml_probe_read_ceiling).
 *   ml_probe_dot_peak: the dot-product peak in GFLOP/s with n threads: AVX512_BF16 vdpbf16ps
 *     where present (64 flops per instruction), else f32 FMA (AVX-512: 32 flops, AVX2: 16),
 *     12 independent accumulator chains per thread so the FMA latency is hidden. A flop is one
 *     multiply or one add (an FMA is 2).
 *   ml_probe_int8_peak: the same for the int8 products of `fast` mode on quantised weights
 *     (AVX512_VNNI vpdpbusd where present, else AVX2 vpmaddubsw/vpmaddwd), in integer
 *     operations per second counted like flops (a multiply-add is 2), so that a roofline of
 *     int8 matrices compares like with like.
 *
 * In core/ because three programs use it (the `meshllama bench` command, apps/cmd_bench.c, and
 * the stand-alone bench/probe_limits.c and bench/bench_kernels.c) and it needs nothing above
 * libc and pthreads, like core/timer.c and core/cpu_features.c; the engine itself never calls
 * it. The vector versions carry per-function target attributes (core/machine_limits.c), so
 * the file needs no special compile flags. */
#ifndef ML_CORE_MACHINE_LIMITS_H
#define ML_CORE_MACHINE_LIMITS_H

#include <stddef.h>

#define ML_PROBE_MAX_THREADS 256

/* The instruction the dot-product peak uses. */
typedef enum {
    ML_PROBE_GENERIC,
    ML_PROBE_AVX2,
    ML_PROBE_AVX512,
    ML_PROBE_AVX512BF16,
    ML_PROBE_INT8_AVX2,      /* vpmaddubsw + vpmaddwd + vpaddd: 32 u8 x s8 products per 3 instructions */
    ML_PROBE_INT8_AVX512VNNI /* vpdpbusd: 64 u8 x s8 products and their sums in one instruction */
} ml_probe_isa;

const char *ml_probe_isa_name(ml_probe_isa isa);

/* Best read bandwidth in bytes/second over `passes` passes of n_threads threads over a buffer
 * of `bytes` (rounded down to a multiple of 128 per thread). Returns 0 on failure (out of
 * memory). */
double ml_probe_read_bandwidth(int n_threads, size_t bytes, int passes, int huge_pages);

/* The better of 4 KiB pages and transparent huge pages; *huge_out is 1 when huge pages won. */
double ml_probe_read_ceiling(int n_threads, size_t bytes, int passes, int *huge_out);

/* Best dot-product throughput in flop/s over `passes` passes of n_threads threads, each pass
 * about `seconds` long (calibrated on one thread first). *isa_out names the instruction used. */
double ml_probe_dot_peak(int n_threads, double seconds, int passes, ml_probe_isa *isa_out);
/* The same with a given instruction (f32 FMA at AVX2 or AVX-512 width, or vdpbf16ps), so a
 * kernel that does not use the best one is measured against its own ceiling; 0 when this CPU
 * lacks it. */
double ml_probe_dot_peak_isa(int n_threads, double seconds, int passes, ml_probe_isa isa);
/* The int8 product peak in op/s (see above); *isa_out names the instruction. 0 where the CPU
 * has neither AVX512_VNNI (with AVX512BW/VL) nor AVX2. */
double ml_probe_int8_peak(int n_threads, double seconds, int passes, ml_probe_isa *isa_out);

#endif
