"""The Legacy Survey cutout-service FITS layout (``fits-cutout`` endpoint, resampled mode).

Spec ``docs/dr10_formats.md`` section 3.4: HDU0 holds a float32 cube of numpy shape
(n_bands, height, width) in the order of the ``bands`` argument (a single band gives a 2-D
array), header ``SURVEY='LegacySurvey'``, ``VERSION='DR10'``, ``IMAGETYP='IMAGE'``,
``BANDS``, ``BAND0..``, a TAN WCS with ``CRPIX=(N+1)/2`` and ``CD1_1<0``, ``IMAGEW/IMAGEH``.
With ``invvar`` an HDU1 cube of the same shape has ``IMAGETYP='INVVAR'``. No EXTNAME.
Pixels are nanomaggies at 0.262 arcsec/pixel; uncovered pixels are 0.0 (not NaN).

Both the loopback service (``lensaudit.mock``) and the client (``lensaudit.cutouts``) use
this module, so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

import functools
import io
import re
import warnings

import numpy as np
from astropy.io import fits

from lensaudit.errors import LensauditError
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC
from lensaudit.survey.geometry import cutout_header


class CutoutFormatError(LensauditError, ValueError):
    """A cutout-service response is not a valid FITS cutout of the expected layout.

    ``reason`` is a short machine-readable code (``truncated``, ``not_fits``, ``wrong_shape``,
    ``missing_band``, ``wrong_dtype``, ...); the message names the object and the problem.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def cutout_hdulist(
    cube_nmgy: np.ndarray,
    ra_deg: float,
    dec_deg: float,
    bands: str = "grz",
    pixscale_arcsec: float = PIXEL_SCALE_ARCSEC,
    invvar: np.ndarray | None = None,
) -> fits.HDUList:
    """Build the HDUList the real service returns for ``cube_nmgy`` of shape (n_bands, H, W)."""
    cube = np.asarray(cube_nmgy, dtype=np.float32)
    if cube.ndim != 3 or cube.shape[0] != len(bands):
        raise ValueError(f"cutout_hdulist: cube shape {cube.shape} does not match bands {bands!r}")
    h, w = cube.shape[1:]
    hdr = fits.Header()
    hdr["SURVEY"] = "LegacySurvey"
    hdr["VERSION"] = "DR10"
    hdr["IMAGETYP"] = "IMAGE"
    hdr["BANDS"] = bands
    for i, b in enumerate(bands):
        hdr[f"BAND{i}"] = b
    hdr.extend(cutout_header(ra_deg, dec_deg, pixscale_arcsec=pixscale_arcsec, width=w, height=h))
    data = cube[0] if len(bands) == 1 else cube
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [fits.PrimaryHDU(data=data, header=hdr)]
    if invvar is not None:
        ihdr = hdr.copy()
        ihdr["IMAGETYP"] = "INVVAR"
        iv = np.asarray(invvar, dtype=np.float32)
        hdus.append(fits.ImageHDU(data=iv[0] if len(bands) == 1 else iv, header=ihdr))
    return fits.HDUList(hdus)


def cutout_fits_bytes(cube_nmgy: np.ndarray, ra_deg: float, dec_deg: float, bands: str = "grz",
                      pixscale_arcsec: float = PIXEL_SCALE_ARCSEC, invvar: np.ndarray | None = None) -> bytes:
    """Serialise :func:`cutout_hdulist` to the bytes the service sends.

    The same bytes as ``cutout_hdulist(...).writeto`` (tested), about 10x faster: astropy builds the
    headers once per layout (bands, shape, pixel scale, inverse variance or not) and only the two
    CRVAL cards and the pixels change between cutouts (a loopback service answers thousands)."""
    cube = np.asarray(cube_nmgy, dtype=np.float32)
    if cube.ndim != 3 or cube.shape[0] != len(bands):
        raise ValueError(f"cutout_fits_bytes: cube shape {cube.shape} does not match bands {bands!r}")
    heads = _header_blocks(bands, cube.shape[1], cube.shape[2], float(pixscale_arcsec), invvar is not None)
    crval = (fits.Card("CRVAL1", float(ra_deg)).image + fits.Card("CRVAL2", float(dec_deg)).image).encode("ascii")
    parts = []
    planes = [cube] if invvar is None else [cube, np.asarray(invvar, dtype=np.float32)]
    for (head, at), data in zip(heads, planes, strict=True):
        parts += [head[:at], crval, head[at + 160:]]
        raw = data.astype(">f4").tobytes()
        parts += [raw, b"\0" * (-len(raw) % 2880)]
    return b"".join(parts)


