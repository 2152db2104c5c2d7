/* Machine-limit probes (core/machine_limits.h): read bandwidth and dot-product peak. */
#include "core/machine_limits.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/timer.h"

/* Seconds on the monotonic clock. */
static double ml_probe_now(void) { return ml_now_ms() * 1e-3; }

/* ---- a tiny barrier (pthread_barrier is optional in POSIX) ------------------------------- */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int count, waiting;
    unsigned generation;
} ml_probe_barrier;

static void ml_probe_barrier_init(ml_probe_barrier *b, int count) {
    pthread_mutex_init(&b->mutex, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->count = count;
    b->waiting = 0;
    b->generation = 0;
}

static void ml_probe_barrier_destroy(ml_probe_barrier *b) {
    pthread_mutex_destroy(&b->mutex);
    pthread_cond_destroy(&b->cond);
}

/* Lowers the count when fewer threads than planned could be started. */
static void ml_probe_barrier_set_count(ml_probe_barrier *b, int count) {
    pthread_mutex_lock(&b->mutex);
    b->count = count;
    if (b->waiting >= count) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->mutex);
}

static void ml_probe_barrier_wait(ml_probe_barrier *b) {
    pthread_mutex_lock(&b->mutex);
    unsigned gen = b->generation;
    if (++b->waiting == b->count) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cond);
    } else {
        while (gen == b->generation) pthread_cond_wait(&b->cond, &b->mutex);
    }
    pthread_mutex_unlock(&b->mutex);
}

/* ---- read bandwidth ----------------------------------------------------------------------- */

static ml_probe_isa ml_probe_detect_isa(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) return ML_PROBE_AVX512BF16;
    if (avx512) return ML_PROBE_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ML_PROBE_AVX2;
#endif
    return ML_PROBE_GENERIC;
}

const char *ml_probe_isa_name(ml_probe_isa isa) {
    switch (isa) {
    case ML_PROBE_AVX512BF16: return "avx512bf16 vdpbf16ps";
    case ML_PROBE_AVX512: return "avx512 f32 fma";
    case ML_PROBE_AVX2: return "avx2 f32 fma";
    case ML_PROBE_INT8_AVX2: return "avx2 int8 vpmaddubsw";
    case ML_PROBE_INT8_AVX512VNNI: return "avx512vnni int8 vpdpbusd";
    default: return "scalar f32";
    }
}

/* Sum of 64-bit words of [begin, end) (the sum keeps the loads from being optimised away).
 * Four independent 256-bit adds per 128 bytes; bytes is a multiple of 128. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t ml_probe_read_avx2(const char *p, size_t bytes) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < bytes; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, a0);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

static uint64_t ml_probe_read_generic(const char *p, size_t bytes) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < bytes; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof w);
        s0 += w[0];
        s1 += w[1];
        s2 += w[2];
        s3 += w[3];
    }
    return s0 + s1 + s2 + s3;
}

/* ---- passes on n threads --------------------------------------------------------------- */

/* work(ctx, thread_index) is one thread's share of one pass. */
typedef void (*ml_probe_work)(void *ctx, int thread_index);

typedef struct {
    ml_probe_work work;
    void *ctx;
    int n_threads, passes;
    ml_probe_barrier *barrier;
    double *pass_start; /* [passes] written by thread 0 */
    double *pass_end;   /* [passes][n_threads] */
} ml_probe_runner;

typedef struct {
    ml_probe_runner *runner;
    int index;
} ml_probe_runner_arg;

static void *ml_probe_runner_thread(void *p) {
    ml_probe_runner_arg *arg = p;
    ml_probe_runner *r = arg->runner;
    for (int pass = 0; pass < r->passes; pass++) {
        ml_probe_barrier_wait(r->barrier);
        if (arg->index == 0) r->pass_start[pass] = ml_probe_now();
        r->work(r->ctx, arg->index);
        r->pass_end[(size_t)pass * r->n_threads + arg->index] = ml_probe_now();
    }
    return NULL;
}

