"""``lensaudit demo``: every stage that exists, in order, on the embedded default data.

Each stage is skipped when its recorded inputs are unchanged (see :mod:`lensaudit.pipeline`).
Settings live in ``configs/demo/demo.yaml`` (:class:`DemoConfig`); later pipeline stages add
themselves here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lensaudit.artifacts import VERSIONS, CatalogDir, EvalDir, MockSurveyDir, Run
from lensaudit.artifacts.kinds import CLOSURE_SUMMARY, REALISM
from lensaudit.artifacts.operating import HEADLINE
from lensaudit.config import load_config
from lensaudit.configs import bundled_config
from lensaudit.errors import InputError
from lensaudit.pipeline import run_stage
from lensaudit.reference import BRICK_CONDITIONS, REGION_CONDITIONS, ReferenceData, load_reference
from lensaudit.utils.io import atomic_write_json, sha256_file
from lensaudit.utils.provenance import run_info

log = logging.getLogger(__name__)


class QuickSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    area_deg2: float = Field(1.0, ge=0.0625, le=64.0)
    fetch_limit: int = Field(200, ge=10, description="cutouts fetched in quick mode")
    epochs: int = Field(1, ge=1)
    selection_n_per_cell: int = Field(3, ge=1, description="injections per grid cell in quick mode")


class DemoConfig(BaseModel):
    """The demo's settings; its seed drives the mock survey and the evaluation's resampling."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(42, ge=0, lt=2**32)
    area_deg2: float = Field(33.0, ge=0.0625, le=64.0, description="mock patch area, deg^2")
    catalog_config: str = Field("catalog/mock_demo.yaml", description="bundled name or path")
    train_config: str = Field("train/demo.yaml", description="bundled name or path")
    eval_n_boot: int = Field(1000, ge=100)
    selection_config: str = Field("selection/demo.yaml", description="bundled name or path")
    realism_config: str = Field("selection/demo_realism.yaml", description="bundled name or path")
    quick: QuickSettings = QuickSettings()


#: Demo stages that write or read versioned artifacts (:data:`lensaudit.artifacts.VERSIONS`).
VERSIONED_STAGES = ("score", "selection", "report")


def stage_contents(*paths: Path) -> dict[str, str | None]:
    """What a stage's reuse is keyed on besides its configs: the contents of the files (SHA-256) and stores
    (:meth:`~lensaudit.cutouts.CutoutStore.fingerprint`) it reads, so an input changed by hand re-runs it."""
    from lensaudit.cutouts import CutoutStore

    out = {}
    for p in paths:
        p = Path(p)
        out[p.name] = sha256_file(p) if p.is_file() else CutoutStore(p).fingerprint() if p.is_dir() else None
    return out


def resolve_config_path(name: str) -> Path:
    p = Path(name)
    return p if p.is_file() else bundled_config(name)


def load_demo_config(path: str | os.PathLike | None = None) -> DemoConfig:
    """The demo config at ``path``, or the bundled ``configs/demo/demo.yaml``."""
    return load_config(path or bundled_config("demo/demo.yaml"), DemoConfig)


def _stage_samples(ref: ReferenceData):
    """Import the real DR10 sample cutouts into a store, verify it, export them as service FITS."""
    from lensaudit.cutouts import CutoutStore, export_cutouts, import_npz

    files = ref.sample_cutouts

    def run(stage_dir: Path) -> dict:
        r = Run(stage_dir.parent)
        store = CutoutStore(r.samples_store, create=True)
        rep = import_npz(files, store)
        ver = store.verify()
        written = export_cutouts(store, list(store.ids()), r.samples_fits, "fits")
        return {"n_imported": rep.n_imported, "n_stored": ver["n_cutouts"], "n_exported_fits": len(written),
                "failures": rep.failures}

    inputs = {"files": {f.name: sha256_file(f) for f in files}}
    return inputs, run


def _stage_sources():
    """The real-galaxy stamp library cut from the Hubble XDF (its half B is the stamps family's)."""
    from dataclasses import asdict

    from lensaudit.sources.xdf import XdfSettings, build_xdf_library, load_xdf

    settings = XdfSettings()

    def run(stage_dir: Path) -> dict:
        rep = build_xdf_library(Run(stage_dir.parent).xdf.root, settings)
        return {k: rep[k] for k in ("n_detected", "n_stamps", "halves", "gamma", "effective_fwhm_arcsec", "library")}

    return {"settings": asdict(settings), "image": load_xdf()[1]}, run


