"""Up-front memory plans: refuse work whose memory would exceed the machine's before any file is written."""

from __future__ import annotations

import os

from lensaudit.errors import InputError

#: Share of the available memory a plan may take.
MAX_FRACTION = 0.8


def available_bytes() -> int:
    """Memory available to a new allocation now (``MemAvailable`` of ``/proc/meminfo``; else the physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_plan(estimate_bytes: float, what: str, advice: str, available: int | None = None) -> None:
    """:class:`InputError` when ``estimate_bytes`` exceeds :data:`MAX_FRACTION` of the available memory; the
    message gives the estimate, what is available and ``advice``."""
    avail = available_bytes() if available is None else available
    if estimate_bytes > MAX_FRACTION * avail:
        raise InputError(f"{what} needs about {estimate_bytes / 1e9:,.1f} GB of memory, more than {MAX_FRACTION:.0%} of "
                         f"the {avail / 1e9:,.1f} GB available; {advice}. Nothing was written")


__all__ = ["MAX_FRACTION", "available_bytes", "check_plan"]
