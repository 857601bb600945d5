"""Further positive channels as separate evaluation sets (never mixed into training).

The DESI DR1 strong-lensing VAC (``desi-sl-vac-v1.fits``, HDU ``DESI_SL_CATALOG``; spectroscopically
selected systems) or any candidate CSV is cross-matched to the sweeps like the training
positives, and every system that overlaps the training positives, by Tractor object id or within
the exclusion radius of any training candidate, is removed and reported.
Facts about the VAC format: ``docs/dr10_formats.md`` section 5 (columns after
``TARGET_RA`` are unconfirmed; ``TARGET_DEC`` is required here, ``ZWARN`` and ``SPECTYPE`` used when present).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy.spatial import cKDTree

from lensaudit.catalog import stages as st
from lensaudit.catalog.candidates import CatalogInputError, read_candidates
from lensaudit.catalog.config import CatalogConfig
from lensaudit.catalog.engines import read_partition
from lensaudit.catalog.spatial import nearest_within, unit_vectors
from lensaudit.reference import resolve_path

VAC_EXTNAME = "DESI_SL_CATALOG"


def read_desi_sl_vac(path: str | os.PathLike, quality_cuts: bool = True) -> tuple[pd.DataFrame, dict]:
    """Systems of the DESI DR1 SL VAC as a candidate-like table (name, ra, dec, zlens, tier 'S'), with cut counts."""
    path = Path(path)
    try:
        h = fits.open(path)
    except (OSError, ValueError) as exc:
        raise CatalogInputError(f"DESI SL VAC {path}: not a readable FITS file ({exc})") from exc
    with h:
        if VAC_EXTNAME not in [x.name for x in h]:
            raise CatalogInputError(f"DESI SL VAC {path}: no HDU {VAC_EXTNAME!r} (has {[x.name for x in h]})")
        d = h[VAC_EXTNAME].data
        names = set(d.columns.names)
        missing = [c for c in ("TARGETID", "TARGET_RA", "TARGET_DEC") if c not in names]
        if missing:
            raise CatalogInputError(f"DESI SL VAC {path}: missing column(s) {missing}")
        df = pd.DataFrame({"targetid": np.asarray(d["TARGETID"]).astype(np.int64),
                           "ra": np.asarray(d["TARGET_RA"], dtype=np.float64),
                           "dec": np.asarray(d["TARGET_DEC"], dtype=np.float64),
                           "zlens": np.asarray(d["Z"], dtype=np.float64) if "Z" in names else np.nan})
        keep = np.ones(len(df), bool)
        counts = {"rows_in": int(len(df))}
        if quality_cuts and "ZWARN" in names:
            ok = np.asarray(d["ZWARN"]) == 0
            counts["zwarn_nonzero"] = int((keep & ~ok).sum())
            keep &= ok
        if quality_cuts and "SPECTYPE" in names:
            ok = np.char.strip(np.asarray(d["SPECTYPE"]).astype(str)) == "GALAXY"
            counts["spectype_not_galaxy"] = int((keep & ~ok).sum())
            keep &= ok
    df = df[keep]
    n = len(df)
    df = df.drop_duplicates("targetid", keep="first")  # one row per system (several spectra)
    counts["duplicate_targetid"] = n - len(df)
    counts["rows_kept"] = int(len(df))
    df = df.assign(name=[f"DESI-SL-{t}" for t in df["targetid"]], grading="spectroscopic", tier="S")
    return df.reset_index(drop=True), counts


def build_evalset(extra: pd.DataFrame, parts: list[Path], cfg: CatalogConfig, training_pos: pd.DataFrame,
                  training_cands: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Cross-match an extra positive catalog to the sweeps and drop overlaps with the training positives."""
    cands = extra.reset_index(drop=True)
    matches = [st.process_sweep(read_partition(p), cfg, cands, source=str(p))[1] for p in parts]
    m = pd.concat(matches, ignore_index=True) if matches else st.empty_rows(st.MATCH_COLUMNS)
    pos, unmatched = st.resolve_positives(st.nearest_matches(m), cands.assign(tier="S"), cfg)
    report = {"n_in": int(len(cands)), "n_matched": int(len(pos)), "n_unmatched": len(unmatched)}
    by_id = pos["id"].isin(set(training_pos["id"]))
    tree = cKDTree(unit_vectors(training_cands["ra"].to_numpy(), training_cands["dec"].to_numpy()))
    _, sep = nearest_within(tree, pos["ra"].to_numpy(), pos["dec"].to_numpy(), cfg.cuts.exclusion_radius_arcsec, k=1)
    by_pos = np.isfinite(sep[:, 0]) & ~by_id.to_numpy()
    report.update({"removed_same_object_as_training": int(by_id.sum()),
                   "removed_within_exclusion_radius_of_training_candidate": int(by_pos.sum())})
    keep = pos[~by_id.to_numpy() & ~by_pos].reset_index(drop=True)
    report["n_kept"] = int(len(keep))
    report["unmatched"] = unmatched
    return keep, report


def load_extra(kind: str, path: str, on_bad_rows: str) -> tuple[pd.DataFrame, dict]:
    if kind == "desi_sl_vac":
        return read_desi_sl_vac(path)
    if kind == "candidates_csv":
        df, skipped = read_candidates(resolve_path(path), on_bad_rows)
        return df, {"rows_kept": int(len(df)), "rows_skipped": len(skipped)}
    raise CatalogInputError(f"unknown evaluation-set format {kind!r} (desi_sl_vac or candidates_csv)")
