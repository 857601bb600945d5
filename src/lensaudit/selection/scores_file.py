"""The offline exchange's scores file and its run id (see :mod:`lensaudit.selection.exchange` for the layout): the
checks of a scores file, and :class:`ExchangeScores`, the scorer a selection run uses instead of a model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import SelectionRunDir
from lensaudit.errors import InputError
from lensaudit.inject.records import RECORDS_VERSION
from lensaudit.selection.config import SelectionConfig
from lensaudit.utils.io import sha256_file, sha256_json

EXCHANGE_FORMAT = "lensaudit-exchange-1"
#: Config keys that do not change which cutouts a run scores (left out of the run id).
NOT_IN_RUN_ID = {"out", "device", "batch_size", "checkpoint", "scores", "extra_checkpoints", "thresholds",
                 "min_count", "features", "negatives_predictions", "gate_reference"}


def exchange_id(cfg: SelectionConfig, inputs: dict) -> str:
    """The run id shared by an export and its scores file: a hash of what decides the exported cutouts."""
    model_keys = ("checkpoint", "extra:", "spec:", "scores", "negatives_predictions", "gate_reference")
    return sha256_json({"config": cfg.model_dump(mode="json", exclude=NOT_IN_RUN_ID),
                        "inputs": {k: v for k, v in inputs.items() if not k.startswith(model_keys)},
                        "records": RECORDS_VERSION, "format": EXCHANGE_FORMAT})[:16]


def cutout_hashes(cutouts: np.ndarray) -> list[str]:
    """SHA-256 (hex) of each cutout's float32 little-endian bytes."""
    a = np.ascontiguousarray(cutouts, dtype="<f4")
    return [hashlib.sha256(c.tobytes()).hexdigest() for c in a]


def _line(i: int) -> str:
    return f"line {i + 2}"          # the header is line 1


