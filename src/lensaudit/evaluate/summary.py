"""Readable text summary of an evaluation: every number with its interval and count."""

from __future__ import annotations

from lensaudit.evaluate.result import EvaluationResult, Proportion, ThresholdMetrics


def _fmt_interval(ci: list, digits: int) -> str:
    return "[" + ", ".join("nan" if v is None else f"{v:.{digits}f}" for v in ci) + "]"


def _prop(name: str, p: Proportion, digits: int) -> str:
    if p.value is None:
        return f"{name} undefined (0 rows)"
    return f"{name} {p.value:.{digits}f} 95% {_fmt_interval(p.wilson95, digits)} ({p.k}/{p.n})"


def _threshold_line(name: str, t: ThresholdMetrics) -> str:
    return f"{name}: {_prop('recall', t.recall, 3)}; {_prop('FPR', t.fpr, 4)}"


def summary_lines(res: EvaluationResult) -> list[str]:
    """Readable summary: every number with its interval and count."""
    o = res.overall
    L = [f"split {res.split}: {o.n_pos} positives, {o.n_neg} negatives; leakage check passed"]
    a = o.roc_auc
    if a.value is not None:
        L.append(f"ROC AUC {a.value:.4f}  95% {_fmt_interval(a.bootstrap.ci95, 4)}  (n_pos {a.n_pos}, n_neg {a.n_neg})")
    else:
        L.append(f"ROC AUC {a.status} (n_pos {a.n_pos}, n_neg {a.n_neg})")
    p = o.pr_auc
    if p.value is not None:
        L.append(f"PR AUC  {p.value:.4f}  95% {_fmt_interval(p.bootstrap.ci95, 4)}  (n_pos {p.n_pos}, n_neg {p.n_neg})")
    for t in o.at_probability:
        L.append(_threshold_line(f"p >= {t.threshold:.3g}", t))
    for t in o.at_target_fpr:
        if t.status == "insufficient":
            L.append(f"FPR target {t.target_fpr:g}: insufficient ({t.reason})")
            continue
        line = _threshold_line(f"FPR target {t.target_fpr:g}", t)
        if t.recall_threshold_reestimated is not None:
            line += (f"; recall 95% with the threshold re-derived per resample "
                     f"{_fmt_interval(t.recall_threshold_reestimated.bootstrap.ci95, 3)}")
        L.append(line)
    L.append(_threshold_line(f"top {o.at_top_fraction.fraction:g}", o.at_top_fraction))
    c = o.calibration
    if c.ece is not None:
        L.append(f"calibration: ECE {c.ece:.4f} 95% {_fmt_interval(c.ece_bootstrap.ci95, 4)}, MCE {c.mce:.4f} 95% "
                 f"{_fmt_interval(c.mce_bootstrap.ci95, 4)} over {len(c.curve.count)} equal-count bins (n {c.n})")
    else:
        L.append(f"calibration: {c.status}")
    for g in res.shortcut_gates or []:
        if g.auc is not None:
            L.append(f"shortcut gate {g.gate}: AUC {g.auc:.3f} 95% {_fmt_interval(g.ci95, 3)} (n {g.n}) -> {g.status}")
        else:
            L.append(f"shortcut gate {g.gate}: {g.status} ({g.reason})")
    dt = res.detectability
    if dt is not None and dt.observable_fraction is not None:
        line = (f"detectability: observable {dt.observable_fraction:.3f} 95% {_fmt_interval(dt.observable_wilson95, 3)} "
                f"({dt.n_observable}/{dt.n_pos} positives)")
        if dt.recall_given_observable is not None:
            line += (f"; recall given observable {dt.recall_given_observable:.3f} 95% "
                     f"{_fmt_interval(dt.recall_given_observable_wilson95, 3)} (n {dt.n_observable}); missed: "
                     f"{dt.n_detectable_but_missed} detectable, {dt.n_not_detectable} not detectable")
        L.append(line)
    if res.truth is not None and res.truth.tier_b_wrong_fraction is not None:
        L.append("mock truth: " + _prop("Tier-B labels that are not lenses", res.truth.tier_b_wrong_fraction, 3))
    if res.truth is not None and res.truth.oracle_auc is not None and res.truth.oracle_auc.value is not None:
        o, oa = res.truth.oracle_auc, res.truth.oracle_auc_tier_a
        line = (f"mock truth: oracle AUC {o.value:.3f} (objects scored by their true arc S/N: the ceiling the truth "
                f"allows; model {res.overall.roc_auc.value:.3f})")
        if oa is not None and oa.value is not None:
            line += f"; Tier A {oa.value:.3f}"
        L.append(line)
    return L
