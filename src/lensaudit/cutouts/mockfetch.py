"""Fetching from the embedded mock survey: serve it on loopback and go through the real client.

The loopback server is threaded, but rendering is Python and numpy under one interpreter lock, so the
renders run in a pool of worker processes (one renderer each, loaded once per process); renders are
pure functions of the request (counter-based noise), so the pixels do not depend on which worker drew
them. The survey is checked and the workers started before the service opens: a survey that cannot be
rendered, or workers that cannot start, are an error at once, and a worker lost during a fetch stops it
(what was stored stays; a re-run fetches the rest) instead of every request being retried against a
broken pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd

from lensaudit.cutouts.client import FetchConfig, fetch_manifest
from lensaudit.cutouts.store import CutoutStore
from lensaudit.errors import LensauditError

log = logging.getLogger(__name__)


class RenderPoolError(LensauditError, RuntimeError):
    """The processes that render the mock survey's cutouts could not start, or one was lost during a fetch."""

_RENDERER = None        # this process's renderer (a worker's; in the parent only while the workers are forked)
_RENDERER_ROOT = None
_INHERITED = False      # whether this worker's renderer came from the parent at fork
_FORK_LOCK = threading.Lock()


def _init_worker(root: str) -> None:
    """A worker's renderer: the one it inherited from the parent at fork (its tables shared copy-on-write with
    the other workers), else loaded here."""
    global _RENDERER, _RENDERER_ROOT, _INHERITED
    from lensaudit.mock.render import load_renderer

    _INHERITED = _RENDERER is not None and _RENDERER_ROOT == root
    if not _INHERITED:
        _RENDERER, _RENDERER_ROOT = load_renderer(root), root


def _render(req):
    return _RENDERER(req)


def _ready() -> tuple[bool, bool]:
    return _RENDERER is not None, _INHERITED


def _render_fits(req):
    from lensaudit.mock.server import encode_response

    out = _RENDERER(req)
    return None if out is None else encode_response(req, out)


class PooledRenderer:
    """A render callable that sends each request to a pool of processes holding the mock's renderer.

    The survey is checked here (:meth:`MockSurvey.check`: a clear error, not a worker's traceback) and every
    worker is started and loaded before the first request. A worker lost later (killed, out of memory) breaks
    the pool: every later request raises :class:`RenderPoolError` at once and :attr:`broken` says why (no new
    processes are forked from the serving process, whose threads may hold locks)."""

    def __init__(self, root: str | Path, workers: int):
        from lensaudit.mock.layout import MockSurvey

        global _RENDERER, _RENDERER_ROOT
        from lensaudit.mock.render import load_renderer

        MockSurvey.check(root)
        self.root, self.broken = str(root), None
        # The renderer is loaded once, here, and the workers forked with it: its tables (about 1.2 GB for the
        # demo's 33 deg^2) are shared copy-on-write, not loaded again by each worker. The parent drops its
        # reference once every worker has started. Forked workers: renders use numpy and scipy only (no
        # OpenMP), and fork needs no main-module guard.
        with _FORK_LOCK:
            _RENDERER, _RENDERER_ROOT = load_renderer(self.root), self.root
            try:
                self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                                initargs=(self.root,), mp_context=multiprocessing.get_context("fork"))
                #: whether every worker holds the parent's renderer (shared pages) rather than a copy it loaded
                self.shared = all(f.result()[1] for f in [self.pool.submit(_ready) for _ in range(workers)])
            except BrokenProcessPool as exc:
                self.pool.shutdown(wait=False, cancel_futures=True)
                raise RenderPoolError(f"the {workers} render processes for mock survey {self.root} failed to start "
                                      "(a worker's traceback is logged above)") from exc
            finally:
                _RENDERER = _RENDERER_ROOT = None

    def _run(self, fn, req):
        if self.broken is not None:
            raise RenderPoolError(self.broken)
        try:
            return self.pool.submit(fn, req).result()
        except BrokenProcessPool as exc:
            self.broken = (f"a render process for mock survey {self.root} was lost ({exc}); "
                           "the cutouts stored so far are kept, a re-run fetches the rest")
            raise RenderPoolError(self.broken) from exc

    def __call__(self, req):
        return self._run(_render, req)

    def fits_body(self, req) -> bytes | None:
        """The service's FITS bytes for ``req``, rendered and encoded in a worker (the server sends them as they
        come: the serving process neither encodes nor unpickles a cube)."""
        return self._run(_render_fits, req)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=self.broken is not None)


def fetch_from_mock(m: pd.DataFrame, store: CutoutStore, survey_dir: str | Path, workers: int | None = None):
    """Serve the mock survey at ``survey_dir`` on 127.0.0.1 and fetch the rows of ``m`` (id, ra, dec) into
    ``store`` with the real cutout client; returns the client's report. ``workers`` render processes
    (default: the machine's cores, at most 4; 1 renders in this process)."""
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.server import serve_in_thread
    from lensaudit.utils.progress import enabled

    workers = workers or min(os.cpu_count() or 1, 4)
    render = PooledRenderer(survey_dir, workers) if workers > 1 else load_renderer(Path(survey_dir))
    # a loopback render is a pure function of the request: a second try sees the same answer, so one retry after
    # half a second (not the public service's four over 30 s) is all a failing request gets
    cfg = FetchConfig(rate_per_s=1000, concurrency=max(4, 2 * workers), max_retries=1, backoff_base_s=0.5)
    try:
        with serve_in_thread(render) as srv:
            rep = fetch_manifest(m, store, cfg.model_copy(update={"service_url": srv.url}), progress=enabled())
    finally:
        if isinstance(render, PooledRenderer):
            render.close()
    if isinstance(render, PooledRenderer) and render.broken is not None:
        raise RenderPoolError(f"{render.broken} ({rep.n_stored} of {rep.n_requested} fetched)")
    return rep


__all__ = ["PooledRenderer", "fetch_from_mock"]
