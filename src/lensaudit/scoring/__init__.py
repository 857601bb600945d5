"""Scoring with any lens finder: the project's checkpoints, ONNX models (any framework) and TorchScript files,
behind one interface (:func:`load_scorer`), each with a preprocessing spec checked before any scoring; and the
export of a project checkpoint to ONNX and TorchScript (:func:`export_model`)."""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "manifest": ["score_manifest"],
    "scorers": ["CheckpointScorer", "OnnxScorer", "Scorer", "ScorerError", "TorchScriptScorer", "load_scorer",
              "probe_cutouts"],
    "spec": ["ScorerSpec", "read_spec", "spec_path", "write_spec"],
})
