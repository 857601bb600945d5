"""Scoring with any lens finder: the project's checkpoints, ONNX models (any framework) and TorchScript files,
behind one interface (:func:`load_scorer`), each with a preprocessing spec checked before any scoring; and the
export of a project checkpoint to ONNX and TorchScript (:func:`export_model`)."""

from lensaudit.scoring.manifest import score_manifest
from lensaudit.scoring.scorers import (
    CheckpointScorer,
    OnnxScorer,
    Scorer,
    ScorerError,
    TorchScriptScorer,
    load_scorer,
    probe_cutouts,
)
from lensaudit.scoring.spec import ScorerSpec, read_spec, spec_path, write_spec

__all__ = ["CheckpointScorer", "OnnxScorer", "Scorer", "ScorerError", "ScorerSpec", "TorchScriptScorer", "load_scorer",
           "probe_cutouts", "read_spec", "score_manifest", "spec_path", "write_spec"]