/* Runs `passes` passes of work on n_threads threads (the caller included), all starting each
 * pass together. Returns the shortest pass in seconds, from the common start to the last
 * thread's end (the pass least disturbed by other processes), or 0 when out of memory;
 * *started is the number of threads that ran (fewer when a thread could not be created). */
static double ml_probe_best_pass(int n_threads, int passes, ml_probe_work work, void *ctx, int *started) {
    double *pass_start = calloc((size_t)passes, sizeof(double));
    double *pass_end = calloc((size_t)passes * (size_t)n_threads, sizeof(double));
    pthread_t *threads = calloc((size_t)n_threads, sizeof(pthread_t));
    ml_probe_runner_arg *args = calloc((size_t)n_threads, sizeof(ml_probe_runner_arg));
    double best = 0;
    *started = 0;
    if (pass_start && pass_end && threads && args) {
        ml_probe_barrier barrier;
        ml_probe_barrier_init(&barrier, n_threads);
        ml_probe_runner runner = {work, ctx, n_threads, passes, &barrier, pass_start, pass_end};
        for (int t = 0; t < n_threads; t++) {
            args[t].runner = &runner;
            args[t].index = t;
        }
        int running = 1; /* the caller */
        while (running < n_threads &&
               pthread_create(&threads[running], NULL, ml_probe_runner_thread, &args[running]) == 0)
            running++;
        if (running < n_threads) ml_probe_barrier_set_count(&barrier, running);
        ml_probe_runner_thread(&args[0]);
        for (int t = 1; t < running; t++) pthread_join(threads[t], NULL);
        for (int pass = 0; pass < passes; pass++) {
            double end = 0;
            for (int t = 0; t < running; t++)
                if (pass_end[(size_t)pass * n_threads + t] > end) end = pass_end[(size_t)pass * n_threads + t];
            double seconds = end - pass_start[pass];
            if (best == 0 || seconds < best) best = seconds;
        }
        ml_probe_barrier_destroy(&barrier);
        *started = running;
    }
    free(args);
    free(threads);
    free(pass_end);
    free(pass_start);
    return best;
}

static int ml_probe_clamp_threads(int n_threads) {
    return n_threads < 1 ? 1 : n_threads > ML_PROBE_MAX_THREADS ? ML_PROBE_MAX_THREADS : n_threads;
}

/* ---- read bandwidth (continued) ------------------------------------------------------------ */

typedef struct {
    const char *buffer;
    size_t share; /* bytes per thread, multiple of 128 */
    int use_avx2;
    uint64_t sink[ML_PROBE_MAX_THREADS];
} ml_probe_bw_ctx;

static void ml_probe_bw_work(void *p, int index) {
    ml_probe_bw_ctx *c = p;
    const char *mine = c->buffer + (size_t)index * c->share;
#if defined(__x86_64__)
    if (c->use_avx2) {
        c->sink[index] += ml_probe_read_avx2(mine, c->share);
        return;
    }
#endif
    c->sink[index] += ml_probe_read_generic(mine, c->share);
}

double ml_probe_read_bandwidth(int n_threads, size_t bytes, int passes, int huge_pages) {
    n_threads = ml_probe_clamp_threads(n_threads);
    if (passes < 1) passes = 1;
    size_t share = bytes / (size_t)n_threads / 128 * 128;
    if (share == 0) return 0;
    char *buffer = NULL;
    size_t align = huge_pages ? (size_t)2 << 20 : 4096;
    if (posix_memalign((void **)&buffer, align, share * (size_t)n_threads) != 0) return 0;
#ifdef MADV_HUGEPAGE
    if (huge_pages) madvise(buffer, share * (size_t)n_threads, MADV_HUGEPAGE);
#endif
    /* touch every page with non-zero data (zero pages could be shared copy-on-write) */
    for (size_t i = 0; i < share * (size_t)n_threads; i += 64) buffer[i] = (char)(i >> 6);
    ml_probe_bw_ctx *ctx = calloc(1, sizeof *ctx);
    double rate = 0;
    if (ctx) {
        ctx->buffer = buffer;
        ctx->share = share;
#if defined(__x86_64__)
        ctx->use_avx2 = __builtin_cpu_supports("avx2");
#endif
        int started;
        double seconds = ml_probe_best_pass(n_threads, passes, ml_probe_bw_work, ctx, &started);
        if (seconds > 0) rate = (double)(share * (size_t)started) / seconds;
    }
    free(ctx);
    free(buffer);
    return rate;
}

