"""``lensaudit selection run``: injection-recovery on a grid with a frozen detector.

Per family and grid cell, ``n_per_cell`` injections: theta_E and the lensed arc magnitude drawn
uniformly inside the cell, a host drawn among the negatives whose r-band PSF FWHM and depth fall in
the cell (:mod:`lensaudit.selection.hosts`). Injected cutouts are scored with the checkpoint and its
stored preprocessing. Work is done in chunks written atomically under ``injections/<family>/``, named
by the configuration's hash, so an interrupted run resumes where it stopped and a changed
configuration never mixes with an old one. Products: per family the per-cell table
(``selection_<family>.parquet`` and ``.fits``, the :class:`~lensaudit.selection.function.SelectionFunction`
file), marginal completeness against every axis and against the source's half-light radius and
concentration (``marginals.parquet``), thresholds (``thresholds.json``), hosts (``hosts.parquet``),
figures, the resolved config and ``run_info.json``.
"""

from __future__ import annotations

import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import (
    OperatingPoint,
    SelectionRunDir,
    read_manifest,
    read_predictions,
    write_artifact_table,
    write_doc,
    write_table,
)
from lensaudit.artifacts.kinds import HOSTS, MARGINALS, OPERATING_POINTS, PREDICTIONS, SELECTION_SUMMARY
from lensaudit.cutouts import CutoutStore
from lensaudit.errors import InputError
from lensaudit.inject import FamilyConfig, InjectionEngine, build_family, draw_parameters
from lensaudit.inject.records import RECORDS_VERSION, chunk_ok, chunk_path, read_injections
from lensaudit.selection.config import SelectionConfig
from lensaudit.selection.function import SelectionFunction, completeness_table
from lensaudit.selection.grid import AXES, Grid
from lensaudit.selection.hosts import host_cells, pick_hosts, screen_hosts, select_hosts
from lensaudit.selection.intervals import completeness_columns
from lensaudit.sources.library import split_spec
from lensaudit.survey.arcphot import measure_arcs
from lensaudit.survey.constants import CUTOUT_SIZE
from lensaudit.utils.io import atomic_write_json, sha256_file, sha256_json
from lensaudit.utils.memory import check_plan
from lensaudit.utils.progress import progress

log = logging.getLogger(__name__)


def operating_points(neg_probability: np.ndarray, cfg: SelectionConfig) -> list[OperatingPoint]:
    """The operating points of a run (detection is ``p >= t``): each fixed probability of the config, then the
    threshold at each target FPR on the audited splits' negatives."""
    neg = np.asarray(neg_probability, float)
    what = f"{'/'.join(cfg.splits)} negatives"
    return ([OperatingPoint.fixed(p) for p in cfg.thresholds.probability]
            + [OperatingPoint.at_fpr(neg, f, what) for f in cfg.thresholds.fpr])


def plan_family(cfg: SelectionConfig, grid: Grid, hosts: pd.DataFrame, cells: dict) -> pd.DataFrame:
    """Every injection of a family: its global index, cell bins and host row (-1 where a cell has no host)."""
    n = cfg.n_per_cell
    idx = np.arange(grid.n_cells * n, dtype=np.int64)
    flat = idx // n
    bins = np.unravel_index(flat, grid.shape)
    plan = pd.DataFrame({"index": idx, "cell": flat, **{f"i_{a}": b for a, b in zip(AXES, bins, strict=True)}})
    host = np.full(len(plan), -1)
    for (ip, idp), rows in cells.items():
        sel = np.flatnonzero((plan["i_psf_fwhm"].to_numpy() == ip) & (plan["i_depth"].to_numpy() == idp))
        host[sel] = pick_hosts(rows, idx[sel], cfg.seed)
    plan["host_row"] = host
    return plan