def stage_mock(ref: ReferenceData, area_deg2: float, seed: int, overrides: dict | None = None):
    """The mock survey of ``area_deg2`` and ``seed``; ``overrides``: more :class:`MockConfig` settings (nested
    dicts, e.g. ``{"lenses": {"sources": "PATH:A"}}``: another universe)."""
    from lensaudit.mock.config import MockConfig
    from lensaudit.mock.survey import build_survey

    cfg = MockConfig.model_validate({**(overrides or {}), "area_deg2": area_deg2, "seed": seed})

    def run(stage_dir: Path) -> dict:
        return build_survey(cfg, Run(stage_dir.parent).mock.root, ref)

    inputs = {"config": cfg.model_dump(mode="json"),
              "conditions": {f: ref.files[f].sha256 for f in (REGION_CONDITIONS, BRICK_CONDITIONS)}}
    return inputs, run


def _mock_catalog_config(path: Path, survey: MockSurveyDir, out: Path):
    """The catalog config at ``path`` pointed at the mock survey's sweeps and candidates, writing to ``out``."""
    from lensaudit.catalog import CatalogConfig

    return load_config(path, CatalogConfig, {"sweeps": str(survey.sweeps), "candidates": str(survey.candidates),
                                             "out": str(out)})


def _fetch_from_mock(m, store, survey_dir: Path):
    """Serve the mock survey on loopback and fetch the rows of ``m`` through the real client into ``store``."""
    from lensaudit.cutouts.mockfetch import fetch_from_mock

    return fetch_from_mock(m, store, survey_dir)


def stage_catalog(survey: MockSurveyDir, upstream: str, path: Path):
    """Training set from the mock's sweeps and candidate list (configs/catalog/mock_demo.yaml)."""
    from lensaudit.catalog import build_catalog
    from lensaudit.catalog.candidates import CatalogInputError

    def run(stage_dir: Path) -> dict:
        summary = build_catalog(_mock_catalog_config(path, survey, stage_dir))
        cd = CatalogDir(stage_dir)
        if not all(summary["verified"].values()):
            bad = [str(cd.verify_txt(k)) for k, ok in summary["verified"].items() if not ok]
            raise CatalogInputError(f"catalog: verification failed, see {', '.join(bad)}")
        log.info("\n%s", cd.verify_txt(Run.SCHEME).read_text())
        return summary

    return {"upstream": upstream, "config": sha256_file(path)}, run


