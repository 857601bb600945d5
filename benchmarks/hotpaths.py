"""Where a hot path spends its time: the top entries of a profile, as JSON rows for ``benchmarks/results/``.

Two profilers, each the standard one for its kind of code: :mod:`cProfile` for Python-level paths (rendering,
injection orchestration, the data loader) and :mod:`torch.profiler` for a training or scoring step (whose time is
inside torch operators, invisible to cProfile). Both are deterministic profilers with some overhead of their own
(cProfile: roughly 1 microsecond per Python call), so their shares, not their seconds, are what a reader should
compare with the benchmark's own timings.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path

_ROOTS = ("/site-packages/", "/src/")


def _where(file: str, line: int, name: str) -> str:
    """``package/module.py:line(function)`` without the machine's path (site-packages or the checkout's src/);
    a built-in by its name."""
    if file == "~":
        return name
    for root in _ROOTS:
        if root in file:
            file = file.split(root, 1)[1]
            break
    else:
        file = Path(file).name if file.startswith("/") else file
    return f"{file}:{line}({name})" if line else f"{file}({name})"


def python_profile(fn: Callable[[], object], top: int = 12) -> dict:
    """Run ``fn()`` once under cProfile: total seconds and the ``top`` functions by own time (``tottime``), each
    with its calls, own and cumulative seconds and its share of the total."""
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    st = pstats.Stats(pr)
    total = st.total_tt or 1e-12
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {"profiler": "cProfile", "total_s": round(total, 4), "sort": "own time (tottime)",
            "top": [{"function": _where(*key), "calls": int(v[1]), "own_s": round(v[2], 4), "cumulative_s": round(v[3], 4),
                     "own_share": round(v[2] / total, 4)} for key, v in rows]}


def torch_profile(fn: Callable[[], object], top: int = 12) -> dict:
    """Run ``fn()`` once under :mod:`torch.profiler` (CPU, and CUDA when available): the ``top`` operators by
    self time on the device that dominates, each with its calls and share."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    ev = prof.key_averages()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in ev) or 1e-12
    rows = sorted(ev, key=lambda e: getattr(e, attr), reverse=True)[:top]
    return {"profiler": "torch.profiler", "total_s": round(total / 1e6, 4),
            "sort": "self CUDA time" if cuda else "self CPU time",
            "top": [{"operator": e.key, "calls": int(e.count), "self_s": round(getattr(e, attr) / 1e6, 4),
                     "self_share": round(getattr(e, attr) / total, 4)} for e in rows]}
