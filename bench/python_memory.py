#!/usr/bin/env python3
"""Peak memory of build_model: the HF model alone, then meshllama.build_model(hf_model, Mesh(tp),
max_seq_len) on its tensors and one forward step (VmHWM/VmRSS of this process; docs/BENCHMARKS.md).

    .venv/bin/python bench/python_memory.py [--model M] [--tp 2] [--max-seq-len 2048]
"""
import json
import os

import torch

from python_bench import parser
import meshllama  # noqa: E402 (python_bench puts the package on the path)
from meshllama.run_eval import load_hf  # noqa: E402


def mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    args = parser(__doc__, tp=2, max_seq_len=2048).parse_args()
    hf, _ = load_hf(args.model)
    hf_bytes = sum(t.numel() * t.element_size() for t in hf.state_dict().values())
    rss_hf, hwm_hf = mib("VmRSS"), mib("VmHWM")
    model = meshllama.build_model(hf, args.tp, args.max_seq_len, max_batch=1)
    model(torch.tensor([[1, 2, 3, 4]]))
    rss, hwm = mib("VmRSS"), mib("VmHWM")
    print(json.dumps({"model": os.path.basename(args.model), "tp": args.tp, "max_seq_len": args.max_seq_len,
                      "hf_tensors_mib": round(hf_bytes / 2**20, 1), "rss_after_hf_mib": round(rss_hf, 1),
                      "hwm_after_hf_mib": round(hwm_hf, 1), "rss_after_build_mib": round(rss, 1),
                      "hwm_after_build_mib": round(hwm, 1), "added_by_build_mib": round(rss - rss_hf, 1),
                      "weight_dtype": model.info["weight_dtype"]}))


if __name__ == "__main__":
    main()