class _Scorer:
    """The frozen model, loaded once (a lensaudit checkpoint, an ONNX model or a TorchScript file: see
    :func:`lensaudit.scoring.load_scorer`), scoring raw arrays with its own preprocessing, or the offline exchange's
    scores looked up by id; and the other models (``extra_checkpoints``) that score the same injected cutouts."""

    def __init__(self, checkpoint: str | None, device: str, batch_size: int, extra: dict[str, str] | None = None,
                 exchanged=None, reference: str | None = None, features: bool = False):
        from lensaudit.scoring import CheckpointScorer, load_scorer

        self.main = exchanged if exchanged is not None else load_scorer(checkpoint, device, batch_size)
        self.extra = {n: load_scorer(p, device, batch_size) for n, p in (extra or {}).items()}
        self.reference = None
        if features and not self.main.has_features and not reference:
            raise InputError(f"{self.main.path}: features: true in the selection config, but the model gives no "
                             f"features (its spec, or the scores file's feature_* columns); set gate_reference (a "
                             f"checkpoint whose features the realism gate then uses) or features: false")
        if features and reference and not self.main.has_features:
            self.reference = load_scorer(reference, device, batch_size)
            if not isinstance(self.reference, CheckpointScorer):
                raise InputError(f"gate_reference {reference}: must be a lensaudit checkpoint (the stated reference "
                                 f"network of the realism gate)")

    def __call__(self, cutouts: np.ndarray, features: bool, ids: list[str]):
        if features and not self.main.has_features and self.reference is None:
            raise InputError(f"{self.main.path}: features asked for, but the model gives none and no gate_reference "
                             f"is set")
        own = features and self.reference is None
        lg, ft = (self.main.score(cutouts, own, ids=ids) if self.main.kind == "exchange"
                  else self.main.score(cutouts, own))
        if features and self.reference is not None:
            ft = self.reference.score(cutouts, True)[1]
        return lg, ft

    def identity(self) -> dict:
        return self.main.identity()

    def features_from(self) -> dict:
        """Whose penultimate features the records keep: the model's own, or the stated reference network's."""
        if self.reference is None:
            return {"source": "model"}
        return {"source": "reference", "path": str(self.reference.path), "arch": self.reference.ck["arch"],
                "sha256": self.reference.identity()["sha256"]}

    def extras(self, cutouts: np.ndarray) -> dict[str, np.ndarray]:
        """Logits of every extra model for ``cutouts``, each with its own preprocessing; models that share a
        preprocessing (ensemble members trained with one config) share one preprocessed copy."""
        cache: dict = {}
        return {n: sc.score(cutouts, cache=cache)[0] for n, sc in self.extra.items()}


def negative_ids(ids) -> list[str]:
    """Exchange ids of the audited splits' negatives (their manifest ids, prefixed)."""
    return [f"negative:{i}" for i in ids]


def injection_ids(family: str, index) -> list[str]:
    """Exchange ids of a family's injections (``injection:<family>:<index>``, the index zero-padded to 9 digits)."""
    return [f"injection:{family}:{int(i):09d}" for i in index]


def audited_lenses(cfg: SelectionConfig, manifest: pd.DataFrame, store: CutoutStore) -> list[str]:
    """Ids of the audited splits' stored lenses (label 1): the offline exchange exports them too, so the model's
    scores and features of the real lenses (the realism gate's, the evaluation's) come back with the rest."""
    pos = manifest[manifest["split"].isin(list(cfg.splits)) & (manifest["label"] == 1)]
    have = set(store.ids().astype(str))
    return [i for i in pos["id"].astype(str) if i in have]


def audited_negatives(cfg: SelectionConfig, manifest: pd.DataFrame, store: CutoutStore) -> list[str]:
    """Ids of the audited splits' stored negatives: the FPR thresholds are set on their scores."""
    neg = manifest[manifest["split"].isin(list(cfg.splits)) & (manifest["label"] == 0)]
    have = set(store.ids().astype(str))
    ids = [i for i in neg["id"].astype(str) if i in have]
    if not ids:
        raise InputError(f"{cfg.store}: no negative of splits {list(cfg.splits)} to set the FPR thresholds on")
    return ids


def _negative_scores(cfg: SelectionConfig, manifest: pd.DataFrame, store: CutoutStore, scorer: _Scorer) -> np.ndarray:
    neg = manifest[manifest["split"].isin(list(cfg.splits)) & (manifest["label"] == 0)]
    if cfg.negatives_predictions:
        p = read_predictions(cfg.negatives_predictions, columns=["id", "probability"])
        got = neg[["id"]].astype(str).merge(p, on="id")
        if not len(got):
            raise InputError(f"{cfg.negatives_predictions}: no score for a negative of splits {list(cfg.splits)}")
        return got["probability"].to_numpy(float)
    ids = audited_negatives(cfg, manifest, store)
    lg = np.concatenate([scorer(store.get(ids[lo : lo + 4096]), False, negative_ids(ids[lo : lo + 4096]))[0]
                         for lo in range(0, len(ids), 4096)])
    return 1 / (1 + np.exp(-lg))


