"""Stamp libraries: source-plane galaxy images for the ``stamps`` injection family (the file format,
its validation and the per-stamp quantities derived on reading).

File format (one FITS file, read with astropy, written atomically):

* HDU ``STAMPS``: float32 image cube (N, 3, S, S) (FITS NAXIS order reversed), header ``PIXSCALE``
  (arcsec per stamp pixel), ``ZEROPT`` (AB magnitude of pixel value 1, so flux in nanomaggies is
  value x 10^(-0.4 (ZEROPT - 22.5))) and ``BANDS`` (``grz``). Rows increase with +y, columns with +x.
* HDU ``META``: one row per stamp with ``ID``, ``Z`` (redshift; NaN when unknown), ``MAG_G``, ``MAG_R``,
  ``MAG_Z`` (AB total magnitude of the stamp, which must agree with the pixel sum to 0.05 mag) and,
  optionally, ``HALF`` (``A`` or ``B``, :func:`library_half`; computed from the id when absent).

**Halves.** Every stamp belongs to half A or B by a hash of its id (:func:`library_half`), so a mock
universe can take its true lenses' sources from one half while an injection family draws from the
other, with no galaxy in both. A library path may carry the half: ``stamps.fits:B``; ``xdf:A`` names half A of
the XDF library (built once into ``$LENSAUDIT_CACHE`` or ``~/.cache/lensaudit``).

``lensaudit sources build-xdf`` writes one from the Hubble eXtreme Deep Field (:mod:`lensaudit.sources.xdf`);
``mock build`` writes one from the mock's procedural generator; a real-data user brings deep space-telescope
stamps in this format.
"""

from __future__ import annotations

import hashlib
import os
import warnings
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
HALVES = ("A", "B")
#: Sane stamp pixel scales, arcsec: finer than any space telescope, coarser than a stamp is useful as a source.
PIXSCALE_RANGE = (0.005, 0.5)


def negative_excess(stamp: np.ndarray, frame: int = 3) -> str | None:
    """Why a stamp's (3, S, S) negative pixels are more than noise, or None. The noise is the robust scatter of the
    stamp's outer ``frame`` pixels (or, where those are masked to zero, of its negative pixels); more than noise is
    a pixel below -10 sigma with negative pixels summing to more than 5 percent of the light, or a border whose
    median sits 5 standard errors below zero (an over-subtracted sky)."""
    for b, band in enumerate("grz"):
        v = np.asarray(stamp[b], float)
        border = np.concatenate([v[:frame].ravel(), v[-frame:].ravel(), v[:, :frame].ravel(), v[:, -frame:].ravel()])
        sig = 1.4826 * np.median(np.abs(border - np.median(border)))
        if sig == 0:
            neg = v[v < 0]
            sig = 1.4826 * np.median(np.abs(neg)) if neg.size else 0.0
        elif np.median(border) < -5 * sig / np.sqrt(border.size / 2):
            return (f"has a {band}-band border median of {np.median(border):.3g} ({np.median(border) / sig:.2f} sigma): "
                    "an over-subtracted background, negative light beyond noise")
        neg_frac = -np.clip(v, None, 0).sum() / max(np.clip(v, 0, None).sum(), 1e-300)
        if v.min() < 0 and (sig == 0 or v.min() < -10 * sig) and neg_frac > 0.05:
            return (f"has a {band}-band pixel of {v.min():.3g} (noise {sig:.3g}) and negative pixels summing to "
                    f"{neg_frac:.0%} of its light: negative light beyond noise")
    return None


