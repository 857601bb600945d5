"""The manifest and predictions table formats: one owner for their columns, reading and writing.

A **manifest** has one row per cutout. ``catalog build`` writes the full training manifest
(:func:`manifest_columns`, with the split rule in the file metadata); any table with at least
``id, ra, dec`` is a manifest for ``cutouts fetch``. A **predictions** table (``score``) has
``id, logit, probability`` and optionally ``features``.

Every stage reads these tables with :func:`read_manifest` / :func:`read_predictions` (Parquet or
CSV), which check the columns a stage needs and the values it relies on, and raise
:class:`ManifestError` naming the file, the rows and the ids.

Ids are Unicode strings (stored as UTF-8); an id may not be empty, contain control characters
or exceed :data:`MAX_ID_LENGTH` characters.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable

import numpy as np
import pandas as pd

from lensaudit.artifacts.tables import ArtifactError, read_table, read_table_metadata

MANIFEST_META_KEY = b"lensaudit.manifest"
PREDICTIONS_META_KEY = b"lensaudit.predictions"
#: Longest accepted id, characters.
MAX_ID_LENGTH = 256
HEALPIX_PREFIX = "healpix_"


class ManifestError(ArtifactError):
    """A manifest or predictions table is unreadable or has bad rows; the message names the file, rows and ids."""


def manifest_columns(nside: int) -> dict[str, str]:
    """Columns of a training manifest written by ``catalog build`` (name -> pandas dtype), in file order.

    Units: ra, dec deg; psfsize_* arcsec (FWHM); psfdepth_*, galdepth_r 1/nanomaggy^2 (5-sigma
    inverse variance); ebv mag; flux_r nanomaggies; match_sep_arcsec arcsec; mag_z AB mag (from
    FLUX_Z, not extinction-corrected); g_r AB mag; shape_r arcsec (half-light radius).
    """
    return {
        "id": "object", "name": "object", "ra": "float64", "dec": "float64", "label": "int8", "tier": "object",
        "confuser_category": "object", "type": "object", "nobs_z": "int16", "nobs_z_bin": "object",
        "psfsize_g": "float32", "psfsize_r": "float32", "psfsize_z": "float32",
        "psfdepth_g": "float32", "psfdepth_r": "float32", "psfdepth_z": "float32", "galdepth_r": "float32",
        "ebv": "float32", "flux_r": "float32", f"{HEALPIX_PREFIX}{nside}": "int64", "split": "object",
        "sample_weight": "float32", "cutout_ref": "object", "release": "int16", "brickname": "object",
        "objid": "int32", "zlens": "float64", "match_sep_arcsec": "float64",
        "mag_z": "float32", "g_r": "float32", "shape_r": "float32",
    }


def healpix_column(columns: Iterable[str]) -> str | None:
    """The ``healpix_<nside>`` column among ``columns`` (the coarsest if several), or None."""
    hp = [c for c in columns if isinstance(c, str) and c.startswith(HEALPIX_PREFIX) and c[len(HEALPIX_PREFIX):].isdigit()]
    return min(hp, key=lambda c: int(c[len(HEALPIX_PREFIX):])) if hp else None


# ------------------------------------------------------------------------------------ reading
def _bad_id_reason(v: object) -> str:
    if not isinstance(v, str):
        return f"not a string ({type(v).__name__})"
    if not v.strip():
        return "empty"
    if len(v) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in v):
        return "contains control characters or unpaired surrogates"
    return ""


def check_ids(ids: pd.Series, source: str, unique: bool = True) -> pd.Series:
    """Ids as str after checking none is missing, empty, too long or has control characters (and, with
    ``unique``, that none repeats)."""
    if ids.isna().any():
        rows = np.flatnonzero(ids.isna().to_numpy())
        raise ManifestError(f"{source}: {len(rows)} row(s) with no id, e.g. rows {rows[:5].tolist()}")
    # integers and other scalars become their decimal text; anything else must already be a string
    ids = ids.map(lambda v: str(v) if isinstance(v, (int, np.integer)) else v)
    reasons = ids.map(_bad_id_reason)
    bad = reasons != ""
    if bad.any():
        ex = [f"row {i}: {ids.iat[i]!r} ({reasons.iat[i]})" for i in np.flatnonzero(bad.to_numpy())[:5]]
        raise ManifestError(f"{source}: {int(bad.sum())} invalid id(s): " + "; ".join(ex))
    if unique:
        _check_unique(ids, source)
    return ids.astype(object)


def _check_unique(ids: pd.Series, source: str) -> None:
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise ManifestError(f"{source}: {int(ids[dup].nunique())} duplicate id(s), e.g. {sorted(set(ids[dup]))[:5]}")


def check_manifest(df: pd.DataFrame, source: str = "manifest", require: Iterable[str] = ("id", "ra", "dec"),
                   split: str | None = None) -> pd.DataFrame:
    """Check a manifest for the columns a stage needs; returns a clean copy (only ``split`` rows if given).

    Always: ``id`` present, valid and unique. If present (or required): ``ra``/``dec`` finite
    degrees in range (float64); ``label`` 0 or 1 (int8); ``sample_weight`` finite and >= 0.
    """
    require = tuple(require)
    missing = [c for c in ("id", *require) if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {sorted(set(missing))}; has {list(df.columns)[:20]}")
    out = df.copy()
    out["id"] = check_ids(out["id"], source, unique=False)
    if "ra" in out.columns and "dec" in out.columns:
        for c in ("ra", "dec"):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(np.float64)
        bad = (out["ra"].isna() | out["dec"].isna() | ~out["ra"].between(0.0, 360.0)
               | ~out["dec"].between(-90.0, 90.0))
        if bad.any():
            ids = out.loc[bad, "id"].tolist()
            raise ManifestError(f"{source}: {len(ids)} row(s) with missing or out-of-range ra/dec, ids {ids[:5]}")
    _check_unique(out["id"], source)
    if "label" in out.columns:
        lab = pd.to_numeric(out["label"], errors="coerce")
        bad = ~lab.isin([0, 1])
        if bad.any():
            ex = [f"{i}={v!r}" for i, v in zip(out.loc[bad, "id"].head(5), out.loc[bad, "label"].head(5), strict=True)]
            raise ManifestError(f"{source}: {int(bad.sum())} row(s) with a label other than 0 or 1, e.g. {ex}")
        out["label"] = lab.astype(np.int8)
    if "sample_weight" in out.columns:
        w = pd.to_numeric(out["sample_weight"], errors="coerce")
        bad = ~np.isfinite(w.to_numpy(np.float64)) | (w < 0).to_numpy()
        if bad.any():
            raise ManifestError(f"{source}: {int(bad.sum())} row(s) with a sample_weight that is not finite and "
                                f">= 0, ids {out.loc[bad, 'id'].head(5).tolist()}")
    if split is not None:
        if "split" not in out.columns:
            raise ManifestError(f"{source}: no 'split' column, cannot select split {split!r}")
        out = out[out["split"] == split]
    return out.reset_index(drop=True)


def read_manifest(path: str | os.PathLike, require: Iterable[str] = ("id", "ra", "dec"),
                  split: str | None = None) -> pd.DataFrame:
    """Read (Parquet or CSV) and check a manifest: see :func:`check_manifest`."""
    return check_manifest(read_table(path, "manifest"), source=f"manifest {path}", require=require, split=split)


def _first_bad(out: pd.DataFrame, bad, column: str, source: str, what: str) -> ManifestError:
    i = int(np.flatnonzero(np.asarray(bad))[0])
    v = out[column].iat[i]
    v = v.item() if hasattr(v, "item") else v
    return ManifestError(f"{source}: column {column!r}: {int(np.asarray(bad).sum())} row(s) {what}; first bad row {i} "
                         f"(id {out['id'].iat[i]!r}: {v!r})")


def check_predictions(df: pd.DataFrame, source: str = "predictions", require: Iterable[str] = ("id", "probability"),
                      ids: Iterable[str] | None = None, feature_width: int | None = None) -> pd.DataFrame:
    """Scores after checking them as every stage relies on them, or a :class:`ManifestError` naming the file, the
    column and the first bad row: ids valid and unique (and, with ``ids``, each one known); ``probability`` finite
    and in [0, 1]; ``logit`` finite; ``features`` (when present) finite vectors of one width (``feature_width`` when
    given, the model's)."""
    missing = [c for c in ("id", *require) if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {sorted(set(missing))}; has {list(df.columns)[:20]}")
    out = df.copy()
    out["id"] = check_ids(out["id"], source)
    if ids is not None:
        known = set(map(str, ids))
        unknown = ~out["id"].isin(known)
        if unknown.any():
            raise _first_bad(out, unknown, "id", source, "with an id that is not among the objects scored for")
    if "probability" in out.columns:
        p = pd.to_numeric(out["probability"], errors="coerce")
        bad = (p.isna() | ~p.between(0.0, 1.0)).to_numpy()
        if bad.any():
            raise _first_bad(out, bad, "probability", source, "NaN or outside [0, 1]")
        out["probability"] = p.astype(np.float64)
    if "logit" in out.columns:
        lg = pd.to_numeric(out["logit"], errors="coerce")
        bad = ~np.isfinite(lg.to_numpy(np.float64))
        if bad.any():
            raise _first_bad(out, bad, "logit", source, "not finite")
    if "features" in out.columns:
        widths = out["features"].map(lambda v: -1 if v is None else len(v)).to_numpy()
        want = feature_width if feature_width is not None else (int(widths[0]) if len(widths) else 0)
        bad = widths != want
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ManifestError(f"{source}: column 'features': {int(bad.sum())} row(s) of another width than {want}"
                                f"{' (the model' + chr(39) + 's)' if feature_width is not None else ''}; first bad row "
                                f"{i} (id {out['id'].iat[i]!r}: width {widths[i]})")
        if len(out):
            f = np.stack([np.asarray(v, np.float64) for v in out["features"]])
            bad = ~np.isfinite(f).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ManifestError(f"{source}: column 'features': {int(bad.sum())} row(s) with a NaN or infinite "
                                    f"feature; first bad row {i} (id {out['id'].iat[i]!r})")
    return out.reset_index(drop=True)


def read_predictions(path: str | os.PathLike, require: Iterable[str] = ("id", "probability"),
                     ids: Iterable[str] | None = None, feature_width: int | None = None,
                     columns: list[str] | None = None) -> pd.DataFrame:
    """Read and check a scores table (``lensaudit score`` output, or any Parquet/CSV with id and probability): see
    :func:`check_predictions`. The one reader of scores for every stage."""
    return check_predictions(read_table(path, "predictions", columns=columns), source=f"predictions {path}",
                             require=require, ids=ids, feature_width=feature_width)


def read_manifest_metadata(path: str | os.PathLike) -> dict:
    """The split rule and sampling settings ``catalog build`` stored in a manifest; ManifestError if absent."""
    meta = read_table_metadata(path, MANIFEST_META_KEY)
    if meta is None:
        raise ManifestError(f"manifest {path}: no lensaudit metadata (not written by lensaudit catalog build)")
    return meta
