"""``lensaudit validate``: is the audit instrument right on universes where the truth is known?

For every universe (a mock survey whose true lenses differ in stated ways from every injection family) the
detector is trained as the demo trains it (mock, catalog, fetch, train, score: the demo's own stages); then for
every injection seed a selection run of every family, the realism gate (which reads no truth) and the closure
test (the one reader of the truth). Every stage is resumable and skipped when its recorded inputs are unchanged
(:func:`lensaudit.pipeline.run_stage`). Inputs are checked before any training starts: each universe's mock
config, library halves (a family may not draw from the half its universe's true sources come from), the truth's
columns and the real lenses available to the gate's folds. Outputs (:class:`~lensaudit.artifacts.ValidationDir`):
``validation_matrix.json`` (every cell, the rules, the summary, runtimes), figures and a report page.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pandas as pd

from lensaudit.artifacts import ValidationDir, read_artifact_table, read_doc, write_doc
from lensaudit.artifacts.kinds import CLOSURE_SUMMARY, REALISM, VALIDATION_CELLS, VALIDATION_MATRIX
from lensaudit.config import load_config
from lensaudit.errors import InputError
from lensaudit.pipeline import run_stage
from lensaudit.utils.io import sha256_file
from lensaudit.validation.config import ValidationConfig
from lensaudit.validation.matrix import cell_rows, format_matrix, summarize

log = logging.getLogger(__name__)

#: Columns of the truth table closure needs (besides position, for the split) and the lens rows' kind.
TRUTH_COLUMNS = ("id", "kind", "ra", "dec", "theta_e", "arc_mag_r", "arc_mag_g", "arc_snr", "src_x", "src_y", "rmag",
                 "tier")


def _mock_cfg(cfg: ValidationConfig, u, xdf_library: str):
    """The universe's MockConfig (xdf:A / xdf:B resolved to the validation's own XDF library)."""
    from lensaudit.mock.config import MockConfig

    over = {k: (dict(v) if isinstance(v, dict) else v) for k, v in u.mock.items()}
    lenses = dict(over.get("lenses", {}))
    if lenses.get("sources") in ("xdf:A", "xdf:B"):
        lenses["sources"] = f"{xdf_library}:{lenses['sources'][-1]}"
    if lenses:
        over["lenses"] = lenses
    try:
        return MockConfig.model_validate({**over, "area_deg2": cfg.area_deg2, "seed": cfg.mock_seed})
    except ValueError as exc:
        raise InputError(f"validation universe {u.name}: invalid mock settings: {exc}") from exc


def _source_half(u) -> str | None:
    src = (u.mock.get("lenses") or {}).get("sources", "procedural")
    return src[-1] if isinstance(src, str) and src.startswith("xdf:") else None


def check_config(cfg: ValidationConfig, xdf_library: str) -> None:
    """Every check that can fail before any training starts (the cheap half of :func:`run_validation`)."""
    from lensaudit.realism import RealismConfig
    from lensaudit.selection import SelectionConfig
    from lensaudit.selection.grid import Grid

    for u in cfg.universes:
        _mock_cfg(cfg, u, xdf_library)
        half = _source_half(u)
        for f in cfg.families:
            if half and f.stamp_library == f"xdf:{half}":
                raise InputError(f"validation: family {f.name} draws from XDF half {half}, the half universe {u.name}'s "
                                 f"true sources come from; closure would test the truth against itself (use the other "
                                 f"half)")
        if u.survey:
            from lensaudit.artifacts import MockSurveyDir, read_table

            md = MockSurveyDir(u.survey)
            if not md.truth.is_file():
                raise InputError(f"validation universe {u.name}: {md.truth} does not exist (survey {u.survey})")
            cols = set(read_table(md.truth, "truth table").columns)
            miss = [c for c in TRUTH_COLUMNS if c not in cols]
            if miss:
                raise InputError(f"validation universe {u.name}: truth table {md.truth} lacks column(s) {miss} that "
                                 f"closure needs")
    for name in (cfg.catalog_config, cfg.train_config, cfg.selection_config, cfg.realism_config):
        _path(name)
    sel = load_config(_path(cfg.selection_config), SelectionConfig,
                      {"checkpoint": "-", "manifest": "-", "store": "-", "out": "-",
                       "families": [f.model_dump() for f in cfg.family_configs("mock.fits", xdf_library)]})
    Grid(sel.grid)
    load_config(_path(cfg.realism_config), RealismConfig,
                {"selection_run": "-", "predictions": "-", "manifest": "-", "store": "-", "out": "-"})
    if any(f.stamp_library not in (None, "mock", "xdf:A", "xdf:B") for f in cfg.families):
        from lensaudit.sources.xdf import open_library

        for f in cfg.families:
            if f.stamp_library not in (None, "mock", "xdf:A", "xdf:B"):
                open_library(f.stamp_library)


def _path(name: str) -> Path:
    from lensaudit.demo import resolve_config_path

    try:
        return resolve_config_path(name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise InputError(f"validation: config {name!r} is neither a file nor a bundled config") from exc


def _check_real_lenses(manifest: Path, realism_cfg, universe: str) -> int:
    """The Tier-A lenses of the audited splits the gate will have; too few for the probe's folds is an error."""
    from lensaudit.artifacts import read_manifest

    m = read_manifest(manifest, require=("id", "split", "label", "tier"))
    n = int((m["split"].isin(list(realism_cfg.splits)) & (m["label"] == 1) & m["tier"].isin(list(realism_cfg.tiers))).sum())
    need = 2 * realism_cfg.probe.folds
    if n < need:
        raise InputError(f"validation universe {universe}: only {n} real lenses (tiers {list(realism_cfg.tiers)}, "
                         f"splits {list(realism_cfg.splits)}) for the gate; its {realism_cfg.probe.folds} folds and the "
                         f"real-lens floor need at least {need} (a larger area_deg2)")
    return n


