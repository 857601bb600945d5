"""Stamp libraries: source-plane galaxy images for the ``stamps`` injection family (the file format,
its validation and the per-stamp quantities derived on reading).

File format (one FITS file, read with astropy, written atomically):

* HDU ``STAMPS``: float32 image cube (N, 3, S, S) (FITS NAXIS order reversed), header ``PIXSCALE``
  (arcsec per stamp pixel), ``ZEROPT`` (AB magnitude of pixel value 1, so flux in nanomaggies is
  value x 10^(-0.4 (ZEROPT - 22.5))) and ``BANDS`` (``grz``). Rows increase with +y, columns with +x.
* HDU ``META``: one row per stamp with ``ID``, ``Z`` (redshift), ``MAG_G``, ``MAG_R``, ``MAG_Z`` (AB
  total magnitude of the stamp, which must agree with the pixel sum to 0.05 mag).

A real-data user builds one from deep space-telescope stamps (e.g. HST/JWST deep fields); ``mock
build`` writes one from the mock's own source generator (never its true lenses' sources).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from lensaudit.errors import LensauditError
from lensaudit.survey.constants import MAG_ZEROPOINT
from lensaudit.utils.io import atomic_path

REQUIRED_HEADER = ("PIXSCALE", "ZEROPT", "BANDS")
REQUIRED_COLUMNS = ("ID", "Z", "MAG_G", "MAG_R", "MAG_Z")
MAG_TOLERANCE = 0.05


def curve_of_growth(img: np.ndarray, pix) -> tuple[np.ndarray, np.ndarray]:
    """(half-light radius, 5 log10(r80 / r20)) of images (B, H, W) about their flux centroid; ``pix``
    the pixel size (arcsec), scalar or per image. Circular apertures, linear interpolation. Noisy pixels
    are kept as they are in the sums (clipping them at zero would add the noise's positive half to the
    light); the centroid uses the positive pixels only."""
    img = np.asarray(img, float)
    b, h, w = img.shape
    pix = np.broadcast_to(np.asarray(pix, float), (b,))
    yy, xx = np.mgrid[0:h, 0:w]
    tot = img.sum(axis=(1, 2))
    pos = np.clip(img, 0, None)
    ptot = np.maximum(pos.sum(axis=(1, 2)), 1e-300)
    cx, cy = (pos * xx).sum(axis=(1, 2)) / ptot, (pos * yy).sum(axis=(1, 2)) / ptot
    rh, conc = np.full(b, np.nan), np.full(b, np.nan)
    for i in range(b):
        if tot[i] <= 0:
            continue
        r = np.hypot(xx - cx[i], yy - cy[i]).ravel()
        o = np.argsort(r)
        cum = np.maximum.accumulate(np.cumsum(img[i].ravel()[o]) / tot[i])
        rr = r[o] * pix[i]
        r20, r50, r80 = np.interp([0.2, 0.5, 0.8], cum, rr)
        rh[i] = r50
        conc[i] = 5 * np.log10(max(r80, 1e-9) / max(r20, 1e-9))
    return rh, conc


class StampLibraryError(LensauditError, ValueError):
    """A stamp library is unreadable or incomplete."""


class StampLibrary:
    """Stamps in nanomaggies per stamp pixel, their metadata, and per-stamp derived quantities."""

    def __init__(self, images: np.ndarray, pixscale: float, meta: pd.DataFrame, source: str = "stamp library"):
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3] or not len(images):
            raise StampLibraryError(f"{source}: expected a (N, 3, S, S) g,r,z cube, got shape {images.shape}")
        if not np.isfinite(images).all():
            raise StampLibraryError(f"{source}: stamp {int(np.flatnonzero(~np.isfinite(images).all(axis=(1, 2, 3)))[0])} "
                                    "holds NaN or infinite pixels")
        if not (np.isfinite(pixscale) and pixscale > 0):
            raise StampLibraryError(f"{source}: PIXSCALE must be > 0 arcsec, got {pixscale}")
        missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
        if missing:
            raise StampLibraryError(f"{source}: metadata lacks column(s) {missing} (need {list(REQUIRED_COLUMNS)})")
        if len(meta) != len(images):
            raise StampLibraryError(f"{source}: {len(meta)} metadata rows for {len(images)} stamps")
        sums = images.sum(axis=(2, 3))
        if (sums[:, 1] <= 0).any():
            raise StampLibraryError(f"{source}: stamp {meta['ID'].iat[int(np.flatnonzero(sums[:, 1] <= 0)[0])]!r} "
                                    "has no positive r-band flux")
        for i, band in enumerate("GRZ"):
            stated = meta[f"MAG_{band}"].to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                measured = MAG_ZEROPOINT - 2.5 * np.log10(sums[:, i])
            bad = ~(np.abs(stated - measured) <= MAG_TOLERANCE)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise StampLibraryError(f"{source}: stamp {meta['ID'].iat[j]!r} states MAG_{band} {stated[j]:.3f} but "
                                        f"its pixels sum to {measured[j]:.3f} mag")
        self.images = images
        self.pixscale = float(pixscale)
        self.meta = meta.reset_index(drop=True)
        self.unit_images = (images / sums[:, 1, None, None, None]).astype(np.float32)
        self.colour_ratios = sums / sums[:, 1:2]
        self.r_half, self.concentration = curve_of_growth(images[:, 1], self.pixscale)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def read(cls, path: str | os.PathLike) -> StampLibrary:
        path = Path(path)
        if not path.is_file():
            raise StampLibraryError(f"stamp library {path}: file not found")
        try:
            with fits.open(path, memmap=False) as hdul:
                names = [h.name for h in hdul]
                for need in ("STAMPS", "META"):
                    if need not in names:
                        raise StampLibraryError(f"stamp library {path}: no {need} HDU (has {names})")
                hdr = hdul["STAMPS"].header
                miss = [k for k in REQUIRED_HEADER if k not in hdr]
                if miss:
                    raise StampLibraryError(f"stamp library {path}: STAMPS header lacks {miss}")
                if str(hdr["BANDS"]).lower() != "grz":
                    raise StampLibraryError(f"stamp library {path}: BANDS {hdr['BANDS']!r}, expected 'grz'")
                data = np.asarray(hdul["STAMPS"].data, dtype=np.float64)
                meta = pd.DataFrame({c: np.asarray(hdul["META"].data[c]).astype(str if c == "ID" else float)
                                     for c in hdul["META"].columns.names})
                zp, pixscale = float(hdr["ZEROPT"]), float(hdr["PIXSCALE"])
        except OSError as exc:
            raise StampLibraryError(f"stamp library {path}: not a readable FITS file ({exc})") from exc
        return cls(data * 10 ** (-0.4 * (zp - MAG_ZEROPOINT)), pixscale, meta, source=f"stamp library {path}")

    def write(self, path: str | os.PathLike, zeropoint: float = MAG_ZEROPOINT) -> Path:
        return write_stamp_library(path, self.images, self.pixscale, self.meta, zeropoint)


def write_stamp_library(path: str | os.PathLike, images_nmgy: np.ndarray, pixscale: float, meta: pd.DataFrame,
                        zeropoint: float = MAG_ZEROPOINT, header: dict | None = None) -> Path:
    """Write images (N, 3, S, S) in nanomaggies per pixel and metadata (:data:`REQUIRED_COLUMNS`) atomically."""
    lib = StampLibrary(images_nmgy, pixscale, meta)                      # validates before writing
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.ImageHDU((lib.images * 10 ** (0.4 * (zeropoint - MAG_ZEROPOINT))).astype(np.float32), name="STAMPS")
    hdu.header["PIXSCALE"] = (lib.pixscale, "arcsec per stamp pixel")
    hdu.header["ZEROPT"] = (zeropoint, "AB mag of pixel value 1")
    hdu.header["BANDS"] = ("grz", "bands along axis 1")
    hdu.header["BUNIT"] = "flux at ZEROPT"
    for k, v in (header or {}).items():
        hdu.header[k] = v
    cols = [fits.Column(name="ID", format=f"{max(1, int(lib.meta['ID'].astype(str).str.len().max()))}A",
                        array=lib.meta["ID"].astype(str).to_numpy())]
    cols += [fits.Column(name=c, format="D", array=lib.meta[c].to_numpy(float)) for c in lib.meta.columns if c != "ID"]
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu, fits.BinTableHDU.from_columns(cols, name="META")])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
    return path


__all__ = ["StampLibrary", "StampLibraryError", "curve_of_growth", "write_stamp_library"]