#: Memory per injection kept while a family runs (its plan row and its record, about 70 numbers), bytes.
BYTES_PER_INJECTION = 900


def plan_memory(cfg: SelectionConfig) -> float:
    """The run's peak memory estimate (bytes): one family's plan and records, and a chunk of cutouts (hosts, injected,
    preprocessed, engine buffers); an :class:`InputError` with the estimate when the machine cannot hold it."""
    n = Grid(cfg.grid).n_cells * cfg.n_per_cell
    cutout = 3 * CUTOUT_SIZE * CUTOUT_SIZE * 4
    est = n * BYTES_PER_INJECTION + cfg.chunk_size * cutout * 6
    check_plan(est, f"selection run: {n:,} injections per family ({Grid(cfg.grid).n_cells:,} cells x n_per_cell "
                    f"{cfg.n_per_cell:,}) with chunk_size {cfg.chunk_size:,}",
               "lower n_per_cell or chunk_size, or coarsen the grid")
    return est


def input_fingerprints(cfg: SelectionConfig, store: CutoutStore) -> dict[str, str]:
    """SHA-256 of the contents of every input a selection run reads (models and their spec files, manifest, the store's
    index, stamp libraries, negatives' scores): what its reuse is keyed on."""
    files = {"checkpoint": cfg.checkpoint, "scores": cfg.scores, "gate_reference": cfg.gate_reference,
             "manifest": cfg.manifest, "negatives_predictions": cfg.negatives_predictions,
             **{f"extra:{n}": p for n, p in (cfg.extra_checkpoints or {}).items()},
             **{f"stamp_library:{f.name}": split_spec(f.stamp_library)[0] for f in cfg.families if f.stamp_library}}
    from lensaudit.scoring import spec_path

    models = {k: v for k, v in files.items() if v and (k == "checkpoint" or k.startswith("extra:"))}
    files.update({f"spec:{k}": spec_path(v) for k, v in models.items() if spec_path(v).is_file()})  # ONNX, TorchScript
    out = {k: sha256_file(v) for k, v in files.items() if v}
    out.update({f"stamp_half:{f.name}": split_spec(f.stamp_library)[1] or "all" for f in cfg.families if f.stamp_library})
    out["store"] = store.fingerprint()
    return out


@dataclass(frozen=True)
class _Setup:
    """What every family of a run shares, read once: the store, the inputs' fingerprints, the grid, the screened hosts
    (written to ``hosts.parquet``) with their cells and noise statistics, and the manifest."""

    store: CutoutStore
    inputs: dict
    grid: Grid
    manifest: pd.DataFrame
    hosts: pd.DataFrame
    excluded: dict
    cells: dict
    stats: tuple[np.ndarray, np.ndarray]


def _setup(cfg: SelectionConfig, rd: SelectionRunDir, store: CutoutStore, inputs: dict) -> _Setup:
    grid = Grid(cfg.grid)
    manifest = read_manifest(cfg.manifest, require=("id", "split", "label"))
    hosts, excluded = screen_hosts(select_hosts(manifest, cfg.splits, store.ids()), store.get)
    write_artifact_table(hosts, rd.hosts, HOSTS)
    return _Setup(store, inputs, grid, manifest, hosts, excluded, host_cells(hosts, grid), _host_stats(hosts, store, rd))


