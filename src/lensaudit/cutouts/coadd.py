"""Cutting g,r,z stamps directly from DR10 per-brick coadd images (a data center that holds the coadds
on disk need not call the cutout service 450,000 times).

For a stamp at (ra, dec): the stamp's own TAN WCS (the service's, :func:`lensaudit.survey.geometry.cutout_wcs`)
gives every output pixel's sky position; each output pixel belongs to the brick whose primary region
[RA1, RA2) x [DEC1, DEC2) holds it (brick images overlap their neighbours by about 65 pixels, so the
interpolation near a brick edge stays inside the image); its value is the Lanczos-3 interpolation of that
brick's image at the position the brick's WCS gives. So stamps that straddle brick edges come out whole.
Pixels no brick covers, or whose brick file is missing, are 0.0 (the service's convention).

Positions go through astropy's WCS; the interpolation is :mod:`lensaudit.survey.resample`'s Lanczos-3 (the
mock service resamples its cutouts with the same function).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import InputError
from lensaudit.survey.coadd import CoaddFileError, coadd_path, read_coadd_image
from lensaudit.survey.constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC
from lensaudit.survey.geometry import cutout_wcs
from lensaudit.survey.resample import lanczos3_apply, lanczos3_at, lanczos3_weights

log = logging.getLogger(__name__)


class CoaddReader:
    """Stamps from a tree of DR10 coadd files (``root/coadd/<AAA>/<brick>/...``).

    ``bricks``: the survey's brick table (``survey-bricks.fits.gz`` or a mock's ``bricks.parquet``) with
    columns brickname, ra1, ra2, dec1, dec2 (any case). Decoded brick images are kept in a small cache
    (``cache_images`` images: 3600 x 3600 float32 is 52 MB each)."""

    def __init__(self, root: str | os.PathLike, bricks: pd.DataFrame, cache_images: int = 6):
        self.root = Path(root)
        b = bricks.rename(columns=str.lower)
        need = {"brickname", "ra1", "ra2", "dec1", "dec2"}
        if not need <= set(b.columns):
            raise InputError(f"coadd reader: the brick table lacks columns {sorted(need - set(b.columns))}")
        self.bricks = b[sorted(need)].reset_index(drop=True)
        self.bricks["brickname"] = self.bricks["brickname"].astype(str).str.strip()
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, object] | None] = OrderedDict()
        self.cache_images = max(1, int(cache_images))

    def _image(self, brick: str, band: str):
        key = (brick, band)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = coadd_path(self.root, brick, band)
        try:
            got = read_coadd_image(path)
        except CoaddFileError as exc:
            if path.exists():
                raise
            log.debug("coadd reader: %s", exc)
            got = None                                  # no file: the brick has no coverage in this band
        self._cache[key] = got
        if len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return got

    def cutout(self, ra: float, dec: float, size: int = CUTOUT_SIZE, bands: str = "grz",
               pixscale_arcsec: float = PIXEL_SCALE_ARCSEC, return_bricks: bool = False):
        """(n_bands, size, size) float32 stamp centred on (ra, dec), nanomaggies, north up, east left (the
        service's layout); with ``return_bricks`` also the names of the bricks that supplied pixels."""
        wcs = cutout_wcs(ra, dec, size, pixscale_arcsec)
        yy, xx = np.mgrid[0:size, 0:size]
        pra, pdec = wcs.wcs_pix2world(xx.ravel().astype(float), yy.ravel().astype(float), 0)
        pra = np.mod(pra, 360.0)
        out = np.zeros((len(bands), size * size), np.float32)
        b = self.bricks
        # bricks whose primary region can hold a pixel of this stamp (RA wrap handled by the modulo above)
        near = ((b["dec2"] > pdec.min()) & (b["dec1"] <= pdec.max()) & (b["ra2"] > pra.min()) & (b["ra1"] <= pra.max()))
        used = []
        for row in b[near].itertuples(index=False):
            mask = (pra >= row.ra1) & (pra < row.ra2) & (pdec >= row.dec1) & (pdec < row.dec2)
            if not mask.any():
                continue
            pos, pos_wcs = None, None
            for k, band in enumerate(bands):
                got = self._image(row.brickname, band)
                if got is None:
                    continue
                img, bw = got
                # the bands of a brick share their WCS (spec 4.3): positions are computed once per brick
                if pos is None or not bw.wcs.compare(pos_wcs.wcs):
                    pos, pos_wcs = bw.wcs_world2pix(pra[mask], pdec[mask], 0), bw
                out[k, mask] = lanczos3_at(img, *pos)
                if row.brickname not in used:
                    used.append(row.brickname)
        cube = out.reshape(len(bands), size, size)
        return (cube, used) if return_bricks else cube


def fetch_from_coadds(manifest: pd.DataFrame, store, reader: CoaddReader, qa_cfg=None, commit_every: int = 512):
    """Fill ``store`` with stamps cut from coadds for the manifest rows it lacks: the same QA as a service
    fetch, provenance ``source='coadd'`` and ``url`` the coadd root; rows failing QA (for example off the
    coadds' footprint) are recorded as failures. Returns a :class:`~lensaudit.cutouts.client.FetchReport`."""
    import time
    from collections import Counter
    from datetime import datetime, timezone

    from lensaudit.cutouts.client import FetchConfig, _extra_columns, plan_fetch
    from lensaudit.cutouts.qa import QAConfig, assess

    t0 = time.monotonic()
    qa_cfg = qa_cfg or QAConfig()
    todo, replace, rep = plan_fetch(manifest, store, FetchConfig(size_pix=store.size, bands=store.bands,
                                                                 moved="refetch"))
    reasons: Counter[str] = Counter()
    with store.writer(commit_every=commit_every) as w:
        for row in todo.to_dict("records"):
            cid, ra, dec = str(row["id"]), float(row["ra"]), float(row["dec"])
            cube = reader.cutout(ra, dec, size=store.size, bands=store.bands)
            ok, reason, qa = assess(cube, qa_cfg, tuple(store.bands))
            prov = {"url": str(reader.root), "layer": "coadd", "attempts": 1, "http_status": -1,
                    "fetched_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            if ok:
                w.add(cid, cube, ra, dec, replace=cid in replace, **qa, **prov, source="coadd", **_extra_columns(row))
                rep.n_stored += 1
                rep.n_replaced += cid in replace
            else:
                w.add_failure(cid, ra, dec, reason, **prov)
                rep.n_failed += 1
                reasons[reason.split(":", 1)[0]] += 1
    rep.failure_reasons = dict(reasons)
    rep.elapsed_s = time.monotonic() - t0
    log.info("cut %d stamps from coadds (%d failed QA, %d already stored) in %.1f s", rep.n_stored, rep.n_failed,
             rep.n_already_stored, rep.elapsed_s)
    return rep


__all__ = ["CoaddReader", "fetch_from_coadds", "lanczos3_apply", "lanczos3_at", "lanczos3_weights"]
