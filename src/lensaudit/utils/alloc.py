"""Allocator tuning for tensor-heavy loops on Linux (glibc).

PyTorch on the CPU allocates each intermediate tensor with ``malloc``; glibc serves blocks above
``M_MMAP_THRESHOLD`` (128 KiB at first) with fresh ``mmap`` calls and trims freed heap above
``M_TRIM_THRESHOLD``, so a loop over ~1 MB intermediates spends much of its time in page faults.
Raising both thresholds keeps freed memory in the process for reuse: the injection engine runs
about 2.5x faster on 2 cores (``benchmarks/results/inject.json``). The cost is that memory freed
by the process is returned to the system later. A no-op (returning False) where glibc's ``mallopt``
is not available. Written by hand: no library exposes ``mallopt``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold_bytes`` (once per process); True if applied."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold_bytes))) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError):
        return False
    _done = ok
    if ok:
        log.debug("glibc mmap and trim thresholds raised to %d bytes", threshold_bytes)
    return ok


__all__ = ["keep_freed_memory"]