def run_selection(cfg: SelectionConfig, config_path: str | None = None) -> dict:
    """Run (or resume) the grid for every family; returns a summary. The model is ``cfg.checkpoint`` (any model
    :func:`lensaudit.scoring.load_scorer` reads) or, for the offline exchange, ``cfg.scores`` (checked against the
    export in ``<out>/exchange`` before anything is written: :mod:`lensaudit.selection.exchange`)."""
    from lensaudit.config import write_resolved
    from lensaudit.utils.provenance import run_info

    if not (cfg.checkpoint or cfg.scores):
        raise InputError("selection run: give checkpoint (a model scored here) or scores (the offline exchange's "
                         "file for the cutouts `lensaudit selection export` wrote)")
    plan_memory(cfg)                                                 # before anything is read or written
    families = {f.name: build_family(f) for f in cfg.families}      # reads stamp libraries: bad ones fail here
    out = Path(cfg.out)
    rd = SelectionRunDir(out)
    store = CutoutStore(cfg.store)
    inputs = input_fingerprints(cfg, store)
    exchanged = None
    if cfg.scores:
        from lensaudit.selection.scores_file import ExchangeScores

        exchanged = ExchangeScores(cfg, rd, inputs)                   # the whole file checked: nothing written yet
    out.mkdir(parents=True, exist_ok=True)
    with rd.lock("selection run"):
        # the tag names the injections: the config *and the contents* of every input (a checkpoint replaced at the
        # same path, a changed manifest, store or library gives a new tag: its chunks are recomputed, never mixed)
        tag = sha256_json({"config": cfg.model_dump(mode="json", exclude={"out", "device", "batch_size"} |
                                                    (set() if cfg.extra_checkpoints else {"extra_checkpoints"}) |
                                                    (set() if cfg.scores else {"scores"}) |
                                                    (set() if cfg.gate_reference else {"gate_reference"})),
                           "inputs": inputs, "records": RECORDS_VERSION})[:12]
        st = _setup(cfg, rd, store, inputs)
        grid, hosts, cells = st.grid, st.hosts, st.cells
        scorer = _Scorer(cfg.checkpoint, cfg.device, cfg.batch_size, cfg.extra_checkpoints, exchanged,
                         cfg.gate_reference, cfg.features)
        ops = operating_points(_negative_scores(cfg, st.manifest, store, scorer), cfg)
        write_doc(rd.operating_points, OPERATING_POINTS, {"points": [op.to_dict() for op in ops]})
        summary = {"out": str(out), "config_tag": tag, "inputs": inputs, "n_hosts": len(hosts), "families": {},
                   "hosts_left_out": {k: {"n": len(v), "ids": v[:20]} for k, v in st.excluded.items()},
                   "cells": grid.n_cells, "cells_without_hosts": int(sum(1 for v in cells.values() if not len(v))),
                   "model": scorer.identity(), "features_from": scorer.features_from()}
        all_recs = {}
        for fam_cfg in cfg.families:
            t0 = time.perf_counter()
            recs = _run_family(cfg, fam_cfg, families[fam_cfg.name], st, scorer, rd, tag)
            all_recs[fam_cfg.name] = recs
            tab = completeness_table(recs, grid, ops, cfg.min_count)
            meta = {"family": fam_cfg.name, "kind": fam_cfg.kind, "planted": fam_cfg.planted,
                    "edges": {a: grid.edges[a].tolist() for a in AXES}, "thresholds": [op.to_dict() for op in ops],
                    "min_count": cfg.min_count,
                    "n_per_cell": cfg.n_per_cell, "checkpoint": cfg.checkpoint or cfg.scores, "config_tag": tag,
                    "priors": cfg.priors.model_dump(mode="json"), "engine": cfg.engine.model_dump(mode="json")}
            sf = SelectionFunction(tab, meta)
            sf.save(rd.selection_function(fam_cfg.name))
            sf.save_fits(rd.selection_fits(fam_cfg.name))
            dt = time.perf_counter() - t0
            summary["families"][fam_cfg.name] = {"n_injections": len(recs), "seconds": round(dt, 1),
                                                 "marginal": sf.overall()}
        marg = pd.concat([marginals(all_recs[f.name], ops, cfg.min_count, edges=grid.edges) for f in cfg.families],
                         ignore_index=True)
        write_artifact_table(marg, rd.marginals, MARGINALS)
        from lensaudit.selection.figures import selection_figures

        summary["figures"] = selection_figures(rd, [f.name for f in cfg.families], marg)
        if exchanged is not None:   # the audited splits' scores under their manifest ids (for realism, evaluate)
            write_artifact_table(exchanged.audited_predictions(), rd.exchange_predictions, PREDICTIONS,
                                 {"checkpoint": str(exchanged.path), "checkpoint_sha256": exchanged.identity()["sha256"],
                                  "arch": "exchange", "n_missing": 0})
            summary["exchange_predictions"] = str(rd.exchange_predictions)
        write_resolved(cfg, rd.config)
        atomic_write_json(rd.run_info, run_info(cfg.model_dump(mode="json"), tag, {"selection": cfg.seed},
                                                extra={"config_path": config_path}))
        write_doc(rd.summary, SELECTION_SUMMARY, summary)
        return summary


