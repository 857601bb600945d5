"""Typed settings of ``lensaudit selection run`` (YAML, validated; unknown keys are errors)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lensaudit.inject.config import EngineConfig, FamilyConfig, Priors
from lensaudit.selection.grid import GridConfig


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    probability: tuple[float, ...] = Field((0.3, 0.5), description="completeness at p >= each value")
    fpr: tuple[float, ...] = Field((1e-3, 1e-4), description="and at the thresholds giving these false-positive rates "
                                                              "on the negatives of the audited splits")

    @model_validator(mode="after")
    def _ranges(self) -> Thresholds:
        bad = [p for p in self.probability if not 0 < p < 1] + [f for f in self.fpr if not 0 < f < 1]
        if bad:
            raise ValueError(f"thresholds: probabilities and FPRs must lie in (0, 1), got {bad}")
        return self


class SelectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoint: str | None = Field(None, description="the frozen model: a lensaudit checkpoint (its preprocessing "
                                                      "travels with it), an ONNX model or a TorchScript file (each "
                                                      "with <model>.spec.yaml); or give scores")
    scores: str | None = Field(None, description="the offline exchange, instead of checkpoint: a CSV of run_id, id, "
                                                 "probability[, feature_0 ...] for every cutout `lensaudit selection "
                                                 "export` wrote with this config, scored by the user's own pipeline")
    manifest: str = Field(..., description="manifest with split, label, psfsize_g/r/z, psfdepth_r")
    store: str = Field(..., description="cutout store holding the host cutouts")
    out: str
    seed: int = Field(0, ge=0)
    splits: tuple[str, ...] = Field(("val", "test"), description="hosts and FPR negatives come only from these splits")
    negatives_predictions: str | None = Field(None, description="scores of the splits' negatives for the FPR "
                                                                 "thresholds (scored here when absent)")
    families: tuple[FamilyConfig, ...] = (FamilyConfig(name="sersic", kind="sersic"),)
    priors: Priors = Priors(arc_mag_r=(19.0, 25.0))
    engine: EngineConfig = EngineConfig()
    grid: GridConfig = GridConfig()
    n_per_cell: int = Field(20, ge=1)
    min_count: int = Field(10, ge=1, description="cells with fewer injections are marked insufficient")
    thresholds: Thresholds = Thresholds()
    chunk_size: int = Field(2048, ge=16, description="injections per resumable chunk")
    features: bool = Field(True, description="keep penultimate features of every injection (the realism gate reads them)")
    device: str = "auto"
    batch_size: int = Field(512, ge=1)
    gate_reference: str | None = Field(None, description=(
        "a lensaudit checkpoint whose penultimate features stand in for the model's when the model gives none (an ONNX "
        "or TorchScript file without a features output, or exchanged scores without feature_* columns): the "
        "realism gate then compares real lenses and injections in this reference network's features, and its table "
        "and the report say so"))
    extra_checkpoints: dict[str, str] = Field(default_factory=dict, description=(
        "more models scored on the same injected cutouts (e.g. ensemble members): columns logit_<name> and "
        "probability_<name> in the injection records"))

    @model_validator(mode="before")
    @classmethod
    def _no_truth(cls, data):
        if isinstance(data, dict) and "truth" in data:
            raise ValueError("truth: a selection run reads no truth table (its hosts are the audited splits' "
                             "negatives, undiscovered lenses included, as on the sky); only the closure test reads "
                             "the mock's truth: remove this key")
        return data

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if self.checkpoint and self.scores:
            raise ValueError("checkpoint and scores: give one (a model scored here, or the offline exchange's scores)")
        if "train" in self.splits:
            raise ValueError("splits: hosts must never come from the training split")
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"families: names must be unique, got {names}")
        if not self.families:
            raise ValueError("families: at least one source family is needed")
        bad = [n for n in self.extra_checkpoints if not re.fullmatch(r"[A-Za-z0-9_.+-]+", n)]
        if bad:
            raise ValueError(f"extra_checkpoints: names may hold letters, digits and _.+- only, got {bad}")
        return self


__all__ = ["SelectionConfig", "Thresholds"]
