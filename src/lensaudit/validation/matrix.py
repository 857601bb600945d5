"""The validation matrix from per-cell gate and closure tables (pure functions over tables).

A *cell* is one universe, family and injection seed. Its outcome follows rules fixed before the run
(:class:`~lensaudit.validation.config.ValidationRules`):

* closure **holds** when |Delta| <= tolerance (Delta = injection-predicted minus true completeness, the closure's
  primary statistic at the rules' operating point); it is **undecided** when the 95 percent interval of Delta
  straddles +tolerance or -tolerance (the test cannot tell at this power);
* the gate **agrees** with closure when GO and closure holds, or NO-GO and it does not;
* across cells: the fraction that agree (all cells, and without the planted control), the Spearman rank correlation
  of the gate statistic with |Delta| (without the planted control by default: its error is huge and its AUC high,
  which would make any statistic look predictive), the signed rank correlation of the score shift with Delta, the
  planted control's NO-GO rate, and per universe and family the stability of the verdict over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from lensaudit.artifacts.kinds import CLOSURE_SUMMARY, REALISM

R, C = REALISM.c, CLOSURE_SUMMARY.c


def cell_rows(universe: str, seed: int, gate: pd.DataFrame, closure: pd.DataFrame, operating_point: str,
              tolerance: float) -> list[dict]:
    """One row per family of one universe and seed: the gate (read without truth) beside the closure."""
    cl = closure[closure[C.threshold] == operating_point].set_index(C.family)
    if not len(cl):
        raise ValueError(f"closure has no operating point {operating_point!r}; it has "
                         f"{sorted(set(closure[C.threshold]))}")
    g = gate.set_index(R.family) if len(gate) else pd.DataFrame()
    rows = []
    for fam, c in cl.iterrows():
        row = {"universe": universe, "seed": int(seed), "family": fam, "planted": bool(c[C.planted]),
               "c_true": float(c[C.c_true]), "c_inj": float(c[C.c_inj]), "delta": float(c[C.diff]),
               "delta_se": float(c[C.se]), "delta_lo95": float(c[C.lo95]), "delta_hi95": float(c[C.hi95]),
               "delta_p": float(c[C.p_value]), "delta_mde80": float(c[C.mde80]), "n_true": int(c[C.n_true_covered])}
        if fam in g.index:
            r = g.loc[fam]
            row.update({"probe_auc": float(r[R.probe_auc]), "probe_auc_lo95": float(r[R.probe_auc_lo95]),
                        "probe_auc_hi95": float(r[R.probe_auc_hi95]), "gate_p": float(r[R.permutation_p]),
                        "null_q95": float(r[R.null_q95]), "auc_mde80": float(r[R.auc_mde80]),
                        "floor_injections": float(r[R.floor_injections]),
                        "floor_real_halves": float(r[R.floor_real_halves]),
                        "verdict_stability": float(r[R.verdict_stability]), "score_shift": float(r[R.score_shift]),
                        "n_real": int(r[R.n_real]), "verdict": str(r[R.verdict])})
        else:
            row.update({"verdict": "none"})
        rows.append(outcome(row, tolerance))
    return rows


def outcome(row: dict, tolerance: float) -> dict:
    """``row`` with ``closure_holds``, ``closure_undecided`` and ``agrees`` (None without a verdict)."""
    d, lo, hi = row["delta"], row["delta_lo95"], row["delta_hi95"]
    holds = bool(abs(d) <= tolerance)
    undecided = bool((lo < tolerance < hi) or (lo < -tolerance < hi))
    agrees = None if row.get("verdict") not in ("GO", "NO-GO") else (row["verdict"] == "GO") == holds
    return {**row, "closure_holds": holds, "closure_undecided": undecided, "agrees": agrees}


def _spearman(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return {"rho": None, "p": None, "n": int(ok.sum())}
    r = spearmanr(x[ok], y[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(ok.sum())}


def summarize(cells: pd.DataFrame, tolerance: float, gate_statistic: str = "probe_auc",
              exclude_planted: bool = True, real_galaxy_cell: tuple[str, str] | None = None) -> dict:
    """The matrix's summary (see the module docstring)."""
    judged = cells[cells["agrees"].notna()]
    real = judged[~judged["planted"]]
    corr_set = real if exclude_planted else judged
    planted = judged[judged["planted"]]
    per = []
    for (u, f), g in cells.groupby(["universe", "family"], sort=False):
        verdicts = g["verdict"].tolist()
        top = max(set(verdicts), key=verdicts.count)
        per.append({"universe": u, "family": f, "planted": bool(g["planted"].iat[0]), "n_seeds": len(g),
                    "delta_mean": float(g["delta"].mean()), "delta_min": float(g["delta"].min()),
                    "delta_max": float(g["delta"].max()), "delta_se_mean": float(g["delta_se"].mean()),
                    "mde80_mean": float(g["delta_mde80"].mean()),
                    "probe_auc_mean": float(g["probe_auc"].mean()) if "probe_auc" in g else None,
                    "verdicts": verdicts, "majority_verdict": top,
                    "seed_agreement": float(np.mean([v == top for v in verdicts])),
                    "closure_holds_fraction": float(g["closure_holds"].mean()),
                    "agree_fraction": float(g["agrees"].dropna().mean()) if g["agrees"].notna().any() else None})
    out = {"tolerance": tolerance, "n_cells": int(len(cells)), "n_judged": int(len(judged)),
           "agreement": float(judged["agrees"].mean()) if len(judged) else None,
           "agreement_without_planted": float(real["agrees"].mean()) if len(real) else None,
           "undecided_fraction": float(cells["closure_undecided"].mean()) if len(cells) else None,
           "rank_correlation": {**_spearman(corr_set[gate_statistic], corr_set["delta"].abs()),
                                "statistic": gate_statistic, "against": "|delta|",
                                "cells": "without planted" if exclude_planted else "all"},
           "rank_correlation_all_cells": _spearman(judged[gate_statistic], judged["delta"].abs()),
           "score_shift_vs_delta": _spearman(corr_set["score_shift"], corr_set["delta"])
           if "score_shift" in corr_set else None,
           "planted_no_go": float((planted["verdict"] == "NO-GO").mean()) if len(planted) else None,
           "gate_go_fraction": float((real["verdict"] == "GO").mean()) if len(real) else None,
           "closure_holds_fraction": float(real["closure_holds"].mean()) if len(real) else None,
           "median_delta_mde80": float(cells["delta_mde80"].median()) if len(cells) else None,
           "per_universe_family": per}
    if real_galaxy_cell:
        g = cells[(cells["universe"] == real_galaxy_cell[0]) & (cells["family"] == real_galaxy_cell[1])]
        out["real_galaxy_target"] = {"universe": real_galaxy_cell[0], "family": real_galaxy_cell[1],
                                     "delta_mean": float(g["delta"].mean()) if len(g) else None,
                                     "deltas": g["delta"].tolist(), "mde80_mean": float(g["delta_mde80"].mean())
                                     if len(g) else None,
                                     "closes": bool(len(g) and abs(g["delta"].mean()) <= tolerance),
                                     "power_to_see_tolerance": bool(len(g) and g["delta_mde80"].mean() <= tolerance)}
    return out