def _host_stats(hosts: pd.DataFrame, store: CutoutStore, rd: SelectionRunDir) -> tuple[np.ndarray, np.ndarray]:
    """Every host's pixel noise and lag-1 correlation per band (measured once per run, kept in ``host_noise.npz``)."""
    from lensaudit.inject.engine import host_noise

    path = rd.host_noise
    key = store.fingerprint()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if list(z["ids"]) == list(hosts["id"]) and str(z["store"]) == key:
                    return z["sigma"], z["rho"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable host-noise cache (%s): measured again", path, exc)
    sig, rho = [], []
    for lo in range(0, len(hosts), 512):
        s, r = host_noise(store.get(list(hosts["id"].iloc[lo : lo + 512])))
        sig.append(s)
        rho.append(r)
    sig, rho = np.concatenate(sig), np.concatenate(rho)
    from lensaudit.utils.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=hosts["id"].to_numpy().astype(str), sigma=sig, rho=rho, store=np.str_(key))
    return sig, rho


@dataclass(frozen=True)
class _FamilyJob:
    """Everything a family's chunks share: the run's config and folder, the family and its engine, the plan, the
    hosts with their noise statistics, the store and the scorer."""

    cfg: SelectionConfig
    family: FamilyConfig
    engine: InjectionEngine
    grid: Grid
    plan: pd.DataFrame
    hosts: pd.DataFrame
    sigma: np.ndarray
    rho: np.ndarray
    store: CutoutStore
    scorer: _Scorer
    rd: SelectionRunDir
    tag: str

    @property
    def n_chunks(self) -> int:
        return (len(self.plan) + self.cfg.chunk_size - 1) // self.cfg.chunk_size


def _family_job(cfg, fam_cfg, fam, st: _Setup, scorer, rd: SelectionRunDir, tag: str) -> _FamilyJob:
    plan = plan_family(cfg, st.grid, st.hosts, st.cells)
    return _FamilyJob(cfg, fam_cfg, InjectionEngine(fam, cfg.engine), st.grid, plan[plan["host_row"] >= 0].reset_index(
        drop=True), st.hosts, st.stats[0], st.stats[1], st.store, scorer, rd, tag)


def _run_family(cfg, fam_cfg, fam, st: _Setup, scorer, rd: SelectionRunDir, tag: str) -> pd.DataFrame:
    job = _family_job(cfg, fam_cfg, fam, st, scorer, rd, tag)
    d = rd.family_injections(fam_cfg.name)
    d.mkdir(parents=True, exist_ok=True)
    stale = [p for p in d.glob("*.parquet") if not p.name.startswith(tag)]
    if stale:
        log.info("%s: %d chunk(s) of another configuration ignored", fam_cfg.name, len(stale))
    with progress(job.n_chunks, f"injecting {fam_cfg.name}", "chunks") as advance:
        for k in range(job.n_chunks):
            path = chunk_path(rd, fam_cfg.name, tag, k)
            if path.exists() and not chunk_ok(path):
                log.warning("%s: corrupt chunk %s: computed again", fam_cfg.name, path)
                path.unlink()
            if not path.exists():
                _run_chunk(job, k)
            advance()
    return read_injections(rd, fam_cfg.name, tag, features=False)