@functools.lru_cache(maxsize=32)
def _header_blocks(bands: str, h: int, w: int, pixscale: float, with_invvar: bool) -> list[tuple[bytes, int]]:
    """Per HDU: (header bytes as astropy writes them, offset of the CRVAL1 card; CRVAL2 follows it)."""
    zeros = np.zeros((len(bands), h, w), np.float32)
    hdul = cutout_hdulist(zeros, 0.0, 0.0, bands=bands, pixscale_arcsec=pixscale,
                          invvar=zeros if with_invvar else None)
    buf = io.BytesIO()
    hdul.writeto(buf)
    raw = buf.getvalue()
    out, pos = [], 0
    for hdu in hdul:
        head_len = len(hdu.header.tostring())
        head = raw[pos : pos + head_len]
        at = head.find(b"CRVAL1  =")
        if at < 0 or at % 80 or head[at + 80 : at + 89] != b"CRVAL2  =":
            raise AssertionError("cutout header layout: CRVAL1 and CRVAL2 are not consecutive cards")
        out.append((head, at))
        pos += head_len + hdu.data.nbytes + (-hdu.data.nbytes % 2880)
    return out


def read_cutout_fits(
    payload: bytes, expected_size: int | None = None, bands: str = "grz", source: str = "cutout",
    header: bool = True,
) -> tuple[np.ndarray, fits.Header | None]:
    """Parse service bytes into a float32 cube (n_bands, H, W) in native byte order and its header.

    Raises :class:`CutoutFormatError` naming ``source`` when the payload is not FITS, is
    truncated, lacks image data, has the wrong shape or band layout. ``header=False``: no astropy
    header is built (None is returned in its place; the cards the checks need are read directly,
    about 0.4 ms a cutout less), with the same checks and the same cube.
    """
    if not payload:
        raise CutoutFormatError("empty", f"{source}: empty response body")
    if not payload[:30].startswith(b"SIMPLE  ="):
        snippet = payload[:60].decode("ascii", "replace").strip()
        raise CutoutFormatError("not_fits", f"{source}: response is not FITS (starts with {snippet!r})")
    if len(payload) % 2880 != 0:
        raise CutoutFormatError(
            "truncated", f"{source}: FITS payload of {len(payload)} bytes is not a multiple of 2880 (truncated)"
        )
    simple = _single_float32_image(payload, astropy_header=header)
    if simple is not None:
        data, hdr = simple
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # astropy warns (not raises) on truncated or odd files
                with fits.open(io.BytesIO(payload), memmap=False, lazy_load_hdus=False) as hdul:
                    hdr = hdul[0].header.copy()
                    data = hdul[0].data
                    data = None if data is None else np.array(data)
        except CutoutFormatError:
            raise
        except Exception as exc:  # astropy raises OSError/ValueError or warns for broken files
            reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
            raise CutoutFormatError(reason, f"{source}: cannot parse FITS ({type(exc).__name__}: {exc})") from exc
    if data is None:
        raise CutoutFormatError("no_data", f"{source}: FITS HDU0 has no image data")
    if data.dtype.kind != "f":
        raise CutoutFormatError("wrong_dtype", f"{source}: HDU0 dtype {data.dtype}, expected float32")
    if data.ndim == 2 and len(bands) == 1:
        data = data[None]
    if data.ndim != 3:
        raise CutoutFormatError("wrong_shape", f"{source}: HDU0 has shape {data.shape}, expected ({len(bands)}, N, N)")
    if data.shape[0] != len(bands):
        raise CutoutFormatError(
            "missing_band", f"{source}: HDU0 has {data.shape[0]} band plane(s), expected {len(bands)} ({bands})"
        )
    try:                                       # astropy parses a card's value when it is read
        hdr_bands = str(hdr.get("BANDS", bands)).strip()
        got_bands = [str(hdr.get(f"BAND{i}", b)).strip() for i, b in enumerate(bands)]
    except (fits.VerifyError, ValueError) as exc:
        raise CutoutFormatError("corrupt", f"{source}: unparsable header card ({type(exc).__name__}: {exc})") from exc
    if hdr_bands != bands:
        raise CutoutFormatError("wrong_bands", f"{source}: header BANDS={hdr_bands!r}, requested {bands!r}")
    for i, (b, got) in enumerate(zip(bands, got_bands, strict=True)):
        if got != b:
            raise CutoutFormatError("wrong_bands", f"{source}: header BAND{i}={got!r}, expected {b!r}")
    if expected_size is not None and data.shape[1:] != (expected_size, expected_size):
        raise CutoutFormatError(
            "wrong_shape",
            f"{source}: cutout is {data.shape[1]}x{data.shape[2]} pixels, expected {expected_size}x{expected_size}",
        )
    return np.ascontiguousarray(data, dtype=np.float32), hdr if header else None


