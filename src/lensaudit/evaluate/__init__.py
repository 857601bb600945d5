"""Evaluation and calibration audit: metrics with intervals and counts, strata, leakage and shortcut checks."""

from lensaudit.evaluate.bootstrap import (
    bootstrap_auc,
    bootstrap_auc_blocks,
    bootstrap_recall_at_fpr,
    percentile_interval,
    weighted_auc,
)
from lensaudit.evaluate.config import EvalConfig
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
from lensaudit.evaluate.run import EvaluationInputError, evaluate, join_predictions, summary_lines

__all__ = ["bootstrap_auc", "bootstrap_recall_at_fpr", "bootstrap_auc_blocks", "percentile_interval", "weighted_auc", "EvalConfig", "LeakageError",
           "shortcut_gates", "split_leakage", "MetricError", "calibration", "confusion_at", "pr_auc",
           "precision_at_prevalence", "roc_auc", "threshold_at_fpr", "wilson_interval", "EvaluationInputError",
           "evaluate", "join_predictions", "summary_lines"]
