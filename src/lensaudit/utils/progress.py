"""Progress bars (rich) for steps longer than a few seconds, shown only on an interactive terminal.

``with progress(total, "injecting sersic") as advance: ... advance(1)``. In logs, CI and notebooks
without a terminal nothing is drawn (the stages log a line per step instead); set
``LENSAUDIT_PROGRESS=0`` to turn bars off, ``=1`` to force them on."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def enabled() -> bool:
    env = os.environ.get("LENSAUDIT_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, description: str, unit: str = "") -> Iterator[Callable[[int], None]]:
    """A transient bar of ``total`` steps; yields ``advance(n=1)``."""
    if not enabled() or total <= 0:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
            TimeRemainingColumn()]
    with Progress(*cols, transient=True) as p:
        task = p.add_task(description, total=total)
        yield lambda n=1: p.advance(task, n)


__all__ = ["enabled", "progress"]