def may_have_negative_excess(images: np.ndarray, frame: int = 3) -> np.ndarray:
    """Per stamp of an (N, 3, S, S) cube, whether :func:`negative_excess` might flag it: the same statistics for every
    stamp at once (a zero border scatter replaced by the negative pixels', as there), each threshold loosened by a
    part in 10^6, so a stamp marked False is one :func:`negative_excess` passes (tested); those marked True are
    judged by it. Checking a library of a thousand stamps one by one took a second, each time it was opened."""
    v = np.asarray(images, float)
    n, nb = v.shape[:2]
    border = np.concatenate([v[..., :frame, :].reshape(n, nb, -1), v[..., -frame:, :].reshape(n, nb, -1),
                             v[..., :, :frame].reshape(n, nb, -1), v[..., :, -frame:].reshape(n, nb, -1)], axis=-1)
    med = np.median(border, axis=-1)
    sig = 1.4826 * np.median(np.abs(border - med[..., None]), axis=-1)
    loose = 1.0 - 1e-6
    border_low = med < -5 * sig / np.sqrt(border.shape[-1] / 2) * loose
    vmin = v.min(axis=(-2, -1))
    neg_frac = -np.clip(v, None, 0).sum(axis=(-2, -1)) / np.maximum(np.clip(v, 0, None).sum(axis=(-2, -1)), 1e-300)
    hole = (vmin < 0) & (vmin < -10 * sig * loose) & (neg_frac > 0.05 * loose)
    masked = sig == 0                                  # a zero (masked) border: the noise of the negative pixels
    if masked.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)          # a band without negative pixels: NaN, no hole
            sig_neg = 1.4826 * np.nanmedian(np.where(v < 0, np.abs(v), np.nan).reshape(n, nb, -1), axis=-1)
        sig_neg = np.nan_to_num(sig_neg, nan=0.0)
        hole_masked = (vmin < 0) & ((sig_neg == 0) | (vmin < -10 * sig_neg * loose)) & (neg_frac > 0.05 * loose)
        hole = np.where(masked, hole_masked, hole)
        border_low = border_low & ~masked
    return (border_low | hole).any(axis=1)


def library_half(ids) -> np.ndarray:
    """``A`` or ``B`` per stamp id: the parity of the first byte of SHA-256("lensaudit-half:" + id); deterministic,
    independent of the library's order and size, about half the stamps in each."""
    return np.array(["A" if hashlib.sha256(f"lensaudit-half:{i}".encode()).digest()[0] % 2 == 0 else "B"
                     for i in map(str, ids)], dtype=object)


def split_spec(spec: str) -> tuple[str, str | None]:
    """``path`` or ``path:A`` / ``path:B`` -> (path, half or None)."""
    head, sep, tail = str(spec).rpartition(":")
    if sep and tail in HALVES and head:
        return head, tail
    return str(spec), None


