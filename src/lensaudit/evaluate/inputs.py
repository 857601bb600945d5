"""Joining predictions to the manifest, with every check that keeps an evaluation honest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.artifacts import ManifestError, check_manifest, check_predictions
from lensaudit.errors import LensauditError


class EvaluationInputError(LensauditError, ValueError):
    """Predictions and manifest cannot be evaluated together (the message says which rows)."""


def join_predictions(preds: pd.DataFrame, manifest: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Inner join on id after checking: no NaN or out-of-range probabilities, no ids outside the manifest,
    every manifest row of the split scored."""
    try:
        p = check_predictions(preds)
        m = check_manifest(manifest, source="manifest", require=("id", "label", *(("split",) if split else ())))
    except ManifestError as exc:
        raise EvaluationInputError(str(exc)) from None
    extra = sorted(set(p["id"]) - set(m["id"]))
    if extra:
        raise EvaluationInputError(f"predictions: {len(extra)} id(s) not in the manifest, e.g. {extra[:5]}")
    if split is not None:
        m = m[m["split"] == split]
        p = p[p["id"].isin(set(m["id"]))]
    missing = sorted(set(m["id"]) - set(p["id"]))
    if missing:
        raise EvaluationInputError(f"predictions: {len(missing)} manifest row(s) of split {split!r} have no score, "
                                   f"e.g. {missing[:5]} (score them, or pass a manifest without them)")
    df = m.merge(p[[c for c in p.columns if c not in m.columns or c == "id"]], on="id", how="inner", validate="one_to_one")
    if not (df["label"] == 1).any():
        raise EvaluationInputError(f"split {split!r} has no positives: nothing to evaluate")
    if not (df["label"] == 0).any():
        raise EvaluationInputError(f"split {split!r} has no negatives: no false-positive rate, AUC or calibration "
                                   f"can be measured (score the negatives too)")
    if "logit" not in df:
        df["logit"] = np.log(np.clip(df["probability"], 1e-12, 1)) - np.log(np.clip(1 - df["probability"], 1e-12, 1))
    return df.reset_index(drop=True)
