"""Typed settings of ``lensaudit ensemble run`` (YAML, validated; unknown keys are errors)."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DomainDef(BaseModel):
    """One way of cutting the manifest into domains, over one manifest column.

    Exactly one of ``split`` (two domains below / at-or-above a value, or the median of the training
    split), ``edges`` (bins ``[e0, e1), [e1, e2), ...``; the last bin is closed above at infinity when the
    last edge is ``.inf``) and ``groups`` (named sets of categorical values) is given. An object whose
    column is missing (NaN) or outside every bin or group belongs to no domain of this definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(..., pattern=r"^[A-Za-z0-9_]+$", description="e.g. seeing, depth, nexp_z, morphology")
    column: str = Field(..., description="manifest column, e.g. psfsize_r (arcsec), psfdepth_r, nobs_z, type")
    split: float | Literal["median"] | None = Field(None, description="numeric column: the cut (column units) or "
                                                                      "'median' (of the training split's rows)")
    labels: tuple[str, str] = Field(("low", "high"), description="names of the domains below and above the cut")
    edges: tuple[float, ...] | None = Field(None, description="numeric column: bin edges (column units)")
    groups: dict[str, tuple[str, ...]] | None = Field(None, description="categorical column: domain -> values")

    @model_validator(mode="after")
    def _one_rule(self) -> DomainDef:
        given = [k for k in ("split", "edges", "groups") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"domain {self.name!r}: give exactly one of split, edges, groups (got {given or 'none'})")
        if self.edges is not None and (len(self.edges) < 2 or any(b <= a for a, b in itertools.pairwise(self.edges))):
            raise ValueError(f"domain {self.name!r}: edges must be two or more increasing values")
        if self.groups is not None:
            if len(self.groups) < 2:
                raise ValueError(f"domain {self.name!r}: groups needs two or more domains")
            seen: dict[str, str] = {}
            for g, vals in self.groups.items():
                for v in vals:
                    if v in seen:
                        raise ValueError(f"domain {self.name!r}: value {v!r} is in groups {seen[v]!r} and {g!r}")
                    seen[v] = g
        if self.split is not None and self.labels[0] == self.labels[1]:
            raise ValueError(f"domain {self.name!r}: the two labels must differ")
        return self


class CombineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gate_weight: float = Field(0.8, gt=0, le=1, description="domain gate: the weight of the object's own domain "
                                                           "model; the rest is shared by the other members")
    meta: bool = Field(True, description="also stack the members with the meta-learner (fitted on the fit split, "
                                         "out of fold; applied to the audit split)")
    meta_folds: int = Field(5, ge=2)


class SelectionCompare(BaseModel):
    """Completeness of the baseline and of each combination on the same injections."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    config: str = Field(..., description="a selection config with every path set, e.g. the demo's resolved "
                                         "demo_out/selection/run/config.yaml (same hosts, grid, priors and seed)")
    families: tuple[str, ...] | None = Field(None, description="re-inject only these families (default: all)")
    n_per_cell: int | None = Field(None, ge=1, description="override the config's injections per cell")


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    manifest: str = Field(..., description="the training manifest (Parquet) with split, label and the domain columns")
    store: str = Field(..., description="cutout store holding the manifest's cutouts")
    out: str = Field("ensemble_out", description="run folder")
    train_config: str = Field(..., description="the members' training config (bundled name like train/demo.yaml or a "
                                                "path); manifest, store and out are set per member")
    epochs: int | None = Field(None, ge=1, description="override the training config's epochs for every member")
    baseline: str | None = Field(None, description="checkpoint of the best single model (trained on every domain); "
                                                   "when absent one is trained with the same config")
    domains: tuple[DomainDef, ...] = Field(..., min_length=1)
    combine: CombineConfig = CombineConfig()
    fit_split: str = Field("val", description="split the meta-learner is fitted on")
    audit_split: str = Field("test", description="split every table is measured on")
    threshold: float = Field(0.5, gt=0, lt=1, description="operating threshold (probability) for disagreement")
    top_k: tuple[int, ...] = Field((10, 25, 50, 100), description="inspection budgets: lengths of the top-K lists")
    set_aside: tuple[float, ...] = Field((0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
                                         description="selective classification: fractions set aside, most uncertain "
                                                     "first")
    truth: str | None = Field(None, description="mock only: truth table, for the recall of true lenses (measured, "
                                                "never fitted)")
    selection: SelectionCompare | None = Field(None, description="also compare selection functions (injections)")
    n_boot: int = Field(1000, ge=100)
    seed: int = Field(0, ge=0)
    min_count: int = Field(10, ge=1, description="strata with fewer positives are 'insufficient'")

    @model_validator(mode="after")
    def _unique(self) -> EnsembleConfig:
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError(f"domain names must be unique, got {names}")
        if "baseline" in names or "all" in names:
            raise ValueError("'baseline' and 'all' are reserved names")
        if any(f < 0 or f >= 1 for f in self.set_aside):
            raise ValueError("set_aside fractions must lie in [0, 1)")
        if any(k < 1 for k in self.top_k):
            raise ValueError("top_k values must be >= 1")
        return self