#: Header cards :func:`_single_float32_image` leaves to ``fits.open`` (scaled, blanked, grouped or extended data).
_NOT_SIMPLE = ("BSCALE", "BZERO", "BLANK", "GROUPS", "PCOUNT", "GCOUNT", "XTENSION")


def _single_float32_image(payload: bytes, astropy_header: bool = True) -> tuple[np.ndarray, fits.Header | dict] | None:
    """(big-endian float32 image, header) of a payload that is exactly one primary HDU holding an unscaled float32
    image (BITPIX = -32, NAXIS 2 or 3, the data's padded length and nothing after it), as ``fits.open`` would give
    them: astropy parses the header (``Header.fromstring``) and the pixels are read in place of the HDU machinery
    (``fits.open`` costs about 1.8 ms a cutout, most of a loopback fetch's parsing). None for anything else, and
    for a header astropy warns about: the caller then opens it with ``fits.open``, which names the fault.
    ``astropy_header=False``: the header is a dict of the cards the checks read (:func:`_check_cards`)."""
    # the END card, on a card boundary, within 36 blocks (a longer header is left to fits.open)
    end = next((pos for pos in range(0, min(len(payload), 36 * 2880), 80) if payload[pos : pos + 8] == b"END     "), None)
    if end is None:
        return None
    head_len = (end // 2880 + 1) * 2880
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hdr = fits.Header.fromstring(payload[:head_len].decode("ascii")) if astropy_header else _check_cards(payload, end)
            if hdr is None:
                return None
            bitpix = hdr.get("BITPIX")          # an integer -32 (fits.open refuses -32.0)
            if hdr.get("SIMPLE") is not True or type(bitpix) is not int or bitpix != -32 or any(k in hdr for k in _NOT_SIMPLE):
                return None
            naxis = hdr.get("NAXIS")
            if type(naxis) is not int or naxis not in (2, 3):
                return None
            shape = tuple(hdr.get(f"NAXIS{i}") for i in range(naxis, 0, -1))
    except Exception:
        return None
    if any(type(n) is not int or n <= 0 for n in shape) or f"NAXIS{naxis + 1}" in hdr:
        return None
    nbytes = 4 * int(np.prod(shape))
    if len(payload) != head_len + nbytes + (-nbytes % 2880):
        return None
    return np.frombuffer(payload, dtype=">f4", count=nbytes // 4, offset=head_len).reshape(shape), hdr


#: The cards :func:`read_cutout_fits`'s checks read, by keyword (the NAXISn and BANDn counted).
_CHECKED = re.compile(r"(SIMPLE|BITPIX|NAXIS\d*|BANDS|BAND\d+)$")
_STRING = re.compile(r"'((?:[^']|'')*)'")
_INTEGER = re.compile(r"[+-]?\d+")
_KEYWORD = re.compile(r"[A-Z0-9_-]*")


def _check_cards(payload: bytes, end: int) -> dict | None:
    """The values of the cards the checks read (SIMPLE, BITPIX, NAXIS, NAXISn, BANDS, BANDn; the first of a
    repeated keyword, as astropy's ``Header.get``) and the presence of :data:`_NOT_SIMPLE` keywords, from the header
    cards before byte ``end`` (the END card). Values as astropy gives them: logicals, integers and quoted strings
    (doubled quotes undone, trailing blanks dropped). None when one of those cards is not in that form: astropy
    then reads the header. Written by hand because building astropy's ``Header`` costs about 0.4 ms, most of a
    cutout's reading, for six cards of a layout this module writes."""
    try:
        head = payload[:end].decode("ascii")
    except UnicodeDecodeError:                # astropy's to judge
        return None
    out: dict = {}
    for pos in range(0, end, 80):
        key = head[pos : pos + 8].rstrip()
        if not _KEYWORD.fullmatch(key):       # lower case, blanks inside, other characters: astropy's to judge
            return None
        if key in _NOT_SIMPLE:
            out.setdefault(key, True)
        if not _CHECKED.match(key) or key in out:
            continue
        if head[pos + 8 : pos + 10] != "= ":
            return None
        text = head[pos + 10 : pos + 80].lstrip()
        if text.startswith("'"):
            m = _STRING.match(text)
            if m is None:
                return None
            out[key] = m.group(1).replace("''", "'").rstrip()
            continue
        text = text.partition("/")[0].strip()
        if text in ("T", "F"):
            out[key] = text == "T"
        elif _INTEGER.fullmatch(text):
            out[key] = int(text)
        else:
            return None
    return out

