"""Fetching from the embedded mock survey: serve it on loopback and go through the real client."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lensaudit.cutouts.client import FetchConfig, fetch_manifest
from lensaudit.cutouts.store import CutoutStore


def fetch_from_mock(m: pd.DataFrame, store: CutoutStore, survey_dir: str | Path):
    """Serve the mock survey at ``survey_dir`` on 127.0.0.1 and fetch the rows of ``m`` (id, ra, dec) into
    ``store`` with the real cutout client; returns the client's report."""
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.server import serve_in_thread

    with serve_in_thread(load_renderer(Path(survey_dir))) as srv:
        from lensaudit.utils.progress import enabled

        return fetch_manifest(m, store, FetchConfig(service_url=srv.url, rate_per_s=1000, concurrency=4),
                              progress=enabled())


__all__ = ["fetch_from_mock"]
