"""``lensaudit evaluate`` (thin layer over :func:`lensaudit.evaluate.evaluate`)."""

from __future__ import annotations

import argparse
import json


def _evaluate(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_manifest, read_predictions, read_table
    from lensaudit.config import load_config, validate_config
    from lensaudit.cutouts import CutoutStore
    from lensaudit.evaluate import EvalConfig, evaluate, summary_lines

    over = {"split": a.split, "n_boot": a.n_boot, "seed": a.seed}
    if a.all_rows:
        over["split"] = None
    over = {k: v for k, v in over.items() if v is not None or (k == "split" and a.all_rows)}
    cfg = load_config(a.config, EvalConfig, over) if a.config else validate_config(over, EvalConfig, "command line")
    res = evaluate(read_predictions(a.preds), read_manifest(a.manifest, require=("id", "label")), a.out, cfg,
                   store=CutoutStore(a.store) if a.store else None,
                   truth=read_table(a.truth, "truth table") if a.truth else None, figures=not a.no_figures,
                   checkpoint=a.checkpoint)
    print("\n".join(summary_lines(res)))
    print(json.dumps({"metrics": f"{a.out}/metrics.json", "tables": res.tables, "figures": res.figures}))
    return 0


def add_evaluate_commands(sub) -> None:
    e = sub.add_parser("evaluate", help="metrics with intervals, calibration, strata, leakage and shortcut checks",
                       description="Evaluate predictions (from `lensaudit score`) against a manifest: every number "
                                   "with an interval and a count. Writes metrics.json, Parquet tables and figures.")
    e.add_argument("--preds", required=True, help="predictions Parquet (id, probability[, logit])")
    e.add_argument("--manifest", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--split", default=None, help="split to evaluate (default: val)")
    e.add_argument("--all-rows", action="store_true", help="evaluate every scored row, whatever its split")
    e.add_argument("--store", default=None, help="cutout store: enables the shortcut gates")
    e.add_argument("--truth", default=None, help="mock survey truth table: truth-aware metrics")
    e.add_argument("--checkpoint", default=None, help="the scored model: Grad-CAM maps of the failures (needs --store)")
    e.add_argument("--config", default=None, help="YAML with EvalConfig keys")
    e.add_argument("--n-boot", type=int, default=None)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--no-figures", action="store_true")
    e.set_defaults(fn=_evaluate)
