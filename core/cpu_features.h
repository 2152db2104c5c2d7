/* What the CPU can run, detected once at run time. */
#ifndef ML_CORE_CPU_FEATURES_H
#define ML_CORE_CPU_FEATURES_H

typedef struct {
    int avx2_fma;     /* AVX2 + FMA + F16C */
    int avx512;       /* AVX-512 F, BW, VL, DQ */
    int avx512_bf16;  /* AVX512_BF16 (vdpbf16ps) */
    int avx512_vnni;  /* AVX512_VNNI (vpdpbusd) */
} ml_cpu_features;

ml_cpu_features ml_cpu_detect(void);

#endif