def run_validation(cfg: ValidationConfig, config_path: str | None = None, results: str | Path | None = None) -> dict:
    """Run (or resume) the whole matrix; returns the matrix document. ``results``: also write it there (the
    benchmark copy, ``benchmarks/results/validation_matrix.json``)."""
    from lensaudit.realism import RealismConfig
    from lensaudit.reference import load_reference
    from lensaudit.utils.io import atomic_write_json
    from lensaudit.utils.provenance import run_info

    vd = ValidationDir(cfg.out)
    with vd.lock("validation"):
        t_start = time.perf_counter()
        # where, when and at which commit the run started (its runtimes: a resumed run's total is its own wall time)
        info = run_info(seeds={"mock": cfg.mock_seed, "injection": list(cfg.seeds)}, extra={"cores": os.cpu_count()})
        xdf_lib = str(vd.xdf.library)
        check_config(cfg, xdf_lib)
        real_cfg = load_config(_path(cfg.realism_config), RealismConfig,
                               {"selection_run": "-", "predictions": "-", "manifest": "-", "store": "-", "out": "-"})
        ref = load_reference()
        times: dict[str, dict[str, float]] = {}
        rec = run_stage(vd.root, "xdf", *_xdf_stage(cfg.xdf_library))
        times["xdf"] = {"build": rec.get("elapsed_s") or 0.0}
        # phase 1, every universe: its mock and training set, and the gate's real lenses counted before training
        ups = {}
        for u in cfg.universes:
            times[u.name] = {}
            ups[u.name] = _universe_catalog(cfg, u, xdf_lib, ref, times[u.name])
            _check_real_lenses(vd.universe(u.name).manifest, real_cfg, u.name)
        # phase 2: train, score, and every seed's selection run, gate and closure
        cells = []
        universes = []
        for u in cfg.universes:
            r = vd.universe(u.name)
            up = _universe_train(cfg, u, ups[u.name], times[u.name])
            for seed in cfg.seeds:
                t0 = time.perf_counter()
                gate, closure = _cell(cfg, u, seed, up, xdf_lib)
                times[u.name][f"seed_{seed}"] = round(time.perf_counter() - t0, 1)
                cells += cell_rows(u.name, seed, gate, closure, cfg.rules.operating_point, cfg.rules.tolerance)
            universes.append({"name": u.name, "description": u.description, "mock": u.mock,
                              "truth_diagnostics": _truth_diagnostics(r, cfg)})
        table = pd.DataFrame(cells)
        VALIDATION_CELLS.check(table, f"{vd.matrix} cells")
        summary = summarize(table, cfg.rules.tolerance, cfg.rules.gate_statistic,
                            cfg.rules.exclude_planted_from_correlation, cfg.rules.real_galaxy_cell)
        summary["runtime_s"] = {**times, "total": round(time.perf_counter() - t_start, 1)}
        doc = {"config": cfg.model_dump(mode="json"), "config_path": config_path,
               "rules": cfg.rules.model_dump(mode="json"), "universes": universes,
               "cells": table.to_dict("records"), "summary": summary,
               "run_info": info}
        write_doc(vd.matrix, VALIDATION_MATRIX, doc)
        if results:
            atomic_write_json(Path(results), read_doc(vd.matrix, VALIDATION_MATRIX))
        from lensaudit.validation.figures import validation_figures

        validation_figures(table, summary, vd)
        from lensaudit.report.build import build_validation_report

        build_validation_report(vd.root)
        log.info("\n%s", format_matrix(table, summary))
        return doc


