"""``lensaudit realism`` (a thin layer over :func:`lensaudit.realism.run_realism`)."""

from __future__ import annotations

import argparse


def _realism(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.realism import RealismConfig, format_realism, run_realism

    cfg = load_config(a.config, RealismConfig, {"out": a.out})
    print(format_realism(run_realism(cfg)))
    return 0


def add_realism_commands(sub) -> None:
    g = sub.add_parser("realism", help="realism gate: probe AUC, Frechet distance and distribution tests per family",
                       description="Per injection family of a `selection run`: a logistic probe on the detector's "
                                   "penultimate features separating real lenses from brightness-matched injections "
                                   "(5-fold CV AUC, bootstrap interval, permutation p), the Frechet distance, KS tests "
                                   "of arc S/N, arc colour and sky noise, and a GO / NO-GO verdict.")
    g.add_argument("--config", required=True, help="realism YAML (configs/selection/demo_realism.yaml)")
    g.add_argument("--out", default=None)
    g.set_defaults(fn=_realism)
