"""Throughput windows shared by the benchmarks (they run as scripts: ``from timing import ...``)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path


def window_rate(fn: Callable[[], object], items_per_call: int, seconds: float) -> float:
    """Items/s of ``fn`` over one time window of ``seconds`` (at least 2 calls, after a warm-up)."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        fn()
        calls += 1
    return calls * items_per_call / elapsed


def cpu_model() -> str:
    """The CPU's name (/proc/cpuinfo), which decides the ratios more than anything else here."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# The instruction sets that decide onnxruntime's kernels: MLAS picks its fp32 convolutions by
# vector width (AVX2: 8 floats, AVX-512: 16) and its int8 products by VNNI / AMX.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")


def cpu_line() -> str:
    """The CPU's name with its :data:`SIMD_FLAGS` in brackets, for a results file's header."""
    flags = cpu_flags()
    return f"{cpu_model()} ({', '.join(flags) if flags else 'no AVX2 or later SIMD flags found'})"


def cpu_flags() -> list[str]:
    """Which of :data:`SIMD_FLAGS` the CPU reports (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return []
