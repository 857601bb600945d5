"""One operating point for every stage: a probability threshold, where it came from, and one rule.

A cutout is **detected** when its probability ``p >= t`` (:data:`RULE`). Evaluation, the selection
function, closure, the ensembles and the report all count detections through
:meth:`OperatingPoint.detected`, so completeness and false-positive figures of one model at one
threshold agree wherever they are reported. A threshold is either a fixed probability
(:meth:`OperatingPoint.fixed`) or set on the negatives' scores at a target false-positive rate
(:meth:`OperatingPoint.at_fpr`: the smallest t with at most ``floor(fpr * n)`` negatives at or above it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lensaudit.artifacts.tables import ArtifactError
from lensaudit.utils.stats import MetricError

#: The detection rule, in words: what every stage counts as "found".
RULE = "p >= t"
#: The operating point figures and captions show when a run has it (else its first one).
HEADLINE = "p>=0.5"


def at_or_above(scores, threshold: float) -> np.ndarray:
    """:data:`RULE` on any score (probability or logit): True where ``score >= threshold``."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def threshold_at_fpr(neg_scores, fpr: float) -> float:
    """Smallest threshold t with (negatives scoring >= t) / n_neg <= fpr (just above a negative's score when the
    target cannot admit it; the lowest negative when every negative may be selected)."""
    s = np.sort(np.asarray(neg_scores, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise MetricError("no negatives to set a threshold on")
    k = int(np.floor(fpr * len(s)))  # at most k negatives may be at or above t
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))  # t just above the (k+1)-th highest negative


@dataclass(frozen=True)
class OperatingPoint:
    """A detection threshold on the probability (``p >= threshold``) and its origin.

    ``kind``: ``"probability"`` (a fixed value) or ``"fpr"`` (set on ``n_negatives`` negatives' scores at
    target ``fpr``); ``resolved`` is False when that many negatives cannot resolve the target (the threshold is
    then above every negative and the FPR an upper bound); ``origin`` says so in words.
    """

    name: str
    threshold: float
    kind: str
    origin: str
    fpr: float | None = None
    n_negatives: int | None = None
    resolved: bool = True
    rule: str = RULE

    def __post_init__(self):
        if self.kind not in ("probability", "fpr"):
            raise ArtifactError(f"operating point {self.name!r}: kind {self.kind!r} is not 'probability' or 'fpr'")
        if self.rule != RULE:
            raise ArtifactError(f"operating point {self.name!r}: rule {self.rule!r} is not lensaudit's {RULE!r}")
        if not np.isfinite(self.threshold) and self.threshold != np.inf:
            raise ArtifactError(f"operating point {self.name!r}: threshold {self.threshold} is not a number")

    @classmethod
    def fixed(cls, p: float) -> OperatingPoint:
        """Detection at probability ``p`` or more."""
        if not 0.0 <= p <= 1.0:
            raise ArtifactError(f"operating point: probability threshold {p} outside [0, 1]")
        return cls(name=f"p>={p:g}", threshold=float(p), kind="probability", origin=f"fixed probability {p:g}")

    @classmethod
    def at_fpr(cls, neg_probability, fpr: float, negatives: str = "negatives") -> OperatingPoint:
        """The threshold at target false-positive rate ``fpr`` on the scores of ``negatives`` (named in the origin)."""
        if not 0.0 < fpr < 1.0:
            raise ArtifactError(f"operating point: target FPR {fpr} outside (0, 1)")
        neg = np.asarray(neg_probability, float)
        t = threshold_at_fpr(neg, fpr)
        resolved = bool(len(neg) * fpr >= 1)
        origin = f"FPR {fpr:g} on the {len(neg):,} {negatives}"
        if not resolved:
            origin += f" ({len(neg):,} negatives cannot resolve it: the threshold is above every negative, an upper bound)"
        return cls(name=f"fpr={fpr:g}", threshold=t, kind="fpr", origin=origin, fpr=float(fpr),
                   n_negatives=int(len(neg)), resolved=resolved)

    def detected(self, probability) -> np.ndarray:
        """True where ``probability >= threshold``."""
        return at_or_above(probability, self.threshold)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "operating point") -> OperatingPoint:
        """An operating point written by :meth:`to_dict`; ArtifactError naming ``source`` if it is not one."""
        fields = set(cls.__dataclass_fields__)
        missing = {"name", "threshold", "kind", "origin"} - set(d)
        if missing:
            raise ArtifactError(f"{source}: operating point lacks {sorted(missing)} (written by an older lensaudit? "
                                "re-run the stage)")
        return cls(**{k: v for k, v in d.items() if k in fields})


def headline(names) -> str:
    """:data:`HEADLINE` if among ``names`` (operating point names), else the first name."""
    names = list(names)
    if not names:
        raise ArtifactError("no operating points")
    return HEADLINE if HEADLINE in names else names[0]


def by_name(points: list[OperatingPoint], name: str, source: str = "operating points") -> OperatingPoint:
    """The operating point called ``name``; ArtifactError listing the names there are."""
    for op in points:
        if op.name == name:
            return op
    raise ArtifactError(f"{source}: no operating point {name!r}; there are {[op.name for op in points]}")