double ml_probe_read_ceiling(int n_threads, size_t bytes, int passes, int *huge_out) {
    double small = ml_probe_read_bandwidth(n_threads, bytes, passes, 0);
    double huge = ml_probe_read_bandwidth(n_threads, bytes, passes, 1);
    if (huge_out) *huge_out = huge > small;
    return huge > small ? huge : small;
}

/* ---- dot-product peak --------------------------------------------------------------------- */

/* Each kernel runs `iterations` rounds of 12 independent accumulator updates and returns the
 * flops done. The accumulators are folded into a result so nothing is dead code. */
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static double ml_probe_fma_avx2(long iterations, float *result) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 x = _mm256_set1_ps(1e-3f), y = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(x, y, a[i]);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    *result = lanes[0];
    return (double)iterations * 12.0 * 16.0;
}

__attribute__((target("avx512f"))) static double ml_probe_fma_avx512(long iterations, float *result) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    *result = _mm512_reduce_add_ps(s);
    return (double)iterations * 12.0 * 32.0;
}

__attribute__((target("avx512f,avx512bf16"))) static double ml_probe_dpbf16(long iterations, float *result) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512i x = _mm512_set1_epi16(0x3f80), y = _mm512_set1_epi16(0x3380); /* 1.0, ~6e-8 */
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)x, (__m512bh)y);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    *result = _mm512_reduce_add_ps(s);
    return (double)iterations * 12.0 * 64.0; /* 16 lanes x 2 pairs x (mul + add) */
}

/* int8 products as fast mode's kernels do them: u8 x s8 (the operands' values do not change the
 * timing). 12 independent chains; an op is a multiply or an add, as for the flops above. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double ml_probe_vnni(long iterations, float *result) {
    __m512i a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], x, y);
    }
    __m512i s = a[0]; /* vector adds wrap; a scalar reduction could overflow (undefined) */
    for (int i = 1; i < 12; i++) s = _mm512_add_epi32(s, a[i]);
    *result = (float)_mm_cvtsi128_si32(_mm512_castsi512_si128(s));
    return (double)iterations * 12.0 * 128.0; /* 16 lanes x 4 products x (mul + add) */
}

__attribute__((target("avx2"))) static double ml_probe_maddubs(long iterations, float *result) {
    __m256i a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_epi32(i);
    const __m256i x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones));
    }
    __m256i s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_epi32(s, a[i]);
    int lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, s);
    *result = (float)lanes[0];
    return (double)iterations * 12.0 * 64.0; /* 32 products x (mul + add) */
}
#endif

static double ml_probe_fma_generic(long iterations, float *result) {
    float a[12];
    for (int i = 0; i < 12; i++) a[i] = 0.001f * (float)i;
    for (long it = 0; it < iterations; it++)
        for (int i = 0; i < 12; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < 12; i++) s += a[i];
    *result = s;
    return (double)iterations * 12.0 * 2.0;
}

typedef struct {
    ml_probe_isa isa;
    long iterations;
    double flops_per_thread;
    float sink[ML_PROBE_MAX_THREADS];
} ml_probe_peak_ctx;


