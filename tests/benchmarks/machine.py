"""A one-line description of the machine a benchmark ran on, for its report.

Ratios between contenders hold on one machine only: which vector instructions the CPU has
decides how fast the int8 and bfloat16 paths run (OpenVINO's encoder, the coarse integer pass),
so each report names the CPU and its widest instructions.
"""

from __future__ import annotations

import os
from pathlib import Path


def describe() -> str:
    """``"2 CPU cores, AMD EPYC, AVX2 (no AVX-512, no BF16 instructions)"`` and the like."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text("ascii", "replace")
    except OSError:
        return f"{os.cpu_count()} CPU cores"
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown CPU")
    flags = set(cpuinfo.split())
    if "amx_bf16" in flags:
        features = "AVX-512 with AMX-BF16"
    elif "avx512_bf16" in flags:
        features = "AVX-512 with BF16 (no AMX)"
    elif "avx512f" in flags:
        features = "AVX-512 (no BF16 instructions)"
    elif "avx2" in flags:
        features = "AVX2 (no AVX-512, no BF16 instructions)"
    else:
        features = "no AVX2"
    return f"{os.cpu_count()} CPU cores, {model}, {features}"
