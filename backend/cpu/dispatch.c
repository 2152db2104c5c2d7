/* Run-time choice of the kernel table. The CPU is probed once (pthread_once, so any thread may
 * ask first); a table whose instructions the CPU lacks is never returned, so code compiled for
 * AVX-512 runs only where it can. MESHLLAMA_ISA forces a variant the CPU supports; an unknown or
 * unsupported name silently gives the best table (the library prints nothing). */
#include "backend/cpu/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_features.h"

static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static ml_cpu_features features;

static pthread_once_t best_once = PTHREAD_ONCE_INIT;
static const ml_cpu_kernels *best;

static void detect_features(void) { features = ml_cpu_detect(); }

static ml_cpu_features cpu_features(void) {
    pthread_once(&features_once, detect_features);
    return features;
}

const ml_cpu_kernels *ml_cpu_kernels_variant(const char *name) {
    if (name == NULL) return NULL;
    ml_cpu_features f = cpu_features();
    if (strcmp(name, "scalar") == 0) return &ml_cpu_kernels_scalar;
    if (strcmp(name, "avx2") == 0) return f.avx2_fma ? &ml_cpu_kernels_avx2 : NULL;
    /* The AVX-512 files are also built with -mavx2 -mfma -mf16c, which every AVX-512 CPU has. */
    if (strcmp(name, "avx512") == 0) return f.avx512 && f.avx2_fma ? &ml_cpu_kernels_avx512 : NULL;
    if (strcmp(name, "avx512vnni") == 0) return f.avx512 && f.avx512_vnni && f.avx2_fma ? &ml_cpu_kernels_avx512vnni : NULL;
    if (strcmp(name, "avx512bf16") == 0)
        return f.avx512 && f.avx512_bf16 && f.avx512_vnni && f.avx2_fma ? &ml_cpu_kernels_avx512bf16 : NULL;
    return NULL;
}

static void choose_best(void) {
    const char *forced = getenv("MESHLLAMA_ISA");
    best = forced && forced[0] ? ml_cpu_kernels_variant(forced) : NULL;
    if (best) return;
    /* Intel's vdpbf16ps runs at half the rate of two 512-bit FMAs (Xeon, Emerald Rapids: about 2
     * cycles per instruction against 0.5), so there the widening f32 product of avx512vnni beats
     * it from about 4 tokens (docs/BENCHMARKS.md) and the avx512bf16 table is not the default. */
    __builtin_cpu_init();
    int skip_dpbf16 = __builtin_cpu_is("intel");
    static const char *const preference[] = {"avx512bf16", "avx512vnni", "avx512", "avx2"};
    for (size_t i = 0; i < sizeof preference / sizeof preference[0] && !best; i++)
        if (!(skip_dpbf16 && i == 0)) best = ml_cpu_kernels_variant(preference[i]);
    if (!best) best = &ml_cpu_kernels_scalar;
}

const ml_cpu_kernels *ml_cpu_kernels_best(void) {
    pthread_once(&best_once, choose_best);
    return best;
}
