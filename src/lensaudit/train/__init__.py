"""Training, scoring, stacking and negative cleaning (needs the ``train`` extra: torch, torchvision)."""

from lensaudit.train.checkpoint import CheckpointError, load_model, read_checkpoint
from lensaudit.train.config import ScheduleConfig, TrainConfig
from lensaudit.train.loop import TrainingError, train, weighted_bce
from lensaudit.train.score import score_manifest, write_predictions

__all__ = ["CheckpointError", "load_model", "read_checkpoint", "ScheduleConfig", "TrainConfig", "TrainingError",
           "train", "weighted_bce", "score_manifest", "write_predictions"]
