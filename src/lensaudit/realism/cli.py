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
    g = sub.add_parser("realism", help="realism gate: a permutation test of a feature-space probe per family",
                       description="Per injection family of a `selection run`, reading no truth: a logistic probe on "
                                   "the detector's penultimate features separating real lenses from injections matched "
                                   "in arc magnitude measured from the pixels (5-fold CV AUC, bootstrap interval), its "
                                   "null from refits on permuted labels (p-value, power), same-population floors, "
                                   "stability over subsamples of the real lenses, the score shift, KS tests of measured "
                                   "arc S/N, colour, radius and area, and a GO / NO-GO verdict (GO when p >= alpha).")
    g.add_argument("--config", required=True, help="realism YAML (configs/selection/demo_realism.yaml)")
    g.add_argument("--out", default=None)
    g.set_defaults(fn=_realism)