def curve_of_growth(img: np.ndarray, pix, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(half-light radius, 5 log10(r80 / r20)) of images (B, H, W) about their flux centroid; ``pix``
    the pixel size (arcsec), scalar or per image. Circular apertures, linear interpolation. Noisy pixels
    are kept as they are in the sums (clipping them at zero would add the noise's positive half to the
    light); the centroid uses the positive pixels only. The images are measured by ``workers`` threads
    (:func:`lensaudit.utils.pool.thread_map`; the per-image sort, which releases the GIL, is most of the
    time): the same numbers for any ``workers``."""
    from lensaudit.utils.pool import thread_map

    img = np.asarray(img, float)
    b, h, w = img.shape
    pix = np.broadcast_to(np.asarray(pix, float), (b,))
    yy, xx = np.mgrid[0:h, 0:w]
    tot = img.sum(axis=(1, 2))
    pos = np.clip(img, 0, None)
    ptot = np.maximum(pos.sum(axis=(1, 2)), 1e-300)
    cx, cy = (pos * xx).sum(axis=(1, 2)) / ptot, (pos * yy).sum(axis=(1, 2)) / ptot

    def one(i: int) -> tuple[float, float]:
        if tot[i] <= 0:
            return np.nan, np.nan
        r = np.hypot(xx - cx[i], yy - cy[i]).ravel()
        o = np.argsort(r)
        cum = np.maximum.accumulate(np.cumsum(img[i].ravel()[o]) / tot[i])
        rr = r[o] * pix[i]
        r20, r50, r80 = np.interp([0.2, 0.5, 0.8], cum, rr)
        return r50, 5 * np.log10(max(r80, 1e-9) / max(r20, 1e-9))

    res = np.array(thread_map(one, range(b), workers), float).reshape(b, 2)
    return res[:, 0].copy(), res[:, 1].copy()


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
        if not (np.isfinite(pixscale) and PIXSCALE_RANGE[0] <= pixscale <= PIXSCALE_RANGE[1]):
            raise StampLibraryError(f"{source}: PIXSCALE {pixscale} arcsec per pixel is outside "
                                    f"{list(PIXSCALE_RANGE)}: not a source-plane stamp scale")
        missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
        if missing:
            raise StampLibraryError(f"{source}: metadata lacks column(s) {missing} (need {list(REQUIRED_COLUMNS)})")
        if len(meta) != len(images):
            raise StampLibraryError(f"{source}: {len(meta)} metadata rows for {len(images)} stamps")
        for j in np.flatnonzero(may_have_negative_excess(images)):
            why = negative_excess(images[j])
            if why:
                raise StampLibraryError(f"{source}: stamp {meta['ID'].iat[j]!r} {why}")
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
        meta = meta.reset_index(drop=True).copy()
        if meta["ID"].astype(str).duplicated().any():
            raise StampLibraryError(f"{source}: duplicate stamp ids, e.g. "
                                    f"{meta.loc[meta['ID'].astype(str).duplicated(), 'ID'].iat[0]!r}")
        want = library_half(meta["ID"])
        if "HALF" in meta.columns:
            got = meta["HALF"].astype(str).str.strip().to_numpy()
            if (got != want).any():
                j = int(np.flatnonzero(got != want)[0])
                raise StampLibraryError(f"{source}: stamp {meta['ID'].iat[j]!r} is marked half {got[j]!r} but its id "
                                        f"hashes to half {want[j]!r}")
        meta["HALF"] = want
        self.images = images
        self.pixscale = float(pixscale)
        self.meta = meta
        self.source = source
        self.unit_images = (images / sums[:, 1, None, None, None]).astype(np.float32)
        self.colour_ratios = sums / sums[:, 1:2]
        self.r_half, self.concentration = curve_of_growth(images[:, 1], self.pixscale)

    def __len__(self) -> int:
        return len(self.images)

    def half(self, name: str | None) -> StampLibrary:
        """The stamps of half ``name`` (``A`` or ``B``; None: all of them), as a library of their own."""
        if name is None:
            return self
        if name not in HALVES:
            raise StampLibraryError(f"{self.source}: no half {name!r}; halves are {list(HALVES)}")
        keep = np.flatnonzero(self.meta["HALF"].to_numpy() == name)
        if not len(keep):
            raise StampLibraryError(f"{self.source}: half {name} is empty")
        # every check and derived quantity of __init__ is per stamp (and a subset of unique ids is unique), so the
        # half is this library's rows, not a second validation of the same pixels (tested equal to a fresh build)
        sub = object.__new__(StampLibrary)
        sub.images, sub.pixscale, sub.source = self.images[keep], self.pixscale, f"{self.source}:{name}"
        sub.meta = self.meta.iloc[keep].reset_index(drop=True).copy()
        for attr in ("unit_images", "colour_ratios", "r_half", "concentration"):
            setattr(sub, attr, getattr(self, attr)[keep])
        return sub

    @classmethod
    def open(cls, spec: str | os.PathLike) -> StampLibrary:
        """A library from ``path`` or ``path:A`` / ``path:B`` (that half only); :func:`lensaudit.sources.open_library`
        also knows ``xdf``."""
        path, half = split_spec(str(spec))
        return cls.read(path).half(half)

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
                meta = pd.DataFrame({c: np.asarray(hdul["META"].data[c]).astype(str if c in ("ID", "HALF") else float)
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
    hdu = fits.ImageHDU((lib.images * 10 ** (0.4 * (zeropoint - MAG_ZEROPOINT))).astype(np.float32), name="STAMPS")
    hdu.header["PIXSCALE"] = (lib.pixscale, "arcsec per stamp pixel")
    hdu.header["ZEROPT"] = (zeropoint, "AB mag of pixel value 1")
    hdu.header["BANDS"] = ("grz", "bands along axis 1")
    hdu.header["BUNIT"] = "flux at ZEROPT"
    for k, v in (header or {}).items():
        hdu.header[k] = v
    hdu.header.add_comment("HALF: A or B by SHA-256 of 'lensaudit-half:' + ID (lensaudit.sources.library_half)")
    cols = [fits.Column(name="ID", format=f"{max(1, int(lib.meta['ID'].astype(str).str.len().max()))}A",
                        array=lib.meta["ID"].to_numpy(str))]
    # unicode arrays, not objects: astropy reinterprets an object array whose item size (8 bytes) equals the
    # column's (ids of exactly 8 characters) instead of converting it, and fails
    cols += [fits.Column(name="HALF", format="1A", array=lib.meta["HALF"].to_numpy(str))]
    cols += [fits.Column(name=c, format="D", array=lib.meta[c].to_numpy(float)) for c in lib.meta.columns
             if c not in ("ID", "HALF")]
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu, fits.BinTableHDU.from_columns(cols, name="META")])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
    return path


__all__ = ["HALVES", "StampLibrary", "StampLibraryError", "curve_of_growth", "library_half", "may_have_negative_excess",
           "negative_excess", "split_spec",
           "write_stamp_library"]
