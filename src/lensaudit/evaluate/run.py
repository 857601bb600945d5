"""``lensaudit evaluate``: the orchestration only.

Join predictions to the manifest (:mod:`.inputs`), compute the overall metrics with intervals
(:mod:`.overall`), the strata and failure tables (:mod:`.strata`), the leakage and shortcut
checks (:mod:`.leakage`), the detectability decomposition (:mod:`.detectability`), Grad-CAM
galleries (:mod:`.saliency`) and, on the mock survey, the truth metrics (:mod:`.truth`); write
``metrics.json`` (an :class:`~lensaudit.evaluate.result.EvaluationResult`), Parquet tables and
figures (:mod:`.figures`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from lensaudit.artifacts import EvalDir, write_table
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.inputs import join_predictions
from lensaudit.evaluate.leakage import shortcut_gates, split_leakage
from lensaudit.evaluate.overall import overall_metrics, stream
from lensaudit.evaluate.result import DetectabilitySummary, EvaluationResult, GateResult, LeakageReport
from lensaudit.evaluate.strata import STRATA, add_bins, confuser_fpr, failure_tables, stratify

log = logging.getLogger(__name__)


def evaluate(preds: pd.DataFrame, manifest: pd.DataFrame, out_dir: str | os.PathLike, cfg: EvalConfig = EvalConfig(),
             store=None, truth: pd.DataFrame | None = None, figures: bool = True, checkpoint=None) -> EvaluationResult:
    """Run the whole evaluation into ``out_dir`` (:class:`~lensaudit.artifacts.EvalDir`); returns the result (also
    written as its metrics document)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ed = EvalDir(out)
    with ed.lock("evaluation"):
        leak = LeakageReport(**split_leakage(manifest))
        df = add_bins(join_predictions(preds, manifest, cfg.split), cfg)
        res = EvaluationResult(split=cfg.split, n=int(len(df)), leakage=leak, config=cfg.model_dump(mode="json"),
                               overall=overall_metrics(df, cfg))
        tables: dict[str, pd.DataFrame] = {}
        for col in STRATA:
            if col in df:
                tables[ed.strata(col).stem] = stratify(df, col, cfg)
        tables["confuser_fpr"] = confuser_fpr(df, cfg)
        tables["failures"] = failure_tables(df)
        if store is not None:
            from lensaudit.evaluate.detectability import decompose, detectability_features

            cubes = store.get(df["id"].tolist())
            res.shortcut_gates = [GateResult(**g) for g in shortcut_gates(
                cubes, df["label"].to_numpy(), cfg.shortcut_yellow, cfg.shortcut_red, min(cfg.n_boot, 1000),
                stream(cfg, "shortcut_gates") % 2**32)]
            summ, strata_t, diag = decompose(df, detectability_features(cubes), cfg.thresholds[0],
                                             ("type", "psfsize_r_bin", "depth_r_bin"), cfg.min_count)
            res.detectability = DetectabilitySummary(**summ)
            tables["detectability_strata"] = strata_t
            tables["detectability_positives"] = diag
            if checkpoint is not None and len(tables["failures"]):
                from lensaudit.evaluate.saliency import saliency_galleries

                res.saliency = saliency_galleries(checkpoint, store, tables["failures"], out)
        if truth is not None:
            from lensaudit.evaluate.truth import truth_metrics

            res.truth, tables["truth_recall"] = truth_metrics(df, truth, cfg)
        for name, t in tables.items():
            if len(t):
                write_table(t, ed.table(name))
        res.tables = sorted(ed.table(n).name for n, t in tables.items() if len(t))
        if figures:
            from lensaudit.evaluate.figures import write_figures

            res.figures = write_figures(df, tables, res, out, cfg)
        res.write(ed.metrics)
        return res

