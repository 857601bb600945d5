"""Progress bars on terminals only, the allocator switch, the fork pool, and the demo's one-line stage results."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from lensaudit.utils import progress as pg


def test_progress_bars_are_off_without_a_terminal_and_on_when_asked(monkeypatch):
    monkeypatch.delenv("LENSAUDIT_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not pg.enabled()
    monkeypatch.setenv("LENSAUDIT_PROGRESS", "1")
    assert pg.enabled()
    import rich.progress
    calls = []
    real_advance = rich.progress.Progress.advance
    monkeypatch.setattr(rich.progress.Progress, "advance",
                        lambda self, task, n=1: (calls.append(n), real_advance(self, task, n))[1])
    with pg.progress(3, "testing") as advance:
        for _ in range(3):
            advance()
    assert calls == [1, 1, 1]                     # a real rich bar moved three steps
    monkeypatch.setenv("LENSAUDIT_PROGRESS", "0")
    assert not pg.enabled()
    calls.clear()
    with pg.progress(3, "quiet") as advance:
        assert advance() is None
    assert calls == []                            # off: no bar at all


def test_keep_freed_memory_applies_on_glibc_and_once():
    import platform

    from lensaudit.utils import alloc
    first = alloc.keep_freed_memory()
    if platform.libc_ver()[0] == "glibc":
        assert first is True and alloc._done            # mallopt accepted both thresholds
    assert alloc.keep_freed_memory() == first           # a second call changes nothing


@pytest.mark.parametrize("name, summary, want", [
    ("fetch", {"n_stored": 5, "n_already_stored": 10, "n_failed": 1}, "15 cutouts in the store (5 new), 1 failed"),
    ("evaluate", {"roc_auc": 0.9471, "n_pos": 70, "n_neg": 769}, "val ROC AUC 0.947 (70 pos, 769 neg)"),
    ("selection", {"completeness_p05": {"sersic": 0.215}}, "completeness p>=0.5: sersic 0.21"),
    ("check", {"passed": False}, "FAILED"),
    ("train", {"best_val_auc": None}, ""),
    ("unknown", {}, ""),
])
def test_one_line_stage_results(name, summary, want):
    from lensaudit.demo import one_line
    assert one_line(name, summary) == want


def test_fork_map_equals_a_loop_for_any_worker_count():
    """fork_map returns [fn(x) for x in items] in item order whatever the workers; the function may close
    over state that cannot be pickled; on_result is called once per item."""
    import threading

    from lensaudit.utils.pool import fork_map

    lock = threading.Lock()                     # unpicklable: only forked children can see it
    items = list(range(37))

    def fn(i):
        with lock:
            return os.getpid(), np.random.default_rng(i).normal(size=3) * i

    want = [fn(i)[1] for i in items]
    for workers in (1, 2, 3):
        calls = []
        got = fork_map(fn, items, workers=workers, chunksize=4, on_result=lambda c=calls: c.append(1))
        assert len(calls) == len(items)
        for (_pid, g), w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        pids = {pid for pid, _ in got}
        assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)


def test_thread_map_equals_a_loop_in_order_and_raises_the_items_error():
    """thread_map returns [fn(x) for x in items] in item order for any worker count (threads: the items run
    concurrently, so a slow early item must not come back late), and an item's exception reaches the caller."""
    import threading
    import time

    from lensaudit.utils.pool import thread_map

    items = list(range(23))
    seen = set()

    def fn(i):
        time.sleep(0.002 * ((23 - i) % 5))        # later items often finish first
        seen.add(threading.get_ident())
        return np.random.default_rng(i).normal(size=2) * i

    want = [fn(i) for i in items]
    for workers in (1, 2, 4):
        seen.clear()
        got = thread_map(fn, items, workers=workers)
        assert len(got) == len(items)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert (seen == {threading.get_ident()}) if workers == 1 else (threading.get_ident() not in seen)

    def bad(i):
        if i == 7:
            raise ValueError("item 7 is bad")
        return i

    with pytest.raises(ValueError, match="item 7 is bad"):
        thread_map(bad, items, workers=3)


def test_default_workers_reads_the_environment(monkeypatch):
    from lensaudit.utils.pool import default_workers

    monkeypatch.setenv("LENSAUDIT_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("LENSAUDIT_WORKERS", "0")
    with pytest.raises(ValueError, match="must be at least 1"):
        default_workers()
    monkeypatch.setenv("LENSAUDIT_WORKERS", "two")
    with pytest.raises(ValueError, match="not an integer"):
        default_workers()
    monkeypatch.delenv("LENSAUDIT_WORKERS")
    assert 1 <= default_workers(limit=4) <= 4


def test_fork_map_workers_leave_sigterm_and_ctrl_c_to_the_parent():
    """The CLI turns SIGTERM into an exception; forked workers must not inherit that (the pool ends them
    with SIGTERM, which printed a traceback per worker in `make demo`), and must ignore Ctrl-C."""
    import signal

    from lensaudit.utils.pool import fork_map
    from lensaudit.utils.signals import sigterm_as_interrupt

    def handlers(_):
        return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    with sigterm_as_interrupt():
        parent = signal.getsignal(signal.SIGTERM)
        assert parent not in (signal.SIG_DFL, signal.SIG_IGN)
        got = fork_map(handlers, range(4), workers=2)
    assert all(t == signal.SIG_DFL and i == signal.SIG_IGN for t, i in got)