def read_scores(path: str | Path, run_id: str, expected: pd.Index) -> pd.DataFrame:
    """The scores file, checked whole (see the module docstring): a frame indexed by id with ``logit`` and, where
    given, ``features`` (an (N, F) float32 array in ``attrs['features']``, rows in the frame's order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores {path}: file not found")
    try:
        df = (pd.read_parquet(path) if path.suffix.lower() == ".parquet"
              else pd.read_csv(path, dtype={"run_id": str, "id": str}, keep_default_na=False, na_values=[""]))
    except Exception as exc:  # pandas and pyarrow raise many types for unreadable files
        raise InputError(f"scores {path}: not a readable CSV or Parquet file ({str(exc).splitlines()[0][:200]})") from None
    miss = [c for c in ("run_id", "id", "probability") if c not in df.columns]
    if miss:
        raise InputError(f"scores {path}: no column(s) {miss}; a scores file has run_id, id, probability "
                         f"[, feature_0 ...]; it has {list(df.columns)[:10]}")
    rid = df["run_id"].astype(str).str.strip()
    bad = np.flatnonzero(rid.to_numpy() != run_id)
    if len(bad):
        raise InputError(f"scores {path}: {_line(bad[0])}: run_id {rid.iat[bad[0]]!r}, but the export is run "
                         f"{run_id!r}: these scores belong to another run (or the config or its inputs changed since "
                         f"the export)")
    ids = df["id"].astype(str)
    dup = np.flatnonzero(ids.duplicated().to_numpy())
    if len(dup):
        raise InputError(f"scores {path}: {_line(dup[0])}: id {ids.iat[dup[0]]!r} is scored twice")
    unknown = np.flatnonzero(~ids.isin(expected).to_numpy())
    if len(unknown):
        raise InputError(f"scores {path}: {_line(unknown[0])}: id {ids.iat[unknown[0]]!r} is not in the export")
    absent = expected[~expected.isin(ids)]
    if len(absent):
        raise InputError(f"scores {path}: {len(absent)} exported id(s) have no score, e.g. {list(absent[:3])}")
    p = pd.to_numeric(df["probability"], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if len(bad):
        raise InputError(f"scores {path}: {_line(bad[0])}: probability {df['probability'].iat[bad[0]]} of id "
                         f"{ids.iat[bad[0]]!r} is not a number in [0, 1]")
    fcols = [c for c in df.columns if str(c).startswith("feature_")]
    want = [f"feature_{i}" for i in range(len(fcols))]
    if sorted(fcols, key=lambda c: int(c.split("_")[1]) if c.split("_")[1].isdigit() else -1) != want:
        raise InputError(f"scores {path}: feature columns must be feature_0 ... feature_{len(fcols) - 1}, got "
                         f"{fcols[:5]}{' ...' if len(fcols) > 5 else ''}")
    feats = None
    if fcols:
        feats = df[want].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
        if len(bad):
            raise InputError(f"scores {path}: {_line(bad[0])}: a feature of id {ids.iat[bad[0]]!r} is not a finite "
                             f"number")
    from lensaudit.scoring.scorers import PROB_EPS

    q = np.clip(p, PROB_EPS, 1 - PROB_EPS)
    out = pd.DataFrame({"logit": np.log(q) - np.log1p(-q), "row": np.arange(len(df))}, index=pd.Index(ids, name="id"))
    out.attrs["features"] = None if feats is None else feats.astype(np.float32)
    return out


class ExchangeScores:
    """The scores of an offline exchange, looked up by id; each re-rendered cutout checked against the export."""

    kind = "exchange"

    def __init__(self, cfg: SelectionConfig, rd: SelectionRunDir, inputs: dict):
        self.path = Path(cfg.scores)
        if not rd.exchange_manifest.is_file():
            raise InputError(f"selection run {rd.root}: no exchange to import scores for ({rd.exchange_manifest} is "
                             f"missing); run `lensaudit selection export` with this config first")
        man = json.loads(rd.exchange_manifest.read_text())
        rid = exchange_id(cfg, inputs)
        if man.get("format") != EXCHANGE_FORMAT or man.get("run_id") != rid:
            raise InputError(f"{rd.exchange_manifest}: the export is run {man.get('run_id')!r}, but this config and its "
                             f"inputs give run {rid!r} (the config, manifest, store or a stamp library changed since "
                             f"the export): export again")
        ids = pd.read_csv(rd.exchange_ids, dtype={"id": str, "cutout_sha256": str}, keep_default_na=False)
        self.hash = pd.Series(ids["cutout_sha256"].to_numpy(), index=pd.Index(ids["id"]))
        self.table = read_scores(self.path, rid, self.hash.index)
        self.features = self.table.attrs["features"]
        if cfg.features and self.features is None and not cfg.gate_reference:
            raise InputError(f"scores {self.path}: features: true in the selection config, but the file has no "
                             f"feature_* columns; add the model's penultimate features, set gate_reference (a checkpoint "
                             f"whose features the realism gate then uses) or features: false")
        self.run_id = rid

    @property
    def has_features(self) -> bool:
        return self.features is not None

    def identity(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "sha256": sha256_file(self.path), "run_id": self.run_id,
                "features": self.has_features}

    def audited_predictions(self) -> pd.DataFrame:
        """The negatives' and lenses' scores under their manifest ids: ``id, logit, probability[, features]``."""
        ids = self.table.index.to_series()
        keep = ids.str.startswith(("negative:", "positive:")).to_numpy()
        t = self.table[keep]
        lg = t["logit"].to_numpy(np.float64)
        out = pd.DataFrame({"id": [i.split(":", 1)[1] for i in t.index], "logit": lg, "probability": 1 / (1 + np.exp(-lg))})
        if self.features is not None:
            out["features"] = list(self.features[t["row"].to_numpy()])
        return out

    def score(self, cutouts: np.ndarray, features: bool = False, ids: list[str] | None = None):
        """Logits (and features) of ``ids``; ``cutouts`` must be the exported pixels of those ids, bit for bit."""
        got = cutout_hashes(cutouts)
        want = self.hash.loc[ids].to_numpy()
        bad = np.flatnonzero(np.asarray(got) != want)
        if len(bad):
            raise InputError(f"exchange: cutout {ids[bad[0]]!r} rendered now differs from the exported one "
                             f"({len(bad)} of {len(ids)} in this chunk): a library version, the machine's arithmetic "
                             f"or an input changed since the export; export again and score the new cutouts")
        t = self.table.loc[ids]
        lg = t["logit"].to_numpy(np.float64)
        return lg, (self.features[t["row"].to_numpy()] if features else None)