static double ml_probe_peak_kernel(ml_probe_isa isa, long iterations, float *result) {
#if defined(__x86_64__)
    switch (isa) {
    case ML_PROBE_AVX512BF16: return ml_probe_dpbf16(iterations, result);
    case ML_PROBE_AVX512: return ml_probe_fma_avx512(iterations, result);
    case ML_PROBE_AVX2: return ml_probe_fma_avx2(iterations, result);
    case ML_PROBE_INT8_AVX512VNNI: return ml_probe_vnni(iterations, result);
    case ML_PROBE_INT8_AVX2: return ml_probe_maddubs(iterations, result);
    default: break;
    }
#else
    (void)isa;
#endif
    return ml_probe_fma_generic(iterations, result);
}

static void ml_probe_peak_work(void *p, int index) {
    ml_probe_peak_ctx *c = p;
    double flops = ml_probe_peak_kernel(c->isa, c->iterations, &c->sink[index]);
    if (index == 0) c->flops_per_thread = flops;
}

static int ml_probe_has_vnni512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

double ml_probe_dot_peak(int n_threads, double seconds, int passes, ml_probe_isa *isa_out) {
    ml_probe_isa isa = ml_probe_detect_isa();
    if (isa_out) *isa_out = isa;
    return ml_probe_dot_peak_isa(n_threads, seconds, passes, isa);
}

/* Whether this CPU runs the probe kernel of isa (each level implies the ones below it). */
static int ml_probe_isa_available(ml_probe_isa isa) {
    ml_probe_isa best = ml_probe_detect_isa();
    if (isa == ML_PROBE_INT8_AVX512VNNI) return ml_probe_has_vnni512();
    if (isa == ML_PROBE_INT8_AVX2) return best != ML_PROBE_GENERIC;
    if (isa == ML_PROBE_AVX512BF16) return best == ML_PROBE_AVX512BF16;
    if (isa == ML_PROBE_AVX512) return best == ML_PROBE_AVX512BF16 || best == ML_PROBE_AVX512;
    if (isa == ML_PROBE_AVX2) return best != ML_PROBE_GENERIC;
    return 1;
}

double ml_probe_dot_peak_isa(int n_threads, double seconds, int passes, ml_probe_isa isa) {
    if (!ml_probe_isa_available(isa)) return 0;
    n_threads = ml_probe_clamp_threads(n_threads);
    if (passes < 1) passes = 1;
    float result;
    long iterations = 1L << 16;
    for (;;) { /* calibrate: about `seconds` per pass */
        double t0 = ml_probe_now();
        ml_probe_peak_kernel(isa, iterations, &result);
        double dt = ml_probe_now() - t0;
        if (dt > seconds / 4 || iterations > (1L << 40)) {
            iterations = (long)((double)iterations * seconds / (dt > 1e-9 ? dt : 1e-9));
            break;
        }
        iterations *= 4;
    }
    if (iterations < 1024) iterations = 1024;
    ml_probe_peak_ctx *ctx = calloc(1, sizeof *ctx);
    double rate = 0;
    if (ctx) {
        ctx->isa = isa;
        ctx->iterations = iterations;
        int started;
        double best = ml_probe_best_pass(n_threads, passes, ml_probe_peak_work, ctx, &started);
        if (best > 0) rate = ctx->flops_per_thread * started / best;
    }
    free(ctx);
    return rate;
}

double ml_probe_int8_peak(int n_threads, double seconds, int passes, ml_probe_isa *isa_out) {
    ml_probe_isa isa = ml_probe_isa_available(ML_PROBE_INT8_AVX512VNNI) ? ML_PROBE_INT8_AVX512VNNI
                       : ml_probe_isa_available(ML_PROBE_INT8_AVX2)     ? ML_PROBE_INT8_AVX2
                                                                        : ML_PROBE_GENERIC;
    if (isa_out) *isa_out = isa;
    return isa == ML_PROBE_GENERIC ? 0 : ml_probe_dot_peak_isa(n_threads, seconds, passes, isa);
}
