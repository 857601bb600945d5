"""Order-preserving maps over forked worker processes or threads, for CPU-bound loops of independent items.

``fork_map(fn, items)`` returns exactly ``[fn(x) for x in items]``: each item is computed by the
same code whatever the number of workers, and results come back in item order, so outputs do not
depend on ``workers`` (tested). ``fn`` may be a closure over unpicklable state (a renderer, a
DataFrame): forked children inherit it, and only item indices and results cross process
boundaries. Only for numpy/scipy work: forking a process that runs OpenMP or torch thread pools
is not safe. Written on ``multiprocessing`` because ``concurrent.futures`` pickles the function.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Set in the parent just before the fork; children read it.
_TASK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def default_workers(limit: int = 4) -> int:
    """Worker processes to use: ``LENSAUDIT_WORKERS`` when set, else the CPUs this process may use (at most ``limit``)."""
    env = os.environ.get("LENSAUDIT_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise ValueError(f"LENSAUDIT_WORKERS={env!r} is not an integer") from exc
        if n < 1:
            raise ValueError(f"LENSAUDIT_WORKERS={env!r} must be at least 1")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, limit))


def _child_init() -> None:
    """Workers leave signals to the parent: the pool ends them with SIGTERM when the map is done (a parent's
    SIGTERM-as-exception handler, inherited through the fork, would print a traceback per worker), and
    Ctrl-C reaches the parent, which ends the pool."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(i: int):
    fn, items = _TASK  # type: ignore[misc]
    return fn(items[i])


def fork_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None, chunksize: int = 8,
             on_result: Callable[[], None] | None = None) -> list:
    """``[fn(x) for x in items]`` computed by ``workers`` forked processes (in-process when 1 or when
    fork is unavailable); ``on_result`` is called once per finished item (progress bars)."""
    global _TASK
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        out = []
        for x in items:
            out.append(fn(x))
            if on_result:
                on_result()
        return out
    _TASK = (fn, items)
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(items)), initializer=_child_init) as pool:
            out = []
            for r in pool.imap(_run, range(len(items)), chunksize=max(1, chunksize)):
                out.append(r)
                if on_result:
                    on_result()
        return out
    finally:
        _TASK = None


def thread_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None) -> list:
    """``[fn(x) for x in items]`` computed by ``workers`` threads (:func:`default_workers`), in item order.

    For functions whose time is spent in NumPy calls that release the GIL (sorting, ufuncs, cumulative sums on
    numeric arrays): each item is computed by the same code as in a plain loop, so results equal it bit for bit
    whatever ``workers`` is. In-process when 1 or for fewer than two items."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="thread-map") as pool:
        return list(pool.map(fn, items))


__all__ = ["default_workers", "fork_map", "thread_map"]
