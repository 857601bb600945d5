"""Training, scoring, stacking and negative cleaning (needs the ``train`` extra: torch, torchvision)."""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "checkpoint": ["CheckpointError", "load_model", "read_checkpoint"],
    "config": ["ScheduleConfig", "TrainConfig"],
    "loop": ["TrainingError", "train", "weighted_bce"],
    "score": ["score_manifest", "write_predictions"],
})
