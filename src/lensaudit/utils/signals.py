"""SIGTERM handled like Ctrl-C, so buffered work is committed before a process stops.

``timeout``, batch schedulers and container stops send SIGTERM, whose default action kills the
process at once; inside :func:`sigterm_as_interrupt` it raises :class:`~lensaudit.errors.Terminated`
(a ``KeyboardInterrupt``) in the main thread instead, and every ``with``/``finally`` that commits on
Ctrl-C commits on SIGTERM too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from lensaudit.errors import Terminated


def _raise_terminated(signum, frame) -> None:
    raise Terminated("terminated by SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only; elsewhere a no-op), SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is _raise_terminated:  # nested: already installed
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