def _xdf_stage(source: str | None = None):
    """The validation's XDF library: built into its folder, or copied from ``source`` (a folder already built with
    the same settings; checked): the same file either way, the build being deterministic."""
    from dataclasses import asdict

    from lensaudit.sources.xdf import XdfSettings, build_xdf_library, copy_library, load_xdf

    settings = XdfSettings()

    def run(stage_dir: Path) -> dict:
        root = ValidationDir(stage_dir.parent).xdf.root
        rep = copy_library(source, root, settings) if source else build_xdf_library(root, settings)
        return {k: rep[k] for k in ("n_stamps", "halves", "gamma")}

    return {"settings": asdict(settings), "image": load_xdf()[1]}, run


def _universe_catalog(cfg: ValidationConfig, u, xdf_lib: str, ref, times: dict) -> str:
    """The universe's mock (or its given survey) and training set; returns the catalog stage's inputs hash."""
    from lensaudit.artifacts import Run
    from lensaudit.demo import resolve_config_path, stage_catalog, stage_mock

    r = Run(ValidationDir(cfg.out).universe(u.name).root)
    if u.survey:
        survey = _survey(cfg, u)
        upstream = sha256_file(survey.truth)
    else:
        mc = _mock_cfg(cfg, u, xdf_lib)
        over = mc.model_dump(mode="json", exclude={"area_deg2", "seed"})
        inputs, fn = stage_mock(ref, cfg.area_deg2, cfg.mock_seed, over)
        if mc.lenses.sources != "procedural":
            inputs["library"] = sha256_file(xdf_lib)
        rec = run_stage(r.root, "mock", inputs, fn)
        times["mock"] = rec.get("elapsed_s") or 0.0
        survey, upstream = r.mock, rec["inputs_sha256"]
    inputs, fn = stage_catalog(survey, upstream, resolve_config_path(cfg.catalog_config))
    rec = run_stage(r.root, "catalog", inputs, fn)
    times["catalog"] = rec.get("elapsed_s") or 0.0
    return rec["inputs_sha256"]


def _survey(cfg: ValidationConfig, u):
    from lensaudit.artifacts import MockSurveyDir

    return MockSurveyDir(u.survey) if u.survey else ValidationDir(cfg.out).universe(u.name).mock


def _universe_train(cfg: ValidationConfig, u, upstream: str, times: dict) -> str:
    """Fetch, train (as the demo trains) and score one universe; returns the score stage's inputs hash."""
    from lensaudit.demo import resolve_config_path, stage_contents, stage_fetch, stage_score, stage_train

    r = ValidationDir(cfg.out).universe(u.name)
    inputs, fn = stage_fetch(r.manifest, upstream, _survey(cfg, u), cfg.fetch_limit)
    inputs["contents"] = stage_contents(r.manifest)
    rec = run_stage(r.root, "fetch", inputs, fn)
    times["fetch"] = rec.get("elapsed_s") or 0.0
    inputs, fn = stage_train(r.manifest, r.store, rec["inputs_sha256"], resolve_config_path(cfg.train_config),
                             cfg.epochs)
    inputs["contents"] = stage_contents(r.manifest, r.store)
    rec = run_stage(r.root, "train", inputs, fn)
    times["train"] = rec.get("elapsed_s") or 0.0
    inputs, fn = stage_score(r.manifest, r.store, r.train.best, rec["inputs_sha256"])
    inputs["contents"] = stage_contents(r.train.best, r.store)
    rec = run_stage(r.root, "score", inputs, fn)
    times["score"] = rec.get("elapsed_s") or 0.0
    return rec["inputs_sha256"]


