"""One float32 arithmetic path for the reference writers (make_fixtures.py, hf_reference.py and
hf_logits.py --reproducible), so that a committed reference is rewritten bit for bit whatever
the machine's core count or SIMD level.

torch on CPU picks three things per machine that change how float32 sums round:
  * the thread count: a GEMM split over more threads sums in another order (with MKL's fixed
    path below, 2 threads still changed h8kv2_headdim_untied_f32's logits against 1);
  * the SIMD level of ATen's own kernels (softmax, norms, element-wise ops), AVX-512, AVX2 or the
    baseline build, chosen by the CPU unless ATEN_CPU_CAPABILITY names one;
  * MKL's code path for the GEMMs, chosen by the CPU unless MKL_CBWR names one (Intel's
    "conditional numerical reproducibility": COMPATIBLE is the SSE2 path any x86-64 CPU runs).
Here all three are fixed: one thread, ATen's baseline kernels, MKL COMPATIBLE, and oneDNN off
(it would pick its own per-CPU kernels). The logits came out the same bits with MKL held to AVX2
or SSE4.2 (MKL_ENABLE_INSTRUCTIONS) on an AVX-512 machine, where without these settings they
differed by up to 1.7e-5. The price is speed: single-threaded scalar ATen, fine for the tiny
fixtures and the 135M default model, slow for a 1B model (hf_reference.py --fast there).

pin_environment() must run before torch does its first computation (the variables are read
then, not at import); the writers call it before they import torch.
"""

import os

ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
}


def pin_environment():
    os.environ.update(ENVIRONMENT)


def pin_torch(torch):
    """One thread, deterministic algorithms, no oneDNN; after pin_environment()."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (the module imported twice)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    assert torch.backends.cpu.get_cpu_capability() == "DEFAULT", "pin_environment() came too late"
