"""The typed result of an evaluation, behind ``metrics.json``.

Every number carries its count and interval; entries a sample cannot support say so in
``status`` (``insufficient``, ``single class``) instead of holding a number. ``metrics.json``
is :meth:`EvaluationResult.to_json` (fields that do not apply are left out; NaN is written as
null), and :func:`load_result` reads it back into the same types, so a report or notebook
reads the file through these classes rather than through untyped keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lensaudit.utils.io import atomic_write_json


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_M):
    """Percentile bootstrap intervals: [low, high] at 68 and 95 percent."""

    ci68: list[float | None]
    ci95: list[float | None]


class Proportion(_M):
    """k of n, with the Wilson 95 percent interval and a bootstrap interval."""

    value: float | None = None
    k: int
    n: int
    wilson95: list[float] | None = None
    bootstrap: Interval | None = None


class AucEntry(_M):
    value: float | None = None
    n_pos: int
    n_neg: int
    status: str | None = None
    bootstrap: Interval | None = None
    block_bootstrap: Interval | None = Field(None, description="whole HEALPix pixels resampled")


class PrAucEntry(_M):
    value: float | None = None
    n_pos: int | None = None
    n_neg: int | None = None
    n_boot: int | None = None
    bootstrap: Interval | None = None
    status: str | None = None


class ThresholdMetrics(_M):
    """Recall, FPR and precision at one threshold (score >= threshold means 'lens')."""

    threshold: float | None = None
    recall: Proportion | None = None
    fpr: Proportion | None = None
    precision: Proportion | None = None
    precision_at_prevalence: dict[str, float | None] | None = None
    recall_block_bootstrap: Interval | None = None
    fpr_block_bootstrap: Interval | None = None


class Reestimated(_M):
    bootstrap: Interval
    threshold_bootstrap: Interval
    note: str


class TargetFprMetrics(ThresholdMetrics):
    """Metrics at the threshold giving a target FPR on the negatives (or why it cannot be resolved)."""

    target_fpr: float
    status: str | None = None
    reason: str | None = None
    recall_threshold_reestimated: Reestimated | None = None


class TopFractionMetrics(ThresholdMetrics):
    fraction: float


class CalibrationCurve(_M):
    mean_probability: list[float]
    fraction_positive: list[float]
    count: list[int]
    fraction_positive_lo95: list[float | None]
    fraction_positive_hi95: list[float | None]


class HighScoreCalibration(_M):
    above: float
    n: int
    ece: float | None = None
    mce: float | None = None
    curve: CalibrationCurve | None = None
    status: str | None = None


class Calibration(_M):
    ece: float | None = None
    mce: float | None = None
    curve: CalibrationCurve | None = None
    n: int | None = None
    ece_bootstrap: Interval | None = None
    mce_bootstrap: Interval | None = None
    high_score: HighScoreCalibration | None = None
    status: str | None = None


class OverallMetrics(_M):
    n_pos: int
    n_neg: int
    roc_auc: AucEntry
    pr_auc: PrAucEntry
    at_probability: list[ThresholdMetrics]
    at_target_fpr: list[TargetFprMetrics]
    at_top_fraction: TopFractionMetrics
    calibration: Calibration


class LeakageReport(_M):
    checked_columns: list[str]
    shared: dict[str, int]
    passed: bool


class GateResult(_M):
    """Cross-validated AUC of a logistic regression on core-only or annulus-only pixel features."""

    gate: str
    status: str
    auc: float | None = None
    ci68: list[float | None] | None = None
    ci95: list[float | None] | None = None
    n: int | None = None
    reason: str | None = None


class DetectabilityCounts(_M):
    n_pos: int
    observable_fraction: float | None = None
    observable_wilson95: list[float] | None = None
    n_observable: int
    recall_given_observable: float | None = None
    recall_given_observable_wilson95: list[float] | None = None
    n_detectable_but_missed: int
    n_not_detectable: int
    status: str


class DetectabilitySummary(DetectabilityCounts):
    threshold: float
    calibrated_on: str
    probability_threshold: float


class SaliencyInfo(_M):
    n_maps: int
    file: str
    galleries: list[str]


class TruthSummary(_M):
    n_true_lenses_scored: int
    tier_a_wrong_fraction: Proportion | None = None
    tier_b_wrong_fraction: Proportion | None = None
    oracle_auc: AucEntry | None = Field(
        None, description="ceiling the truth allows: ROC AUC of an oracle scoring each object by its true arc S/N "
                          "(0 for non-lenses, so Tier-B contaminants tie with the negatives)")
    oracle_auc_tier_a: AucEntry | None = Field(None, description="the same, Tier-A positives against all negatives")


class EvaluationResult(_M):
    """Everything ``lensaudit evaluate`` measured (``metrics.json``)."""

    split: str | None
    n: int
    leakage: LeakageReport
    config: dict
    overall: OverallMetrics
    shortcut_gates: list[GateResult] | None = None
    detectability: DetectabilitySummary | None = None
    saliency: SaliencyInfo | None = None
    truth: TruthSummary | None = None
    tables: list[str] = Field(default_factory=list)
    figures: list[str] = Field(default_factory=list)

    def to_json(self) -> dict:
        """The ``metrics.json`` form: fields that do not apply left out, NaN as null."""
        return self.model_dump(mode="json", exclude_none=True)

    def write(self, path: str | os.PathLike) -> Path:
        atomic_write_json(path, self.to_json())
        return Path(path)


def load_result(path: str | os.PathLike) -> EvaluationResult:
    """Read a ``metrics.json`` back into an :class:`EvaluationResult`."""
    return EvaluationResult.model_validate(json.loads(Path(path).read_text()))