def _cell(cfg: ValidationConfig, u, seed: int, upstream: str, xdf_lib: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One universe and injection seed: selection run, gate (no truth) and closure; returns (gate, closure)."""
    from lensaudit.realism import RealismConfig, run_realism
    from lensaudit.selection import SelectionConfig
    from lensaudit.selection.closure import run_closure, score_mock_true_lenses
    from lensaudit.selection.run import run_selection

    vd = ValidationDir(cfg.out)
    r, cd = vd.universe(u.name), vd.cell(u.name, seed)
    survey = _survey(cfg, u)
    sel_path, real_path = _path(cfg.selection_config), _path(cfg.realism_config)
    fams = [f.model_dump() for f in cfg.family_configs(str(survey.stamp_library), xdf_lib)]
    over = {"checkpoint": str(r.train.best), "manifest": str(r.manifest), "store": str(r.store),
            "out": str(cd.selection.root), "negatives_predictions": str(r.predictions), "families": fams, "seed": seed}
    if cfg.n_per_cell is not None:
        over.update({"n_per_cell": cfg.n_per_cell, "min_count": min(cfg.n_per_cell, 10)})
    sel = load_config(sel_path, SelectionConfig, over)
    real = load_config(real_path, RealismConfig, {"selection_run": str(cd.selection.root),
                                                  "predictions": str(r.predictions), "manifest": str(r.manifest),
                                                  "store": str(r.store), "out": str(cd.realism.root)})

    def run(stage_dir: Path) -> dict:
        s = run_selection(sel, config_path=str(sel_path))
        run_realism(real)                                    # the gate: no truth
        # closure alone reads the truth: the true lenses, fetched and scored once per universe
        if not r.true_lenses.table.is_file():
            score_mock_true_lenses(survey.root, r.manifest, r.train.best, r.true_lenses.root)
        run_closure(cd.selection.root, r.true_lenses.table, cd.closure.root, realism=str(cd.realism.table),
                    min_true=cfg.closure_min_true, seed=seed, n_boot=cfg.closure_n_boot)
        return {"n_hosts": s["n_hosts"], "config_tag": s["config_tag"]}

    inputs = {"upstream": upstream, "selection": sel.model_dump(mode="json", exclude={"out"}),
              "realism": real.model_dump(mode="json", exclude={"out", "selection_run"}),
              "closure": [cfg.closure_min_true, cfg.closure_n_boot], "versions": _versions()}
    run_stage(cd.root.parent, cd.root.name, inputs, run)
    return (read_artifact_table(cd.realism.table, REALISM), read_artifact_table(cd.closure.summary, CLOSURE_SUMMARY))


def _versions() -> dict:
    from lensaudit.artifacts import VERSIONS
    from lensaudit.inject.records import RECORDS_VERSION

    return {**VERSIONS, "records": RECORDS_VERSION}


def _truth_diagnostics(r, cfg: ValidationConfig) -> dict:
    """What closure sees of each universe's truth (diagnostics, never inputs): how many true lenses, and the share
    of them outside the injection priors (beta / theta_E above the prior's maximum)."""
    from lensaudit.artifacts import read_artifact_table
    from lensaudit.artifacts.kinds import TRUE_LENSES
    from lensaudit.selection import SelectionConfig

    t = read_artifact_table(r.true_lenses.table, TRUE_LENSES)
    sel = load_config(_path(cfg.selection_config), SelectionConfig,
                      {"checkpoint": "-", "manifest": "-", "store": "-", "out": "-"})
    bmax = sel.priors.beta_frac[1]
    out = {"n_true_lenses": int(len(t)), "beta_frac_prior": list(sel.priors.beta_frac)}
    if "beta_frac" in t:
        out["fraction_beyond_beta_prior"] = float((t["beta_frac"] > bmax).mean())
    for c in ("theta_e", "arc_g_r", "psfsize_r"):
        if c in t:
            out[f"median_{c}"] = float(t[c].median())
    return out


__all__ = ["TRUTH_COLUMNS", "check_config", "run_validation"]
