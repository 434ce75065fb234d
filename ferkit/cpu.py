"""CPU facts and settings: how many cores this process may really use (its affinity mask and,
in a container, the cgroup CPU quota: ``docker --cpus=2`` on a 64-core host means 2, not 64),
and how freed tensor memory is kept for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from pathlib import Path

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def available_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Cores allowed by a cgroup v2 quota ("200000 100000" -> 2), None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's fixed mmap and trim thresholds; False where the C library has no mallopt."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def return_freed_memory(threshold: int = 4 << 20) -> bool:
    """Serve every block over ``threshold`` bytes with its own mmap(), returned to the system on free.

    What a long-running service wants: glibc otherwise raises its mmap threshold after the first
    large free (up to 32 MB), so a decoded photo's pixels land in heap arenas that keep their size
    after one spike (one arena per decoding thread). ``ferkit serve``'s workers apply it.
    4 MB, not less: a 640x480 photo's buffers (Pillow's 1.2 MB image, YuNet's 1 MB input and
    activations) then come from the heap again and again; at 1 MB each such request page-faulted
    ~4 MB of fresh, zeroed memory (1,024 faults) and the server's CPU per request went from 14.1 to
    12.0 ms at 4 MB (``benchmarks/serve_load.py``, 32 clients). Photos of a few megapixels and more
    still get their own mmap().
    """
    return _mallopt(threshold, threshold)


def keep_freed_memory(threshold: int = 256 << 20) -> bool:
    """Let freed tensor memory (blocks up to ``threshold`` bytes) stay in the process for reuse.

    glibc serves blocks over 32 MB, such as a batch of 512 faces' first activations, with fresh
    mmap()s and hands them back on free, so every batch's memory is page-faulted in and zeroed by
    the kernel again: on the 2-core machine (measured beside a training job) batches of 512 faces
    through the full-width network ran 2.6x faster with this setting. Returns False where the C
    library has no ``mallopt`` (not glibc). A process with it keeps up to ``2 * threshold`` of freed
    memory instead of returning it to the system, so ``ferkit serve`` does not apply it (cli.main).
    """
    return _mallopt(threshold, 2 * threshold)
