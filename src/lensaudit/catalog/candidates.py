"""The lens-candidate catalog (``desi_lens_candidates.csv`` format): reading and checking.

Columns ``name, ra, dec, zlens, type, grading, ref``; ``grading`` is ``confident`` (Tier A) or
``probable`` (Tier B). Malformed rows are an error naming the lines, or a counted skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import LensauditError

CANDIDATE_COLUMNS = ("name", "ra", "dec", "zlens", "type", "grading", "ref")
TIER_OF_GRADING = {"confident": "A", "probable": "B"}


class CatalogInputError(LensauditError, ValueError):
    """An input of the training-set build (sweep, candidate catalog, config) is invalid."""


def read_candidates(path: str | os.PathLike, on_bad_rows: str = "error") -> tuple[pd.DataFrame, list[dict]]:
    """Read a candidate CSV; returns (candidates with a ``tier`` column, skipped rows with reasons).

    Bad rows: unparsable or out-of-range ra/dec, a grading other than confident/probable, an
    empty or duplicate name. With ``on_bad_rows="error"`` any bad row raises
    :class:`CatalogInputError` naming the file, the 1-based CSV line and the reason.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CatalogInputError(f"candidates {path}: file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CatalogInputError(f"candidates {path}: not a readable CSV ({exc})") from exc
    missing = [c for c in ("name", "ra", "dec", "grading") if c not in raw.columns]
    if missing:
        raise CatalogInputError(f"candidates {path}: missing column(s) {missing}; has {list(raw.columns)}")
    df = raw.copy()
    ra = pd.to_numeric(df["ra"], errors="coerce")
    dec = pd.to_numeric(df["dec"], errors="coerce")
    reason = pd.Series("", index=df.index)
    reason[df["name"].str.strip() == ""] = "empty name"
    reason[(reason == "") & (ra.isna() | dec.isna())] = "ra/dec not a number"
    reason[(reason == "") & ~(ra.between(0, 360, inclusive="left") & dec.between(-90, 90))] = "ra/dec out of range"
    grading = df["grading"].str.strip().str.lower()
    reason[(reason == "") & ~grading.isin(list(TIER_OF_GRADING))] = "grading not confident/probable"
    dup = df["name"].duplicated(keep="first")
    reason[(reason == "") & dup] = "duplicate name"
    bad = reason != ""
    skipped = [{"line": int(i) + 2, "name": df.at[i, "name"], "reason": reason[i]} for i in np.flatnonzero(bad)]
    if skipped and on_bad_rows == "error":
        ex = "; ".join(f"line {s['line']} ({s['name']!r}): {s['reason']}" for s in skipped[:5])
        raise CatalogInputError(f"candidates {path}: {len(skipped)} malformed row(s): {ex}")
    out = pd.DataFrame({
        "name": df["name"].str.strip(), "ra": ra, "dec": dec,
        "zlens": pd.to_numeric(df.get("zlens", pd.Series(np.nan, index=df.index)), errors="coerce"),
        "grading": grading,
    })[~bad].reset_index(drop=True)
    out["tier"] = out["grading"].map(TIER_OF_GRADING)
    return out, skipped
