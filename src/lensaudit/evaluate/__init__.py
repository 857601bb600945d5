"""Evaluation and calibration audit: metrics with intervals and counts, strata, leakage and shortcut checks.

Modules by job: :mod:`.metrics` and :mod:`.bootstrap` (pure functions, arrays in), :mod:`.overall`
(the headline metrics of a split), :mod:`.strata` (per-stratum and per-confuser rates, failure
tables), :mod:`.truth` (mock survey only), :mod:`.leakage`, :mod:`.detectability`,
:mod:`.saliency`, :mod:`.figures`, :mod:`.summary` (text), :mod:`.result` (the typed result
behind ``metrics.json``) and :mod:`.run` (orchestration).
"""

from lensaudit.evaluate.bootstrap import (
    bootstrap_auc,
    bootstrap_auc_blocks,
    bootstrap_recall_at_fpr,
    percentile_interval,
    weighted_auc,
)
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.inputs import EvaluationInputError, join_predictions
from lensaudit.evaluate.leakage import LeakageError, shortcut_gates, split_leakage
from lensaudit.evaluate.metrics import (
    MetricError,
    calibration,
    confusion_at,
    pr_auc,
    precision_at_prevalence,
    roc_auc,
    threshold_at_fpr,
    wilson_interval,
)
from lensaudit.evaluate.result import EvaluationResult, load_result
from lensaudit.evaluate.run import evaluate
from lensaudit.evaluate.summary import summary_lines

__all__ = ["bootstrap_auc", "bootstrap_recall_at_fpr", "bootstrap_auc_blocks", "percentile_interval", "weighted_auc",
           "EvalConfig", "LeakageError", "shortcut_gates", "split_leakage", "MetricError", "calibration",
           "confusion_at", "pr_auc", "precision_at_prevalence", "roc_auc", "threshold_at_fpr", "wilson_interval",
           "EvaluationInputError", "EvaluationResult", "evaluate", "join_predictions", "load_result", "summary_lines"]
