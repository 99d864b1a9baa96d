"""Portable CPU kernels: the same numbers on every x86-64 machine. Import this module before `import torch`.

torch picks its CPU kernels by what the processor offers: ATen's vectorised loops, oneDNN's convolutions and
MKL's matrix products each have an AVX-512 and an AVX2 version, and the two round differently. Two machines
of the same kind that differ only in AVX-512 (an AMD EPYC of one generation and of the next, or an Intel and an
AMD server) then train different models from the same seed, and a small experiment's verdict can follow the
rounding (docs/world.md, "Spread and determinism"). Pinning all three to AVX2, which every x86-64 server of the last ten
years has, makes them compute the same sums in the same order (with a fixed thread count).

The experiment tools (tools/bench_fidelity.py, tools/pretrain_clip.py, tools/demo.py) import this first. A
user's own setting of any of these variables wins; `FROSTLINE_NATIVE_KERNELS=1` turns the pinning off (the
fastest kernels of this processor). Elsewhere than x86-64 (ARM) nothing is set.
"""
from __future__ import annotations

import os
import platform

PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2",    # ATen's vectorised CPU loops
            "DNNL_MAX_CPU_ISA": "AVX2",       # oneDNN (convolutions)
            "MKL_CBWR": "AVX2"}               # MKL's matrix products: its reproducible AVX2 code path


def _has_avx2() -> bool:
    """Whether this x86-64 processor has AVX2 (without /proc/cpuinfo, as on macOS, assume it does)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return True


def pinned() -> dict[str, str]:
    """The kernel variables in effect for this process (empty when nothing was pinned)."""
    return {k: os.environ[k] for k in PORTABLE if k in os.environ}


def pin() -> dict[str, str]:
    """Set the portable kernels unless the user chose otherwise; returns the variables in effect."""
    if os.environ.get("FROSTLINE_NATIVE_KERNELS", "") not in ("", "0"):
        return pinned()
    if platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2():
        return pinned()
    for key, value in PORTABLE.items():
        os.environ.setdefault(key, value)
    return pinned()


pin()
