"""Evaluation and calibration audit: metrics with intervals and counts, strata, leakage and shortcut checks.

Modules by job: :mod:`.metrics` and :mod:`.bootstrap` (pure functions, arrays in), :mod:`.overall`
(the headline metrics of a split), :mod:`.strata` (per-stratum and per-confuser rates, failure
tables), :mod:`.truth` (mock survey only), :mod:`.leakage`, :mod:`.detectability`,
:mod:`.saliency`, :mod:`.figures`, :mod:`.summary` (text), :mod:`.result` (the typed result
behind ``metrics.json``) and :mod:`.run` (orchestration).
"""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "bootstrap": ["bootstrap_auc", "bootstrap_auc_blocks", "bootstrap_recall_at_fpr", "percentile_interval",
              "weighted_auc"],
    "config": ["EvalConfig"],
    "inputs": ["EvaluationInputError", "join_predictions"],
    "leakage": ["LeakageError", "shortcut_gates", "split_leakage"],
    "metrics": ["MetricError", "calibration", "confusion_at", "pr_auc", "precision_at_prevalence", "roc_auc",
              "threshold_at_fpr", "wilson_interval"],
    "result": ["EvaluationResult", "load_result"],
    "run": ["evaluate"],
    "summary": ["summary_lines"],
})