def _inject_chunk(job: _FamilyJob, k: int) -> tuple[np.ndarray, pd.DataFrame]:
    """The injected cutouts of chunk ``k`` of a family's plan and their records (everything but the scores)."""
    cfg, grid = job.cfg, job.grid
    p = job.plan.iloc[k * cfg.chunk_size : (k + 1) * cfg.chunk_size]
    lo_te = grid.edges["theta_e"][p["i_theta_e"]]
    hi_te = grid.edges["theta_e"][p["i_theta_e"] + 1]
    lo_m = grid.edges["arc_mag"][p["i_arc_mag"]]
    hi_m = grid.edges["arc_mag"][p["i_arc_mag"] + 1]
    params = draw_parameters(cfg.priors.model_copy(update={"brightness": "lensed"}), job.family, cfg.seed,
                             p["index"].to_numpy(), bounds={"theta_e_arcsec": (lo_te, hi_te), "arc_mag_r": (lo_m, hi_m)},
                             n_stamps=job.engine.family.n_stamps())
    rows = p["host_row"].to_numpy()
    h = job.hosts.iloc[rows]
    cut = job.store.get(list(h["id"]))
    fw = h[["host_psfsize_g", "host_psfsize_r", "host_psfsize_z"]].to_numpy(float)
    img, rec = job.engine.inject(cut, fw, params, host_stats=(job.sigma[rows], job.rho[rows]))
    rec = rec.assign(**measure_arcs(img),           # measured from the pixels as on real lenses (the realism gate)
                     cell=p["cell"].to_numpy(), **{f"i_{a}": p[f"i_{a}"].to_numpy() for a in AXES},
                     host_id=h["id"].to_numpy(), **{c: h[c].to_numpy() for c in h.columns if c.startswith("host_")})
    return img, rec


def _run_chunk(job: _FamilyJob, k: int) -> None:
    """Draw, inject, score and write chunk ``k`` of a family's plan (atomically)."""
    path = chunk_path(job.rd, job.family.name, job.tag, k)
    img, rec = _inject_chunk(job, k)
    lg, feats = job.scorer(img, job.cfg.features, injection_ids(job.family.name, rec["index"]))
    rec = rec.assign(logit=lg, probability=1 / (1 + np.exp(-lg)))
    for n, lg2 in job.scorer.extras(img).items():
        rec[f"logit_{n}"], rec[f"probability_{n}"] = lg2, 1 / (1 + np.exp(-lg2))
    if feats is not None:
        rec["features"] = list(feats.astype(np.float32))
    write_table(rec, path)
    log.info("%s: chunk %d/%d (%d injections)", job.family.name, k + 1, job.n_chunks, len(rec))


def marginals(recs: pd.DataFrame, ops: list[OperatingPoint], min_count: int, n_quantile_bins: int = 5,
              edges: dict | None = None) -> pd.DataFrame:
    """Completeness against each grid axis and the source's half-light radius and concentration
    (quantile bins), each marginalised over the injections' other parameters."""
    rows = []
    quantities = {"theta_e": "theta_e", "psf_fwhm": "host_psfsize_r", "depth": "host_depth_r", "arc_mag": "arc_mag_r",
                  "src_r_half_arcsec": "src_r_half_arcsec", "src_concentration": "src_concentration",
                  "beta_frac": "beta_frac"}
    for name, col in quantities.items():
        if col not in recs:
            continue
        if name in AXES:
            b = recs[f"i_{name}"].to_numpy()
            labels = sorted(set(b.tolist()))
            e = None if edges is None else np.asarray(edges[name], float)
        else:
            v = recs[col].to_numpy(float)
            e = np.unique(np.nanquantile(v, np.linspace(0, 1, n_quantile_bins + 1)))
            b = np.clip(np.searchsorted(e, v, side="right") - 1, 0, len(e) - 2)
            labels = range(len(e) - 1)
        for lab in labels:
            sel = b == lab
            g = recs[sel]
            for op in ops:
                k, n = int(op.detected(g["probability"]).sum()), len(g)
                c = completeness_columns(k, n, min_count)
                rows.append({"family": recs["family"].iat[0], "quantity": name, "bin": int(lab),
                             "lo": float(g[col].min()) if e is None else float(e[int(lab)]),
                             "hi": float(g[col].max()) if e is None else float(e[int(lab) + 1]),
                             "median": float(g[col].median()), "threshold": op.name, "n": n, "k": k,
                             **{key: (v.item() if hasattr(v, "item") else v) for key, v in c.items()}})
    return pd.DataFrame(rows)


__all__ = ["marginals", "operating_points", "plan_family", "run_selection"]