def format_matrix(cells: pd.DataFrame, summary: dict) -> str:
    """A plain-text agreement table and the summary's headline numbers."""
    lines = [f"{'universe':<12} {'family':<10} {'seed':>4} {'probe AUC':>9} {'gate p':>7} {'verdict':>7} "
             f"{'Delta [95%]':>24} {'MDE80':>6} {'holds':>6} {'agrees':>6}"]
    for r in cells.to_dict("records"):
        auc = f"{r['probe_auc']:.3f}" if pd.notna(r.get("probe_auc")) else "-"
        gp = f"{r['gate_p']:.3f}" if pd.notna(r.get("gate_p")) else "-"
        ag = "-" if r["agrees"] is None or pd.isna(r["agrees"]) else ("yes" if r["agrees"] else "NO")
        lines.append(f"{r['universe']:<12} {r['family'] + (' *' if r['planted'] else ''):<10} {r['seed']:>4} {auc:>9} "
                     f"{gp:>7} {r['verdict']:>7} {r['delta']:>+7.3f} [{r['delta_lo95']:+.3f}, {r['delta_hi95']:+.3f}] "
                     f"{r['delta_mde80']:>6.3f} {('yes' if r['closure_holds'] else 'no'):>6} {ag:>6}")
    rc = summary["rank_correlation"]
    lines.append(f"agreement {summary['agreement']}, without planted {summary['agreement_without_planted']}; "
                 f"Spearman({rc['statistic']}, |Delta|) = {rc['rho']} (p {rc['p']}, {rc['n']} cells, {rc['cells']}); "
                 f"planted NO-GO {summary['planted_no_go']}; tolerance {summary['tolerance']}")
    return "\n".join(lines)


__all__ = ["cell_rows", "format_matrix", "outcome", "summarize"]