def stage_fetch(manifest: Path, upstream: str, survey: MockSurveyDir, limit: int | None):
    """Serve the mock survey on loopback and fetch the manifest's cutouts through the real client."""
    from lensaudit.artifacts import read_manifest
    from lensaudit.cutouts import CutoutStore

    def run(stage_dir: Path) -> dict:
        m = read_manifest(manifest)
        if limit is not None:  # quick mode: the first rows by id of every (split, label) group
            groups = m.groupby(["split", "label"]).ngroups
            m = m.groupby(["split", "label"]).head(-(-limit // groups)).head(limit).reset_index(drop=True)
        rep = _fetch_from_mock(m, CutoutStore(Run(stage_dir.parent).store, create=True), survey.root)
        return {"service": "loopback mock fits-cutout", "manifest": str(manifest), **rep.to_dict()}

    return {"upstream": upstream, "limit": limit}, run


def stage_train(manifest: Path, store: Path, upstream: str, path: Path, quick_epochs: int | None):
    """Train the demo model (configs/train/demo.yaml) on the fetched cutouts."""
    from lensaudit.train.config import TrainConfig
    from lensaudit.train.loop import train

    over = {"manifest": str(manifest), "store": str(store)}
    if quick_epochs is not None:  # a first look: a short run on what the quick fetch stored
        over.update({"epochs": quick_epochs, "on_missing": "skip"})

    def run(stage_dir: Path) -> dict:
        cfg = load_config(path, TrainConfig, {**over, "out": str(stage_dir)})
        s = train(cfg, config_path=str(path), force=True)  # the stage re-runs only when its inputs changed
        return {k: v for k, v in s.items() if k != "history"}

    return {"upstream": upstream, "config": sha256_file(path), "quick_epochs": quick_epochs}, run


def stage_score(manifest: Path, store: Path, checkpoint: Path, upstream: str):
    """Score the validation and test splits with the best checkpoint, with penultimate features."""
    from lensaudit.artifacts import read_manifest
    from lensaudit.cutouts import CutoutStore
    from lensaudit.train.score import score_manifest, write_predictions

    def run(stage_dir: Path) -> dict:
        m = read_manifest(manifest, require=("id", "split"))
        m = m[m["split"].isin(["val", "test"])]
        df = score_manifest(checkpoint, m, CutoutStore(store), features=True, on_missing="skip")
        path = Run(stage_dir.parent).predictions
        write_predictions(df, path, checkpoint)
        return {"n_scored": len(df), "n_missing": len(df.attrs["missing"]), "predictions": str(path)}

    return {"upstream": upstream}, run


def _stage_evaluate(preds: Path, manifest: Path, store: Path, truth: Path, checkpoint: Path, upstream: str,
                    seed: int, n_boot: int):
    """Evaluate the validation predictions: intervals, strata, leakage, shortcuts, mock truth."""
    from lensaudit.artifacts import read_manifest, read_predictions, read_table
    from lensaudit.cutouts import CutoutStore
    from lensaudit.evaluate import EvalConfig, evaluate, summary_lines

    def run(stage_dir: Path) -> dict:
        m = read_manifest(manifest, require=("id", "label", "split"))
        p = read_predictions(preds)
        m = m[m["id"].isin(set(p["id"])) | ~m["split"].isin(["val", "test"])]  # rows the quick fetch left out
        res = evaluate(p, m, stage_dir, EvalConfig(split="val", n_boot=n_boot, seed=seed), store=CutoutStore(store),
                       truth=read_table(truth, "truth table"), checkpoint=checkpoint)
        text = "\n".join(summary_lines(res))
        ed = EvalDir(stage_dir)
        ed.summary.write_text(text + "\n")
        log.info("\n%s", text)
        o = res.overall
        out = {"roc_auc": o.roc_auc.value, "n_pos": o.n_pos, "n_neg": o.n_neg, "metrics": str(ed.metrics)}
        tiers = read_table(ed.strata("tier"), "tier strata")
        for tier in ("A", "B"):   # each tier's positives against all negatives
            row = tiers[(tiers["value"] == tier) & tiers["auc"].notna()].head(1)
            out[f"roc_auc_tier_{tier.lower()}"] = float(row["auc"].iloc[0]) if len(row) else None
        if res.truth is not None and res.truth.oracle_auc is not None:
            out["oracle_auc"] = res.truth.oracle_auc.value
            out["oracle_auc_tier_a"] = res.truth.oracle_auc_tier_a.value if res.truth.oracle_auc_tier_a else None
        return out

    return {"upstream": upstream, "seed": seed, "n_boot": n_boot}, run


def _stage_shortcuts(survey: MockSurveyDir, manifest: Path, store: Path, upstream: str, path: Path, seed: int,
                     n_boot: int, limit: int | None):
    """The shortcut gates on the validation split with and without host-matched negatives: the same catalog
    config with ``sampling.host_match`` on, its validation cutouts fetched beside the demo's own."""
    from lensaudit.artifacts import read_manifest
    from lensaudit.catalog import build_catalog
    from lensaudit.cutouts import CutoutStore
    from lensaudit.evaluate import shortcut_gates
    from lensaudit.utils.seeds import derive_seed

    def val_rows(m):
        v = m[m["split"] == "val"].sort_values("id")
        return v.groupby("label").head(-(-limit // 2)) if limit is not None else v

    def run(stage_dir: Path) -> dict:
        r = Run(stage_dir.parent)
        cfg = _mock_catalog_config(path, survey, r.shortcuts_catalog.root)
        cfg = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(
            update={"host_match": cfg.sampling.host_match.model_copy(update={"enabled": True})})})
        hm_summary = build_catalog(cfg)
        sets = {"published": (val_rows(read_manifest(manifest)), CutoutStore(store)),
                "host_matched": (val_rows(read_manifest(r.shortcuts_catalog.manifest(Run.SCHEME))),
                                 CutoutStore(r.shortcuts_store, create=True))}
        rep = _fetch_from_mock(sets["host_matched"][0], sets["host_matched"][1], survey.root)
        gates = {}
        for name, (v, st) in sets.items():
            v = v[v["id"].isin(set(st.ids()))]
            gates[name] = shortcut_gates(st.get(v["id"].tolist()), v["label"].to_numpy(), n_boot=min(n_boot, 1000),
                                         seed=derive_seed(seed, "demo.shortcut_gates") % 2**32)
        lines = ["shortcut gates on the validation split (cross-validated AUC of trivial core / annulus features):"]
        for name, gs in gates.items():
            for g in gs:
                lines.append(f"  {name:13s} {g['gate']:10s} " + (f"AUC {g['auc']:.3f} 95% [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}] "
                                                                 f"-> {g['status']}" if "auc" in g else g["status"]))
        r.shortcuts_report.write_text("\n".join(lines) + "\n")
        log.info("\n%s", "\n".join(lines))
        return {"gates": gates, "host_matched_verified": hm_summary["verified"], "n_fetched": rep.to_dict()["n_stored"]}

    return {"upstream": upstream, "config": sha256_file(path), "seed": seed, "n_boot": n_boot, "limit": limit}, run


def _stage_selection(survey: MockSurveyDir, library: str, manifest: Path, store: Path, checkpoint: Path, preds: Path,
                     upstream: str,
                     sel_path: Path, real_path: Path, n_per_cell: int | None):
    """Injection-recovery on a reduced grid with four families, the realism gate and the closure test; the stamps
    family draws its real galaxies from ``library`` (half B of the XDF library)."""
    from lensaudit.realism import RealismConfig, format_realism, run_realism
    from lensaudit.selection import SelectionConfig
    from lensaudit.selection.closure import format_closure, run_closure, score_mock_true_lenses
    from lensaudit.selection.run import run_selection

    def run(stage_dir: Path) -> dict:
        r = Run(stage_dir.parent)
        base = load_config(sel_path, SelectionConfig)
        fams = [f.model_copy(update={"stamp_library": str(library)}) if f.kind == "stamps" else f for f in base.families]
        over = {"checkpoint": str(checkpoint), "manifest": str(manifest), "store": str(store),
                "out": str(r.selection.root), "negatives_predictions": str(preds),
                "families": [f.model_dump() for f in fams]}
        if n_per_cell is not None:
            over["n_per_cell"] = n_per_cell
            over["min_count"] = min(base.min_count, n_per_cell)
        sel = load_config(sel_path, SelectionConfig, over)
        seconds, t0 = {}, time.perf_counter()
        s = run_selection(sel, config_path=str(sel_path))
        seconds["selection_run"] = round(time.perf_counter() - t0, 1)
        out = {"n_hosts": s["n_hosts"], "completeness_p05": {f: v["marginal"][HEADLINE]["completeness"]
                                                            for f, v in s["families"].items()}}
        real = load_config(real_path, RealismConfig, {"selection_run": str(r.selection.root), "predictions": str(preds),
                                                       "manifest": str(manifest), "out": str(r.realism.root),
                                                       "store": str(store)})
        realism_parquet = None
        t0 = time.perf_counter()
        try:
            table = run_realism(real)
        except InputError as exc:   # the quick demo's few real lenses: say so instead of a meaningless probe
            log.warning("realism gate not run: %s", exc)
            out["realism"] = f"not run: {exc}"
        else:
            text = format_realism(table)
            r.realism_text.write_text(text + "\n")
            log.info("realism gate\n%s", text)
            realism_parquet = str(r.realism.table)
            R = REALISM.c
            out["realism"] = {r[R.family]: {R.probe_auc: r[R.probe_auc], R.verdict: r[R.verdict]}
                              for r in table.to_dict("records")}
        seconds["realism_gate"] = round(time.perf_counter() - t0, 1)
        # closure alone reads the mock's truth, after the run and the gate
        t0 = time.perf_counter()
        score_mock_true_lenses(survey.root, manifest, checkpoint, r.true_lenses.root)
        _, summ = run_closure(r.selection.root, r.true_lenses.table, r.closure.root,
                              realism=realism_parquet)
        seconds["closure"] = round(time.perf_counter() - t0, 1)
        # where the stage's time goes (benchmarks/bench_demo.py records it): the run's families, the gate, the closure
        out["seconds"] = {**seconds, **{f"family_{f}": v["seconds"] for f, v in s["families"].items()}}
        text = format_closure(summ)
        r.closure_text.write_text(text + "\n")
        log.info("\n%s", text)
        C = CLOSURE_SUMMARY.c
        c = summ[summ[C.threshold] == HEADLINE]
        keys = (C.c_true, C.c_inj, C.diff, C.lo95, C.hi95, C.mde80, C.p_value)
        out["closure"] = {r[C.family]: {k: r[k] for k in keys} for r in c.to_dict("records")}
        return out

    return {"upstream": upstream, "selection": sha256_file(sel_path), "realism": sha256_file(real_path),
            "n_per_cell": n_per_cell}, run


def _stage_check(survey: MockSurveyDir, upstream: str, ref: ReferenceData):
    from lensaudit.mock.check import format_check, real_data_check
    from lensaudit.mock.render import load_renderer

    def run(stage_dir: Path) -> dict:
        r = load_renderer(survey.root)
        res = real_data_check(r, r.src, ref.sample_cutouts)
        text = format_check(res)
        Run(stage_dir.parent).check_text.write_text(text + "\n")
        log.info("\n%s", text)
        return res

    return {"upstream": upstream, "samples": {f.name: sha256_file(f) for f in ref.sample_cutouts}}, run


def _stage_report(out: Path, upstream: list[str]):
    """The self-contained HTML audit report of everything above (report/index.html)."""
    from lensaudit.report import build_report

    def run(stage_dir: Path) -> dict:
        path = build_report(out, stage_dir)
        return {"report": str(path)}

    return {"upstream": upstream}, run


def main_outputs(out: Path) -> list[tuple[str, Path]]:
    """(label, path) of the demo's main outputs that exist under ``out``, in reading order."""
    r = Run(out)
    items = (("report", r.report.index), ("evaluation", r.evaluation.summary), ("metrics", r.evaluation.metrics),
             ("predictions", r.predictions), ("selection marginals", r.selection.marginals),
             ("realism gate", r.realism.csv), ("closure", r.closure.summary_csv), ("report tables", r.report.tables))
    return [(label, p) for label, p in items if p.exists()]


def one_line(name: str, summary: dict) -> str:
    """The one-line result of a demo stage, for the closing table."""
    s = summary or {}
    pick = {"mock": lambda: f"{s.get('n_lenses', '?')} true lenses, {s.get('n_candidates', '?')} candidates",
            "catalog": lambda: f"verified {s.get('verified')}",
            "fetch": lambda: (f"{s.get('n_stored', 0) + s.get('n_already_stored', 0)} cutouts in the store "
                              f"({s.get('n_stored', 0)} new), {s.get('n_failed', 0)} failed"),
            "train": lambda: f"best val AUC {s.get('best_val_auc', float('nan')):.3f}",
            "score": lambda: f"{s.get('n_scored', '?')} cutouts scored",
            "evaluate": lambda: f"val ROC AUC {s.get('roc_auc') or float('nan'):.3f} ({s.get('n_pos')} pos, {s.get('n_neg')} neg)",
            "selection": lambda: f"completeness {HEADLINE}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in (s.get("completeness_p05") or {}).items()),
            "check": lambda: "passed" if s.get("passed") else "FAILED",
            "sources": lambda: f"{s.get('n_stamps', '?')} XDF galaxies (A {(s.get('halves') or {}).get('A')}, "
                               f"B {(s.get('halves') or {}).get('B')})",
            "report": lambda: str(s.get("report", ""))}
    try:
        return pick[name]() if name in pick else ""
    except (TypeError, ValueError):
        return ""


def run_demo(out: Path, quick: bool = False, reference: ReferenceData | None = None, force: bool = False,
             config: DemoConfig | None = None) -> dict:
    """Run the demo pipeline into ``out``; returns a summary of every stage.

    ``reference``: the real DR10 reference data (default: :func:`lensaudit.reference.load_reference`, the
    packaged files unless ``$LENSAUDIT_SHARED_DATA`` replaces some), verified before any stage runs.
    """
    cfg = config or load_demo_config()
    ref = reference or load_reference()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    area = cfg.quick.area_deg2 if quick else cfg.area_deg2
    stages: dict[str, dict] = {}

    def stage(name: str, inputs: dict, fn) -> dict:
        if name in VERSIONED_STAGES:   # a new version of an artifact they write or read re-runs them
            inputs = {**inputs, "artifact_versions": VERSIONS}
        rec = run_stage(out, name, inputs, fn, force=force)
        log.info("%-10s %s (%s, %.1f s)", name, one_line(name, rec.get("summary", {})),
                 "skipped" if rec["skipped"] else "ran", rec.get("elapsed_s") or 0.0)
        return rec

    inputs, fn = _stage_samples(ref)
    stages["samples"] = stage("samples", inputs, fn)
    inputs, fn = _stage_sources()
    stages["sources"] = stage("sources", inputs, fn)
    inputs, fn = stage_mock(ref, area, cfg.seed)
    stages["mock"] = stage("mock", inputs, fn)
    r = Run(out)
    survey = r.mock
    inputs, fn = stage_catalog(survey, stages["mock"]["inputs_sha256"], resolve_config_path(cfg.catalog_config))
    stages["catalog"] = stage("catalog", inputs, fn)
    manifest = r.manifest
    inputs, fn = stage_fetch(manifest, stages["catalog"]["inputs_sha256"], survey,
                              cfg.quick.fetch_limit if quick else None)
    inputs["contents"] = stage_contents(manifest)
    stages["fetch"] = stage("fetch", inputs, fn)
    store, best, preds = r.store, r.train.best, r.predictions
    inputs, fn = stage_train(manifest, store, stages["fetch"]["inputs_sha256"], resolve_config_path(cfg.train_config),
                              cfg.quick.epochs if quick else None)
    inputs["contents"] = stage_contents(manifest, store)
    stages["train"] = stage("train", inputs, fn)
    inputs, fn = stage_score(manifest, store, best, stages["train"]["inputs_sha256"])
    inputs["contents"] = stage_contents(best, store)
    stages["score"] = stage("score", inputs, fn)
    inputs, fn = _stage_evaluate(preds, manifest, store, survey.truth, best,
                                 stages["score"]["inputs_sha256"], cfg.seed, cfg.eval_n_boot)
    inputs["contents"] = stage_contents(preds)
    stages["evaluate"] = stage("evaluate", inputs, fn)
    inputs, fn = _stage_shortcuts(survey, manifest, store, stages["fetch"]["inputs_sha256"],
                                  resolve_config_path(cfg.catalog_config), cfg.seed, cfg.eval_n_boot,
                                  cfg.quick.fetch_limit if quick else None)
    stages["shortcuts"] = stage("shortcuts", inputs, fn)
    inputs, fn = _stage_selection(survey, r.xdf.half("B"), manifest, store, best, preds, stages["score"]["inputs_sha256"],
                                  resolve_config_path(cfg.selection_config), resolve_config_path(cfg.realism_config),
                                  cfg.quick.selection_n_per_cell if quick else None)
    inputs["contents"] = stage_contents(best, preds, store, r.xdf.library)
    stages["selection"] = stage("selection", inputs, fn)
    inputs, fn = _stage_check(survey, stages["mock"]["inputs_sha256"], ref)
    stages["check"] = stage("check", inputs, fn)
    inputs, fn = _stage_report(out, [rec["inputs_sha256"] for rec in stages.values()])
    stages["report"] = stage("report", inputs, fn)
    summary = {name: {"skipped": rec["skipped"], "elapsed_s": rec.get("elapsed_s"), **rec.get("summary", {})}
               for name, rec in stages.items()}
    atomic_write_json(r.run_info, run_info(config={"demo": cfg.model_dump(mode="json"), "quick": quick},
                                                      seeds={"demo": cfg.seed},
                                                      extra={"reference_data": ref.provenance(), "stages": summary}))
    return summary
