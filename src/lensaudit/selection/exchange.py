"""The offline exchange: a selection run scored by a lens finder that cannot run here.

``lensaudit selection export --config sel.yaml`` writes, under ``<out>/exchange/``, every cutout the run would score
(the audited splits' negatives, which set the FPR thresholds, and every injection), and
``lensaudit selection import-scores --config sel.yaml scores.csv`` completes the run with the user's scores. The
layout (also written as ``exchange/README.md``)::

    exchange.json                       format, run_id, counts, shards (file, n, SHA-256), the config
    ids.csv                             id, kind (negative | injection), family, shard, row, cutout_sha256
    negatives/shard_00000.npz           ids (str, n), cutouts (float32, n x 3 x 101 x 101, nanomaggies, bands g, r, z)
    injections/<family>/shard_00000.npz

Read a shard with ``numpy.load(path, allow_pickle=False)``. Ids are ``negative:<manifest id>`` and
``injection:<family>:<index>``. The scores file is CSV (or Parquet) with the columns ``run_id`` (the export's, every
row), ``id``, ``probability`` (in [0, 1]) and optionally ``feature_0 ... feature_<F-1>`` (the model's penultimate
features, for the realism gate). It is checked whole before anything is written: every exported id exactly once, no
other id, probabilities finite in [0, 1], features finite, the run id the export's; a failure names the file and
its first offending line. The run id is a hash of what decides the cutouts (the config but its model, thresholds and
output settings; the manifest, store, stamp libraries), so a changed config or input is refused, not mixed. On import
the cutouts are rendered again and each one's SHA-256 is compared with the export's: the scores are tied to the
pixels the user scored.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import SelectionRunDir
from lensaudit.cutouts import CutoutStore
from lensaudit.errors import InputError
from lensaudit.inject import build_family
from lensaudit.inject.records import RECORDS_VERSION
from lensaudit.selection.config import SelectionConfig
from lensaudit.utils.io import atomic_path, atomic_write_json, atomic_write_text, sha256_file, sha256_json

log = logging.getLogger(__name__)

EXCHANGE_FORMAT = "lensaudit-exchange-1"
#: Config keys that do not change which cutouts a run scores (left out of the run id).
NOT_IN_RUN_ID = {"out", "device", "batch_size", "checkpoint", "scores", "extra_checkpoints", "thresholds",
                 "min_count", "features", "negatives_predictions"}


def exchange_id(cfg: SelectionConfig, inputs: dict) -> str:
    """The run id shared by an export and its scores file: a hash of what decides the exported cutouts."""
    model_keys = ("checkpoint", "extra:", "spec:", "scores", "negatives_predictions")
    return sha256_json({"config": cfg.model_dump(mode="json", exclude=NOT_IN_RUN_ID),
                        "inputs": {k: v for k, v in inputs.items() if not k.startswith(model_keys)},
                        "records": RECORDS_VERSION, "format": EXCHANGE_FORMAT})[:16]


def cutout_hashes(cutouts: np.ndarray) -> list[str]:
    """SHA-256 (hex) of each cutout's float32 little-endian bytes."""
    a = np.ascontiguousarray(cutouts, dtype="<f4")
    return [hashlib.sha256(c.tobytes()).hexdigest() for c in a]


def _write_shard(root: Path, path: Path, ids: list[str], cutouts: np.ndarray) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, dtype=str), cutouts=np.ascontiguousarray(cutouts, np.float32))
    return {"file": path.relative_to(root).as_posix(), "n": len(ids), "sha256": sha256_file(path)}


def export_exchange(cfg: SelectionConfig) -> dict:
    """Write the exchange of ``cfg`` (see the module docstring) under ``<cfg.out>/exchange``; returns its manifest.
    An older exchange in that folder is replaced; the run's other files (hosts, host noise) are the run's own."""
    from lensaudit.selection.run import (
        _family_job,
        _inject_chunk,
        _setup,
        audited_negatives,
        injection_ids,
        input_fingerprints,
        negative_ids,
        plan_memory,
    )

    plan_memory(cfg)
    families = {f.name: build_family(f) for f in cfg.families}
    rd = SelectionRunDir(cfg.out)
    store = CutoutStore(cfg.store)
    inputs = input_fingerprints(cfg, store)
    xid = exchange_id(cfg, inputs)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with rd.lock("selection export"):
        st = _setup(cfg, rd, store, inputs)
        if rd.exchange.exists():
            shutil.rmtree(rd.exchange)
        shards, rows = [], []
        neg = audited_negatives(cfg, st.manifest, store)
        for k, lo in enumerate(range(0, len(neg), cfg.chunk_size)):
            ids, cut = negative_ids(neg[lo : lo + cfg.chunk_size]), store.get(neg[lo : lo + cfg.chunk_size])
            shards.append(_write_shard(rd.exchange, rd.exchange_shard(None, k), ids, cut))
            rows += [("negative", "", shards[-1]["file"], r, i, h) for r, (i, h) in enumerate(zip(ids, cutout_hashes(cut),
                                                                                                   strict=True))]
        counts = {"negatives": len(neg)}
        for fam_cfg in cfg.families:
            job = _family_job(cfg, fam_cfg, families[fam_cfg.name], st, None, rd, xid)
            for k in range(job.n_chunks):
                img, rec = _inject_chunk(job, k)
                ids = injection_ids(fam_cfg.name, rec["index"])
                shards.append(_write_shard(rd.exchange, rd.exchange_shard(fam_cfg.name, k), ids, img))
                rows += [("injection", fam_cfg.name, shards[-1]["file"], r, i, h)
                         for r, (i, h) in enumerate(zip(ids, cutout_hashes(img), strict=True))]
            counts[f"injections:{fam_cfg.name}"] = len(job.plan)
            log.info("exchange: %s: %d injections in %d shard(s)", fam_cfg.name, len(job.plan), job.n_chunks)
        tab = pd.DataFrame(rows, columns=["kind", "family", "shard", "row", "id", "cutout_sha256"])
        tab = tab[["id", "kind", "family", "shard", "row", "cutout_sha256"]]
        with atomic_path(rd.exchange_ids) as tmp:
            tab.to_csv(tmp, index=False)
        atomic_write_text(rd.exchange_readme, __doc__.split("\n\n", 1)[1])
        man = {"format": EXCHANGE_FORMAT, "run_id": xid, "n_cutouts": len(tab), "counts": counts,
               "ids": rd.exchange_ids.name, "ids_sha256": sha256_file(rd.exchange_ids), "shards": shards,
               "cutouts": {"dtype": "float32", "shape": [3, 101, 101], "bands": ["g", "r", "z"], "unit": "nanomaggies"},
               "scores_file": {"columns": ["run_id", "id", "probability"], "optional": "feature_0 ... feature_<F-1>"},
               "config": cfg.model_dump(mode="json", exclude=NOT_IN_RUN_ID)}
        atomic_write_json(rd.exchange_manifest, man)          # last: an exchange without it is incomplete
    log.info("exchange %s: %d cutouts under %s", xid, len(tab), rd.exchange)
    return {k: v for k, v in man.items() if k not in ("shards", "config")} | {"out": str(rd.exchange)}


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
        import json

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
        if cfg.features and self.features is None:
            raise InputError(f"scores {self.path}: features: true in the selection config, but the file has no "
                             f"feature_* columns; add the model's penultimate features, or set features: false")
        self.run_id = rid

    @property
    def has_features(self) -> bool:
        return self.features is not None

    def identity(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "sha256": sha256_file(self.path), "run_id": self.run_id,
                "features": self.has_features}

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
