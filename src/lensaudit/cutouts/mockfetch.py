"""Fetching from the embedded mock survey: serve it on loopback and go through the real client.

The loopback server is threaded, but rendering is Python and numpy under one interpreter lock, so the
renders run in a pool of worker processes (one renderer each, loaded once per process); renders are
pure functions of the request (counter-based noise), so the pixels do not depend on which worker drew
them.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from lensaudit.cutouts.client import FetchConfig, fetch_manifest
from lensaudit.cutouts.store import CutoutStore

_RENDERER = None


def _init_worker(root: str) -> None:
    global _RENDERER
    from lensaudit.mock.render import load_renderer

    _RENDERER = load_renderer(root)


def _render(req):
    return _RENDERER(req)


def _render_fits(req):
    from lensaudit.mock.server import encode_response

    out = _RENDERER(req)
    return None if out is None else encode_response(req, out)


class PooledRenderer:
    """A render callable that sends each request to a pool of processes holding the mock's renderer."""

    def __init__(self, root: str | Path, workers: int):
        # forked workers: renders use numpy and scipy only (no OpenMP), and fork needs no main-module guard
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(str(root),),
                                        mp_context=multiprocessing.get_context("fork"))

    def __call__(self, req):
        return self.pool.submit(_render, req).result()

    def fits_body(self, req) -> bytes | None:
        """The service's FITS bytes for ``req``, rendered and encoded in a worker (the server sends them as they
        come: the serving process neither encodes nor unpickles a cube)."""
        return self.pool.submit(_render_fits, req).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def fetch_from_mock(m: pd.DataFrame, store: CutoutStore, survey_dir: str | Path, workers: int | None = None):
    """Serve the mock survey at ``survey_dir`` on 127.0.0.1 and fetch the rows of ``m`` (id, ra, dec) into
    ``store`` with the real cutout client; returns the client's report. ``workers`` render processes
    (default: the machine's cores, at most 4; 1 renders in this process)."""
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.server import serve_in_thread
    from lensaudit.utils.progress import enabled

    workers = workers or min(os.cpu_count() or 1, 4)
    render = PooledRenderer(survey_dir, workers) if workers > 1 else load_renderer(Path(survey_dir))
    try:
        with serve_in_thread(render) as srv:
            return fetch_manifest(m, store, FetchConfig(service_url=srv.url, rate_per_s=1000,
                                                        concurrency=max(4, 2 * workers)), progress=enabled())
    finally:
        if isinstance(render, PooledRenderer):
            render.close()


__all__ = ["PooledRenderer", "fetch_from_mock"]
