"""``lensaudit validate`` (a thin layer over :func:`lensaudit.validation.run_validation`)."""

from __future__ import annotations

import argparse


def _validate(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.validation import ValidationConfig, format_matrix, run_validation

    over = {"out": a.out} if a.out else {}
    cfg = load_config(a.config, ValidationConfig, over)
    doc = run_validation(cfg, config_path=a.config, results=a.results)
    import pandas as pd

    print(format_matrix(pd.DataFrame(doc["cells"]), doc["summary"]))
    print(f"report: {cfg.out}/report/index.html")
    return 0


def add_validate_commands(sub) -> None:
    g = sub.add_parser("validate", help="validate the audit instrument: universes x families x injection seeds",
                       description="Per universe (a mock survey whose true lenses differ from every injection family) "
                                   "a detector trained as the demo trains it; per injection seed every family's "
                                   "selection run, the realism gate (no truth) and the closure test (truth); the "
                                   "matrix of gate verdicts against closure errors with pre-registered rules. "
                                   "Resumable: stages whose inputs are unchanged are skipped.")
    g.add_argument("--config", required=True, help="validation YAML (configs/validation.yaml)")
    g.add_argument("--out", default=None, help="override the config's out")
    g.add_argument("--results", default=None, help="also write the matrix JSON here "
                                                   "(benchmarks/results/validation_matrix.json)")
    g.set_defaults(fn=_validate)
